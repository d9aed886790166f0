"""``billmig exceptions`` and ``billmig trace``: a run's exceptions and one account's path.

``exceptions`` lists the run's exception rows (map's table when map ran, else extract's) with
filters, as a table, JSON or CSV: nobody has to write pandas against Parquet files at 3 a.m.

``trace`` follows one legacy account: its legacy rows as the snapshot holds them (the account,
its client, lines, subscriptions, payments, charges, orders, bonuses), the exceptions and
lineage rows of those keys, its mapped rows, its rows in the target, and its line in the
reconciliation (``differences.csv``). It reads files and, for the target, runs SELECTs only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from migrate.core.config import Config
from migrate.core.db import create_engine, translate_errors
from migrate.core.errors import (
    EXIT_CHECKS_FAILED,
    EXIT_OK,
    ConfigError,
    InputError,
    TargetError,
)
from migrate.core.legacy_schema import ENTITIES, Entity
from migrate.core.reasons import ReasonCode, Severity
from migrate.core.rendering import TableData
from migrate.core.runs import RunDir
from migrate.core.target_schema import METADATA, TARGET_TABLES

SHOWN_ROWS = 200
"""Rows ``billmig exceptions`` prints as a table; --json and --csv give every row."""


# -- billmig exceptions --------------------------------------------------------------------


@dataclass(frozen=True)
class ExceptionFilter:
    """Which exception rows to list (None: any)."""

    code: str | None = None
    account: str | None = None
    severity: str | None = None


@dataclass(frozen=True)
class ExceptionList:
    """A run's exception rows that pass a filter."""

    run_id: str
    source: str
    """Which file they come from (workspace-relative)."""
    rows: tuple[dict[str, Any], ...]
    total: int
    """Exception rows of the run, before filtering."""

    @property
    def exit_code(self) -> int:
        """0: listing never fails a check."""
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: every matching row."""
        return {
            "run_id": self.run_id,
            "source": self.source,
            "total": self.total,
            "rows": list(self.rows),
        }

    def to_csv(self) -> str:
        """Every matching row as CSV, with a header."""
        out = io.StringIO()
        columns = list(self.rows[0]) if self.rows else []
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()

    def tables(self) -> list[TableData]:
        """The first rows as a table; the footer says how many there are."""
        columns = ("entity", "legacy_key", "reason_code", "severity", "amount_minor", "detail")
        shown = self.rows[:SHOWN_ROWS]
        more = (
            f"; first {SHOWN_ROWS} shown, --csv or --json for all"
            if len(self.rows) > len(shown)
            else ""
        )
        return [
            TableData(
                title=f"exceptions of run {self.run_id} ({self.source})",
                headers=columns,
                rows=[tuple(row.get(c) for c in columns) for row in shown]
                or [("none match", "", "", "", None, "")],
                footer=f"{len(self.rows):,} of {self.total:,} exception rows match{more}",
            )
        ]


def list_exceptions(config: Config, run_id: str, wanted: ExceptionFilter) -> ExceptionList:
    """The run's exception rows matching ``wanted``, in file order.

    Raises:
        InputError: the run has no exceptions file yet, or a filter names no reason code or
            severity billmig knows.
    """
    _check_filter(wanted)
    run = RunDir.of(config, run_id)
    path = run.mapped.exceptions if run.mapped.exceptions.is_file() else run.snapshot.exceptions
    if not path.is_file():
        raise InputError(
            f"run {run_id} has no exceptions yet ({run.relative(path)} does not exist)",
            hint="run billmig extract / billmig map for it first (billmig runs shows its phases)",
        )
    table = pq.read_table(path)
    total = table.num_rows
    mask = _matches(table, wanted)
    if mask is not None:
        table = table.filter(mask)
    rows = tuple(_plain(row) for row in table.to_pylist())
    return ExceptionList(run_id, config.relative(path), rows, total)


def _check_filter(wanted: ExceptionFilter) -> None:
    if wanted.code is not None and wanted.code not in ReasonCode.__members__:
        raise InputError(
            f"--code {wanted.code!r} is no reason code",
            hint="the reason codes are listed in docs/SPEC.md §6 (e.g. DEBT_BELOW_THRESHOLD)",
        )
    if wanted.severity is not None and wanted.severity not in {s.value for s in Severity}:
        raise InputError(
            f"--severity {wanted.severity!r} is no severity",
            hint=f"use one of {', '.join(s.value for s in Severity)}",
        )


def _matches(table: pa.Table, wanted: ExceptionFilter) -> pa.ChunkedArray | None:
    mask = None
    for column, value in (
        ("reason_code", wanted.code),
        ("severity", wanted.severity),
        ("legacy_key", wanted.account),
    ):
        if value is None:
            continue
        hit = pc.fill_null(pc.equal(table.column(column), value), False)
        if column == "legacy_key" and "account_no" in table.column_names:
            hit = pc.or_(hit, pc.fill_null(pc.equal(table.column("account_no"), value), False))
        mask = hit if mask is None else pc.and_(mask, hit)
    return mask


# -- billmig trace -------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceSection:
    """One stage of an account's path: the rows one table holds of it."""

    stage: str
    """legacy snapshot, exceptions, lineage, mapped, target, reconciliation."""
    table: str
    rows: tuple[dict[str, Any], ...]
    note: str = ""


