"""``billmig map``: a snapshot into the new model (SPEC §4, §5, §6).

Reads ``runs/<run_id>/snapshot/`` and writes ``runs/<run_id>/mapped/``: one Parquet file per
target table, ``exceptions.parquet`` (the extractor's and the mapper's, with dispositions),
``lineage.parquet`` (every legacy row once: where it went and by which rule),
``topup_forecast.csv`` and ``manifest.json`` (inputs, policies, outputs with SHA-256, control
totals). Output is written to ``mapped.partial/`` and renamed when complete, so a ``mapped/``
directory is always whole; rerunning on the same snapshot gives byte-identical files.

Memory stays bounded by partitioning (see :mod:`migrate.mapping.hash_partition`):

1. clients, partitioned by national ID → parties, duplicates merged exactly;
2. lines and subscriptions, partitioned by phone number → numbers checked, subscriptions
   linked to their line's account, then re-partitioned by account;
3. accounts, payments, charges, orders, bonuses and the linked rows, partitioned by account
   → every account rule, mapped by ``[map] workers`` processes in parallel.
"""

from __future__ import annotations

import contextlib
import functools
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from migrate import __version__
from migrate.core.artifacts import (
    Coverage,
    MappedManifest,
    MappedOutput,
    MapPolicyRecord,
    MapRecord,
    MoneyConservation,
    SnapshotManifest,
)
from migrate.core.bridge import Bridge, BridgeLine, bridge, bridge_table
from migrate.core.config import Config
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError
from migrate.core.ledger import run_phase
from migrate.core.legacy_schema import BY_NAME
from migrate.core.manifest import git_state, sha256_file
from migrate.core.numbering import NumberingPlan
from migrate.core.processes import worker_pool
from migrate.core.progress import SILENT, Progress
from migrate.core.provenance import library_versions, operator
from migrate.core.reasons import ReasonCode, Severity
from migrate.core.rendering import TableData
from migrate.core.runs import MappedFolder, PhaseFiles, RunDir
from migrate.core.target_schema import TARGET_TABLES, arrow_schema
from migrate.mapping.account_partition import (
    FORECAST_COLUMNS,
    TOTAL_COLUMNS,
    BucketContext,
    map_bucket,
)
from migrate.mapping.dispositions import Dispositions, load_dispositions
from migrate.mapping.hash_partition import Scatter, partition_of, read_partition, to_table
from migrate.mapping.lines import (
    LINKED_LINES_SCHEMA,
    LINKED_SUBSCRIPTIONS_SCHEMA,
    link_lines,
    msisdn_partition_keys,
)
from migrate.mapping.outcomes import (
    LINEAGE_SCHEMA,
    RUN_EXCEPTIONS_SCHEMA,
    Outcome,
    lineage,
)
from migrate.mapping.parties import map_parties
from migrate.mapping.policy import MapPolicy
from migrate.mapping.tariffs import TariffMap, load_tariff_map
from migrate.money.arithmetic import RoundingMode, RoundingPolicy, RoundingUnit

MAP = PhaseFiles(
    "map",
    inputs=lambda run: (run.snapshot.manifest,),
    output=lambda run: run.mapped.manifest,
    config_inputs=lambda config: (config.map.tariffs, config.map.dispositions),
    rows=lambda run: MapRecord.read(run.map_record).rows.get("lineage") or None,
)
"""What map reads (the snapshot, the tariff and disposition files) and leaves, for the ledger."""
BATCH_ROWS = 200_000
TARGET_SCHEMAS = {table.name: arrow_schema(table) for table in TARGET_TABLES}
_ACCOUNT_ENTITIES: dict[str, tuple[str, ...] | None] = {
    "accounts": None,
    "payments": None,
    "charges": (
        "charge_id", "account_no", "msisdn", "kind", "amount_minor", "currency", "occurred_at",
    ),
    "orders": ("order_id", "account_no"),
    "bonuses": None,
}  # fmt: skip


