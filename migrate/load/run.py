"""``billmig load`` and ``billmig rollback``: a mapped run into the target, and out again.

Load creates the target schema when absent and writes every table of ``runs/<run>/mapped/`` in
dependency order, in batches of ``[load] batch_rows`` rows. Each batch commits together with
its row in ``billmig_load_journal``, so:

* a load killed at any point resumes where it stopped, with no duplicate and no missing row
  (batches are cut from the Parquet files the same way every time, and committed ones are
  skipped);
* ``load`` again on a finished run changes nothing and says so;
* a *different* run whose wave overlaps a loaded one is refused until that run is rolled back
  (waves never overlap; the whole population overlaps every wave).

Rollback deletes one run's rows, and the rows other runs (compensations) wrote about its
accounts, children first, in one transaction, and prints the row counts before and after. Rows
of the shared tables (``party``, ``product_offering``) that another loaded run still refers to
stay. After cutover it refuses unless forced. Load and rollback hold the target lock
(:mod:`migrate.core.target_lock`): one writer per target, whichever workspace it comes from.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from migrate.core.artifacts import LoadRecord, MappedManifest, SnapshotManifest
from migrate.core.config import Config, mask_url
from migrate.core.db import create_engine, translate_errors
from migrate.core.errors import EXIT_OK, InputError, Refused, TargetError
from migrate.core.ledger import rolled_back_since, run_phase
from migrate.core.manifest import sha256_file
from migrate.core.progress import SILENT, Progress, Task
from migrate.core.provenance import operator
from migrate.core.rendering import TableData
from migrate.core.runs import MappedFolder, PhaseFiles, RunDir
from migrate.core.target_lock import HeldTarget, Workspace, target_lock, workspace_of
from migrate.core.target_schema import (
    JOURNAL_METADATA,
    LEGACY_KEY_OF,
    LOAD_JOURNAL,
    LOAD_RUN,
    METADATA,
    SHARED_TABLES,
    TARGET_TABLES,
)
from migrate.load.writer import BatchWriter, first_failing_row, open_writer

LOAD_STREAMS = 2
"""Tables loaded at once into a target without references yet (its two cores stay busy)."""
ACTIVE = ("loading", "loaded", "cut_over", "rolling_back")
"""Load states in which a run's rows may be in the target."""


def _loaded_rows(run: RunDir) -> int | None:
    """Rows the load record counts (None when a rerun found the run already loaded)."""
    record = LoadRecord.read_if_present(run.load_record)
    return sum(record.rows.values()) if record else None


LOAD = PhaseFiles(
    "load",
    inputs=lambda run: (run.mapped.manifest,),
    output=lambda run: run.load_record,
    rows=_loaded_rows,
)
"""What load reads (the mapped output) and leaves (its load record), for the ledger."""


ROLLBACK = PhaseFiles("rollback", inputs=lambda run: (), output=lambda run: None)
"""Rollback reads and leaves no file of the run: the target's journal is its evidence."""


@dataclass(frozen=True)
class TableLoad:
    """One table's part in a load."""

    name: str
    rows: int
    """Rows of the mapped file."""
    loaded_now: int
    """Rows this invocation inserted (0 on a rerun of a finished load)."""
    batches: int
    skipped_batches: int
    """Batches already committed by an earlier, interrupted invocation."""
    seconds: float


@dataclass(frozen=True)
class LoadResult:
    """What ``load`` did."""

    run_id: str
    target: str
    outcome: str
    """loaded, resumed or already loaded."""
    table_loads: tuple[TableLoad, ...]
    seconds: float

    @property
    def exit_code(self) -> int:
        """Always 0: failures raise."""
        return EXIT_OK

    def tables(self) -> list[TableData]:
        """Per-table rows and batches, for the terminal."""
        rows = [
            (t.name, t.rows, t.loaded_now, t.batches, t.skipped_batches, f"{t.seconds:.1f}")
            for t in self.table_loads
        ]
        return [
            TableData(
                title=f"load {self.run_id} into {self.target}",
                headers=("table", "rows #", "inserted now #", "batches #", "skipped #", "s"),
                rows=rows,
                footer=f"{self.outcome}; {self.seconds:.1f} s",
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "target": self.target,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 3),
            "tables": [asdict(t) for t in self.table_loads],
        }


