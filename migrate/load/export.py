"""``billmig load --export DIR``: vendor load files for platforms that ingest files.

One UTF-8 CSV per target table (header row, the table's columns in order, amounts as integer
minor units, empty cells for nulls) and ``control.json``: per file its rows, SHA-256 and money
sums per currency (and allowance sums per unit), so the receiving platform can prove it read
every row and every tiyn. Nothing is written to a database.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from migrate.core.config import Config
from migrate.core.errors import EXIT_OK, InputError
from migrate.core.manifest import sha256_file
from migrate.core.rendering import TableData
from migrate.core.runs import RunDir
from migrate.core.target_schema import TARGET_TABLES

EXPORT_FORMAT = "billmig.export/1"
_SUMS: dict[str, tuple[tuple[str, str], ...]] = {
    "billing_account": (("credit_limit_minor", "currency"),),
    "balance_bucket": (("amount_minor", "unit"), ("amount_units", "unit")),
    "debt_item": (("amount_minor", "currency"),),
    "pending_payment": (("amount_minor", "currency"),),
    "product_offering": (("monthly_fee_minor", "currency"),),
    "balance_action": (("amount_minor", "currency"), ("amount_units", "kind")),
}
"""Per table: (amount column, the column it is grouped by) pairs summed in the control file."""


@dataclass(frozen=True)
class ExportResult:
    """The files written and their control totals."""

    run_id: str
    directory: Path
    control: dict[str, Any]
    seconds: float

    @property
    def exit_code(self) -> int:
        """Always 0: failures raise."""
        return EXIT_OK

    def tables(self) -> list[TableData]:
        """Files, rows and sums, for the terminal."""
        rows = []
        for name, doc in self.control["files"].items():
            sums = "; ".join(
                f"{column} {group}={total}"
                for column, groups in doc["sums"].items()
                for group, total in groups.items()
            )
            rows.append((name, doc["rows"], sums or "—"))
        return [
            TableData(
                title=f"export {self.run_id}: {self.directory}",
                headers=("file", "rows #", "sums (minor units / units)"),
                rows=rows,
                footer=f"control file: {self.directory / 'control.json'}; {self.seconds:.1f} s",
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"run_id": self.run_id, "directory": str(self.directory), **self.control}


def run_export(
    config: Config, *, run_id: str, directory: Path, exact_cells: bool = False
) -> ExportResult:
    """Write the mapped run's tables as CSV files plus ``control.json`` into ``directory``.

    Text cells a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a
    carriage return) get a leading apostrophe unless ``exact_cells``: the vendor's loader then
    reads them as text, and ``control.json`` says which was done and how many cells it changed.
    Amount columns are integers and never touched.
    """
    started = time.perf_counter()
    mapped = RunDir.of(config, run_id).mapped
    if not mapped.manifest.exists():
        raise InputError(
            f"run {run_id} has no mapped output ({mapped.path})",
            hint=f"run `billmig map --run {run_id}` first",
        )
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for table in TARGET_TABLES:
        files[f"{table.name}.csv"] = _export_table(
            mapped.table(table.name), directory, neutralise=not exact_cells
        )
    control = {
        "format": EXPORT_FORMAT,
        "run_id": run_id,
        "mapped_manifest_sha256": sha256_file(mapped.manifest),
        "formula_cells": "exact" if exact_cells else "neutralised",
        "files": files,
    }
    (directory / "control.json").write_text(
        json.dumps(control, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )
    return ExportResult(run_id, directory, control, time.perf_counter() - started)


def _export_table(source: Path, directory: Path, *, neutralise: bool) -> dict[str, Any]:
    name = source.stem
    target = directory / f"{name}.csv"
    parquet = pq.ParquetFile(source)
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = changed = 0
    with pacsv.CSVWriter(target, parquet.schema_arrow) as writer:
        for batch in parquet.iter_batches(batch_size=100_000):
            table = pa.Table.from_batches([batch])
            _add_sums(sums, name, table)
            if neutralise:
                table, count = _neutralised(table)
                changed += count
            writer.write_table(table)
            rows += batch.num_rows
    return {
        "rows": rows,
        "sha256": sha256_file(target),
        "sums": {column: dict(sorted(groups.items())) for column, groups in sums.items()},
        "neutralised_cells": changed,
    }


FORMULA_START = r"^[=+\-@\t\r]"
"""What a spreadsheet runs as a formula at the start of a cell."""


def _neutralised(table: pa.Table) -> tuple[pa.Table, int]:
    """Text cells that would run as a formula, prefixed with an apostrophe; how many."""
    changed = 0
    for index, column in enumerate(table.schema):
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        values = table.column(index)
        formula = pc.fill_null(pc.match_substring_regex(values, FORMULA_START), False)
        count = pc.sum(formula).as_py() or 0
        if count:
            prefixed = pc.binary_join_element_wise(pa.scalar("'"), values, "")
            table = table.set_column(index, column, pc.if_else(formula, prefixed, values))
            changed += count
    return table, changed


def _add_sums(sums: dict[str, dict[str, int]], name: str, batch: pa.Table) -> None:
    for column, group in _SUMS.get(name, ()):
        summed = batch.group_by(group).aggregate([(column, "sum")])
        for row in summed.to_pylist():
            total = row[f"{column}_sum"]
            if total is not None:
                sums[column][str(row[group])] += int(total)
