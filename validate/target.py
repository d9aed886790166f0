"""What the target holds per account, aggregated by the target database itself.

Every query is a GROUP BY over one range of legacy account numbers (the snapshot's row groups
are sorted ranges), so no table ever crosses into Python whole: the database sums, counts and
returns one row per account. Control totals per currency are single SQL aggregates.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

from migrate.target_schema import METADATA

BA = METADATA.tables["billing_account"]
BUCKET = METADATA.tables["balance_bucket"]
DEBT = METADATA.tables["debt_item"]
PENDING = METADATA.tables["pending_payment"]
PRODUCT = METADATA.tables["product"]
ACTION = METADATA.tables["balance_action"]


def _in_range(low: str, high: str) -> sa.ColumnElement[bool]:
    return sa.and_(BA.c.legacy_account_no >= low, BA.c.legacy_account_no <= high)


def _frame(conn: sa.Connection, query: sa.Select[Any]) -> pd.DataFrame:
    """Rows as a frame; numbers stay exact integers (nullable Int64, never float)."""
    result = conn.execute(query)
    names = list(result.keys())
    columns = list(zip(*result.all(), strict=True)) or [() for _ in names]
    data: dict[str, Any] = {}
    for name, values in zip(names, columns, strict=True):
        if name in _TEXT:
            data[name] = pd.array(list(values), dtype="string")
        else:
            data[name] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
    return pd.DataFrame(data, columns=names).set_index("legacy_account_no")


_TEXT = {"legacy_account_no", "currency", "rating_type", "state"}


def target_accounts(conn: sa.Connection, low: str, high: str) -> pd.DataFrame:
    """Per legacy account in ``[low, high]``: copies, attributes and every money aggregate.

    One statement: each child table is aggregated per billing account inside the range and
    joined to its account, so the database does all the work in a single round trip.
    """
    monetary = BUCKET.c.usage_type == "monetary"
    main = BUCKET.c.bucket_type == "main"
    bonus = sa.and_(BUCKET.c.bucket_type == "bonus", monetary)
    write_off = ACTION.c.kind == "write_off"
    children = [
        _per_account(BUCKET, low, high, {
            "main_minor": sa.func.sum(sa.case((main, BUCKET.c.amount_minor), else_=0)),
            "main_buckets": sa.func.sum(sa.case((main, 1), else_=0)),
            "bonus_money_minor": sa.func.sum(sa.case((bonus, BUCKET.c.amount_minor), else_=0)),
            "lowest_bucket_minor": sa.func.min(BUCKET.c.amount_minor),
        }),
        _per_account(DEBT, low, high, {
            "debt_minor": sa.func.sum(DEBT.c.amount_minor),
            "lowest_debt_minor": sa.func.min(DEBT.c.amount_minor),
        }),
        _per_account(PENDING, low, high, {"pending_minor": sa.func.sum(PENDING.c.amount_minor)}),
        _per_account(PRODUCT, low, high, {"products": sa.func.count()}),
        _per_account(ACTION, low, high, {
            "write_off_minor": sa.func.sum(sa.case((write_off, ACTION.c.amount_minor), else_=0)),
        }),
    ]  # fmt: skip
    source: sa.FromClause = BA
    columns: list[Any] = []
    for child in children:
        source = source.outerjoin(child, child.c.billing_account_id == BA.c.billing_account_id)
        for child_column in child.columns:
            if child_column.name == "billing_account_id":
                continue
            total = sa.func.max if child_column.name.startswith("lowest") else sa.func.sum
            columns.append(total(child_column).label(child_column.name))
    query = (
        sa.select(
            BA.c.legacy_account_no,
            sa.func.count().label("copies"),
            sa.func.min(BA.c.currency).label("currency"),
            sa.func.min(BA.c.rating_type).label("rating_type"),
            sa.func.min(BA.c.state).label("state"),
            sa.func.max(BA.c.credit_limit_minor).label("credit_limit_minor"),
            *columns,
        )
        .select_from(source)
        .where(_in_range(low, high))
        .group_by(BA.c.legacy_account_no)
    )
    joined = _frame(conn, query)
    for column in (
        "main_minor", "main_buckets", "bonus_money_minor", "debt_minor", "pending_minor",
        "products", "write_off_minor",
    ):  # fmt: skip
        joined[column] = joined[column].fillna(0).astype("int64")
    return joined


def _per_account(table: sa.Table, low: str, high: str, columns: dict[str, Any]) -> sa.Subquery:
    return (
        sa.select(table.c.billing_account_id, *(v.label(k) for k, v in columns.items()))
        .select_from(table.join(BA, table.c.billing_account_id == BA.c.billing_account_id))
        .where(_in_range(low, high))
        .group_by(table.c.billing_account_id)
        .subquery(table.name)
    )


def orphans(conn: sa.Connection) -> dict[str, int]:
    """Rows of child tables whose billing account is not in the target (per table)."""
    out = {}
    for table in (BUCKET, DEBT, PENDING, PRODUCT, ACTION):
        missing = (
            sa.select(sa.func.count())
            .select_from(table)
            .where(
                table.c.billing_account_id.is_not(None),
                ~sa.exists().where(BA.c.billing_account_id == table.c.billing_account_id),
            )
        )
        out[table.name] = int(conn.execute(missing).scalar_one())
    return out


def currency_totals(conn: sa.Connection) -> dict[str, dict[str, int]]:
    """Per currency: accounts, main, bonus money, pending, debt and write-offs, summed in SQL."""
    totals: dict[str, dict[str, int]] = {}

    def add(query: sa.Select[Any], name: str) -> None:
        for currency, value in conn.execute(query).all():
            totals.setdefault(str(currency), {})[name] = int(value or 0)

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
            sa.select(BA.c.currency, sa.func.sum(BUCKET.c.amount_minor))
            .select_from(joined)
            .where(condition)
            .group_by(BA.c.currency),
            name,
        )
    add(
        sa.select(DEBT.c.currency, sa.func.sum(DEBT.c.amount_minor)).group_by(DEBT.c.currency),
        "debt_minor",
    )
    add(
        sa.select(PENDING.c.currency, sa.func.sum(PENDING.c.amount_minor)).group_by(
            PENDING.c.currency
        ),
        "pending_minor",
    )
    add(
        sa.select(ACTION.c.currency, sa.func.sum(ACTION.c.amount_minor))
        .where(ACTION.c.kind == "write_off")
        .group_by(ACTION.c.currency),
        "write_off_minor",
    )
    return totals