@dataclass(frozen=True)
class _Mapped:
    """A mapped run ready to load."""

    folder: MappedFolder
    manifest_sha256: str
    wave: str | None

    @classmethod
    def open(cls, config: Config, run_id: str) -> _Mapped:
        run = RunDir.of(config, run_id)
        if not run.mapped.manifest.exists():
            raise InputError(
                f"run {run_id} has no mapped output ({run.mapped.path})",
                hint=f"run `billmig map --run {run_id}` first",
            )
        manifest = MappedManifest.read(run.mapped.manifest)
        for table in TARGET_TABLES:
            if manifest.output(run.mapped.table(table.name).name) is None:
                raise InputError(
                    f"the mapped output of run {run_id} has no {table.name} table",
                    hint=f"rerun `billmig map --run {run_id}`",
                )
        manifest.check(run.mapped, run_id)
        snapshot = SnapshotManifest.read(run.snapshot.manifest)
        snapshot.check(run.snapshot, run_id)  # the chain from legacy holds, or nothing loads
        wave = snapshot.wave_name
        return cls(run.mapped, sha256_file(run.mapped.manifest), wave)

    def batches(self, table: str, batch_rows: int) -> Iterator[pa.Table]:
        """The table's rows, cut into batches the same way every time."""
        parquet = pq.ParquetFile(self.folder.table(table))
        for batch in parquet.iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([batch])

    def rows(self, table: str) -> int:
        """Rows in the table's file."""
        return int(pq.ParquetFile(self.folder.table(table)).metadata.num_rows)


def run_load(
    config: Config,
    *,
    run_id: str,
    progress: Progress = SILENT,
    another_target: bool = False,
) -> LoadResult:
    """Load ``runs/<run_id>/mapped`` into the target database.

    ``another_target`` allows loading a run that this workspace loaded into another target
    (which is not rolled back) a second time, into this one.

    Raises:
        InputError: no mapped output, an overlapping loaded run, a busy workspace or target,
            the run loaded into another target or from another workspace, map not run or its
            inputs changed since (the run ledger).
        TargetError: the target refused a batch (message names table, batch, legacy key).
    """
    return run_phase(config, LOAD, run_id, lambda: _load(config, run_id, progress, another_target))


def _load(config: Config, run_id: str, progress: Progress, another_target: bool) -> LoadResult:
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat()
    url = config.target_url()
    mapped = _Mapped.open(config, run_id)
    workspace = workspace_of(config)
    engine = create_engine(url)
    try:
        with target_lock(engine, LOAD.name, run_id, workspace) as target:
            _refuse_second_target(config, run_id, target, another_target)
            with translate_errors(url, "creating the target schema", TargetError):
                create_target_schema(engine)
            claim = _claim(engine, url, run_id, mapped, config.load.batch_rows, workspace)
            if claim.outcome == "already loaded":
                tables = tuple(
                    TableLoad(t.name, mapped.rows(t.name), 0, 0, 0, 0.0) for t in TARGET_TABLES
                )
            else:
                tables = _load_tables(engine, url, run_id, mapped, claim, progress)
                with translate_errors(url, "adding references and indexes", TargetError):
                    complete_target_schema(engine)
                _set_status(engine, url, run_id, "loaded", finished=True)
    finally:
        engine.dispose()
    result = LoadResult(run_id, mask_url(url), claim.outcome, tables, time.perf_counter() - started)
    if result.outcome != "already loaded":
        LoadRecord(
            run_id=run_id,
            target=result.target,
            target_id=target.target_id,
            outcome=result.outcome,
            operator=operator(),
            started_at=started_at,
            finished_at=datetime.now(UTC).isoformat(),
            seconds=round(result.seconds, 3),
            rows={t.name: t.rows for t in tables},
        ).write(RunDir.of(config, run_id).load_record)
    return result


def _refuse_second_target(
    config: Config, run_id: str, target: HeldTarget, another_target: bool
) -> None:
    """A run this workspace loaded elsewhere, and has not rolled back, goes nowhere else."""
    earlier = LoadRecord.read_if_present(RunDir.of(config, run_id).load_record)
    if earlier is None or earlier.target_id in (None, target.target_id) or another_target:
        return
    if rolled_back_since(config, run_id) is not None:
        return
    raise InputError(
        f"run {run_id} is loaded into another target ({earlier.target}, target id "
        f"{earlier.target_id}), not into {target.url}",
        hint="check BILLMIG_TARGET_URL; roll it back there first, or, to load it into a "
        "second target on purpose, add --another-target",
    )


