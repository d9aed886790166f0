"""``billmig extract``: a read-only, streamed, exact snapshot of the legacy database (SPEC §3).

For each entity the profile's SELECT is wrapped (ordered by the entity key, filtered to the
wave) and streamed in chunks. Every chunk is normalised into the snapshot's Arrow schema and
appended to ``runs/<run_id>/snapshot/<entity>.parquet`` as one row group, so memory stays flat
and equal inputs give byte-identical files on any engine.

The extract checks itself: the legacy database computes control totals (row counts and money
sums in micro-units, per currency × brand × payment type × status and the like) and the
snapshot's totals must match them exactly once rows after the cutoff and withheld values are
accounted for. ``manifest.json`` holds only what the snapshot *is*; who ran it and how long it
took go to ``run.json``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from migrate import __version__
from migrate.core.artifacts import (
    EntityTiming,
    ExceptionsFile,
    ExtractRecord,
    ProfileRef,
    Scalar,
    SnapshotEntity,
    SnapshotManifest,
    SourceRef,
    WaveRef,
)
from migrate.core.config import Config, WaveConfig, mask_url
from migrate.core.db import POSTGRESQL, SQLITE
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, ConfigError, InputError, SourceError
from migrate.core.ledger import PhaseContext, latest, read_ledger, run_phase
from migrate.core.legacy_schema import (
    BY_NAME,
    ENTITIES,
    EXCEPTIONS_SCHEMA,
    Entity,
    Kind,
    bonus_exponent,
)
from migrate.core.manifest import git_state, sha256_file
from migrate.core.progress import SILENT, Progress
from migrate.core.provenance import library_versions, operator
from migrate.core.reasons import ReasonCode
from migrate.core.rendering import TableData
from migrate.core.runs import PhaseFiles, RunDir, RunsFolder, SnapshotFolder
from migrate.extract.normalise import (
    ColumnContext,
    Issue,
    currency_exponents,
    domain_issues,
    normalise_column,
)
from migrate.extract.profiles import EntityQuery, SourceProfile, load_profile
from migrate.extract.reader import LegacyReader, RawColumns, exact_text, group_value, open_reader
from migrate.money.amounts import as_decimal

EXTRACT = PhaseFiles(
    "extract",
    inputs=lambda run: (),
    output=lambda run: run.snapshot.manifest,
    config_inputs=lambda config: (config.source.profile,),
    rows=lambda run: SnapshotManifest.read(run.snapshot.manifest).rows,
)
"""What extract reads (the source profile) and leaves (the snapshot manifest), for the ledger."""
LOG = logging.getLogger("billmig")
MICRO = 6
"""Control totals are kept in micro-units (10^-6 of the stored unit): exact on every engine."""
_WITHHELD = {
    ReasonCode.AMOUNT_PRECISION,
    ReasonCode.AMOUNT_UNPARSEABLE,
    ReasonCode.CURRENCY_UNKNOWN,
}

GroupKey = tuple[str | None, ...]
_NUMBERS = (Kind.MONEY, Kind.QUANTITY, Kind.INT)
"""Columns that must reach the normaliser as stored: ADBC's SQLite reader types a column from
its first rows, and where a REAL (an id beyond 2^63) meets text (``'one'``) it makes the column
text and prints the other numbers as ``2.000000e+00`` — the reader then uses the driver cursor."""
_WIDE = pa.decimal128(38, 0)
"""Sums of int64 minor units: exact up to 10^38."""
_INT64_SAFE_SUM = 2**63
_SQLITE_EXACT_BELOW = 10**9
"""Below this many units a SQLite REAL or INTEGER ×10^6 stays under 2^53: its own sum is exact."""


T = TypeVar("T")


def _unless_overflow(query: Callable[[], T | None]) -> T | None:
    """``query()``, or None when SQLite stopped on an integer overflow (a sum past 2^63)."""
    try:
        return query()
    except (SourceError, sa.exc.OperationalError) as exc:
        if "integer overflow" not in str(exc):
            raise
        return None


def _exact_micro(value: object, minor_units: bool) -> int:
    """A raw SQLite value in the units :meth:`_Entity._source_micro` expects, exactly.

    Integers and REALs by their own value (a REAL by its shortest round-trip decimal, as the
    snapshot reads it), text parsed as a decimal; what is not a number counts 0, as it is
    withheld from the snapshot. Amounts in major units come back ×10^6 (half away from zero,
    like SQL's ROUND), amounts already in minor units as they are.
    """
    number = as_decimal(value)
    if number is None:
        return 0
    return _rounded_integer(number, 0 if minor_units else MICRO)


def _rounded_integer(number: Decimal, places: int) -> int:
    """``number × 10^places`` rounded half away from zero, exactly at any size.

    1e30 or a 40-digit text amount has more digits than decimal's default 28: the context is
    widened to the number's own size instead of raising InvalidOperation.
    """
    with localcontext() as exact:
        exact.prec = max(exact.prec, number.adjusted() + places + 2)
        return int(number.scaleb(places).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass
class _Totals:
    """Counts and micro-unit sums per control-total group."""

    rows: dict[GroupKey, int] = field(default_factory=dict)
    micro: dict[GroupKey, dict[str, int]] = field(default_factory=dict)

    def add(self, key: GroupKey, rows: int, sums: dict[str, int]) -> None:
        self.rows[key] = self.rows.get(key, 0) + rows
        bucket = self.micro.setdefault(key, {})
        for name, value in sums.items():
            bucket[name] = bucket.get(name, 0) + value

    def to_list(self, groups: tuple[str, ...]) -> tuple[dict[str, Scalar], ...]:
        out = []
        for key in sorted(self.rows, key=lambda k: tuple("" if v is None else v for v in k)):
            row: dict[str, Scalar] = dict(zip(groups, key, strict=True))
            row["rows"] = self.rows[key]
            for name, value in sorted(self.micro.get(key, {}).items()):
                row[f"{name}_micro"] = value
            out.append(row)
        return tuple(out)


@dataclass(frozen=True)
class EntitySummary:
    """One entity's outcome."""

    name: str
    rows: int
    rows_after_cutoff: int
    exceptions: int
    seconds: float
    reconciled: bool


@dataclass(frozen=True)
class ExtractResult:
    """What ``extract`` produced."""

    run_id: str
    snapshot_dir: Path
    manifest_sha256: str
    entities: tuple[EntitySummary, ...]
    exceptions_by_reason: dict[str, int]
    seconds: float

    @property
    def reconciled(self) -> bool:
        """True when every entity's snapshot totals match the legacy database's."""
        return all(e.reconciled for e in self.entities)

    @property
    def exit_code(self) -> int:
        """0 when the snapshot reconciles with the legacy control totals, else 1."""
        return EXIT_OK if self.reconciled else EXIT_CHECKS_FAILED

    def tables(self) -> list[TableData]:
        """Per-entity summary and exceptions by reason, for the terminal."""
        entity_rows = [
            (e.name, e.rows, e.rows_after_cutoff, e.exceptions, e.reconciled, f"{e.seconds:.2f}")
            for e in self.entities
        ]
        verdict = (
            "snapshot reconciles with the legacy control totals"
            if self.reconciled
            else "SNAPSHOT DOES NOT RECONCILE: see the differences in manifest.json"
        )
        tables = [
            TableData(
                title=f"extract {self.run_id}: {self.snapshot_dir}",
                headers=("entity", "rows #", "after cutoff #", "exceptions #", "reconciled", "s"),
                rows=entity_rows,
                footer=f"{verdict}; {self.seconds:.1f} s",
            )
        ]
        if self.exceptions_by_reason:
            tables.append(
                TableData(
                    title="extract exceptions by reason code",
                    headers=("reason code", "severity", "rows #"),
                    rows=[
                        (code, ReasonCode[code].severity.value, count)
                        for code, count in self.exceptions_by_reason.items()
                    ],
                )
            )
        return tables

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "snapshot_dir": str(self.snapshot_dir),
            "manifest_sha256": self.manifest_sha256,
            "reconciled": self.reconciled,
            "seconds": round(self.seconds, 3),
            "entities": [asdict(e) for e in self.entities],
            "exceptions_by_reason": self.exceptions_by_reason,
        }


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus four random hex digits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def run_extract(
    config: Config,
    *,
    wave: str | None = None,
    run_id: str | None = None,
    label: str | None = None,
    kind: str = "production",
    progress: Progress = SILENT,
) -> ExtractResult:
    """Extract the legacy database into ``runs/<run_id>/snapshot/``.

    ``label`` names a rehearsal (``mock-3``) in the run ledger; ``kind`` says what the run is
    for (production, rehearsal, demo): ``billmig runs`` counts only production runs in waves.

    Raises:
        ConfigError: no URL, no cutoff, unknown wave or a broken profile.
        SourceError: the legacy database cannot be read (message names what and where).

    A snapshot that does not reconcile with the source control totals is still written, so the
    difference can be inspected; the result says so and its exit code is 1. The phase is
    recorded in the run ledger (:mod:`migrate.core.ledger`).
    """
    name = run_id or new_run_id()
    published = RunsFolder.of(config).run(name).snapshot
    if published.manifest.is_file() and _recorded(config, name):  # before anything is recorded
        raise InputError(
            f"run {name} already has a snapshot ({published.path})",
            hint="extract into a new --run: a snapshot is never replaced",
        )
    return run_phase(
        config,
        EXTRACT,
        name,
        lambda: _extract(config, wave=wave, run_id=name, progress=progress),
        PhaseContext(wave=wave, label=label, kind=kind),
    )


