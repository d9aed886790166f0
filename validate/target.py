"""What the target holds per account, and its totals, computed from the target's own rows.

* :func:`copy_target` streams the few columns the per-account comparison needs out of the
  target as Arrow (ADBC's binary COPY on PostgreSQL; SQLAlchemy in batches elsewhere), all in
  one read-only transaction, into validate's DuckDB workbench, which builds table ``actual``:
  one row per legacy account number with its copies, attributes and money aggregates.
  Streaming the narrow rows is the fast path: PostgreSQL's GROUP BY over text UUID keys took
  3 s per million buckets where streaming them took 0.5 s (bench/, issue 5).
* Control totals per currency stay single SQL aggregates run by the target; orphan rows
  (a child whose billing account is missing) are counted by the workbench over the copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from migrate.core.db import POSTGRESQL, create_engine, libpq_uri, normalise_url
from migrate.core.progress import Task
from migrate.core.target_schema import METADATA, TARGET_TABLES
from validate.workbench import store

BA = METADATA.tables["billing_account"]
BUCKET = METADATA.tables["balance_bucket"]
DEBT = METADATA.tables["debt_item"]
PENDING = METADATA.tables["pending_payment"]
PRODUCT = METADATA.tables["product"]
ACTION = METADATA.tables["balance_action"]

TARGET_ROWS: dict[str, sa.Select[Any]] = {
    "target_billing_account": sa.select(
        BA.c.billing_account_id, BA.c.legacy_account_no, BA.c.currency, BA.c.rating_type,
        BA.c.state, BA.c.credit_limit_minor,
    ),
    "target_balance_bucket": sa.select(
        BUCKET.c.billing_account_id, BUCKET.c.bucket_type, BUCKET.c.usage_type,
        BUCKET.c.amount_minor,
    ),
    "target_debt_item": sa.select(DEBT.c.billing_account_id, DEBT.c.amount_minor),
    "target_pending_payment": sa.select(PENDING.c.billing_account_id, PENDING.c.amount_minor),
    "target_product": sa.select(PRODUCT.c.billing_account_id),
    "target_balance_action": sa.select(
        ACTION.c.billing_account_id, ACTION.c.kind, ACTION.c.amount_minor
    ),
}  # fmt: skip
"""The target's rows the comparison reads: narrow columns, no personal data."""

BATCH_ROWS = 100_000


def copy_target(url: str, duck: duckdb.DuckDBPyConnection, task: Task | None = None) -> None:
    """Stream :data:`TARGET_ROWS` into the workbench and build table ``actual``.

    ``task`` is advanced by the rows of each batch as it arrives.
    """
    if normalise_url(url).get_backend_name() == POSTGRESQL:
        _copy_with_adbc(url, duck, task)
    else:
        _copy_with_sqlalchemy(url, duck, task)
    duck.execute(_ACTUAL)


def _counted(reader: pa.RecordBatchReader, task: Task | None) -> pa.RecordBatchReader:
    """``reader`` as it is, or one that advances ``task`` by each batch's rows."""
    if task is None:
        return reader

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            task.advance(batch.num_rows)
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _copy_with_adbc(url: str, duck: duckdb.DuckDBPyConnection, task: Task | None) -> None:
    import adbc_driver_postgresql.dbapi as adbc_pg

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    with adbc_pg.connect(libpq_uri(url, "-c default_transaction_read_only=on")) as conn:
        cursor = conn.cursor()
        try:
            # One snapshot of the target for every table read (autocommit is off).
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for name, query in TARGET_ROWS.items():
                sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
                cursor.execute(sql)
                store(duck, name, _counted(cursor.fetch_record_batch(), task))
        finally:
            cursor.close()
        conn.rollback()


def _copy_with_sqlalchemy(url: str, duck: duckdb.DuckDBPyConnection, task: Task | None) -> None:
    engine = create_engine(url, read_only=True)
    try:
        with engine.connect() as conn, conn.begin():
            for name, query in TARGET_ROWS.items():
                schema = _arrow_schema(query)
                result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS)
                batches = _batches(result.execute(query), schema)
                reader = pa.RecordBatchReader.from_batches(schema, batches)
                store(duck, name, _counted(reader, task))
    finally:
        engine.dispose()


def _arrow_schema(query: sa.Select[Any]) -> pa.Schema:
    def arrow_type(column: Any) -> pa.DataType:
        python = column.type.python_type
        return pa.int64() if python is int else pa.string()

    return pa.schema([(c.name, arrow_type(c)) for c in query.selected_columns])


def _batches(result: sa.CursorResult[Any], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    for part in result.partitions():
        columns = list(zip(*part, strict=True))
        yield pa.record_batch(
            [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)],
            schema=schema,
        )