@dataclass(frozen=True)
class MoneyTotals:
    """Per currency: the run's money conservation, as the bridge of :mod:`migrate.core.bridge`.

    ``target net = legacy + explained``, where explained = payments in transit + money
    bonuses + debt written off − balances of the accounts held back (validate re-derives the
    same lines and shows the same figures).
    """

    currency: str
    accounts: int
    legacy_balance_minor: int
    withheld_balances: int
    held_balance_minor: int
    target_net_minor: int
    pending_minor: int
    bonus_money_minor: int
    write_off_minor: int
    held_accounts: int = 0
    pending_accounts: int = 0
    bonus_money_accounts: int = 0
    write_off_accounts: int = 0

    @property
    def explained_minor(self) -> int:
        """Every movement of the bridge between the legacy balances and the target's net."""
        return self.bridge().explained_minor

    @property
    def difference_minor(self) -> int:
        """Zero when every minor unit is accounted for (``target net − legacy − explained``)."""
        return self.bridge().difference_minor

    def bridge(self) -> Bridge:
        """The bridge map can draw from its own output (no delta has run yet)."""
        lines = {
            "pending": BridgeLine("pending", self.pending_minor, self.pending_accounts),
            "bonus_money": BridgeLine(
                "bonus_money", self.bonus_money_minor, self.bonus_money_accounts
            ),
            "write_off": BridgeLine("write_off", self.write_off_minor, self.write_off_accounts),
            "left_out": BridgeLine("left_out", -self.held_balance_minor, self.held_accounts),
        }
        legacy = BridgeLine("legacy", self.legacy_balance_minor,
                            self.accounts - self.withheld_balances)  # fmt: skip
        target = BridgeLine("target_net", self.target_net_minor, self.accounts - self.held_accounts)
        return bridge(self.currency, legacy, lines, target)

    def record(self) -> MoneyConservation:
        """The manifest's form, with the difference written out."""
        return MoneyConservation(
            currency=self.currency,
            accounts=self.accounts,
            legacy_balance_minor=self.legacy_balance_minor,
            explained_minor=self.explained_minor,
            held_balance_minor=self.held_balance_minor,
            target_net_minor=self.target_net_minor,
            difference_minor=self.difference_minor,
            withheld_balances=self.withheld_balances,
        )