@dataclass(frozen=True)
class AccountTrace:
    """One legacy account from its legacy rows to its line in the reconciliation."""

    run_id: str
    account_no: str
    sections: tuple[TraceSection, ...]

    @property
    def found(self) -> bool:
        """Whether the snapshot holds the account at all."""
        return any(s.stage == "legacy snapshot" and s.rows for s in self.sections)

    @property
    def exit_code(self) -> int:
        """1 when the account is not in the run's snapshot, else 0."""
        return EXIT_OK if self.found else EXIT_CHECKS_FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "account_no": self.account_no,
            "found": self.found,
            "sections": [
                {"stage": s.stage, "table": s.table, "rows": list(s.rows), "note": s.note}
                for s in self.sections
            ],
        }

    def tables(self) -> list[TableData]:
        """One table per stage and table that holds rows of the account (or says why not)."""
        shown = []
        for section in self.sections:
            headers = tuple(section.rows[0]) if section.rows else ("",)
            shown.append(
                TableData(
                    title=f"{section.stage}: {section.table}",
                    headers=headers,
                    rows=[tuple(_text(row.get(h)) for h in headers) for row in section.rows]
                    or [(section.note or "no rows",)],
                    footer=section.note if section.rows else "",
                )
            )
        return shown


def trace_account(config: Config, run_id: str, account_no: str) -> AccountTrace:
    """Follow ``account_no`` of ``run_id`` through every stage the run has reached.

    Raises:
        InputError: the run has no snapshot.
        TargetError: the target cannot be read (the files' stages are still shown when it is
            simply not loaded).
    """
    run = RunDir.of(config, run_id)
    if not run.snapshot.manifest.is_file():
        raise InputError(
            f"run {run_id} has no snapshot", hint="billmig runs shows which phases ran for it"
        )
    legacy = _legacy_rows(run, account_no)
    keys = {(entity, str(row[_entity(entity).key])) for entity, rows in legacy for row in rows}
    sections = [TraceSection("legacy snapshot", entity, tuple(rows)) for entity, rows in legacy]
    sections += _exception_sections(run, keys)
    mapped = _mapped_rows(run, account_no)
    sections += [TraceSection("mapped", table, rows) for table, rows in mapped]
    sections += _target_sections(config, mapped)
    sections.append(_reconciliation(run, account_no))
    return AccountTrace(run_id, account_no, tuple(sections))


def _entity(name: str) -> Entity:
    return next(e for e in ENTITIES if e.name == name)


def _legacy_rows(run: RunDir, account_no: str) -> list[tuple[str, tuple[dict[str, Any], ...]]]:
    """The account's rows of each snapshot entity, following each entity's link to accounts."""
    found: dict[str, tuple[dict[str, Any], ...]] = {}
    accounts = _where(run.snapshot.entity("accounts"), "account_no", [account_no])
    found["accounts"] = accounts
    for entity in ENTITIES:
        if entity.name == "accounts" or entity.account_link is None:
            continue
        parent = found.get(entity.parent or "accounts", ())
        if entity.parent == "accounts" and entity.account_link == "account_no":
            values: list[Any] = [account_no]
        else:
            values = [row[entity.account_link] for row in parent if row.get(entity.account_link)]
        found[entity.name] = _where(run.snapshot.entity(entity.name), entity.account_link, values)
    order = [e.name for e in ENTITIES if e.name in found]
    return [(name, found[name]) for name in order]


