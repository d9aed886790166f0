"""Writing batches into the target database, each batch and its journal row in one transaction.

* PostgreSQL and SQLite: ADBC bulk ingestion (COPY BINARY for PostgreSQL, prepared inserts in C
  for SQLite) straight from Arrow, no Python row objects.
* MariaDB and anything else: the driver's ``executemany`` through SQLAlchemy (PyMySQL folds it
  into multi-row INSERTs).

Either way a batch is all or nothing with its ``billmig_load_journal`` row, so a load killed at
any moment, ``kill -9`` included, leaves whole batches only, each one journaled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from migrate.core.db import POSTGRESQL, SQLITE, bulk_insert, libpq_uri, normalise_url
from migrate.core.target_schema import LOAD_JOURNAL, METADATA


class BatchWriter(Protocol):
    """Commits one batch of a table together with its journal row."""

    def write(self, table: str, rows: pa.Table, journal: pa.Table) -> None:
        """Insert ``rows`` into ``table`` and ``journal`` into the journal, atomically."""

    def close(self) -> None:
        """Release the connection."""


@contextmanager
def open_writer(url: str, engine: sa.Engine) -> Iterator[BatchWriter]:
    """The fastest correct writer for the target behind ``url``."""
    backend = normalise_url(url).get_backend_name()
    writer: BatchWriter
    if backend == POSTGRESQL and _has("adbc_driver_postgresql.dbapi"):
        import adbc_driver_postgresql.dbapi as adbc_pg

        writer = _AdbcWriter(adbc_pg.connect(libpq_uri(url, "")), sqlite=False)
    elif backend == SQLITE and _has("adbc_driver_sqlite.dbapi") and engine.url.database:
        import adbc_driver_sqlite.dbapi as adbc_sqlite

        writer = _AdbcWriter(adbc_sqlite.connect(engine.url.database), sqlite=True)
    else:
        writer = _SqlAlchemyWriter(engine)
    try:
        yield writer
    finally:
        writer.close()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class _AdbcWriter:
    def __init__(self, conn: Any, *, sqlite: bool) -> None:
        self._conn = conn
        self._sqlite = sqlite

    def write(self, table: str, rows: pa.Table, journal: pa.Table) -> None:
        try:
            with self._conn.cursor() as cursor:
                cursor.adbc_ingest(table, self._prepared(rows), mode="append")
                cursor.adbc_ingest(LOAD_JOURNAL.name, self._prepared(journal), mode="append")
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise

    def _prepared(self, rows: pa.Table) -> pa.Table:
        """SQLite keeps date-times as text: write them the way SQLAlchemy reads them back."""
        if not self._sqlite:
            return rows
        for index, field in enumerate(rows.schema):
            if pa.types.is_timestamp(field.type):
                text = pc.strftime(
                    rows.column(index), format="%Y-%m-%d %H:%M:%S"
                )  # %S has the microseconds
                rows = rows.set_column(index, field.name, text)
        return rows

    def close(self) -> None:
        self._conn.close()


class _SqlAlchemyWriter:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def write(self, table: str, rows: pa.Table, journal: pa.Table) -> None:
        with self._engine.begin() as conn:
            for name, part in ((table, rows), (LOAD_JOURNAL.name, journal)):
                target = LOAD_JOURNAL if name == LOAD_JOURNAL.name else METADATA.tables[name]
                bulk_insert(conn, target, part.column_names, _tuples(part))

    def close(self) -> None:
        return None


def _tuples(rows: pa.Table) -> list[tuple[Any, ...]]:
    columns = [column.to_pylist() for column in rows.columns]
    return list(zip(*columns, strict=True))


def first_failing_row(engine: sa.Engine, table: sa.Table, rows: pa.Table) -> int | None:
    """Index of the first row of ``rows`` the target refuses, found by bisection.

    Runs inside one transaction that is rolled back at the end, so the target is untouched.
    Each step tries half of the remaining rows under a savepoint and keeps them when they go
    in, so a row clashing with an earlier row of the same batch is found too: log2(batch)
    bulk inserts instead of one insert per row.
    """
    tuples = _tuples(rows)
    columns = rows.column_names
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            low, high = 0, len(tuples)
            if _fails(conn, table, columns, tuples[low:high]) is False:
                return None
            while high - low > 1:
                middle = (low + high) // 2
                if _fails(conn, table, columns, tuples[low:middle]):
                    high = middle
                else:
                    bulk_insert(conn, table, columns, tuples[low:middle])
                    low = middle
            return low
        finally:
            transaction.rollback()


def _fails(conn: sa.Connection, table: sa.Table, columns: list[str], rows: list[Any]) -> bool:
    savepoint = conn.begin_nested()
    try:
        bulk_insert(conn, table, columns, rows)
    # bulk_insert talks to the driver directly (COPY, executemany): its errors are the
    # driver's DB-API errors, not SQLAlchemy's wrappers.
    except (sa.exc.DBAPIError, conn.dialect.loaded_dbapi.Error):
        savepoint.rollback()
        return True
    savepoint.rollback()
    return False