def create_target_schema(engine: sa.Engine) -> None:
    """Create the target tables that are absent, and the load journal.

    On PostgreSQL a new table starts with its primary key, unique and check constraints only:
    references and secondary indexes come after the load (:func:`complete_target_schema`), as
    PostgreSQL's own advice for populating a database says, because a per-row reference check
    costs more than the whole copy. Elsewhere every constraint is created at once.
    """
    JOURNAL_METADATA.create_all(engine)
    if engine.dialect.name != "postgresql":
        METADATA.create_all(engine, tables=list(TARGET_TABLES))
        return
    with engine.begin() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for table in TARGET_TABLES:
            if table.name not in present:
                conn.execute(sa.schema.CreateTable(table, include_foreign_key_constraints=[]))


def complete_target_schema(engine: sa.Engine) -> None:
    """Add every reference and index the target lacks (each validated in one pass).

    Only PostgreSQL defers them (see :func:`create_target_schema`); elsewhere they exist.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        for table in TARGET_TABLES:
            existing = {
                (tuple(fk["constrained_columns"]), fk["referred_table"])
                for fk in inspector.get_foreign_keys(table.name)
            }
            for constraint in table.foreign_key_constraints:
                key = (tuple(constraint.column_keys), constraint.referred_table.name)
                if key not in existing:
                    conn.execute(sa.schema.AddConstraint(constraint))
            for index in table.indexes:
                index.create(conn, checkfirst=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in TARGET_TABLES:  # fresh planner statistics for everyone who queries next
            conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.quote(table.name)}")


@dataclass(frozen=True)
class _Claim:
    outcome: str
    batch_rows: int
    committed: frozenset[tuple[str, int]]
    shared_mode: bool
    """Another run is loaded: shared tables get only the rows they lack."""


def _claim(
    engine: sa.Engine,
    url: str,
    run_id: str,
    mapped: _Mapped,
    batch_rows: int,
    workspace: Workspace,
) -> _Claim:
    """Register (or resume) this run's load; refuse overlaps and changed inputs."""
    with translate_errors(url, "reading the load journal", TargetError), engine.begin() as conn:
        runs = {row.run_id: row for row in conn.execute(sa.select(LOAD_RUN)).all()}
        _refuse_overlaps(run_id, mapped.wave, runs)
        mine = runs.get(run_id)
        shared = any(r.status in ACTIVE for key, r in runs.items() if key != run_id)
        if mine is not None and mine.status in ACTIVE:
            _refuse_foreign_owner(run_id, mine, workspace)
        if mine is not None and mine.status in ("loading", "loaded", "cut_over"):
            if mine.mapped_manifest_sha256 != mapped.manifest_sha256:
                raise InputError(
                    f"run {run_id} is (partly) loaded from a different mapped output",
                    hint=f"roll it back (`billmig rollback --run {run_id}`), then load again",
                )
            committed = frozenset(
                (row.table_name, int(row.batch_no))
                for row in conn.execute(
                    sa.select(LOAD_JOURNAL.c.table_name, LOAD_JOURNAL.c.batch_no).where(
                        LOAD_JOURNAL.c.run_id == run_id
                    )
                )
            )
            outcome = "resumed" if mine.status == "loading" else "already loaded"
            return _Claim(outcome, int(mine.batch_rows), committed, shared)
        if mine is not None and mine.status == "rolling_back":
            raise InputError(
                f"run {run_id} is half rolled back",
                hint=f"finish it: `billmig rollback --run {run_id}`",
            )
        values = {
            "wave": mapped.wave,
            "mapped_manifest_sha256": mapped.manifest_sha256,
            "batch_rows": batch_rows,
            "status": "loading",
            "operator": operator(),
            "started_at": _now(),
            "finished_at": None,
            "workspace_id": workspace.workspace_id,
            "workspace": workspace.where[:300],
        }
        if mine is None:
            conn.execute(sa.insert(LOAD_RUN).values(run_id=run_id, **values))
        else:
            conn.execute(sa.update(LOAD_RUN).where(LOAD_RUN.c.run_id == run_id).values(**values))
        return _Claim("loaded", batch_rows, frozenset(), shared)


