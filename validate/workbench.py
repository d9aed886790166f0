"""validate's own join engine: a DuckDB database on disk, with bounded memory (SPEC §7, §12).

The snapshot's and the mapped output's Parquet files are read by DuckDB where they lie; the
target's rows arrive as Arrow streams (:mod:`validate.target`). DuckDB joins, groups and
compares them with exact integers (``SUM`` of ``BIGINT`` is a 128-bit ``HUGEINT``) and spills
to its folder beyond ``memory_limit``, so memory stays flat from one million accounts to ten.
The folder is scratch: :func:`workbench` removes it when the block ends.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

MEMORY_LIMIT = "320MB"
THREADS = 2


@contextmanager
def workbench(folder: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh DuckDB database in ``folder`` (removed afterwards, whatever happens)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    duck = duckdb.connect(str(folder / "validate.duckdb"))
    try:
        duck.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        duck.execute(f"SET threads = {THREADS}")
        duck.execute("SET temp_directory = ?", [str(folder / "spill")])
        duck.execute("SET preserve_insertion_order = false")
        yield duck
    finally:
        duck.close()
        shutil.rmtree(folder, ignore_errors=True)


def parquet(path: Path) -> str:
    """A ``read_parquet`` call for ``path``, quoted for SQL."""
    return "read_parquet('" + str(path).replace("'", "''") + "')"


def store(duck: duckdb.DuckDBPyConnection, name: str, rows: Any) -> None:
    """Create table ``name`` from an Arrow table or record-batch reader, streaming."""
    duck.register("incoming_rows", rows)
    try:
        duck.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM incoming_rows')
    finally:
        duck.unregister("incoming_rows")


def rows(duck: duckdb.DuckDBPyConnection, query: str, params: list[Any] | None = None) -> pa.Table:
    """A query's result as Arrow: integers stay integers (never pandas' float for nulls)."""
    return duck.sql(query, params=params).to_arrow_table()