def _recorded(config: Config, run_id: str) -> bool:
    """Whether the ledger says the run's extract ran to its end (its snapshot counts)."""
    entry = latest(read_ledger(config.runs_path)).get(run_id, {}).get(EXTRACT.name)
    return entry is not None and entry.outcome in ("ok", "checks failed")


def _extract(config: Config, *, wave: str | None, run_id: str, progress: Progress) -> ExtractResult:
    url = config.source_url()
    if config.extract.cutoff is None:
        raise ConfigError(
            "no snapshot cutoff", hint="set [extract] cutoff = 2016-07-01T00:00:00 in billmig.toml"
        )
    profile = load_profile(config.resolve(config.source.profile))
    wave_config = config.wave(wave) if wave else None
    run = RunDir.of(config, run_id)
    staging = run.snapshot_staging
    # What a killed extract left proves nothing: staging, a snapshot/ without its manifest
    # (from before staging existed), or a snapshot published by an extract killed before the
    # ledger recorded its end. It is removed and the run id restarts cleanly.
    shutil.rmtree(staging.path, ignore_errors=True)
    if run.snapshot.path.exists():
        if run.snapshot.manifest.exists():
            LOG.warning(
                "run %s has a snapshot its extract never recorded as finished (killed after "
                "publishing it?): extracting it again",
                run_id,
            )
        shutil.rmtree(run.snapshot.path)
    staging.path.mkdir(parents=True)
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    try:
        dialect, docs, summaries, exception_rows = _extract_entities(
            url, config, profile, wave_config, staging, progress
        )
    except BaseException:
        shutil.rmtree(staging.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            run.path.rmdir()  # the run folder too, if extract created it for nothing else
        raise
    exceptions = _write_exceptions(staging.exceptions, exception_rows)
    SnapshotManifest(
        tool_version=__version__,
        libraries=library_versions(),
        workspace=git_state(config.root),
        config_sha256=config.sha256,
        profile=ProfileRef(profile.name, profile.sha256),
        source=SourceRef(mask_url(url), dialect),
        cutoff=config.extract.cutoff.isoformat(),
        timezone=config.workspace.timezone,
        wave=_wave_ref(wave_config),
        chunk_rows=config.extract.chunk_rows,
        entities=docs,
        exceptions=exceptions,
        reconciled=all(s.reconciled for s in summaries),
    ).write(staging.manifest)
    staging.path.rename(run.snapshot.path)  # published whole, or not at all
    snapshot_dir = run.snapshot.path
    seconds = time.perf_counter() - started
    _write_run_record(run, started_at, seconds, summaries)
    return ExtractResult(
        run_id=run_id,
        snapshot_dir=snapshot_dir,
        manifest_sha256=sha256_file(run.snapshot.manifest),
        entities=tuple(summaries),
        exceptions_by_reason=dict(exceptions.by_reason),
        seconds=seconds,
    )


def _extract_entities(
    url: str,
    config: Config,
    profile: SourceProfile,
    wave: WaveConfig | None,
    folder: SnapshotFolder,
    progress: Progress,
) -> tuple[str, dict[str, SnapshotEntity], list[EntitySummary], list[dict[str, Any]]]:
    """Every entity through one reader: dialect, manifest sections, summaries, exceptions."""
    docs: dict[str, SnapshotEntity] = {}
    summaries: list[EntitySummary] = []
    exception_rows: list[dict[str, Any]] = []
    with open_reader(url) as reader:
        for entity in ENTITIES:
            extractor = _EntityExtractor(config, profile, entity, wave, folder)
            doc, summary, issues = extractor.run(reader, progress)
            docs[entity.name] = doc
            summaries.append(summary)
            exception_rows.extend(issues)
        return reader.dialect.name, docs, summaries, exception_rows


class _EntityExtractor:
    """Streams one entity into its Parquet file and checks it against the source totals."""

    def __init__(
        self,
        config: Config,
        profile: SourceProfile,
        entity: Entity,
        wave: WaveConfig | None,
        folder: SnapshotFolder,
    ) -> None:
        self.config = config
        self.profile = profile
        self.entity = entity
        self.query: EntityQuery = profile.query(entity.name)
        self.wave = wave
        self.path = folder.entity(entity.name)
        self.cutoff = config.extract.cutoff
        self.kept = _Totals()
        self.after = _Totals()
        self.withheld = _Totals()
        self.last_key: object = None
        self.last_key_copied = False
        """Whether the previous chunk's last row is already listed as a duplicate key."""
        self.watermark: datetime | None = None

    def run(
        self, reader: LegacyReader, progress: Progress
    ) -> tuple[SnapshotEntity, EntitySummary, list[dict[str, Any]]]:
        started = time.perf_counter()
        source = self._source_totals(reader)
        total_rows = sum(source.rows.values())
        schema = self.entity.arrow_schema()
        issues: list[dict[str, Any]] = []
        rows = after_cutoff = 0
        with (
            _BackgroundWriter(self.path, schema) as writer,
            progress.task(f"extract {self.entity.name}", total_rows) as task,
        ):
            chunks = reader.stream(
                self._select(),
                self.entity.column_names,
                self.entity.key,
                self.config.extract.chunk_rows,
                numeric=[c.name for c in self.entity.columns if c.kind in _NUMBERS],
            )
            for count, raw in chunks:
                table, chunk_issues, late = self._normalise(raw)
                writer.write(table)
                rows += table.num_rows
                after_cutoff += late
                issues.extend(chunk_issues)
                task.advance(count)
        reconciled, differences = self._reconcile(source)
        groups = self.entity.total_groups
        doc = SnapshotEntity(
            file=self.path.name,
            sha256=sha256_file(self.path),
            bytes=self.path.stat().st_size,
            rows=rows,
            rows_after_cutoff=after_cutoff,
            watermark=self.watermark.isoformat() if self.watermark else None,
            arrival_column=self.entity.arrival,
            exceptions=len(issues),
            source_totals=source.to_list(groups),
            snapshot_totals=self.kept.to_list(groups),
            after_cutoff_totals=self.after.to_list(groups),
            withheld_totals=self.withheld.to_list(groups),
            reconciled=reconciled,
            differences=differences,
        )
        summary = EntitySummary(
            name=self.entity.name,
            rows=rows,
            rows_after_cutoff=after_cutoff,
            exceptions=len(issues),
            seconds=round(time.perf_counter() - started, 3),
            reconciled=reconciled,
        )
        return doc, summary, issues

    # -- SQL ----------------------------------------------------------------------------------

    def _source(self, entity: Entity, alias: str) -> sa.Subquery:
        query = self.profile.query(entity.name)
        columns: list[sa.ColumnClause[Any]] = [sa.column(name) for name in entity.column_names]
        return sa.text(query.sql).columns(*columns).subquery(alias)

    def _wave_filter(self, entity: Entity, src: sa.Subquery) -> sa.ColumnElement[bool] | None:
        if self.wave is None or (entity.parent is None and entity.name != "accounts"):
            return None
        if entity.name == "accounts":
            return sa.and_(
                *(exact_text(src.c[col]).in_(values) for col, values in self.wave.predicates)
            )
        assert entity.parent is not None and entity.account_link is not None
        parent = BY_NAME[entity.parent]
        parent_src = self._source(parent, f"wave_{parent.name}")
        parent_filter = self._wave_filter(parent, parent_src)
        link = entity.account_link
        inner = sa.select(parent_src.c[link]).where(parent_filter)  # type: ignore[arg-type]
        return src.c[link].in_(inner)

    def _select(self) -> sa.Select[Any]:
        src = self._source(self.entity, "src")
        select = sa.select(*[src.c[name] for name in self.entity.column_names])
        condition = self._wave_filter(self.entity, src)
        if condition is not None:
            select = select.where(condition)
        return select.order_by(src.c[self.entity.key])

    def _source_totals(self, reader: LegacyReader) -> _Totals:
        """Row counts and exact micro-unit sums computed by the legacy database itself.

        Sums are taken as NUMERIC(38, 0) / DECIMAL(38, 0), so no total overflows on PostgreSQL
        or MariaDB, where the amount columns are exact numbers; a legacy that keeps an amount in
        ``varchar`` or ``DOUBLE`` (``'abc'``, ``Infinity``) has every value read and summed by
        the snapshot's own rule instead (the server would refuse, round, or read ``'abc'`` as
        0); SQLite, whose integers stop at 2^63 and whose arithmetic on text and large
        values is in floats, sums what it can do exactly and leaves the rest to
        :meth:`_exact_totals`.
        """
        src = self._source(self.entity, "src")
        groups = [exact_text(src.c[g]) for g in self.entity.total_groups]
        condition = self._wave_filter(self.entity, src)
        if reader.dialect.name == SQLITE:
            return self._sqlite_source_totals(reader, src, groups, condition)
        amounts = [src.c[name] for name in self.entity.total_amounts]
        if amounts and not reader.exact_numbers(sa.select(*amounts)) >= {
            a.name for a in amounts
        }:  # a varchar or DOUBLE amount column: read each value as the snapshot does
            totals = _Totals()
            self._exact_totals(reader, src, groups, sa.true() if condition is None else condition,
                               totals)  # fmt: skip
            return totals
        if reader.dialect.name == POSTGRESQL:  # arbitrary precision: a 1e40 balance still sums
            return self._aggregated(reader, src, groups, condition, sa.Numeric(), finite=True)
        wide = sa.Numeric(38, 0)
        return self._aggregated(reader, src, groups, condition, wide)

    def _micro_sums(
        self,
        src: Any,
        sum_type: sa.types.TypeEngine[Any],
        only: Any = None,
        *,
        finite: bool = False,
    ) -> list[Any]:
        """SUM of each amount in micro-units (of the rows ``only`` selects, when given).

        With ``finite`` (PostgreSQL), NUMERIC ``NaN`` and ``±Infinity`` are left out of the sum,
        as the snapshot withholds them (``AMOUNT_UNPARSEABLE``): one NaN would make the whole
        group's SUM NaN.
        """
        sums = []
        for name in self.entity.total_amounts:
            factor = 1 if name in self.query.minor_units else 10**MICRO
            amount = src.c[name]
            if finite:
                amount = sa.case((amount.in_(_NOT_FINITE), sa.null()), else_=amount)
            value = amount if factor == 1 else sa.func.round(amount * factor)
            value = sa.cast(value, sum_type)
            sums.append(sa.func.sum(value if only is None else sa.case((only, value))))
        return sums

    def _add_sums(self, totals: _Totals, key: GroupKey, count: Any, amounts: Any) -> None:
        micro = {
            name: self._source_micro(name, key, value)
            for name, value in zip(self.entity.total_amounts, amounts, strict=True)
        }
        if count:
            totals.add(key, int(count), micro)

    def _aggregated(
        self,
        reader: LegacyReader,
        src: Any,
        groups: list[Any],
        condition: Any,
        sum_type: sa.types.TypeEngine[Any],
        *,
        finite: bool = False,
    ) -> _Totals:
        sums = self._micro_sums(src, sum_type, finite=finite)
        select = sa.select(*groups, sa.func.count().label("rows"), *sums)
        if condition is not None:
            select = select.where(condition)
        if groups:
            select = select.group_by(*groups)
        totals = _Totals()
        for row in reader.rows(select):
            key = tuple(group_value(v) for v in row[: len(groups)])
            self._add_sums(totals, key, row[len(groups)], row[len(groups) + 1 :])
        return totals

    def _sqlite_source_totals(
        self, reader: LegacyReader, src: Any, groups: list[Any], condition: Any
    ) -> _Totals:
        """SQLite: its own SUM where that is exact, Python integers for every other row.

        SQLite's arithmetic is exact for integers and for REALs below 10^9 (×10^6 stays under
        2^53). One scan sums everything and says whether every value was such a number (the
        usual case: done). Otherwise a second scan sums the rows that are, and the others (text,
        corporate-size values, or everything when a sum passes 2^63) are read by their storage
        class and summed exactly in Python (:func:`_exact_micro`).
        """
        exact_in_sqlite = sa.and_(
            sa.true(),
            *[
                sa.or_(
                    src.c[name].is_(None),
                    sa.and_(
                        sa.func.typeof(src.c[name]).in_(("integer", "real")),
                        sa.func.abs(src.c[name]) < _SQLITE_EXACT_BELOW,
                    ),
                )
                for name in self.entity.total_amounts
            ],
        )
        plain = _unless_overflow(lambda: self._plain_sqlite_totals(reader, src, groups, condition))
        if plain is not None:  # the usual case: one scan, SQLite's own sums are exact
            return plain
        found = _unless_overflow(
            lambda: self._sqlite_aggregated(reader, src, groups, condition, exact_in_sqlite)
        )
        if found is None:  # a sum past 2^63 even of the exact rows: all of it in Python
            totals, inexact, exact_in_sqlite = _Totals(), 1, sa.false()
        else:
            totals, inexact = found
        if inexact:  # one scan in all unless some row needs Python
            rest = sa.not_(exact_in_sqlite)
            where = rest if condition is None else sa.and_(condition, rest)
            self._exact_totals(reader, src, groups, where, totals)
        return totals

    def _plain_sqlite_totals(
        self, reader: LegacyReader, src: Any, groups: list[Any], condition: Any
    ) -> _Totals | None:
        """SQLite's own sums in one scan, or None when a value is text or 10^9 units or more.

        The same scan returns each amount's largest magnitude and how many values are not
        numbers: only then are SQLite's float-based sums not exact.
        """
        amounts = [src.c[name] for name in self.entity.total_amounts]
        sums = self._micro_sums(src, sa.BigInteger())
        checks = [sa.func.max(sa.func.abs(a)) for a in amounts] + [
            sa.func.sum(sa.case((sa.func.typeof(a).in_(("integer", "real", "null")), 0), else_=1))
            for a in amounts
        ]
        select = sa.select(*groups, sa.func.count(), *sums, *checks)
        if condition is not None:
            select = select.where(condition)
        if groups:
            select = select.group_by(*groups)
        totals = _Totals()
        n = len(amounts)
        for row in reader.rows(select):
            key = tuple(group_value(v) for v in row[: len(groups)])
            count, values = row[len(groups)], row[len(groups) + 1 : len(groups) + 1 + n]
            largest, texts = (
                row[len(groups) + 1 + n : len(groups) + 1 + 2 * n],
                row[-n:] if n else (),
            )
            # ±9e999 is ±Inf in SQLite: its integer cast saturates at ±2^63, so it must never
            # be summed by SQLite (a NULL largest value is an all-NULL group, fine)
            infinite = any(v is not None and as_decimal(v) is None for v in largest)
            magnitudes = [(as_decimal(v) or Decimal(0)).copy_abs() for v in largest]
            big = infinite or any(m >= _SQLITE_EXACT_BELOW for m in magnitudes)
            if big or any(texts):
                return None
            self._add_sums(totals, key, count, values)
        return totals

    def _sqlite_aggregated(
        self, reader: LegacyReader, src: Any, groups: list[Any], condition: Any, exact: Any
    ) -> tuple[_Totals, int]:
        """One scan: counts and sums of the rows SQLite sums exactly, and how many it cannot."""
        sums = self._micro_sums(src, sa.BigInteger(), only=exact)
        counted = sa.func.sum(sa.case((exact, 1), else_=0)).label("rows")
        inexact = sa.func.sum(sa.case((exact, 0), else_=1)).label("inexact")
        select = sa.select(*groups, counted, inexact, *sums)
        if condition is not None:
            select = select.where(condition)
        if groups:
            select = select.group_by(*groups)
        totals, others = _Totals(), 0
        for row in reader.rows(select):
            key = tuple(group_value(v) for v in row[: len(groups)])
            count, left, amounts = row[len(groups)], row[len(groups) + 1], row[len(groups) + 2 :]
            others += int(left or 0)
            self._add_sums(totals, key, count, amounts)
        return totals, others

    def _exact_totals(
        self, reader: LegacyReader, src: Any, groups: list[Any], condition: Any, totals: _Totals
    ) -> None:
        amounts = list(self.entity.total_amounts)
        select = sa.select(*groups, *[src.c[name] for name in amounts]).where(condition)
        for chunk in reader.batches(select, self.config.extract.chunk_rows):
            for row in chunk:
                key = tuple(group_value(v) for v in row[: len(groups)])
                values = row[len(groups) :]
                minor = self.query.minor_units
                micro = {
                    name: self._source_micro(name, key, _exact_micro(value, name in minor))
                    for name, value in zip(amounts, values, strict=True)
                }
                totals.add(key, 1, micro)

    def _source_micro(self, name: str, key: GroupKey, value: object) -> int:
        total: int = int(as_decimal(value) or 0)
        if name in self.query.minor_units:
            return total * int(10 ** (MICRO - self._group_exponent(key)))
        return total

    def _group_exponent(self, key: GroupKey) -> int:
        currency = dict(zip(self.entity.total_groups, key, strict=True)).get("currency")
        exps, _ = currency_exponents([currency or self.config.workspace.default_currency])
        return int(exps[0])

    # -- chunks -------------------------------------------------------------------------------

    def _normalise(self, raw: RawColumns) -> tuple[pa.Table, list[dict[str, Any]], int]:
        exponents, unknown_currency = self._exponents(raw)
        arrays: list[pa.Array] = []
        issues: list[Issue] = []
        for column in self.entity.columns:
            ctx = ColumnContext(
                zone=self.config.zone,
                fmt=self.query.formats.get(column.name),
                minor_units=column.name in self.query.minor_units,
                exponents=exponents,
            )
            array, column_issues = normalise_column(column, raw[column.name], ctx)
            if column.kind is Kind.MONEY and unknown_currency:
                array, column_issues = _withhold_unknown_currency(
                    column.name, array, column_issues, unknown_currency, raw
                )
            arrays.append(array)
            issues.extend(column_issues)
            issues.extend(domain_issues(column, raw[column.name], array))
        table = pa.Table.from_arrays(arrays, schema=self.entity.arrow_schema())
        carried, duplicates = self._check_keys(table)
        issues.extend(duplicates)
        keep = self._cutoff_mask(table)
        late = 0 if keep is None else len(keep) - int(pc.sum(keep).as_py() or 0)
        if late:
            late_rows = pc.invert(keep)
            late_index = pc.indices_nonzero(late_rows).to_numpy()
            self._account_totals(
                table.filter(late_rows),
                self.after,
                _take_raw(raw, late_index.tolist()),
                _issues_of(issues, late_index),  # withheld values of delta rows count too
                _take(exponents, late_rows),
            )
            kept = pc.indices_nonzero(keep).to_numpy()
            issues = _issues_of(issues, kept)
            raw = _take_raw(raw, kept.tolist())
            table = table.filter(keep)
            exponents = _take(exponents, keep)
        self._account_totals(table, self.kept, raw, issues, exponents)
        return table, [*carried, *(self._exception_row(table, raw, i) for i in issues)], late

    def _exponents(self, raw: RawColumns) -> tuple[Any, list[int]]:
        if "currency" in raw:
            exps, unknown = currency_exponents(raw["currency"])
            return exps, unknown
        if self.entity.name == "bonuses":
            default, _ = currency_exponents([self.config.workspace.default_currency])
            kinds = _python_values(raw["kind"])
            per_row = [bonus_exponent(str(k), int(default[0])) for k in kinds]
            return np.array(per_row, dtype=np.int64), []
        return None, []

    def _check_keys(self, table: pa.Table) -> tuple[list[dict[str, Any]], list[Issue]]:
        """Refuse rows out of key order; list every copy of a key that appears more than once.

        A legacy table without a primary key can hold one ``account_no`` twice: each copy is
        ``DUPLICATE_KEY`` (block), so map holds them all and load never meets a raw UNIQUE
        error. Rows come in key order, so copies are neighbours, possibly across two chunks:
        the previous chunk's last row is then listed here (``carried``).
        """
        keys = table.column(self.entity.key).combine_chunks()
        if len(keys) == 0:
            return [], []
        previous = pa.array([self.last_key], type=keys.type) if self.last_key is not None else None
        series = pa.concat_arrays([previous, keys]) if previous is not None else keys
        carried: list[dict[str, Any]] = []
        issues: list[Issue] = []
        if len(series) > 1:
            ordered = pc.all(pc.greater_equal(series[1:], series[:-1])).as_py()
            if ordered is False:
                raise ConfigError(
                    f"the profile query for {self.entity.name} returns rows out of key order "
                    f"({self.entity.key}), so snapshots would differ between engines",
                    hint='make the key column sort bytewise, e.g. COLLATE "C" on PostgreSQL',
                )
            same = pc.fill_null(pc.equal(series[1:], series[:-1]), False)
            same_next = same.to_numpy(zero_copy_only=False)
            copies = np.zeros(len(series), dtype=np.bool_)
            copies[1:] |= same_next
            copies[:-1] |= same_next
            offset = 1 if previous is not None else 0
            if offset and copies[0] and not self.last_key_copied:
                carried.append(self._duplicate_row(self.last_key))
            issues = [
                Issue(int(i), self.entity.key, ReasonCode.DUPLICATE_KEY, _duplicate(keys[int(i)]))
                for i in np.flatnonzero(copies[offset:])
            ]
            self.last_key_copied = bool(copies[-1])
        self.last_key = keys[-1].as_py()
        return carried, issues

    def _duplicate_row(self, key: object) -> dict[str, Any]:
        """The exception of a previous chunk's row whose key this chunk repeats."""
        copy = Issue(0, self.entity.key, ReasonCode.DUPLICATE_KEY, _duplicate(pa.scalar(key)))
        return self._keyed_row(key, copy)

    def _cutoff_mask(self, table: pa.Table) -> pa.ChunkedArray | None:
        if self.entity.arrival is None or table.num_rows == 0:
            return None
        arrival = table.column(self.entity.arrival)
        cutoff = pa.scalar(self.cutoff, type=pa.timestamp("us"))
        keep = pc.fill_null(pc.less_equal(arrival, cutoff), True)
        within = pc.max(pc.filter(arrival, keep)).as_py()
        if within is not None and (self.watermark is None or within > self.watermark):
            self.watermark = within
        return keep

    def _account_totals(
        self,
        table: pa.Table,
        totals: _Totals,
        raw: RawColumns,
        issues: list[Issue],
        exps: Any,
    ) -> None:
        """Add ``table``'s row counts and micro-unit sums, ``exps`` being each row's exponent."""
        groups = list(self.entity.total_groups)
        amounts = list(self.entity.total_amounts)
        if table.num_rows == 0:
            return
        # Summed per group and exponent, scaled to micro-units as Python integers afterwards:
        # in int64 when no sum of the chunk can reach 2^63, else in 38-digit decimals.
        minors = {
            name: pc.fill_null(table.column(self.entity.column(name).snapshot_name), 0)
            for name in amounts
        }
        largest = max((pc.max(pc.abs(m)).as_py() or 0 for m in minors.values()), default=0)
        narrow = largest * table.num_rows < _INT64_SAFE_SUM
        wide = {name: m if narrow else m.cast(_WIDE) for name, m in minors.items()}
        per_row = np.asarray(MICRO if exps is None else exps, dtype=np.int64)  # None: no money
        exponent = pa.array(np.broadcast_to(per_row, (table.num_rows,)))
        frame = pa.table(
            {**{g: table.column(g) for g in groups}, **wide, "_exp": exponent,
             "_one": pa.repeat(1, table.num_rows)}
        )  # fmt: skip
        aggregated = frame.group_by([*groups, "_exp"]).aggregate(
            [("_one", "sum"), *[(name, "sum") for name in amounts]]
        )
        for row in aggregated.to_pylist():
            key = tuple(row[g] for g in groups)
            factor = 10 ** (MICRO - int(row["_exp"]))
            totals.add(key, row["_one_sum"], {a: int(row[f"{a}_sum"]) * factor for a in amounts})
        self._account_withheld(table, raw, issues, groups)

    def _account_withheld(
        self,
        table: pa.Table,
        raw: RawColumns,
        issues: list[Issue],
        groups: list[str],
    ) -> None:
        """Micro-unit value of amounts withheld from the snapshot, as the source summed them."""
        for issue in issues:
            if issue.reason not in _WITHHELD or issue.column not in self.entity.total_amounts:
                continue
            value = as_decimal(_python_value(raw[issue.column], issue.index))
            if value is None:
                continue
            key = tuple(table.column(g)[issue.index].as_py() for g in groups)
            micro = _rounded_integer(value, 0 if issue.column in self.query.minor_units else MICRO)
            if issue.column in self.query.minor_units:
                micro *= 10 ** (MICRO - self._group_exponent(key))
            self.withheld.add(key, 0, {issue.column: micro})

    def _reconcile(
        self, source: _Totals
    ) -> tuple[bool, tuple[dict[str, Scalar | tuple[Scalar, ...]], ...]]:
        differences: list[dict[str, Scalar | tuple[Scalar, ...]]] = []
        for key in sorted(
            set(source.rows) | set(self.kept.rows) | set(self.after.rows) | set(self.withheld.rows),
            key=lambda k: tuple("" if v is None else v for v in k),
        ):
            expected_rows = source.rows.get(key, 0)
            got_rows = self.kept.rows.get(key, 0) + self.after.rows.get(key, 0)
            diff: dict[str, Scalar] = {}
            if expected_rows != got_rows:
                diff["rows"] = got_rows - expected_rows
            for name in self.entity.total_amounts:
                expected = source.micro.get(key, {}).get(name, 0)
                got = sum(
                    t.micro.get(key, {}).get(name, 0)
                    for t in (self.kept, self.after, self.withheld)
                )
                if expected != got:
                    diff[f"{name}_micro"] = got - expected
            if diff:
                differences.append({"group": tuple(key), **diff})
        return not differences, tuple(differences)

    def _exception_row(self, table: pa.Table, raw: RawColumns, issue: Issue) -> dict[str, Any]:
        """The exception of ``issue``, keyed by the row's key.

        When the key itself could not be read (``client_id = 'one'``), by its raw text, so a
        disposition can name the row.
        """
        key = table.column(self.entity.key)[issue.index].as_py()
        if key is None:
            key = _python_value(raw[self.entity.key], issue.index)
        return self._keyed_row(key, issue)

    def _keyed_row(self, key: object, issue: Issue) -> dict[str, Any]:
        return {
            "entity": self.entity.name,
            "legacy_key": None if key is None else str(key),
            "column": issue.column,
            "reason_code": issue.reason.value,
            "severity": issue.reason.severity.value,
            "detail": issue.detail,
            "amount_minor": issue.amount_minor,
        }


class _BackgroundWriter:
    """Writes row groups on a thread, overlapping the fetch of the next chunk.

    Parquet compression releases the GIL. At most two chunks wait in the queue, so memory
    stays bounded.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(path, schema, compression="zstd")
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=f"write-{path.stem}")

    def __enter__(self) -> _BackgroundWriter:
        self._thread.start()
        return self

    def write(self, table: pa.Table) -> None:
        """Queue one chunk; it becomes exactly one row group."""
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def _drain(self) -> None:
        while (table := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
            except BaseException as exc:  # re-raised on the caller's thread
                self._error = exc

    def __exit__(self, *exc_info: object) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self._error is not None and exc_info[0] is None:
            raise self._error


def _withhold_unknown_currency(
    column: str,
    array: pa.Array,
    issues: list[Issue],
    unknown: list[int],
    raw: RawColumns,
) -> tuple[pa.Array, list[Issue]]:
    values = array.to_pylist()
    for index in unknown:
        values[index] = None
        currency = _python_value(raw["currency"], index)
        issues = [i for i in issues if i.index != index]
        issues.append(
            Issue(index, column, ReasonCode.CURRENCY_UNKNOWN, f"currency {currency!r} is unknown")
        )
    return pa.array(values, type=pa.int64()), sorted(issues, key=lambda i: i.index)


def _take_raw(raw: RawColumns, keep: list[int]) -> RawColumns:
    taken: RawColumns = {}
    for name, values in raw.items():
        if isinstance(values, pa.Array):
            taken[name] = values.take(pa.array(keep, type=pa.int64()))
        else:
            taken[name] = tuple(values[i] for i in keep)
    return taken


def _python_value(values: Sequence[Any] | pa.Array, index: int) -> Any:
    return values[index].as_py() if isinstance(values, pa.Array) else values[index]


_NOT_FINITE: tuple[sa.ColumnElement[Any], ...] = tuple(
    sa.literal_column(f"CAST('{v}' AS NUMERIC)") for v in ("NaN", "Infinity", "-Infinity")
)
"""PostgreSQL's non-finite NUMERIC values (``-Infinity`` and ``Infinity`` since version 14)."""


def _duplicate(key: pa.Scalar) -> str:
    return f"{key.as_py()!r} is the key of more than one legacy row: legacy must keep one"


def _python_values(values: Sequence[Any] | pa.Array) -> Sequence[Any]:
    return values.to_pylist() if isinstance(values, pa.Array) else values


def _issues_of(issues: list[Issue], rows: Any) -> list[Issue]:
    """The issues of the rows at positions ``rows``, re-indexed to those rows' new positions."""
    position = {int(old): new for new, old in enumerate(rows)}
    return [replace(i, index=position[i.index]) for i in issues if i.index in position]


def _take(exponents: Any, mask: Any) -> Any:
    """The exponents of the rows ``mask`` selects (None stays None: no money in the entity)."""
    if exponents is None:
        return None
    return exponents[np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))]


def _write_exceptions(path: Path, rows: list[dict[str, Any]]) -> ExceptionsFile:
    table = pa.Table.from_pylist(rows, schema=EXCEPTIONS_SCHEMA)
    pq.write_table(table, path, compression="zstd")
    by_reason: dict[str, int] = {}
    for row in rows:
        by_reason[row["reason_code"]] = by_reason.get(row["reason_code"], 0) + 1
    return ExceptionsFile(path.name, sha256_file(path), len(rows), dict(sorted(by_reason.items())))


def _wave_ref(wave: WaveConfig | None) -> WaveRef | None:
    if wave is None:
        return None
    return WaveRef(wave.name, {col: tuple(vals) for col, vals in wave.predicates})


def _write_run_record(
    run: RunDir, started_at: datetime, seconds: float, summaries: list[EntitySummary]
) -> None:
    rows = sum(s.rows + s.rows_after_cutoff for s in summaries)
    ExtractRecord(
        run_id=run.run_id,
        operator=operator(),
        started_at=started_at.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        seconds=round(seconds, 3),
        rows_per_second=round(rows / seconds) if seconds else None,
        entities={s.name: EntityTiming(s.rows, s.seconds) for s in summaries},
    ).write(run.extract_record)