def _refuse_foreign_owner(run_id: str, mine: Any, workspace: Workspace) -> None:
    """The run's rows belong to the workspace that loaded them; no other resumes or redoes it."""
    if mine.workspace_id in (None, workspace.workspace_id):
        return
    raise InputError(
        f"run {run_id} in this target belongs to another workspace ({mine.workspace}, "
        f"{mine.status} by {mine.operator})",
        hint="run load, delta and rollback of this run from that workspace",
    )


def _refuse_overlaps(run_id: str, wave: str | None, runs: dict[str, Any]) -> None:
    for other, row in runs.items():
        if other == run_id or row.status not in ACTIVE:
            continue
        if wave is None or row.wave is None or row.wave == wave:
            scope = f"wave {row.wave}" if row.wave else "all accounts"
            raise InputError(
                f"run {other} ({scope}, {row.status}) is in the target and overlaps run {run_id}",
                hint=f"roll it back first: `billmig rollback --run {other}`",
            )


def _load_tables(
    engine: sa.Engine,
    url: str,
    run_id: str,
    mapped: _Mapped,
    claim: _Claim,
    progress: Progress,
) -> tuple[TableLoad, ...]:
    """Every table of the run.

    Two tables at a time while the target has no references yet (PostgreSQL's first load),
    else one after another in dependency order. Batches are written by worker threads, never
    the main one: Ctrl-C then reaches billmig, not a database driver in the middle of a batch
    (ADBC's own SIGINT handler turns it into a driver error such as ``NOT_IMPLEMENTED``). The
    workers finish the batch they are writing, commit it with its journal row and stop; the
    load ends ``interrupted`` and resumes at the next batch.
    """
    stop = threading.Event()

    def load(table: sa.Table) -> TableLoad:
        with (
            translate_errors(url, "opening the target", TargetError),
            open_writer(url, engine) as writer,
        ):
            return _load_table(engine, url, run_id, mapped, claim, table, writer, progress, stop)

    parallel = not _has_references(engine)
    order = sorted(TARGET_TABLES, key=lambda t: -mapped.rows(t.name)) if parallel else TARGET_TABLES
    pool = ThreadPoolExecutor(LOAD_STREAMS if parallel else 1, thread_name_prefix="load")
    try:
        if parallel:
            loaded = {result.name: result for result in pool.map(load, order)}
        else:
            loaded = {t.name: pool.submit(load, t).result() for t in order}
    except KeyboardInterrupt:
        stop.set()  # each worker commits the batch it is writing, then stops
        raise
    finally:  # a refused batch: the other stream still finishes its table, as before
        pool.shutdown(wait=True, cancel_futures=stop.is_set())
    return tuple(loaded[t.name] for t in TARGET_TABLES)


class _Stopped(Exception):
    """A worker saw the stop flag between two batches (the main thread got Ctrl-C)."""


def _has_references(engine: sa.Engine) -> bool:
    if engine.dialect.name != "postgresql":
        return True  # created with every constraint: keep dependency order
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        return any(inspector.get_foreign_keys(t.name) for t in TARGET_TABLES)


def _load_table(
    engine: sa.Engine,
    url: str,
    run_id: str,
    mapped: _Mapped,
    claim: _Claim,
    table: sa.Table,
    writer: BatchWriter,
    progress: Progress,
    stop: threading.Event,
) -> TableLoad:
    started = time.perf_counter()
    total = mapped.rows(table.name)
    inserted = batches = skipped = 0
    with progress.task(f"load {table.name}", total) as task:
        for number, rows in enumerate(mapped.batches(table.name, claim.batch_rows)):
            if stop.is_set():
                raise _Stopped(table.name)
            batches += 1
            task.advance(rows.num_rows)
            if (table.name, number) in claim.committed:
                skipped += 1
                continue
            if claim.shared_mode and table.name in SHARED_TABLES:
                rows = _absent(engine, table, rows)
            journal = _journal_row(run_id, table.name, number, rows)
            try:
                writer.write(table.name, rows, journal)
            except Exception as exc:
                raise _batch_error(engine, url, table, number, rows, exc) from exc
            inserted += rows.num_rows
    return TableLoad(table.name, total, inserted, batches, skipped, time.perf_counter() - started)


