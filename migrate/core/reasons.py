"""The catalogue of reason codes (SPEC §6): every exception row names one of these.

Shared by ``migrate`` and ``validate``: it is vocabulary, not mapping logic.
"""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    """How an exception weighs on the cutover gate."""

    BLOCK = "block"
    """Fails the cutover gate until a disposition is recorded."""
    REVIEW = "review"
    """Counted against a configured threshold; needs a human look."""
    INFO = "info"
    """Recorded for the audit trail; no action needed."""


class ReasonCode(StrEnum):
    """Why a legacy row was flagged, withheld or transformed; each has a severity and meaning."""

    severity: Severity
    meaning: str

    def __new__(cls, value: str, severity: Severity, meaning: str) -> ReasonCode:
        """Build a member from its (code, severity, meaning) triple."""
        member = str.__new__(cls, value)
        member._value_ = value
        member.severity = severity
        member.meaning = meaning
        return member

    AMOUNT_PRECISION = (
        "AMOUNT_PRECISION",
        Severity.BLOCK,
        "amount finer than one minor unit (e.g. 12.345 KZT); the row is withheld",
    )
    AMOUNT_FLOAT_ARTEFACT = (
        "AMOUNT_FLOAT_ARTEFACT",
        Severity.INFO,
        "float artefact within 1e-6 of a whole minor unit; normalised and counted",
    )
    AMOUNT_UNPARSEABLE = (
        "AMOUNT_UNPARSEABLE",
        Severity.BLOCK,
        "amount is not a number (e.g. 'abc'); the row is withheld",
    )
    VALUE_UNPARSEABLE = (
        "VALUE_UNPARSEABLE",
        Severity.BLOCK,
        "a number or flag that cannot be read as one; the value is withheld",
    )
    CURRENCY_UNKNOWN = (
        "CURRENCY_UNKNOWN",
        Severity.BLOCK,
        "currency code with no known ISO 4217 exponent; the amount is withheld",
    )
    VALUE_MISSING = (
        "VALUE_MISSING",
        Severity.BLOCK,
        "a required value is NULL (or the profile left a legacy code unmapped); the row is held",
    )
    CODE_UNKNOWN = (
        "CODE_UNKNOWN",
        Severity.BLOCK,
        "a code outside its column's allowed values (case-sensitive); the row is held",
    )
    DUPLICATE_KEY = (
        "DUPLICATE_KEY",
        Severity.BLOCK,
        "two or more rows share one legacy key (a table without a primary key); each is held",
    )
    TEXT_CONTROL_CHARS = (
        "TEXT_CONTROL_CHARS",
        Severity.REVIEW,
        "control characters (NUL, BEL, ESC …) in a name; removed, the raw text in the detail",
    )
    DATE_UNPARSEABLE = (
        "DATE_UNPARSEABLE",
        Severity.BLOCK,
        "date or timestamp that cannot be parsed; the value is withheld",
    )
    PREPAID_NEGATIVE_BALANCE = (
        "PREPAID_NEGATIVE_BALANCE",
        Severity.REVIEW,
        "prepaid account with a negative balance not explained by roaming; becomes legacy debt",
    )
    ROAMING_DEBT = (
        "ROAMING_DEBT",
        Severity.INFO,
        "prepaid negative balance explained by roaming charges; becomes roaming debt",
    )
    CREDIT_LIMIT_EXCEEDED = (
        "CREDIT_LIMIT_EXCEEDED",
        Severity.REVIEW,
        "postpaid account whose debt exceeds its credit limit",
    )
    CREDIT_LIMIT_INVALID = (
        "CREDIT_LIMIT_INVALID",
        Severity.BLOCK,
        "credit limit on a prepaid account, or missing/negative on a postpaid one",
    )
    TARIFF_UNMAPPED = (
        "TARIFF_UNMAPPED",
        Severity.BLOCK,
        "active subscription on a tariff code with no offering in mappings/tariffs.csv",
    )
    CHARGED_AFTER_CANCELLATION = (
        "CHARGED_AFTER_CANCELLATION",
        Severity.REVIEW,
        "subscription cancelled but still active and billed; migrates terminated, refund suggested",
    )
    UNCONSENTED_LINE = (
        "UNCONSENTED_LINE",
        Severity.REVIEW,
        "dealer-channel line with no consent evidence",
    )
    INVALID_NATIONAL_ID = (
        "INVALID_NATIONAL_ID",
        Severity.REVIEW,
        "IIN/BIN with a wrong length or check digit",
    )
    DUPLICATE_CLIENT = (
        "DUPLICATE_CLIENT",
        Severity.INFO,
        "two legacy clients share one valid national ID; merged into one party",
    )
    INVALID_MSISDN = (
        "INVALID_MSISDN",
        Severity.BLOCK,
        "MSISDN that cannot be normalised to a Kazakh E.164 number",
    )
    DUPLICATE_MSISDN = (
        "DUPLICATE_MSISDN",
        Severity.BLOCK,
        "one MSISDN active on two lines",
    )
    ORPHAN_ROW = (
        "ORPHAN_ROW",
        Severity.BLOCK,
        "line, subscription, payment or other row whose parent does not exist",
    )
    PAYMENT_IN_TRANSIT = (
        "PAYMENT_IN_TRANSIT",
        Severity.INFO,
        "payment received but not yet posted; migrates as a pending payment",
    )
    DEBT_BELOW_THRESHOLD = (
        "DEBT_BELOW_THRESHOLD",
        Severity.REVIEW,
        "debt below the configured threshold; flagged or written off per policy",
    )
    REFUND_LIABILITY = (
        "REFUND_LIABILITY",
        Severity.REVIEW,
        "closed account holding customer money",
    )
    BONUS_EXPIRED = (
        "BONUS_EXPIRED",
        Severity.INFO,
        "bonus already expired at the snapshot; reported, not migrated",
    )
    FREEZE_BREACH = (
        "FREEZE_BREACH",
        Severity.BLOCK,
        "order of a blocked kind created in legacy inside the restricted-services window",
    )
    DATE_INCONSISTENT = (
        "DATE_INCONSISTENT",
        Severity.BLOCK,
        "dates contradict each other (ended before started, terminated before activated)",
    )
    ENCODING_DAMAGE = (
        "ENCODING_DAMAGE",
        Severity.REVIEW,
        "text damaged by a wrong encoding: mojibake in a name, or bytes that are not UTF-8",
    )
