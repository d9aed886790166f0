"""The legacy reference schema (SPEC §3): the shape every extract is normalised into.

One :class:`Entity` per legacy table with its columns, key, and what the extractor needs to know
about it (which column says when a row reached legacy, how its control totals are grouped).
The same description yields the DDL ``synth`` creates and the Arrow schema of the snapshot, so
the three cannot drift apart. Shared by ``migrate`` and ``validate``: vocabulary, not mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pyarrow as pa
import sqlalchemy as sa


class Kind(StrEnum):
    """How a reference column is typed in the legacy DB and normalised in the snapshot."""

    TEXT = "text"
    INT = "int"
    BOOL = "bool"
    DATE = "date"
    TIMESTAMP = "timestamp"
    MONEY = "money"
    """A decimal amount in major units (tenge); becomes ``<name>_minor`` (int64 tiyn)."""
    QUANTITY = "quantity"
    """A bonus amount whose unit depends on the row's kind; becomes ``<name>_units`` (int64)."""


@dataclass(frozen=True)
class Column:
    """One column of the reference schema."""

    name: str
    kind: Kind
    doc: str
    nullable: bool = True
    """Whether ``synth``'s DDL lets the column be NULL (a real legacy database may not say)."""
    length: int = 64
    codes: tuple[str, ...] = ()
    """The column's value domain when it holds codes: the only values allowed, case-sensitive.
    Extract raises ``CODE_UNKNOWN`` (block) for any other, so mapper and validator read one
    set: a row with an unknown code is held, never guessed."""
    printable: bool = False
    """A name: control characters are removed and reported (``TEXT_CONTROL_CHARS``)."""
    required: bool = False
    """Extract raises ``VALUE_MISSING`` (block) where the value is NULL (a profile's CASE that
    left a legacy code unmapped gives NULL too): the row is held, never defaulted."""

    @property
    def snapshot_name(self) -> str:
        """Column name in the snapshot: money and quantities say their unit."""
        if self.kind is Kind.MONEY:
            return f"{self.name}_minor"
        if self.kind is Kind.QUANTITY:
            return f"{self.name}_units"
        return self.name

    @property
    def arrow_type(self) -> pa.DataType:
        """Arrow type of the column in the snapshot."""
        return _ARROW_TYPES[self.kind]

    def sql_type(self) -> sa.types.TypeEngine[Any]:
        """SQL type of the column in a legacy database made by ``synth``."""
        if self.kind is Kind.TEXT:
            return sa.String(self.length)
        if self.kind is Kind.INT:
            return sa.BigInteger()
        if self.kind is Kind.BOOL:
            return sa.Boolean()
        if self.kind is Kind.DATE:
            return sa.Date()
        if self.kind is Kind.TIMESTAMP:
            return sa.DateTime()
        return sa.Numeric(22, 10)


_ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.TEXT: pa.string(),
    Kind.INT: pa.int64(),
    Kind.BOOL: pa.bool_(),
    Kind.DATE: pa.date32(),
    Kind.TIMESTAMP: pa.timestamp("us"),
    Kind.MONEY: pa.int64(),
    Kind.QUANTITY: pa.int64(),
}