@dataclass(frozen=True)
class MapResult:
    """What ``map`` produced."""

    run_id: str
    mapped_dir: Path
    manifest_sha256: str
    rows: dict[str, int]
    exceptions_by_reason: dict[str, int]
    outcomes: dict[str, dict[str, int]]
    totals: tuple[MoneyTotals, ...]
    coverage: dict[str, list[str]]
    seconds: float
    locale: str = "en"

    @property
    def conserved(self) -> bool:
        """True when no currency has a difference."""
        return all(t.difference_minor == 0 for t in self.totals)

    @property
    def exit_code(self) -> int:
        """0 when money is conserved, else 1 (exceptions alone do not fail ``map``)."""
        return EXIT_OK if self.conserved else EXIT_CHECKS_FAILED

    def tables(self) -> list[TableData]:
        """Outputs, money conservation and exceptions, for the terminal."""
        verdict = (
            "money conserved in every currency"
            if self.conserved
            else "MONEY NOT CONSERVED: see the bridge below and totals in manifest.json"
        )
        out = [
            TableData(
                title=f"map {self.run_id}: {self.mapped_dir}",
                headers=("table", "rows #"),
                rows=sorted(self.rows.items()),
                footer=f"{verdict}; {self.seconds:.1f} s",
            ),
            *(bridge_table(t.bridge(), self.locale) for t in self.totals),
        ]
        if self.exceptions_by_reason:
            out.append(
                TableData(
                    title="exceptions by reason code",
                    headers=("reason code", "severity", "rows #"),
                    rows=[
                        (code, ReasonCode[code].severity.value, count)
                        for code, count in self.exceptions_by_reason.items()
                    ],
                )
            )
        unmapped = self.coverage.get("unmapped_legacy_codes", [])
        unused = self.coverage.get("unused_mapping_rows", [])
        if unmapped or unused:
            out.append(
                TableData(
                    title="tariff mapping coverage",
                    headers=("direction", "codes"),
                    rows=[
                        ("legacy codes without a mapping", ", ".join(unmapped) or "none"),
                        ("mapping rows no legacy tariff uses", ", ".join(unused) or "none"),
                    ],
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "mapped_dir": str(self.mapped_dir),
            "manifest_sha256": self.manifest_sha256,
            "conserved": self.conserved,
            "seconds": round(self.seconds, 3),
            "rows": self.rows,
            "exceptions_by_reason": self.exceptions_by_reason,
            "outcomes": self.outcomes,
            "totals": [
                asdict(t)
                | {"explained_minor": t.explained_minor, "difference_minor": t.difference_minor}
                for t in self.totals
            ],
            "coverage": self.coverage,
        }


def run_map(config: Config, *, run_id: str, progress: Progress = SILENT) -> MapResult:
    """Map ``runs/<run_id>/snapshot`` into ``runs/<run_id>/mapped``.

    Raises:
        InputError: no such run, an incomplete or altered snapshot, or a bad mapping file;
            extract has not run for it or its inputs changed since (the run ledger).
    """
    return run_phase(config, MAP, run_id, lambda: _map(config, run_id, progress))


def _map(config: Config, run_id: str, progress: Progress) -> MapResult:
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    run = RunDir.of(config, run_id)
    snapshot = _Snapshot.open(run)
    tariffs = load_tariff_map(config.resolve(config.map.tariffs))
    dispositions = load_dispositions(config.resolve(config.map.dispositions))
    policy = MapPolicy(
        namespace=config.workspace.namespace,
        cutoff=snapshot.cutoff,
        write_off_below_minor=config.map.write_off_below_minor,
        debt_threshold_minor=config.map.debt_threshold_minor,
        small_debt=config.map.small_debt,
        unconsented=config.map.unconsented,
        roaming_lookback_days=config.map.roaming_lookback_days,
        numbering=config.numbering.plan(),
        rounding=RoundingPolicy(
            RoundingMode(config.money.rounding_mode), RoundingUnit(config.money.rounding_unit)
        ),
    )
    partial = run.mapped_staging
    shutil.rmtree(partial.path, ignore_errors=True)
    partial.path.mkdir(parents=True)
    try:
        job = _MapJob(config, snapshot, tariffs, dispositions, policy, partial, run_id)
        summary = job.run(progress)
        manifest = _write_manifest(job, summary)
    except BaseException:
        shutil.rmtree(partial.path, ignore_errors=True)
        raise
    mapped = run.mapped.path
    shutil.rmtree(mapped, ignore_errors=True)
    partial.path.rename(mapped)
    seconds = time.perf_counter() - started
    MapRecord(
        run_id=run_id,
        operator=operator(),
        started_at=started_at.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        seconds=round(seconds, 3),
        stage_seconds=job.stage_seconds,
        partitions=job.partitions,
        workers=job.workers,
        rows=summary["rows"],
    ).write(run.map_record)
    return MapResult(
        run_id=run_id,
        mapped_dir=mapped,
        manifest_sha256=manifest,
        rows=summary["rows"],
        exceptions_by_reason=summary["exceptions_by_reason"],
        outcomes=summary["outcomes"],
        totals=tuple(summary["totals"]),
        coverage=summary["coverage"],
        seconds=seconds,
        locale=config.workspace.locale,
    )


@dataclass(frozen=True)
class _Snapshot:
    """A verified snapshot: its manifest, cutoff and files."""

    run: RunDir
    manifest: SnapshotManifest
    manifest_sha256: str

    @classmethod
    def open(cls, run: RunDir) -> _Snapshot:
        if not run.snapshot.manifest.exists():
            raise InputError(
                f"no complete snapshot in {run.snapshot}",
                hint="run `billmig extract` first and pass its run id to --run",
            )
        manifest = SnapshotManifest.read(run.snapshot.manifest)
        if not manifest.reconciled:
            raise InputError(
                f"the snapshot in {run.snapshot} does not reconcile with legacy control totals",
                hint="investigate the extract differences and extract again",
            )
        manifest.check(run.snapshot, run.run_id)
        return cls(run, manifest, sha256_file(run.snapshot.manifest))

    @property
    def cutoff(self) -> datetime:
        """The snapshot moment (naive local datetime)."""
        return self.manifest.cutoff_at

    def rows(self, entity: str) -> int:
        """Rows of ``entity`` in the snapshot."""
        return self.manifest.entities[entity].rows

    def path(self, entity: str) -> Path:
        """The entity's Parquet file."""
        return self.run.snapshot.entity(entity)

    def batches(self, entity: str, columns: Iterable[str] | None = None) -> Iterator[pa.Table]:
        """The entity in row batches, optionally only some columns."""
        parquet = pq.ParquetFile(self.path(entity))
        for batch in parquet.iter_batches(
            batch_size=BATCH_ROWS, columns=list(columns) if columns else None
        ):
            yield pa.Table.from_batches([batch])

    @functools.cached_property
    def extract_exceptions(self) -> pd.DataFrame:
        """The extractor's exception rows."""
        found: pd.DataFrame = pq.read_table(self.run.snapshot.exceptions).to_pandas()
        return found


def _unique_text(column: str) -> bool:
    """Columns of (nearly) unique values, where a Parquet dictionary only costs time."""
    if column == "run_id":
        return False
    return column.endswith(("_id", "_key", "_no")) or column in _UNIQUE_COLUMNS


_UNIQUE_COLUMNS = {"msisdn", "iccid", "name", "national_id", "detail"}


class _Outputs:
    """One Parquet writer per output table, written partition by partition in order."""

    def __init__(self, out: MappedFolder, schemas: dict[str, pa.Schema], run_id: str) -> None:
        self.out = out
        self.run_id = run_id
        self.schemas = schemas
        self.rows = dict.fromkeys(schemas, 0)
        self.counts: dict[str, dict[tuple[str, ...], int]] = {name: {} for name in _COUNTED}
        self._writers = {
            name: pq.ParquetWriter(
                out.table(name),
                schema,
                compression="zstd",
                use_dictionary=[f.name for f in schema if not _unique_text(f.name)],
            )
            for name, schema in schemas.items()
        }

    def write(self, name: str, table: pa.Table) -> None:
        """Append rows to ``name``; exceptions and lineage are counted as they pass."""
        if not table.num_rows:
            return
        self._writers[name].write_table(table, row_group_size=BATCH_ROWS)
        self.rows[name] += table.num_rows
        if name in _COUNTED:
            counts = table.group_by(list(_COUNTED[name])).aggregate([([], "count_all")])
            for row in counts.to_pylist():
                key = tuple(row[c] for c in _COUNTED[name])
                self.counts[name][key] = self.counts[name].get(key, 0) + row["count_all"]

    def frame(self, name: str, frame: pd.DataFrame) -> pa.Table:
        """``frame`` as the output table ``name`` (run_id filled in)."""
        if "run_id" in self.schemas[name].names:
            frame = frame.assign(run_id=self.run_id)
        return to_table(frame, self.schemas[name])

    def close(self) -> None:
        """Finish every file."""
        for writer in self._writers.values():
            writer.close()


_COUNTED = {"exceptions": ("reason_code",), "lineage": ("entity", "outcome")}
_OUTPUT_SCHEMAS = TARGET_SCHEMAS | {
    "exceptions": RUN_EXCEPTIONS_SCHEMA,
    "lineage": LINEAGE_SCHEMA,
}


class _MapJob:
    """The three partitioned stages of one map run."""

    def __init__(
        self,
        config: Config,
        snapshot: _Snapshot,
        tariffs: TariffMap,
        dispositions: Dispositions,
        policy: MapPolicy,
        out: MappedFolder,
        run_id: str,
    ) -> None:
        self.config = config
        self.snapshot = snapshot
        self.tariffs = tariffs
        self.dispositions = dispositions
        self.policy = policy
        self.numbering = policy.numbering
        self.out = out
        self.run_id = run_id
        self.partitions = max(1, math.ceil(snapshot.rows("accounts") / config.map.bucket_accounts))
        self.workers = config.map.workers
        self.forecast_path = out.topup_forecast
        self.stage_seconds: dict[str, float] = {}
        self.pool: ProcessPoolExecutor | None = None
        self.totals: list[pd.DataFrame] = []

    @contextlib.contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.stage_seconds[stage] = round(time.perf_counter() - started, 3)

    def run(self, progress: Progress) -> dict[str, Any]:
        """Every stage; returns the summary for the manifest and the result."""
        if self.workers == 1:
            return self._run(progress)
        # Workers are forked once, now, while the parent is small: a fork later would copy
        # the parent's grown heap into every worker's page tables.
        with worker_pool(self.workers) as pool:
            self.pool = pool
            try:
                return self._run(progress)
            finally:
                self.pool = None

    def _run(self, progress: Progress) -> dict[str, Any]:
        outputs = _Outputs(self.out, _OUTPUT_SCHEMAS, self.run_id)
        # The forecast grows partition by partition (accounts sorted within each partition).
        self.forecast_path.write_text(",".join(FORECAST_COLUMNS) + "\n", encoding="utf-8")
        with tempfile.TemporaryDirectory(dir=self.out.path, prefix=".work-") as work:
            try:
                with self._timed("catalogue"):
                    self._write_extract_exceptions(outputs)
                    self._catalogue(outputs)
                with self._timed("clients"):
                    context = self._parties(outputs, Path(work), progress)
                with self._timed("partition"):
                    parts = self._scatter_inputs(Path(work))
                with self._timed("lines"):
                    self._lines(outputs, Path(work), parts, progress)
                with self._timed("accounts"):
                    self._accounts(outputs, parts, context, progress)
            finally:
                outputs.close()
        return self._summary(outputs)

    # -- stage 0: what needs no partitioning --------------------------------------------------

    def _write_extract_exceptions(self, outputs: _Outputs) -> None:
        found = self.snapshot.extract_exceptions
        frame = found.drop(columns=["column"]).assign(currency=None)
        frame["detail"] = found["column"] + ": " + found["detail"]
        self._write_exceptions(outputs, frame, phase="extract")

    def _write_exceptions(self, outputs: _Outputs, frame: pd.DataFrame, phase: str) -> None:
        decided = self.dispositions.apply(frame.reset_index(drop=True)).assign(phase=phase)
        outputs.write("exceptions", outputs.frame("exceptions", decided))

    def _catalogue(self, outputs: _Outputs) -> None:
        """Offerings from the mapping file; each legacy tariff's lineage."""
        namespace = self.policy.namespace
        outputs.write(
            "product_offering",
            outputs.frame("product_offering", self.tariffs.offering_rows(namespace)),
        )
        codes = pq.read_table(self.snapshot.path("tariffs"), columns=["tariff_code"])
        legacy = pd.Series(codes.column("tariff_code").to_pylist(), dtype="string")
        ids = self.tariffs.offering_ids(namespace)
        target = legacy.map(lambda code: ids.get(self.tariffs.offering_of.get(code, "")))
        mapped = target.notna().to_numpy()
        trail = pd.concat(
            [
                lineage(
                    "tariffs",
                    legacy[mapped],
                    Outcome.MAPPED,
                    "tariffs.csv",
                    "product_offering",
                    target[mapped],
                ),
                lineage(
                    "tariffs",
                    legacy[~mapped],
                    Outcome.NOT_MIGRATED,
                    "no row in tariffs.csv (live subscriptions on it are TARIFF_UNMAPPED)",
                ),
            ]
        )
        outputs.write("lineage", outputs.frame("lineage", trail))
        self.coverage = self.tariffs.coverage(set(legacy.dropna().tolist()))

    # -- stage 1: clients by national ID ------------------------------------------------------

    def _parties(self, outputs: _Outputs, work: Path, progress: Progress) -> BucketContext:
        schema = pq.read_schema(self.snapshot.path("clients"))
        client_ids: list[np.ndarray] = []
        held = self._withheld.get("clients", {})
        held_ids = pa.array([int(k) for k in held if k.lstrip("-").isdigit()], pa.int64())
        with Scatter(work, "clients", schema, self.partitions) as scatter:
            for batch in self.snapshot.batches("clients"):
                ids = pc.drop_null(batch.column("client_id"))
                ids = ids.filter(pc.invert(pc.is_in(ids, value_set=held_ids)))  # held: no party
                client_ids.append(ids.to_numpy())
                key = pc.coalesce(
                    batch.column("national_id"), batch.column("client_id").cast(pa.string())
                )
                scatter.write(batch, partition_of(key, self.partitions))
        merges: list[pd.DataFrame] = []
        with progress.task("map clients", self.snapshot.rows("clients")) as task:
            shared = (self.policy.namespace, self.run_id, held)
            for party, found, trail, merged_away in self._parallel(
                _party_partition, scatter.paths, shared
            ):
                outputs.write("party", party)
                self._write_exceptions(outputs, found, phase="map")
                outputs.write("lineage", trail)
                merges.append(merged_away)
                task.advance(party.num_rows + len(merged_away))
        merged = pd.concat(merges, ignore_index=True) if merges else pd.DataFrame()
        return BucketContext(
            policy=self.policy,
            tariffs=self.tariffs.legacy_lookup(self.policy.namespace),
            survivor_of=dict(
                zip(
                    merged.get("client_id", pd.Series(dtype=np.int64)).astype(np.int64).tolist(),
                    merged.get("survivor_client_id", pd.Series(dtype=np.int64))
                    .astype(np.int64)
                    .tolist(),
                    strict=True,
                )
            ),
            client_ids_file=self._save_client_ids(client_ids, work),
            withheld=self._withheld,
            excluded_accounts=frozenset(self.dispositions.excluded("accounts")),
        )

    @staticmethod
    def _save_client_ids(parts: list[np.ndarray], work: Path) -> Path | None:
        if not parts:
            return None
        path = work / "client_ids.npy"
        np.save(path, np.sort(np.concatenate(parts).astype(np.int64)))
        return path

    @functools.cached_property
    def _withheld(self) -> dict[str, dict[str, str]]:
        found = self.snapshot.extract_exceptions
        blocking = found[(found["severity"] == Severity.BLOCK.value) & found["legacy_key"].notna()]
        blocking = blocking.drop_duplicates(["entity", "legacy_key"])
        return {
            str(entity): dict(zip(rows["legacy_key"], rows["reason_code"], strict=True))
            for entity, rows in blocking.groupby("entity")
        }

    # -- stage 2: lines and subscriptions by number -------------------------------------------

    def _scatter_inputs(self, work: Path) -> dict[str, list[Path]]:
        """Partition lines and subscriptions by number and the rest by account, in parallel."""
        tasks = [
            _ScatterTask(
                self.snapshot.path(entity), work, entity, columns, "account_no", self.numbering
            )
            for entity, columns in _ACCOUNT_ENTITIES.items()
        ]
        tasks += [
            _ScatterTask(self.snapshot.path(entity), work, entity, None, "msisdn", self.numbering)
            for entity in ("lines", "subscriptions")
        ]
        scattered = self._parallel(_scatter, tasks, self.partitions)
        return {task.entity: paths for task, paths in zip(tasks, scattered, strict=True)}

    def _lines(
        self, outputs: _Outputs, work: Path, parts: dict[str, list[Path]], progress: Progress
    ) -> None:
        out_lines = Scatter(work, "linked-lines", LINKED_LINES_SCHEMA, self.partitions)
        out_subs = Scatter(
            work, "linked-subscriptions", LINKED_SUBSCRIPTIONS_SCHEMA, self.partitions
        )
        total = self.snapshot.rows("lines") + self.snapshot.rows("subscriptions")
        with out_lines, out_subs, progress.task("map lines", total) as task:
            tasks = list(zip(parts["lines"], parts["subscriptions"], strict=True))
            withheld = self._withheld.get("lines", {})
            for linked in self._parallel(_link_partition, tasks, (self.policy, withheld)):
                lines, subs, found, trail = linked
                out_lines.write(lines, partition_of(lines.column("account_no"), self.partitions))
                out_subs.write(subs, partition_of(subs.column("account_no"), self.partitions))
                self._write_exceptions(outputs, found, phase="map")
                outputs.write("lineage", outputs.frame("lineage", trail))
                task.advance(lines.num_rows + subs.num_rows)
        parts["lines"], parts["subscriptions"] = out_lines.paths, out_subs.paths

    # -- stage 3: everything by account -------------------------------------------------------

    def _accounts(
        self,
        outputs: _Outputs,
        parts: dict[str, list[Path]],
        context: BucketContext,
        progress: Progress,
    ) -> None:
        tasks = [
            {entity: paths[p] for entity, paths in parts.items()} for p in range(self.partitions)
        ]
        with progress.task("map accounts", self.snapshot.rows("accounts")) as task:

            def finished(result: dict[str, Any]) -> None:
                task.advance(int(result["accounts"]))

            shared = (context, self.run_id)
            for result in self._parallel(_map_partition, tasks, shared, on_done=finished):
                for name in TARGET_SCHEMAS:
                    if name in result:
                        outputs.write(name, result[name])
                self._write_exceptions(outputs, result["exceptions"], phase="map")
                outputs.write("lineage", result["lineage"])
                result["topup_forecast"].to_csv(
                    self.forecast_path, mode="a", header=False, index=False, lineterminator="\n"
                )
                self.totals.append(result["totals"])

    def _parallel(
        self,
        function: Callable[[Any, Any], Any],
        tasks: list[Any],
        shared: Any,
        on_done: Callable[[Any], None] | None = None,
    ) -> Iterator[Any]:
        """``function(task, shared)`` for each task, in task order, on ``workers`` processes.

        ``on_done`` sees each result as soon as its worker finishes it, in whatever order they
        finish (a progress bar moves then, not when the results' turn to be written comes).
        """
        if self.pool is None or len(tasks) == 1:
            for item in tasks:
                result = function(item, shared)
                if on_done is not None:
                    on_done(result)
                yield result
            return
        assert self.pool is not None, "run() starts the worker pool"
        futures = [self.pool.submit(function, item, shared) for item in tasks]
        if on_done is not None:
            for future in futures:
                future.add_done_callback(functools.partial(_report_done, on_done))
        futures.reverse()  # popped as yielded: a written result is not kept
        try:
            while futures:
                yield futures.pop().result()
        finally:
            for future in futures:
                future.cancel()
        # Arrow keeps freed buffers for reuse; hand them back between stages so the
        # parent's footprint stays that of one partition's results.
        pa.default_memory_pool().release_unused()

    # -- outputs ----------------------------------------------------------------------------

    def _summary(self, outputs: _Outputs) -> dict[str, Any]:
        by_entity: dict[str, dict[str, int]] = {}
        for (entity, outcome), count in sorted(outputs.counts["lineage"].items()):
            by_entity.setdefault(entity, {})[outcome] = count
        return {
            "rows": dict(sorted(outputs.rows.items())),
            "exceptions_by_reason": {
                code: count for (code,), count in sorted(outputs.counts["exceptions"].items())
            },
            "outcomes": by_entity,
            "totals": _money_totals(self.totals),
            "coverage": self.coverage,
        }


def _money_totals(parts: list[pd.DataFrame]) -> list[MoneyTotals]:
    frames = [p for p in parts if len(p)]
    if not frames:
        return []
    summed = pd.concat(frames).groupby("currency")[list(TOTAL_COLUMNS[1:])].sum()
    out = []
    for currency, row in summed.iterrows():
        values = {str(k): int(v) for k, v in row.items()}
        out.append(
            MoneyTotals(
                currency=str(currency),
                accounts=values["accounts"],
                legacy_balance_minor=values["legacy_balance_minor"],
                withheld_balances=values["withheld_balances"],
                held_balance_minor=values["held_balance_minor"],
                target_net_minor=values["main_minor"]
                + values["bonus_money_minor"]
                + values["pending_minor"]
                - values["debt_minor"],
                pending_minor=values["pending_minor"],
                bonus_money_minor=values["bonus_money_minor"],
                write_off_minor=values["write_off_minor"],
                held_accounts=values["held_accounts"],
                pending_accounts=values["pending_accounts"],
                bonus_money_accounts=values["bonus_money_accounts"],
                write_off_accounts=values["write_off_accounts"],
            )
        )
    return out


@dataclass(frozen=True)
class _ScatterTask:
    """One snapshot file to partition by ``key`` (account_no, or msisdn by its E.164 form)."""

    source: Path
    work: Path
    entity: str
    columns: tuple[str, ...] | None
    key: str
    numbering: NumberingPlan


def _scatter(task: _ScatterTask, partitions: int) -> list[Path]:
    """Partition one snapshot file into ``partitions`` files; returns their paths."""
    full = pq.read_schema(task.source)
    schema = pa.schema([full.field(c) for c in task.columns]) if task.columns else full
    parquet = pq.ParquetFile(task.source)
    with Scatter(task.work, task.entity, schema, partitions) as scatter:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=task.columns):
            table = pa.Table.from_batches([batch], schema=schema)
            key = table.column(task.key)
            if task.key == "msisdn":
                key = msisdn_partition_keys(key, task.numbering)
            scatter.write(table, partition_of(key, partitions))
    return scatter.paths


