"""``billmig synth``: a realistic legacy billing database in the reference schema (SPEC §3).

Deterministic for a seed, streamed chunk by chunk so memory stays flat at any ``--accounts``,
written through each engine's fast bulk path, with every planted anomaly listed in a manifest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from migrate.core import legacy_schema as ls
from migrate.core.config import mask_url
from migrate.core.db import SQLITE, bulk_insert, create_engine, dialect_of, translate_errors
from migrate.core.errors import EXIT_OK, InputError, TargetError
from migrate.core.progress import SILENT, Progress
from migrate.core.reasons import ReasonCode
from migrate.core.rendering import TableData
from migrate.synth import catalogue as cat
from migrate.synth.generate import PLANTED_CODES, Array, Generator, SynthOptions
from migrate.synth.window import window_rows

__all__ = ["PLANTED_CODES", "SynthOptions", "SynthResult", "run_synth"]


@dataclass(frozen=True)
class SynthResult:
    """What ``synth`` wrote."""

    url: str
    """Masked URL of the legacy database."""
    rows: dict[str, int]
    planted: dict[str, int]
    manifest_path: Path

    exit_code = EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "url": self.url,
            "rows": self.rows,
            "planted": self.planted,
            "manifest": str(self.manifest_path),
        }

    def tables(self) -> list[TableData]:
        """Rows written and anomalies planted, for the terminal."""
        return [
            TableData(
                title=f"synth: legacy database {self.url}",
                headers=("table", "rows #"),
                rows=list(self.rows.items()),
            ),
            TableData(
                title="planted anomalies",
                headers=("reason code", "rows #"),
                rows=list(self.planted.items()),
                footer=f"listed by legacy key in {self.manifest_path}",
            ),
        ]


def run_synth(
    url: str,
    options: SynthOptions,
    manifest_path: Path,
    *,
    replace: bool = False,
    progress: Progress = SILENT,
) -> SynthResult:
    """Generate a legacy database at ``url`` and write the planted-anomaly manifest."""
    engine = create_engine(url)
    if dialect_of(engine) == SQLITE:
        sa.event.listen(engine, "connect", _fast_sqlite)
    metadata = sa.MetaData()
    tables = {e.name: e.table(metadata) for e in ls.ENTITIES}
    with translate_errors(url, "creating the legacy schema", TargetError):
        _create_schema(engine, metadata, tables, replace)
    generator = Generator(options)
    rows = dict.fromkeys(tables, 0)
    planted: dict[ReasonCode, list[tuple[str, str]]] = {}
    with (
        translate_errors(url, "writing synthetic legacy rows", TargetError),
        progress.task("synth accounts", options.accounts) as task,
    ):
        with engine.begin() as conn:
            rows["tariffs"] = _insert(conn, tables["tariffs"], _tariff_columns())
        for index, start in enumerate(range(0, options.accounts, options.chunk_accounts)):
            count = min(options.chunk_accounts, options.accounts - start)
            chunk = generator.chunk(index, start, count)
            with engine.begin() as conn:
                for entity in ls.ENTITIES:
                    if entity.name in chunk.tables:
                        data = chunk.tables[entity.name]
                        rows[entity.name] += _insert(conn, tables[entity.name], data)
            for code, keys in chunk.planted.items():
                planted.setdefault(code, []).extend(keys)
            task.advance(count)
        window: dict[str, int] = {}
        if options.window_activity:
            with engine.begin() as conn:
                for name, data in window_rows(options).items():
                    window[name] = _insert(conn, tables[name], data)
                    rows[name] += window[name]
    engine.dispose()
    _write_manifest(manifest_path, options, rows, planted, window)
    return SynthResult(
        url=mask_url(url),
        rows=rows,
        planted={code.value: len(keys) for code, keys in sorted(planted.items())},
        manifest_path=manifest_path,
    )


def _fast_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # A synthetic database can be regenerated: trade durability for load speed.
    dbapi_connection.execute("PRAGMA journal_mode = OFF")
    dbapi_connection.execute("PRAGMA synchronous = OFF")


def _create_schema(
    engine: sa.Engine, metadata: sa.MetaData, tables: dict[str, sa.Table], replace: bool
) -> None:
    existing = set(sa.inspect(engine).get_table_names())
    clash = sorted(existing & set(tables))
    if clash and not replace:
        raise InputError(
            f"legacy tables already exist ({', '.join(clash)})",
            hint="pass --replace to drop and regenerate them, or choose another database",
        )
    metadata.drop_all(engine, checkfirst=True)
    metadata.create_all(engine)


def _tariff_columns() -> dict[str, Array]:
    tariffs = cat.TARIFFS
    return {
        "tariff_code": np.array([t.code for t in tariffs], dtype=object),
        "name": np.array([t.name for t in tariffs], dtype=object),
        "monthly_fee": np.array([f"{t.monthly_fee}.00" for t in tariffs], dtype=object),
        "currency": np.array(["KZT"] * len(tariffs), dtype=object),
        "data_mb": np.array([t.data_mb for t in tariffs], dtype=object),
        "kind": np.array([t.kind for t in tariffs], dtype=object),
        "has_video": np.array([t.has_video for t in tariffs], dtype=object),
        "status": np.array([t.status for t in tariffs], dtype=object),
    }


def _insert(conn: sa.Connection, table: sa.Table, data: dict[str, Array]) -> int:
    entity = ls.BY_NAME[table.name]
    dialect = dialect_of(conn)
    columns = [c.name for c in entity.columns]
    values = [_db_values(entity.column(name).kind, data[name], dialect) for name in columns]
    rows = list(zip(*values, strict=True))
    bulk_insert(conn, table, columns, rows)
    return len(rows)


def _db_values(kind: ls.Kind, array: Array, dialect: str) -> Sequence[object]:
    """Column values as the dialect's driver wants them (SQLite keeps text dates and REALs)."""
    if kind in (ls.Kind.TIMESTAMP, ls.Kind.DATE):
        unit = "s" if kind is ls.Kind.TIMESTAMP else "D"
        stamps: npt.NDArray[np.datetime64] = np.asarray(array).astype(f"datetime64[{unit}]")
        if dialect == SQLITE:
            text = (
                np.datetime_as_string(stamps, unit="s")
                if unit == "s"
                else np.datetime_as_string(stamps, unit="D")
            )
            return [None if t == "NaT" else t.replace("T", " ") for t in text.tolist()]
        return list(stamps.astype("datetime64[us]" if unit == "s" else "datetime64[D]").tolist())
    if kind in (ls.Kind.MONEY, ls.Kind.QUANTITY):
        if dialect == SQLITE:
            return [None if v is None else float(v) for v in array.tolist()]
        return [None if v is None else str(v) for v in array.tolist()]
    if kind is ls.Kind.INT:
        return [None if v is None else int(v) for v in array.tolist()]
    if kind is ls.Kind.BOOL:
        return [None if v is None else bool(v) for v in array.tolist()]
    return [None if v is None or v != v else str(v) for v in array.tolist()]


def _write_manifest(
    path: Path,
    options: SynthOptions,
    rows: dict[str, int],
    planted: dict[ReasonCode, list[tuple[str, str]]],
    window: dict[str, int],
) -> None:
    by_code: dict[str, dict[str, list[str]]] = {}
    for code in PLANTED_CODES:
        for entity, key in planted.get(code, []):
            by_code.setdefault(code.value, {}).setdefault(entity, []).append(key)
    document = {
        "format": "billmig.synth/1",
        "seed": options.seed,
        "accounts": options.accounts,
        "anomaly_rate": options.anomaly_rate,
        "as_of": options.as_of.isoformat(),
        "rows": rows,
        "planted_counts": {code: sum(map(len, ents.values())) for code, ents in by_code.items()},
        "planted": by_code,
        "window_activity": window,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
