"""The new platform's model (SPEC §4), after TM Forum SID and Open APIs, as SQLAlchemy Core.

Every column carries its meaning as a database comment, so the schema documents itself in the
target database too. Sign convention: every stored amount is ≥ 0 and the table or ``kind``
says its direction. Funds held for the customer are buckets, what the customer owes is debt:
``net = Σ monetary buckets + Σ pending payments − Σ open debt`` per account.

Every migrated row carries ``run_id`` and its legacy key, and its ID is derived from that key
and the workspace namespace (:func:`stable_ids`), so a rerun on the same snapshot produces the
same rows. Shared by ``migrate`` and ``validate``: a schema definition, not mapping logic.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

METADATA = sa.MetaData()
_ID = 36  # canonical UUID text


def _id(name: str, doc: str, *, primary: bool = False, ref: str | None = None) -> sa.Column[str]:
    args: list[sa.ForeignKey] = [sa.ForeignKey(ref)] if ref else []
    # References are indexed: a rollback deletes parents, and each deletion checks children.
    return sa.Column(
        name,
        sa.String(_ID),
        *args,
        primary_key=primary,
        nullable=not primary,
        index=bool(ref),
        comment=doc,
    )


def _money(name: str, doc: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(
        name, sa.BigInteger, sa.CheckConstraint(f"{name} >= 0"), nullable=nullable, comment=doc
    )


def _text(name: str, doc: str, length: int = 32, *, nullable: bool = True) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=nullable, comment=doc)


def _run() -> sa.Column[str]:
    return sa.Column("run_id", sa.String(64), nullable=False, comment="migration run that wrote it")


PARTY = sa.Table(
    "party",
    METADATA,
    _id("party_id", "stable ID of the person or organisation (TMF632 Party)", primary=True),
    _text("national_id", "IIN (individual) or BIN (organisation), 12 digits; null if invalid"),
    _text("party_type", "individual or organization", nullable=False),
    _text("name", "full or company name as in legacy", 200),
    _text("legacy_client_id", "surviving legacy client id; merged ids are in lineage"),
    _run(),
    comment="Legal persons and individuals (SID Party)",
    mysql_charset="utf8mb4",
)

BILLING_ACCOUNT = sa.Table(
    "billing_account",
    METADATA,
    _id("billing_account_id", "stable ID (TMF666 BillingAccount)", primary=True),
    _id("party_id", "owning party", ref="party.party_id"),
    _text("legacy_account_no", "legacy account number", nullable=False),
    _text("brand", "kcell or activ"),
    _text("rating_type", "prepaid or postpaid (TMF666 ratingType)", nullable=False),
    _text("state", "active, suspended or closed", nullable=False),
    _text("currency", "ISO 4217 code of every amount on the account", 3, nullable=False),
    _money("credit_limit_minor", "postpaid credit limit in minor units", nullable=True),
    _text("credit_limit_period", "month (revolving: full limit again on the 1st); null prepaid"),
    sa.Column(
        "dunning_suppressed",
        sa.Boolean,
        nullable=False,
        comment="true while an in-transit payment covers the debt",
    ),
    _text("region", "oblast or city of service", 64),
    _run(),
    sa.UniqueConstraint("legacy_account_no", name="uq_billing_account_legacy"),
    comment="Billing accounts (TMF666)",
    mysql_charset="utf8mb4",
)

BALANCE_BUCKET = sa.Table(
    "balance_bucket",
    METADATA,
    _id("bucket_id", "stable ID (TMF654 Bucket)", primary=True),
    _id("billing_account_id", "owning account", ref="billing_account.billing_account_id"),
    _text("bucket_type", "main or bonus", nullable=False),
    _text("usage_type", "monetary, data or voice", nullable=False),
    _money("amount_minor", "monetary buckets: funds held, in minor units", nullable=True),
    _money("amount_units", "data buckets: MB; voice buckets: minutes", nullable=True),
    _text("unit", "ISO 4217 code for monetary buckets, MB or MIN otherwise", 8, nullable=False),
    sa.Column("valid_to", sa.DateTime, comment="expiry, operator local time; null = none"),
    _text("legacy_key", "legacy account_no (main) or bonus_id (bonus)", nullable=False),
    _run(),
    comment="Balance buckets: money and allowances held for the customer (TMF654)",
    mysql_charset="utf8mb4",
)

DEBT_ITEM = sa.Table(
    "debt_item",
    METADATA,
    _id("debt_id", "stable ID", primary=True),
    _id("billing_account_id", "owing account", ref="billing_account.billing_account_id"),
    _text(
        "origin",
        "legacy_negative, roaming, postpaid_receivable or delayed_charge",
        nullable=False,
    ),
    _money("amount_minor", "amount owed, minor units, > 0"),
    _text("currency", "ISO 4217", 3, nullable=False),
    sa.Column("aged_from", sa.Date, comment="date the debt's age counts from (dunning)"),
    _text("legacy_key", "legacy account_no or charge_id it comes from", nullable=False),
    _run(),
    comment="What the customer owes",
    mysql_charset="utf8mb4",
)

PENDING_PAYMENT = sa.Table(
    "pending_payment",
    METADATA,
    _id("payment_id", "stable ID", primary=True),
    _id("billing_account_id", "credited account", ref="billing_account.billing_account_id"),
    _money("amount_minor", "amount received, minor units"),
    _text("currency", "ISO 4217", 3, nullable=False),
    sa.Column(
        "received_at", sa.DateTime, nullable=False, comment="value date: when the payer paid"
    ),
    _text("legacy_payment_id", "legacy payment number", nullable=False),
    _run(),
    comment="Payments received by a settlement centre but not yet posted in legacy",
    mysql_charset="utf8mb4",
)

PRODUCT_OFFERING = sa.Table(
    "product_offering",
    METADATA,
    _id("offering_id", "stable ID (TMF620 ProductOffering)", primary=True),
    _text("name", "commercial name", 200, nullable=False),
    _money("monthly_fee_minor", "recurring fee per month, minor units"),
    _text("currency", "ISO 4217", 3, nullable=False),
    sa.Column("data_mb", sa.BigInteger, comment="included data in MB; null if none"),
    _text("kind", "bundle, data_only, payg or home_internet", nullable=False),
    sa.Column("has_video", sa.Boolean, nullable=False, comment="includes a video service"),
    _run(),
    comment="The new catalogue's offerings that legacy tariffs map to (mappings/tariffs.csv)",
    mysql_charset="utf8mb4",
)

PRODUCT = sa.Table(
    "product",
    METADATA,
    _id("product_id", "stable ID (TMF637 Product)", primary=True),
    _id("billing_account_id", "paying account", ref="billing_account.billing_account_id"),
    _text("msisdn", "E.164 number of the line, e.g. +77011234567"),
    _text("iccid", "SIM serial of the line"),
    _id("offering_id", "subscribed offering", ref="product_offering.offering_id"),
    _text("legacy_subscription_id", "legacy subscription number", nullable=False),
    _text("status", "active, suspended or terminated", nullable=False),
    sa.Column("original_start_date", sa.Date, comment="first day of the subscription in legacy"),
    sa.Column("charged_through_date", sa.Date, comment="last day already paid for in legacy"),
    sa.Column("next_charge_date", sa.Date, comment="when the new platform next takes the fee"),
    _text("fee_state", "paid, due, payg or prorated_due (SPEC §5.5)"),
    _money(
        "first_charge_minor",
        "prorated fee of the joining month still to take (fee_state prorated_due), minor units",
        nullable=True,
    ),
    _text("consent_state", "given (evidence on file), not_recorded, or pending (dealer line)"),
    _run(),
    comment="Subscribed products of lines (TMF637)",
    mysql_charset="utf8mb4",
)

BALANCE_ACTION = sa.Table(
    "balance_action",
    METADATA,
    _id("action_id", "stable ID (TMF654 balance adjustment)", primary=True),
    _id("billing_account_id", "account", ref="billing_account.billing_account_id"),
    _text(
        "kind",
        "opening_balance, delta_charge, delta_payment, write_off, refund, compensation or "
        "bonus_grant",
        nullable=False,
    ),
    _money("amount_minor", "money moved, minor units (direction given by kind)", nullable=True),
    _money("amount_units", "allowance granted (MB or minutes)", nullable=True),
    _text("currency", "ISO 4217 for money; null for allowances", 3),
    _text("reason_code", "why, from the reason-code catalogue or the rule that made it", 64),
    _text("idempotency_key", "replaying the same action changes nothing", 200, nullable=False),
    _run(),
    sa.UniqueConstraint("idempotency_key", name="uq_balance_action_idempotency"),
    comment="The audit trail of balances: opening balances, deltas, corrections",
    mysql_charset="utf8mb4",
)

TARGET_TABLES: tuple[sa.Table, ...] = (
    PARTY,
    BILLING_ACCOUNT,
    BALANCE_BUCKET,
    DEBT_ITEM,
    PENDING_PAYMENT,
    PRODUCT_OFFERING,
    PRODUCT,
    BALANCE_ACTION,
)
"""Every table of the new model, parents before children (load order)."""


def namespace_uuid(namespace: str) -> uuid.UUID:
    """The UUID namespace of a workspace (``[workspace] namespace`` in billmig.toml)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"billmig:{namespace}")