def _party_partition(
    path: Path, shared: tuple[str, str, dict[str, str]]
) -> tuple[pa.Table, pd.DataFrame, pa.Table, pd.DataFrame]:
    """Stage 1 worker: one national-ID partition of clients.

    ``shared``: the namespace, the run, and the clients extract held (id → blocking code).
    """
    namespace, run_id, held = shared
    parties = map_parties(read_partition(path).to_pandas(), namespace, held)
    path.unlink()
    return (
        to_table(parties.party.assign(run_id=run_id), _OUTPUT_SCHEMAS["party"]),
        parties.exceptions,
        to_table(parties.lineage.assign(run_id=run_id), _OUTPUT_SCHEMAS["lineage"]),
        parties.merges,
    )


def _link_partition(
    paths: tuple[Path, Path], shared: tuple[MapPolicy, dict[str, str]]
) -> tuple[pa.Table, pa.Table, pd.DataFrame, pd.DataFrame]:
    """Stage 2 worker: one number partition's lines and subscriptions.

    ``shared`` is the policy and the lines extract withheld (iccid → its blocking code).
    """
    policy, withheld = shared
    lines = _frame(read_partition(paths[0]), "lines")
    subs = _frame(read_partition(paths[1]), "subscriptions")
    for path in paths:
        path.unlink()
    linked = link_lines(lines, subs, policy, withheld)
    return (
        to_table(linked.lines, LINKED_LINES_SCHEMA),
        to_table(linked.subscriptions, LINKED_SUBSCRIPTIONS_SCHEMA),
        linked.exceptions,
        linked.lineage,
    )