def _absent(engine: sa.Engine, table: sa.Table, rows: pa.Table) -> pa.Table:
    """The rows of a shared table whose key the target does not hold yet."""
    key = next(iter(table.primary_key.columns))
    wanted = rows.column(key.name).to_pylist()
    present: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            present.update(conn.execute(sa.select(key).where(key.in_(chunk))).scalars())
    if not present:
        return rows
    keep = pa.array([value not in present for value in wanted])
    return rows.filter(keep)


def _journal_row(run_id: str, table: str, number: int, rows: pa.Table) -> pa.Table:
    keys = rows.column(LEGACY_KEY_OF[table]) if rows.num_rows else None
    return pa.table(
        {
            "run_id": [run_id],
            "table_name": [table],
            "batch_no": pa.array([number], pa.int64()),
            "rows": pa.array([rows.num_rows], pa.int64()),
            "first_key": [None if keys is None else _text(keys[0].as_py())],
            "last_key": [None if keys is None else _text(keys[-1].as_py())],
            "committed_at": pa.array([_now()], pa.timestamp("us")),
        }
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:200]


def _batch_error(
    engine: sa.Engine, url: str, table: sa.Table, number: int, rows: pa.Table, exc: Exception
) -> TargetError:
    """Name the table, the batch and the first legacy key the target refuses."""
    reason = " ".join(str(exc).split())[:300]
    try:
        index = first_failing_row(engine, table, rows)
    except Exception:  # the diagnosis must never hide the original failure
        index = None
    key_column = LEGACY_KEY_OF[table.name]
    where = (
        f"; first refused row: {key_column} = {rows.column(key_column)[index].as_py()}"
        if index is not None
        else ""
    )
    return TargetError(
        f"the target refused batch {number} of {table.name}{where}: {reason}",
        hint="the target holds every batch before it; fix the cause, then run load again "
        f"(it resumes at batch {number}) — see runbooks/03-load.md",
    )