def stable_ids(namespace: str, entity: str, legacy_keys: Iterable[object]) -> list[str]:
    """UUIDv5 text of ``entity:legacy_key`` in the workspace namespace, for each key.

    Exactly ``str(uuid.uuid5(namespace_uuid(namespace), f"{entity}:{key}"))``.
    """
    ids: list[str] = stable_id_array(namespace, entity, legacy_keys).to_pylist()
    return ids


def stable_id_array(namespace: str, entity: str, legacy_keys: Iterable[object]) -> pa.Array:
    """:func:`stable_ids` as an Arrow string array, for millions of keys at a time.

    One SHA-1 per key is the only per-key Python step; setting the version and variant bits,
    hex encoding and placing the dashes are done on the whole digest matrix with numpy.
    """
    prefix = namespace_uuid(namespace).bytes + f"{entity}:".encode()
    keys = legacy_keys.tolist() if hasattr(legacy_keys, "tolist") else list(legacy_keys)
    n = len(keys)
    sha1 = hashlib.sha1
    joined = b"".join([sha1(prefix + str(key).encode()).digest() for key in keys])
    digests = np.frombuffer(joined, dtype=np.uint8).reshape(n, 20)[:, :16].copy()
    digests[:, 6] = (digests[:, 6] & 0x0F) | 0x50  # version 5
    digests[:, 8] = (digests[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[digests >> 4]
    hexed[:, 1::2] = _HEX[digests & 0x0F]
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for start, end, at in _GROUPS:
        text[:, at : at + end - start] = hexed[:, start:end]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_GROUPS = ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24))
