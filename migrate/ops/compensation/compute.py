"""Credits from rules: pure functions of subscribers, charges and the incident's days.

Amounts stay exact fractions until one rounding step at the end of each credit (SPEC §2):
the daily fee is the monthly fee ÷ the days of that day's month, times the band's percent,
summed over the outage days, then rounded once by the rule's policy.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from migrate.core.legacy_schema import CURRENCY_EXPONENTS
from migrate.money.arithmetic import format_major, round_fraction
from migrate.ops.compensation.rules import Offering, Rule

CREDIT_KIND = {"daily_fee_percent": "compensation", "refund_charges": "refund",
               "bonus_grant": "bonus_grant"}  # fmt: skip


@dataclass(frozen=True)
class Subscriber:
    """A live product of the target and what the rules need of it."""

    account_no: str
    billing_account_id: str
    product_key: str
    """The product's legacy subscription id: one subscriber line."""
    msisdn: str | None
    offering: Offering
    fee_minor: int
    currency: str
    region: str | None
    language: str


@dataclass(frozen=True)
class Charge:
    """Charges of one account, kind, day and currency (reference shape, SPEC §3), summed."""

    account_no: str
    kind: str
    day: date
    currency: str
    amount_minor: int


@dataclass(frozen=True)
class Credit:
    """One balance action to make, and the subscriber's message."""

    rule: str
    band: str
    kind: str
    account_no: str
    billing_account_id: str
    product_key: str | None
    amount_minor: int | None
    amount_units: int | None
    currency: str | None
    language: str
    text: str
    idempotency_key: str


@dataclass(frozen=True)
class Gap:
    """An offering in scope that falls into no band or into several (``RULE_GAP``)."""

    rule: str
    offering: str
    kind: str
    data_mb: int | None
    has_video: bool
    bands: tuple[str, ...]
    subscribers: int


def key(incident: str, rule: str, account_no: str, product_key: str | None = None) -> str:
    """Idempotency key: one credit per incident, rule, account (and line)."""
    parts = ["compensation", incident, rule, account_no, *([product_key] if product_key else [])]
    return ":".join(parts)


def major(amount_minor: int, currency: str) -> str:
    """``90`` BYN → ``0.90``."""
    return format_major(amount_minor, CURRENCY_EXPONENTS.get(currency, 2))


def _text(rule: Rule, language: str, default: str, **values: object) -> tuple[str, str]:
    chosen = language if language in rule.sms else default
    return chosen, rule.sms[chosen].format(**values)


def daily_fee_credits(
    rule: Rule, incident: str, subscribers: list[Subscriber], days: list[date], default: str
) -> tuple[list[Credit], list[Gap]]:
    """Percent of the daily fee per outage day, by band; offerings without one band are gaps."""
    credits: list[Credit] = []
    gaps: dict[str, tuple[Offering, tuple[str, ...], int]] = {}
    for subscriber in subscribers:
        bands = rule.bands_of(subscriber.offering)
        if len(bands) != 1:
            name = subscriber.offering.name
            _, _, count = gaps.get(name, (subscriber.offering, (), 0))
            gaps[name] = (subscriber.offering, tuple(b.name for b in bands), count + 1)
            continue
        band = bands[0]
        owed = sum(
            (
                Fraction(subscriber.fee_minor * band.percent, 100 * _days_in_month(day))
                for day in days
            ),
            Fraction(0),
        )
        exponent = CURRENCY_EXPONENTS.get(subscriber.currency, 2)
        amount = round_fraction(owed.numerator, owed.denominator, rule.rounding, exponent)
        if amount <= 0:
            continue
        language, text = _text(
            rule, subscriber.language, default, amount=major(amount, subscriber.currency),
            currency=subscriber.currency, days=len(days), plan=subscriber.offering.name,
        )  # fmt: skip
        credits.append(
            Credit(rule.name, band.name, CREDIT_KIND[rule.kind], subscriber.account_no,
                   subscriber.billing_account_id, subscriber.product_key, amount, None,
                   subscriber.currency, language, text,
                   key(incident, rule.name, subscriber.account_no, subscriber.product_key))
        )  # fmt: skip
    return credits, [
        Gap(rule.name, name, o.kind, o.data_mb, o.has_video, bands, count)
        for name, (o, bands, count) in sorted(gaps.items())
    ]


def _days_in_month(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def refund_credits(
    rule: Rule,
    incident: str,
    accounts: dict[str, Subscriber],
    charges: list[Charge],
    days: list[date],
    default: str,
) -> list[Credit]:
    """Usage charged in the period to accounts whose monthly fee was not taken on ``fee_day``."""
    fee_taken = {c.account_no for c in charges if c.kind == "fee" and c.day == rule.fee_day}
    owed: dict[tuple[str, str], int] = defaultdict(int)
    period = set(days)
    for charge in charges:
        if (
            charge.kind in rule.charged_kinds
            and charge.day in period
            and charge.account_no not in fee_taken
            and charge.account_no in accounts
        ):
            owed[(charge.account_no, charge.currency)] += charge.amount_minor
    credits = []
    for (account_no, currency), amount in sorted(owed.items()):
        if amount <= 0:
            continue
        subscriber = accounts[account_no]
        language, text = _text(
            rule, subscriber.language, default, amount=major(amount, currency), currency=currency,
            days=len(days), plan=subscriber.offering.name,
        )  # fmt: skip
        credits.append(
            Credit(rule.name, "fee not taken", CREDIT_KIND[rule.kind], account_no,
                   subscriber.billing_account_id, None, amount, None, currency, language, text,
                   key(incident, rule.name, account_no))
        )  # fmt: skip
    return credits


def bonus_credits(
    rule: Rule, incident: str, subscribers: list[Subscriber], default: str
) -> list[Credit]:
    """The rule's units to every subscriber (line) of the listed plans, once."""
    credits = []
    for subscriber in subscribers:
        if subscriber.offering.name not in rule.plans:
            continue
        language, text = _text(
            rule, subscriber.language, default, units=rule.units, unit=rule.unit,
            plan=subscriber.offering.name,
        )  # fmt: skip
        credits.append(
            Credit(rule.name, subscriber.offering.name, CREDIT_KIND[rule.kind],
                   subscriber.account_no, subscriber.billing_account_id, subscriber.product_key,
                   None, rule.units, None, language, text,
                   key(incident, rule.name, subscriber.account_no, subscriber.product_key))
        )  # fmt: skip
    return credits
