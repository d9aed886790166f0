"""Money arithmetic of SPEC §2: proration, one rounding step, allocation. Integers only.

Every amount is an integer count of minor units (tiyn). A business quantity is computed as an
exact fraction ``numerator / denominator`` of minor units and rounded **once**, at the end, to
the configured unit (a whole currency unit by default, as in the Kcell example, or the minor
unit) with the configured mode. A daily rate is never rounded first: 2000 / 31 rounded to
64.52 and multiplied back by 31 gives 2000.12, not 2000.

Python integers throughout, so any size is exact. ``prorate`` and ``allocate`` are SPEC §2's
rules for the first prorated charge and for splits; mapping calls them once it carries first
charges (issue 20).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class RoundingMode(StrEnum):
    """How the one rounding step resolves a fraction."""

    HALF_UP = "half_up"
    """Halves away from zero (Kill Bill, jBilling); the default."""
    HALF_EVEN = "half_even"
    """Halves to the even neighbour (banker's rounding)."""
    FLOOR = "floor"
    """Toward minus infinity: never charge a fraction the customer did not use."""


class RoundingUnit(StrEnum):
    """What a rounded amount is a whole number of."""

    MAJOR = "major"
    """Whole currency units (whole tenge), as in the seed's 1419 KZT."""
    MINOR = "minor"
    """Minor units (tiyn)."""


@dataclass(frozen=True)
class RoundingPolicy:
    """One rounding step's mode and unit (``[money]`` in billmig.toml)."""

    mode: RoundingMode = RoundingMode.HALF_UP
    unit: RoundingUnit = RoundingUnit.MAJOR

    def step(self, exponent: int) -> int:
        """Size of the rounding unit in minor units (100 for whole tenge)."""
        return 10**exponent if self.unit is RoundingUnit.MAJOR else 1


def round_fraction(numerator: int, denominator: int, policy: RoundingPolicy, exponent: int) -> int:
    """``numerator / denominator`` minor units rounded once by ``policy``; in minor units.

    Python integers, so any size is exact.

    Raises:
        ValueError: a zero or negative denominator.
    """
    if denominator <= 0:
        raise ValueError("a rounding denominator must be positive")
    step = policy.step(exponent)
    scaled = denominator * step
    sign = -1 if numerator < 0 else 1
    whole, rest = divmod(abs(numerator), scaled)
    if policy.mode is RoundingMode.HALF_UP:
        whole += 2 * rest >= scaled
    elif policy.mode is RoundingMode.HALF_EVEN:
        whole += 2 * rest > scaled or (2 * rest == scaled and whole % 2 == 1)
    else:  # FLOOR rounds toward minus infinity, so a negative remainder adds one unit
        whole += sign < 0 and rest > 0
    return sign * whole * step


def days_left_in_month(day: date) -> tuple[int, int]:
    """Days charged for joining on ``day`` (the day itself through month end) and month length."""
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    return days_in_month - day.day + 1, days_in_month


def prorate(fee_minor: int, joined: date, policy: RoundingPolicy, exponent: int = 2) -> int:
    """Monthly fee for the rest of the joining month: ``fee × days_left / days_in_month``.

    ``days_left`` counts the joining day itself, in the operator's local calendar (pass the
    local date). 2000 KZT joined on 10 July 2016 → 1419 KZT under the default policy.
    """
    days_left, days_in_month = days_left_in_month(joined)
    return round_fraction(fee_minor * days_left, days_in_month, policy, exponent)


def allocate(total_minor: int, weights: Sequence[int]) -> list[int]:
    """Split ``total_minor`` in proportion to ``weights`` so the parts sum to it exactly.

    Largest-remainder method: each part gets the floor of its exact share, then the minor
    units left over go one each to the largest remainders (earliest first on ties), so no part
    is more than one minor unit from its exact share and nothing is lost or created.

    Raises:
        ValueError: no weights, a negative weight, or weights summing to zero.
    """
    if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
        raise ValueError("allocate needs non-negative weights with a positive sum")
    sign = -1 if total_minor < 0 else 1
    magnitude = abs(total_minor)
    weight_sum = sum(weights)
    shares = [divmod(magnitude * w, weight_sum) for w in weights]
    parts = [whole for whole, _ in shares]
    leftover = magnitude - sum(parts)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-shares[i][1], i))
    for index in by_remainder[:leftover]:
        parts[index] += 1
    return [sign * part for part in parts]


def format_major(amount_minor: int, exponent: int) -> str:
    """Minor units as exact major-unit text: ``90`` with exponent 2 → ``0.90``."""
    sign = "-" if amount_minor < 0 else ""
    whole, rest = divmod(abs(amount_minor), 10**exponent)
    return f"{sign}{whole}.{rest:0{exponent}d}" if exponent else f"{sign}{whole}"