def _where(path: Path, column: str, values: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """Rows of a Parquet file whose ``column`` is one of ``values`` (read row group by group)."""
    if not values or not path.is_file():
        return ()
    parquet = pq.ParquetFile(path)
    if column not in parquet.schema_arrow.names:
        return ()
    wanted = pa.array(list(values)).cast(parquet.schema_arrow.field(column).type)
    rows: list[dict[str, Any]] = []
    for index in range(parquet.num_row_groups):
        group = parquet.read_row_group(index)
        rows += group.filter(pc.is_in(group.column(column), value_set=wanted)).to_pylist()
    return tuple(_plain(row) for row in rows)


def _exception_sections(run: RunDir, keys: set[tuple[str, str]]) -> list[TraceSection]:
    sections = []
    exceptions = next(
        (p for p in (run.mapped.exceptions, run.snapshot.exceptions) if p.is_file()), None
    )
    for stage, path in (("exceptions", exceptions), ("lineage", run.mapped.lineage)):
        if path is None or not path.is_file():
            sections.append(TraceSection(stage, "—", (), note=f"no {stage} file yet"))
            continue
        sections.append(TraceSection(stage, run.relative(path), _keyed(path, keys)))
    return sections


def _keyed(path: Path, keys: set[tuple[str, str]]) -> tuple[dict[str, Any], ...]:
    wanted = sorted({key for _, key in keys})
    rows = _where(path, "legacy_key", wanted)
    return tuple(row for row in rows if (row.get("entity"), row.get("legacy_key")) in keys)


def _mapped_rows(run: RunDir, account_no: str) -> list[tuple[str, tuple[dict[str, Any], ...]]]:
    """The account's rows of each mapped table: its billing account, its party, what hangs off."""
    if not run.mapped.manifest.is_file():
        return []
    accounts = _where(run.mapped.table("billing_account"), "legacy_account_no", [account_no])
    ids = [row["billing_account_id"] for row in accounts]
    parties = [row["party_id"] for row in accounts if row.get("party_id")]
    found: list[tuple[str, tuple[dict[str, Any], ...]]] = []
    for table in TARGET_TABLES:
        path = run.mapped.table(table.name)
        if table.name == "billing_account":
            found.append((table.name, accounts))
        elif table.name == "party":
            found.append((table.name, _where(path, "party_id", parties)))
        elif "billing_account_id" in table.c:
            found.append((table.name, _where(path, "billing_account_id", ids)))
    return found


def _target_sections(
    config: Config, mapped: Iterable[tuple[str, tuple[dict[str, Any], ...]]]
) -> list[TraceSection]:
    """The same rows read back from the target (SELECT only), by the ids map gave them."""
    mapped = list(mapped)
    if not mapped:
        return [TraceSection("target", "—", (), note="not mapped yet")]
    try:
        url = config.target_url()
    except ConfigError:
        return [TraceSection("target", "—", (), note="no target configured")]
    engine = create_engine(url)
    try:
        with (
            translate_errors(url, "reading the account from the target", TargetError),
            engine.connect() as conn,
        ):
            if not sa.inspect(conn).has_table("billing_account"):
                return [TraceSection("target", "—", (), note="the target holds no tables")]
            return [_target_rows(conn, name, rows) for name, rows in mapped]
    finally:
        engine.dispose()


def _target_rows(
    conn: sa.Connection, name: str, mapped: tuple[dict[str, Any], ...]
) -> TraceSection:
    table = METADATA.tables[name]
    key = next(iter(table.primary_key.columns))
    ids = [row[key.name] for row in mapped]
    if not ids:
        return TraceSection("target", name, (), note="nothing mapped for this account")
    query = sa.select(table).where(key.in_(ids))
    rows = tuple(_plain(dict(row._mapping)) for row in conn.execute(query))
    note = "" if rows else f"none of the {len(ids)} mapped row(s) is in the target (not loaded?)"
    return TraceSection("target", name, rows, note=note)


def _reconciliation(run: RunDir, account_no: str) -> TraceSection:
    path = run.validation.differences
    if not path.is_file():
        return TraceSection("reconciliation", "—", (), note="not validated yet")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = tuple(
            row for row in csv.DictReader(handle) if row.get("legacy_account_no") == account_no
        )
    note = "" if rows else "no difference: expected and target agree on every field"
    return TraceSection("reconciliation", run.relative(path), rows, note=note)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row whose values JSON and CSV take as they are: dates as ISO 8601, decimals as text."""
    return {key: _json_value(value) for key, value in row.items()}


def _json_value(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, date | datetime):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    return str(value)


def _text(value: object) -> object:
    """A trace cell: ids and amounts as they are stored (no thousands separators)."""
    return value if value is None or isinstance(value, str) else str(value)