def _frame(table: pa.Table, entity: str) -> pd.DataFrame:
    """A partition as a DataFrame whose integer key stays integer when some key is NULL.

    pandas would turn an int64 column with a null into float64, and every other key into
    ``'75.0'`` text in lineage: such a key column becomes nullable ``Int64`` instead.
    """
    frame: pd.DataFrame = table.to_pandas()
    key = BY_NAME[entity].key if entity in BY_NAME else None
    if key in frame and frame[key].dtype.kind == "f":
        ints = table.column(key).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        frame[key] = ints.array
    return frame


def _report_done(on_done: Callable[[Any], None], future: Future[Any]) -> None:
    """Hand a finished worker's result to ``on_done`` (a failure is raised in task order)."""
    if not future.cancelled() and future.exception() is None:
        on_done(future.result())


def _map_partition(paths: dict[str, Path], shared: tuple[BucketContext, str]) -> dict[str, Any]:
    """Stage 3 worker: one account partition, target tables already in their Arrow form."""
    context, run_id = shared
    frames = {entity: _frame(read_partition(path), entity) for entity, path in paths.items()}
    result: dict[str, Any] = dict(map_bucket(frames, context))
    for name in [*TARGET_SCHEMAS, "lineage"]:
        if name in result:
            table = result[name].assign(run_id=run_id)
            result[name] = to_table(table, _OUTPUT_SCHEMAS[name])
    result["accounts"] = len(frames["accounts"])
    for path in paths.values():
        path.unlink()
    return result