def _set_status(
    engine: sa.Engine, url: str, run_id: str, status: str, *, finished: bool = False
) -> None:
    values: dict[str, Any] = {"status": status}
    if finished:
        values["finished_at"] = _now()
    with translate_errors(url, "updating the load journal", TargetError), engine.begin() as conn:
        conn.execute(sa.update(LOAD_RUN).where(LOAD_RUN.c.run_id == run_id).values(**values))


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# -- rollback --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableRollback:
    """One table before and after a rollback."""

    name: str
    rows_before: int
    rows_after: int
    run_rows_deleted: int
    dependent_rows_deleted: int = 0
    """Rows other runs wrote that refer to this run's rows (a compensation's credits)."""
    dependent_runs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RollbackResult:
    """What ``rollback`` did."""

    run_id: str
    target: str
    outcome: str
    table_rollbacks: tuple[TableRollback, ...]
    seconds: float
    dry_run: bool = False
    """Counted inside a transaction that was rolled back: nothing was deleted."""

    @property
    def exit_code(self) -> int:
        """Always 0: refusals raise."""
        return EXIT_OK

    @property
    def dependent_runs(self) -> tuple[str, ...]:
        """Other runs (compensations) whose rows went with this run's."""
        return tuple(sorted({r for t in self.table_rollbacks for r in t.dependent_runs}))

    def tables(self) -> list[TableData]:
        """Counts before and after, for the terminal."""
        others = ", ".join(self.dependent_runs)
        removed = "would also go" if self.dry_run else "also removed"
        also = f"; {removed}, as they refer to its accounts: rows of {others}" if others else ""
        done = (
            f"{self.outcome}: counted in a transaction that was rolled back, nothing deleted"
            if self.dry_run
            else f"{self.outcome} in one transaction"
        )
        deleted = "to delete #" if self.dry_run else "deleted #"
        return [
            TableData(
                title=f"rollback {self.run_id} from {self.target}"
                + (" — what it would delete" if self.dry_run else ""),
                headers=("table", "rows before #", deleted, "of other runs #", "rows after #"),
                rows=[
                    (
                        t.name,
                        t.rows_before,
                        t.run_rows_deleted + t.dependent_rows_deleted,
                        t.dependent_rows_deleted,
                        t.rows_after,
                    )
                    for t in self.table_rollbacks
                ],
                footer=f"{done}; {self.seconds:.1f} s{also}",
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "target": self.target,
            "outcome": self.outcome,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "dependent_runs": list(self.dependent_runs),
            "tables": [asdict(t) for t in self.table_rollbacks],
        }


def run_rollback(
    config: Config, *, run_id: str, force: bool = False, progress: Progress = SILENT
) -> RollbackResult:
    """Remove ``run_id``'s rows, and the rows other runs wrote about them, in one transaction.

    Children go before parents; rows of a compensation (or any other run) that refer to the
    run's accounts go with them, and are named. The run is marked ``rolling_back`` first, so
    a rollback killed before its transaction commits leaves the target as it was, marked, and
    ``rollback`` again finishes it.

    Raises:
        InputError: the run was cut over (without ``force``), was never loaded here, or the
            workspace or the target is busy.
    """
    return run_phase(config, ROLLBACK, run_id, lambda: _rollback(config, run_id, force, progress))


def plan_rollback(config: Config, *, run_id: str, force: bool = False) -> RollbackResult:
    """What ``rollback`` would delete, counted exactly.

    The same deletes run in one transaction that is rolled back at the end: nothing in the
    target, the ledger or the run folder changes.

    Raises:
        InputError: as :func:`run_rollback` (cut over without ``force``, never loaded here).
    """
    started = time.perf_counter()
    url = config.target_url()
    engine = create_engine(url)
    try:
        with (
            translate_errors(url, "counting what a rollback deletes", TargetError),
            engine.connect() as conn,
        ):
            transaction = conn.begin()
            try:
                outcome = _rollback_status(conn, run_id, force)
                tables = tuple(
                    _rollback_table(conn, table, run_id) for table in reversed(TARGET_TABLES)
                )
            finally:
                transaction.rollback()
    finally:
        engine.dispose()
    outcome = "would roll back" if outcome == "rolled back" else outcome
    seconds = time.perf_counter() - started
    return RollbackResult(run_id, mask_url(url), outcome, tables, seconds, dry_run=True)


def _rollback(config: Config, run_id: str, force: bool, progress: Progress) -> RollbackResult:
    started = time.perf_counter()
    url = config.target_url()
    engine = create_engine(url)
    try:
        with (
            target_lock(engine, ROLLBACK.name, run_id, workspace_of(config)),
            translate_errors(url, "rolling back", TargetError),
        ):
            outcome = _mark_rolling_back(engine, run_id, force)
            with (
                engine.begin() as conn,  # all or nothing
                progress.task("rollback: tables", len(TARGET_TABLES), unit="tables") as task,
            ):
                tables = tuple(
                    _counted(task, _rollback_table(conn, table, run_id))
                    for table in reversed(TARGET_TABLES)
                )
                conn.execute(sa.delete(LOAD_JOURNAL).where(LOAD_JOURNAL.c.run_id == run_id))
                conn.execute(
                    sa.update(LOAD_RUN)
                    .where(LOAD_RUN.c.run_id == run_id)
                    .values(status="rolled_back", finished_at=_now())
                )
    finally:
        engine.dispose()
    _set_aside_replays(RunDir.of(config, run_id))
    return RollbackResult(run_id, mask_url(url), outcome, tables, time.perf_counter() - started)


def _counted(task: Task, done: TableRollback) -> TableRollback:
    task.advance(1)
    return done


def _set_aside_replays(run: RunDir) -> None:
    """Set aside what described the rows the rollback removed: the delta and a GO record.

    The delta's record and events no longer count, nor does the gate's record of a run that
    was live (a forced rollback).

    Renamed (kept for the record), so validate after a reload expects no replayed events or
    rows until ``billmig delta`` replays again. Also done by a rerun after a kill that came
    between the rollback's commit and this rename.
    """
    if run.delta.path.is_dir():
        aside = run.delta_rolled_back
        shutil.rmtree(aside.path, ignore_errors=True)
        os.replace(run.delta.path, aside.path)
    if run.delta_record.is_file():
        os.replace(run.delta_record, run.delta_record_rolled_back)
    if run.cutover.is_dir():  # a forced rollback of a live run: it is live no more
        shutil.rmtree(run.cutover_rolled_back, ignore_errors=True)
        os.replace(run.cutover, run.cutover_rolled_back)


def _mark_rolling_back(engine: sa.Engine, run_id: str, force: bool) -> str:
    with engine.begin() as conn:
        outcome = _rollback_status(conn, run_id, force)
        if outcome == "rolled back":
            conn.execute(
                sa.update(LOAD_RUN).where(LOAD_RUN.c.run_id == run_id).values(status="rolling_back")
            )
        return outcome


def _rollback_status(conn: sa.Connection, run_id: str, force: bool) -> str:
    """``rolled back`` when the run may be rolled back now, else ``already rolled back``.

    Raises:
        InputError: cut over (without ``force``) or never loaded into this target.
    """
    if not sa.inspect(conn).has_table(LOAD_RUN.name):
        status = None
    else:
        status = conn.execute(
            sa.select(LOAD_RUN.c.status).where(LOAD_RUN.c.run_id == run_id)
        ).scalar_one_or_none()
    if status == "cut_over" and not force:
        raise Refused(
            f"run {run_id} was cut over: the new platform is live on it",
            hint="a rollback now loses live changes; if it is decided, add --force",
        )
    if status is None:
        raise InputError(
            f"run {run_id} was never loaded into this target ({mask_url(str(conn.engine.url))})",
            hint="check the run id and BILLMIG_TARGET_URL; billmig runs lists the loaded runs",
        )
    return "already rolled back" if status == "rolled_back" else "rolled back"


def _rollback_table(conn: sa.Connection, table: sa.Table, run_id: str) -> TableRollback:
    count = sa.select(sa.func.count()).select_from(table)
    before = int(conn.execute(count).scalar_one())
    dependent = _dependent_rows(table, run_id)
    runs: tuple[str, ...] = ()
    dependents = 0
    if dependent is not None:
        runs = tuple(conn.execute(sa.select(table.c.run_id).where(dependent).distinct()).scalars())
        if runs:
            dependents = int(conn.execute(sa.delete(table).where(dependent)).rowcount or 0)
    condition = table.c.run_id == run_id
    if table.name in SHARED_TABLES:
        referrer, column = SHARED_TABLES[table.name]
        other = METADATA.tables[referrer].c[column]
        key = next(iter(table.primary_key.columns))
        still_used = sa.select(other).where(other.is_not(None))
        condition = condition & key.not_in(still_used)
    deleted = conn.execute(sa.delete(table).where(condition)).rowcount
    after = int(conn.execute(count).scalar_one())
    return TableRollback(
        table.name, before, after, int(deleted or 0), dependents, tuple(sorted(runs))
    )


def _dependent_rows(table: sa.Table, run_id: str) -> sa.ColumnElement[bool] | None:
    """Rows of *other* runs in ``table`` that refer to a row of ``run_id`` (its accounts).

    Shared parents (parties, offerings) are only deleted where nothing refers to them, so only
    references to the run's own tables make a row dependent.
    """
    refers = []
    for constraint in table.foreign_key_constraints:
        parent = constraint.referred_table
        if parent.name in SHARED_TABLES:
            continue
        (column,) = constraint.columns
        (parent_key,) = (element.column for element in constraint.elements)
        refers.append(column.in_(sa.select(parent_key).where(parent.c.run_id == run_id)))
    if not refers:
        return None
    return (table.c.run_id != run_id) & sa.or_(*refers)


def mark_cut_over(config: Config, run_id: str) -> None:
    """Record in the target that ``run_id`` went live: from now on rollback needs ``--force``.

    Raises:
        InputError: the target holds no loaded run of that id.
    """
    url = config.target_url()
    engine = create_engine(url)
    try:
        with translate_errors(url, "recording the cutover", TargetError), engine.begin() as conn:
            done = conn.execute(
                sa.update(LOAD_RUN)
                .where(LOAD_RUN.c.run_id == run_id, LOAD_RUN.c.status.in_(("loaded", "cut_over")))
                .values(status="cut_over", finished_at=_now())
            )
            if done.rowcount != 1:
                raise InputError(
                    f"the target {mask_url(url)} holds no loaded run {run_id}",
                    hint="check BILLMIG_TARGET_URL: the gate records cutover where the run loaded",
                )
    finally:
        engine.dispose()