"""(first hex digit, end, position in the text) of the five dash-separated groups."""


_ARROW_TYPES: dict[type, pa.DataType] = {
    sa.String: pa.string(),
    sa.BigInteger: pa.int64(),
    sa.Boolean: pa.bool_(),
    sa.DateTime: pa.timestamp("us"),
    sa.Date: pa.date32(),
}


def arrow_schema(table: sa.Table) -> pa.Schema:
    """Schema of ``mapped/<table>.parquet``: the table's columns in order, typed alike."""
    return pa.schema(
        [
            pa.field(column.name, _ARROW_TYPES[type(column.type)], nullable=column.nullable)
            for column in table.columns
        ]
    )


JOURNAL_METADATA = sa.MetaData()

LOAD_RUN = sa.Table(
    "billmig_load_run",
    JOURNAL_METADATA,
    sa.Column("run_id", sa.String(64), primary_key=True, comment="the migration run loaded"),
    sa.Column("wave", sa.String(64), comment="wave of the run's snapshot; null = all accounts"),
    sa.Column(
        "mapped_manifest_sha256",
        sa.String(64),
        nullable=False,
        comment="the mapped output this load is of; a resume must see the same",
    ),
    sa.Column(
        "batch_rows", sa.BigInteger, nullable=False, comment="rows per batch, fixed for resumes"
    ),
    sa.Column(
        "status",
        sa.String(16),
        nullable=False,
        comment="loading, loaded, rolling_back, rolled_back or cut_over",
    ),
    sa.Column("operator", sa.String(128), comment="who started the load"),
    sa.Column("started_at", sa.DateTime, comment="UTC"),
    sa.Column("finished_at", sa.DateTime, comment="UTC; null while loading"),
    sa.Column("workspace_id", sa.String(36), comment="the workspace that loads and owns the run"),
    sa.Column("workspace", sa.String(300), comment="that workspace as host:folder, for people"),
    comment="One row per run loaded into this target, and its state",
    mysql_charset="utf8mb4",
)

LOAD_JOURNAL = sa.Table(
    "billmig_load_journal",
    JOURNAL_METADATA,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("table_name", sa.String(64), primary_key=True),
    sa.Column("batch_no", sa.BigInteger, primary_key=True, comment="0-based batch of the table"),
    sa.Column("rows", sa.BigInteger, nullable=False, comment="rows the batch inserted"),
    sa.Column("first_key", sa.String(200), comment="legacy key of the batch's first row"),
    sa.Column("last_key", sa.String(200), comment="legacy key of the batch's last row"),
    sa.Column("committed_at", sa.DateTime, comment="UTC"),
    comment="Every committed load batch, written in the batch's own transaction",
    mysql_charset="utf8mb4",
)

TARGET_IDENTITY = sa.Table(
    "billmig_target",
    JOURNAL_METADATA,
    sa.Column("target_id", sa.String(36), primary_key=True, comment="random, made once"),
    sa.Column("created_at", sa.DateTime, comment="UTC"),
    sa.Column("created_by", sa.String(128), comment="operator of the first phase that wrote"),
    comment="Which target this is: workspaces record the id a run was loaded into",
    mysql_charset="utf8mb4",
)

TARGET_LOCK = sa.Table(
    "billmig_target_lock",
    JOURNAL_METADATA,
    sa.Column("lock_name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.Text, nullable=False, comment="JSON: phase, run, workspace, who, pid"),
    sa.Column("since", sa.DateTime, comment="UTC"),
    comment="Who holds the target lock now; a row left behind names a holder that died",
    mysql_charset="utf8mb4",
)

LEGACY_KEY_OF: dict[str, str] = {
    "party": "legacy_client_id",
    "billing_account": "legacy_account_no",
    "balance_bucket": "legacy_key",
    "debt_item": "legacy_key",
    "pending_payment": "legacy_payment_id",
    "product_offering": "name",
    "product": "legacy_subscription_id",
    "balance_action": "idempotency_key",
}
"""The column of each target table that names the legacy row it came from."""

SHARED_TABLES: dict[str, tuple[str, str]] = {
    "party": ("billing_account", "party_id"),
    "product_offering": ("product", "offering_id"),
}
"""Tables two waves may both need rows of (a client with accounts in both brands, the
catalogue): loaded only where absent, and rolled back only where nothing else refers to them
(referring table, referring column)."""