def _write_manifest(job: _MapJob, summary: dict[str, Any]) -> str:
    rows = {MappedFolder.file_name(name): count for name, count in summary["rows"].items()}
    outputs = {
        path.name: MappedOutput(sha256_file(path), rows.get(path.name))
        for path in sorted(job.out.path.iterdir())
        if path.is_file()
    }
    coverage = summary["coverage"]
    path = job.out.manifest
    MappedManifest(
        tool_version=__version__,
        libraries=library_versions(),
        workspace=git_state(job.config.root),
        config_sha256=job.config.sha256,
        snapshot_manifest_sha256=job.snapshot.manifest_sha256,
        tariffs_sha256=job.tariffs.sha256,
        dispositions_sha256=job.dispositions.sha256,
        policy=MapPolicyRecord(
            namespace=job.policy.namespace,
            cutoff=job.policy.cutoff.isoformat(),
            write_off_below_minor=job.policy.write_off_below_minor,
            debt_threshold_minor=job.policy.debt_threshold_minor,
            small_debt=job.policy.small_debt,
            unconsented=job.policy.unconsented,
            roaming_lookback_days=job.policy.roaming_lookback_days,
        ),
        partitions=job.partitions,
        outputs=outputs,
        exceptions_by_reason=summary["exceptions_by_reason"],
        outcomes=summary["outcomes"],
        totals=tuple(t.record() for t in summary["totals"]),
        coverage=Coverage(
            tuple(coverage["unmapped_legacy_codes"]), tuple(coverage["unused_mapping_rows"])
        ),
    ).write(path)
    return sha256_file(path)