@dataclass(frozen=True)
class Entity:
    """One legacy table of the reference schema."""

    name: str
    key: str
    """Primary key column; the extract is ordered by it and exceptions cite it."""
    columns: tuple[Column, ...]
    doc: str
    arrival: str | None = None
    """Timestamp column saying when the row reached legacy; rows after the cutoff are delta."""
    account_link: str | None = None
    """How the entity hangs off ``accounts`` for wave filtering: a column shared with a parent."""
    parent: str | None = None
    """Entity that ``account_link`` points into (``accounts`` or ``lines``)."""
    total_groups: tuple[str, ...] = ()
    """Columns the source control totals are grouped by."""
    total_amounts: tuple[str, ...] = ()
    """Money or quantity columns summed in the control totals."""

    @property
    def column_names(self) -> tuple[str, ...]:
        """Reference column names in order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name}")

    def arrow_schema(self) -> pa.Schema:
        """Schema of ``snapshot/<entity>.parquet``."""
        return pa.schema(
            [pa.field(c.snapshot_name, c.arrow_type, nullable=True) for c in self.columns]
        )

    def table(self, metadata: sa.MetaData) -> sa.Table:
        """The legacy table as ``synth`` creates it."""
        cols = [
            sa.Column(
                c.name,
                c.sql_type(),
                primary_key=c.name == self.key,
                nullable=c.nullable and c.name != self.key,
                comment=c.doc,
            )
            for c in self.columns
        ]
        return sa.Table(self.name, metadata, *cols, comment=self.doc, mysql_charset="utf8mb4")


def _c(
    name: str,
    kind: Kind,
    doc: str,
    *,
    nullable: bool = True,
    length: int = 64,
    codes: tuple[str, ...] = (),
    required: bool = False,
    printable: bool = False,
) -> Column:
    return Column(name, kind, doc, nullable, length, codes, printable, required)


TXT, INT, BOOL, DATE, TS, MONEY, QTY = (
    Kind.TEXT,
    Kind.INT,
    Kind.BOOL,
    Kind.DATE,
    Kind.TIMESTAMP,
    Kind.MONEY,
    Kind.QUANTITY,
)

CLIENTS = Entity(
    "clients",
    key="client_id",
    doc="Legal persons and individuals who hold accounts.",
    columns=(
        _c("client_id", INT, "legacy client number", nullable=False, required=True),
        _c("name", TXT, "full name or company name, Cyrillic", length=200, printable=True),
        _c("national_id", TXT, "IIN (individual) or BIN (corporate), 12 digits", length=32),
        _c(
            "client_type",
            TXT,
            "individual or corporate",
            codes=("individual", "corporate"),
            required=True,
        ),
        _c("created_at", TS, "when the client was registered"),
    ),
    account_link="client_id",
    parent="accounts",
    total_groups=("client_type",),
)

ACCOUNTS = Entity(
    "accounts",
    key="account_no",
    doc="Personal accounts (лицевые счета): where money is held or owed.",
    columns=(
        _c("account_no", TXT, "legacy account number", nullable=False, required=True),
        _c("client_id", INT, "owning client"),
        _c("brand", TXT, "kcell or activ"),
        _c(
            "payment_type",
            TXT,
            "advance (prepaid) or credit (postpaid)",
            codes=("advance", "credit"),
            required=True,
        ),
        _c("currency", TXT, "ISO 4217 code", length=3),
        _c("balance", MONEY, "signed balance in major units; negative = debt", required=True),
        _c("credit_limit", MONEY, "postpaid credit limit in major units; null for prepaid"),
        _c(
            "status",
            TXT,
            "active, suspended or closed",
            codes=("active", "suspended", "closed"),
            required=True,
        ),
        _c("opened_at", TS, "when the account was opened"),
        _c("closed_at", TS, "when the account was closed, if it was"),
        _c("region", TXT, "oblast or city of service"),
    ),
    total_groups=("currency", "brand", "payment_type", "status"),
    total_amounts=("balance", "credit_limit"),
)

LINES = Entity(
    "lines",
    key="iccid",
    doc="SIM lines: a number on a SIM card attached to an account.",
    columns=(
        _c("iccid", TXT, "SIM card serial, 20 digits", nullable=False, required=True, length=32),
        _c("msisdn", TXT, "phone number as legacy stores it", length=32),
        _c("account_no", TXT, "account the line is attached to"),
        _c(
            "status",
            TXT,
            "active, suspended or terminated",
            codes=("active", "suspended", "terminated"),
            required=True,
        ),
        _c("activated_at", TS, "activation time"),
        _c("terminated_at", TS, "termination time, if terminated"),
        _c(
            "port_status",
            TXT,
            "none, ported_in or ported_out",
            codes=("none", "ported_in", "ported_out"),
        ),
        _c("channel", TXT, "shop, dealer or online", codes=("shop", "dealer", "online")),
        _c("dealer_id", TXT, "dealer that attached the line, for channel dealer"),
        _c("consent_ref", TXT, "reference of the subscriber's consent evidence; null = none"),
        # not migrated: read again at compensation, whose rule file names its languages and
        # says which it falls back to; a domain here would hold lines over a text preference
        _c("language", TXT, "ru, kk or en (subscriber texts; not migrated)"),
    ),
    account_link="account_no",
    parent="accounts",
    total_groups=("status",),
)

TARIFFS = Entity(
    "tariffs",
    key="tariff_code",
    doc="The legacy tariff catalogue.",
    columns=(
        _c("tariff_code", TXT, "legacy tariff code", nullable=False, required=True),
        _c("name", TXT, "commercial name", length=200, printable=True),
        _c("monthly_fee", MONEY, "monthly subscription fee in major units"),
        _c("currency", TXT, "ISO 4217 code", length=3),
        _c("data_mb", INT, "included data in MB; null if none"),
        # kind and status are the legacy catalogue's own words, kept for reading: no offering
        # attribute comes from them (mappings/tariffs.csv gives kind, fee and data), so they
        # carry no domain that would hold anything
        _c("kind", TXT, "bundle, data_only, payg or home_internet (informative)"),
        _c("has_video", BOOL, "includes a video service"),
        _c("status", TXT, "active or retired (informative)"),
    ),
    total_groups=("currency", "status"),
    total_amounts=("monthly_fee",),
)

SUBSCRIPTIONS = Entity(
    "subscriptions",
    key="subscription_id",
    doc="Tariff subscriptions of lines.",
    columns=(
        _c("subscription_id", INT, "legacy subscription number", nullable=False, required=True),
        _c("msisdn", TXT, "line the tariff is on", length=32),
        _c("tariff_code", TXT, "subscribed tariff"),
        _c("started_at", TS, "original start"),
        _c("cancelled_at", TS, "when cancellation was requested"),
        _c("ended_at", TS, "when the subscription ended"),
        _c("fee_charged_through", DATE, "last day covered by a fee already taken"),
        _c(
            "status",
            TXT,
            "active, suspended or ended",
            codes=("active", "suspended", "ended"),
            required=True,
        ),
    ),
    account_link="msisdn",
    parent="lines",
    total_groups=("status",),
)

PAYMENTS = Entity(
    "payments",
    key="payment_id",
    doc="Payments and top-ups.",
    columns=(
        _c("payment_id", INT, "legacy payment number", nullable=False, required=True),
        _c("account_no", TXT, "credited account"),
        _c("amount", MONEY, "amount in major units", required=True),
        _c("currency", TXT, "ISO 4217 code", length=3),
        _c(
            "channel",
            TXT,
            "settlement_centre, card, cash or voucher",
            codes=("settlement_centre", "card", "cash", "voucher"),
        ),
        _c("received_at", TS, "when the payer paid"),
        _c("posted_at", TS, "when legacy credited it; null = in transit"),
    ),
    arrival="received_at",
    account_link="account_no",
    parent="accounts",
    total_groups=("currency", "channel"),
    total_amounts=("amount",),
)

CHARGES = Entity(
    "charges",
    key="charge_id",
    doc="Rated charges: usage, fees and value-added services.",
    columns=(
        _c("charge_id", INT, "legacy charge number", nullable=False, required=True),
        _c("account_no", TXT, "charged account"),
        _c("msisdn", TXT, "line that used the service", length=32),
        _c(
            "kind",
            TXT,
            "voice, sms, data, roaming, fee or vas",
            codes=("voice", "sms", "data", "roaming", "fee", "vas"),
            required=True,
        ),
        _c("amount", MONEY, "amount in major units", required=True),
        _c("currency", TXT, "ISO 4217 code", length=3),
        _c("occurred_at", TS, "when the usage happened"),
        _c("rated_at", TS, "when legacy rated it (delayed charging lags occurred_at)"),
        _c("roaming_partner", TXT, "partner operator for roaming charges"),
    ),
    arrival="rated_at",
    account_link="account_no",
    parent="accounts",
    total_groups=("currency", "kind"),
    total_amounts=("amount",),
)

ORDERS = Entity(
    "orders",
    key="order_id",
    doc="Customer orders (tariff changes, new numbers, SIM swaps, ...).",
    columns=(
        _c("order_id", INT, "legacy order number", nullable=False, required=True),
        _c("account_no", TXT, "ordering account"),
        _c("msisdn", TXT, "line concerned", length=32),
        _c("kind", TXT, "tariff_change, new_number, vas, sim_swap, port_in, ..."),
        _c("created_at", TS, "when the order was placed"),
        _c("status", TXT, "order status"),
    ),
    arrival="created_at",
    account_link="account_no",
    parent="accounts",
    total_groups=("kind",),
)

BONUSES = Entity(
    "bonuses",
    key="bonus_id",
    doc="Bonus balances: money, data or voice minutes.",
    columns=(
        _c("bonus_id", INT, "legacy bonus number", nullable=False, required=True),
        _c("account_no", TXT, "account holding the bonus"),
        _c(
            "kind",
            TXT,
            "money, data_mb or voice_min",
            codes=("money", "data_mb", "voice_min"),
            required=True,
        ),
        _c(
            "amount",
            QTY,
            "major units for money, MB for data_mb, minutes for voice_min",
            required=True,
        ),
        _c("expires_at", TS, "expiry"),
    ),
    account_link="account_no",
    parent="accounts",
    total_groups=("kind",),
    total_amounts=("amount",),
)

ENTITIES: tuple[Entity, ...] = (
    CLIENTS,
    ACCOUNTS,
    LINES,
    TARIFFS,
    SUBSCRIPTIONS,
    PAYMENTS,
    CHARGES,
    ORDERS,
    BONUSES,
)
BY_NAME: dict[str, Entity] = {e.name: e for e in ENTITIES}

EXCEPTIONS_SCHEMA = pa.schema(
    [
        pa.field("entity", pa.string()),
        pa.field("legacy_key", pa.string()),
        pa.field("column", pa.string()),
        pa.field("reason_code", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("amount_minor", pa.int64()),
    ]
)
"""Schema of ``snapshot/exceptions.parquet``: rows the extractor could not convert exactly."""


def bonus_exponent(kind: str, currency_exponent: int) -> int:
    """Decimal places a bonus amount of ``kind`` is scaled by: money to minor units, else whole."""
    return currency_exponent if kind == "money" else 0


CURRENCY_EXPONENTS: dict[str, int] = {
    "KZT": 2,
    "BYN": 2,
    "RUB": 2,
    "USD": 2,
    "EUR": 2,
    "KGS": 2,
    "UZS": 2,
    "GBP": 2,
    "CNY": 2,
    "TRY": 2,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "BHD": 3,
}
"""ISO 4217 minor-unit exponents of the currencies a Central Asian operator meets."""