_ACTUAL = """
CREATE OR REPLACE TABLE actual AS
WITH buckets AS (
    SELECT billing_account_id,
        sum(CASE WHEN bucket_type = 'main' THEN amount_minor ELSE 0 END) AS main_minor,
        count(*) FILTER (WHERE bucket_type = 'main') AS main_buckets,
        sum(CASE WHEN bucket_type = 'bonus' AND usage_type = 'monetary' THEN amount_minor
            ELSE 0 END) AS bonus_money_minor,
        min(amount_minor) AS lowest_bucket_minor
    FROM target_balance_bucket GROUP BY billing_account_id
), debts AS (
    SELECT billing_account_id, sum(amount_minor) AS debt_minor,
        min(amount_minor) AS lowest_debt_minor
    FROM target_debt_item GROUP BY billing_account_id
), pending AS (
    SELECT billing_account_id, sum(amount_minor) AS pending_minor
    FROM target_pending_payment GROUP BY billing_account_id
), products AS (
    SELECT billing_account_id, count(*) AS products
    FROM target_product GROUP BY billing_account_id
), write_offs AS (
    SELECT billing_account_id, sum(amount_minor) AS write_off_minor
    FROM target_balance_action WHERE kind = 'write_off' GROUP BY billing_account_id
)
SELECT
    a.legacy_account_no,
    count(*) AS copies,
    min(a.currency) AS currency,
    min(a.rating_type) AS rating_type,
    min(a.state) AS state,
    max(a.credit_limit_minor) AS credit_limit_minor,
    sum(coalesce(b.main_minor, 0)) AS main_minor,
    sum(coalesce(b.main_buckets, 0)) AS main_buckets,
    sum(coalesce(b.bonus_money_minor, 0)) AS bonus_money_minor,
    sum(coalesce(p.pending_minor, 0)) AS pending_minor,
    -- what legacy owed = debt carried + debt written off
    sum(coalesce(d.debt_minor, 0)) + sum(coalesce(w.write_off_minor, 0)) AS debt_minor,
    sum(coalesce(b.main_minor, 0)) - sum(coalesce(d.debt_minor, 0))
        - sum(coalesce(w.write_off_minor, 0)) AS net_minor,
    CAST(coalesce(min(b.lowest_bucket_minor), 0) < 0 AS INTEGER)
        + CAST(coalesce(min(d.lowest_debt_minor), 1) <= 0 AS INTEGER) AS negative_amounts,
    sum(coalesce(r.products, 0)) AS products,
    sum(coalesce(w.write_off_minor, 0)) AS write_off_minor
FROM target_billing_account a
LEFT JOIN buckets b ON b.billing_account_id = a.billing_account_id
LEFT JOIN debts d ON d.billing_account_id = a.billing_account_id
LEFT JOIN pending p ON p.billing_account_id = a.billing_account_id
LEFT JOIN products r ON r.billing_account_id = a.billing_account_id
LEFT JOIN write_offs w ON w.billing_account_id = a.billing_account_id
GROUP BY a.legacy_account_no
"""


def orphans(duck: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of child tables whose billing account is not in the target (per table).

    Counted by the workbench over the rows :func:`copy_target` streamed.
    """
    out = {}
    for table in (BUCKET, DEBT, PENDING, PRODUCT, ACTION):
        (count,) = duck.execute(
            f"SELECT count(*) FROM target_{table.name} t ANTI JOIN target_billing_account a "
            "ON a.billing_account_id = t.billing_account_id "
            "WHERE t.billing_account_id IS NOT NULL"
        ).fetchone() or (0,)
        out[table.name] = int(count)
    return out


def missing_primary_keys(conn: sa.Connection) -> list[str]:
    """Target tables whose declared primary key is not the one the target schema defines."""
    inspector = sa.inspect(conn)
    missing = []
    for table in TARGET_TABLES:
        want = sorted(c.name for c in table.primary_key.columns)
        have = sorted(inspector.get_pk_constraint(table.name).get("constrained_columns") or [])
        if have != want:
            missing.append(f"{table.name} ({', '.join(want)})")
    return missing


_SPLIT = 10**9
"""SQLite sums int64 in int64 (an error past 2^63): amounts are summed as whole billions and
remainders, each sum far inside int64 for a billion rows, and recombined as Python ints."""


def _summed(conn: sa.Connection, column: sa.ColumnElement[Any]) -> list[Any]:
    if conn.dialect.name != "sqlite":  # SUM(BIGINT) is NUMERIC / DECIMAL: exact at any size
        return [sa.func.sum(column)]
    return [sa.func.sum(column.op("/")(_SPLIT)), sa.func.sum(column.op("%")(_SPLIT))]


def currency_totals(conn: sa.Connection) -> dict[str, dict[str, int]]:
    """Per currency: accounts, main, bonus money, pending, debt and write-offs, summed in SQL.

    Exact at any size on every engine (see :data:`_SPLIT` for SQLite).
    """
    totals: dict[str, dict[str, int]] = {}

    def add(query: sa.Select[Any], name: str) -> None:
        for currency, *parts in conn.execute(query).all():
            value = int(parts[0] or 0)
            if len(parts) == 2:
                value = value * _SPLIT + int(parts[1] or 0)
            totals.setdefault(str(currency), {})[name] = value

    joined = BUCKET.join(BA, BUCKET.c.billing_account_id == BA.c.billing_account_id)
    add(sa.select(BA.c.currency, sa.func.count()).group_by(BA.c.currency), "accounts")
    for name, condition in (
        ("main_minor", BUCKET.c.bucket_type == "main"),
        (
            "bonus_money_minor",
            sa.and_(BUCKET.c.bucket_type == "bonus", BUCKET.c.usage_type == "monetary"),
        ),
    ):
        add(
            sa.select(BA.c.currency, *_summed(conn, BUCKET.c.amount_minor))
            .select_from(joined)
            .where(condition)
            .group_by(BA.c.currency),
            name,
        )
    add(
        sa.select(DEBT.c.currency, *_summed(conn, DEBT.c.amount_minor)).group_by(DEBT.c.currency),
        "debt_minor",
    )
    add(
        sa.select(PENDING.c.currency, *_summed(conn, PENDING.c.amount_minor)).group_by(
            PENDING.c.currency
        ),
        "pending_minor",
    )
    add(
        sa.select(ACTION.c.currency, *_summed(conn, ACTION.c.amount_minor))
        .where(ACTION.c.kind == "write_off")
        .group_by(ACTION.c.currency),
        "write_off_minor",
    )
    return totals
