"""SPEC §2 money rules: the seed's proration vectors and invariants that never lose a tiyn."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrate.money.arithmetic import (
    RoundingMode,
    RoundingPolicy,
    RoundingUnit,
    allocate,
    days_left_in_month,
    prorate,
    round_fraction,
)

UP = RoundingPolicy(RoundingMode.HALF_UP)
EVEN = RoundingPolicy(RoundingMode.HALF_EVEN)
FLOOR = RoundingPolicy(RoundingMode.FLOOR)
TIYN = RoundingPolicy(RoundingMode.HALF_UP, RoundingUnit.MINOR)


@pytest.mark.parametrize(
    ("fee_kzt", "joined", "policy", "expected_kzt"),
    [
        (2000, date(2016, 7, 10), UP, 1419),  # seed 004: 2000 / 31 × 22
        (2000, date(2016, 7, 10), FLOOR, 1419),
        (2000, date(2016, 7, 10), EVEN, 1419),
        (2000, date(2016, 7, 15), UP, 1097),
        (2000, date(2016, 7, 15), FLOOR, 1096),
        (2000, date(2016, 7, 31), UP, 65),
        (2000, date(2016, 7, 31), FLOOR, 64),
        (2000, date(2016, 2, 20), UP, 690),  # leap February: 29 days
        (1001, date(2016, 6, 16), UP, 501),  # 30-day month, 15 days: 500.5
        (1001, date(2016, 6, 16), EVEN, 500),
        (3005, date(2016, 6, 16), EVEN, 1502),
        (2000, date(2016, 7, 1), UP, 2000),  # joining on the 1st pays the whole month
    ],
)
def test_seed_proration_vectors(
    fee_kzt: int, joined: date, policy: RoundingPolicy, expected_kzt: int
) -> None:
    assert prorate(fee_kzt * 100, joined, policy) == expected_kzt * 100


def test_rounding_to_the_tiyn_and_the_seed_balance() -> None:
    assert prorate(200_000, date(2016, 7, 10), TIYN) == 141_935  # 1419.35 KZT
    assert 200_000 - prorate(200_000, date(2016, 7, 10), UP) == 58_100  # 581 KZT left (seed)


def test_a_daily_rate_is_never_rounded_first() -> None:
    # 2000 / 31 rounded to 64.52 × 31 would be 2000.12; one rounding at the end gives 2000.
    days, month = days_left_in_month(date(2016, 7, 1))
    assert (days, month) == (31, 31)
    assert round_fraction(200_000 * 31, 31, TIYN, 2) == 200_000


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=1, max_value=10**6),
    st.sampled_from([UP, EVEN, FLOOR, TIYN]),
)
def test_one_rounding_step_is_within_half_a_unit_of_the_exact_value(
    numerator: int, denominator: int, policy: RoundingPolicy
) -> None:
    rounded = round_fraction(numerator, denominator, policy, 2)
    step = policy.step(2)
    exact = Fraction(numerator, denominator)
    assert rounded % step == 0
    if policy.mode is RoundingMode.FLOOR:
        assert exact - step < rounded <= exact
    else:
        assert abs(rounded - exact) <= Fraction(step, 2)


def test_scalar_rounding_is_exact_beyond_64_bits() -> None:
    huge = 10**30 + 50  # 10^28 KZT and a half-tenge: far past int64
    assert round_fraction(huge, 1, UP, 2) == 10**30 + 100
    assert round_fraction(huge, 1, EVEN, 2) == 10**30


@given(
    st.integers(min_value=0, max_value=10**9),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31)),
    st.sampled_from([UP, EVEN, FLOOR]),
)
def test_proration_stays_between_nothing_and_the_fee(
    fee_kzt: int, joined: date, policy: RoundingPolicy
) -> None:
    charged = prorate(fee_kzt * 100, joined, policy)
    assert 0 <= charged <= fee_kzt * 100
    later = date(joined.year, joined.month, min(joined.day + 1, days_left_in_month(joined)[1]))
    assert prorate(fee_kzt * 100, later, policy) <= charged  # joining later never costs more


@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=50).filter(any),
)
def test_allocation_never_loses_or_creates_a_minor_unit(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, sum(weights))
        assert abs(part - exact) < 1


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=28, max_value=31))
def test_a_monthly_fee_split_into_days_sums_to_the_fee(fee_minor: int, days: int) -> None:
    daily = allocate(fee_minor, [1] * days)
    assert sum(daily) == fee_minor and max(daily) - min(daily) <= 1


def test_allocation_refuses_meaningless_weights() -> None:
    for weights in ([], [0, 0], [1, -1]):
        with pytest.raises(ValueError):
            allocate(100, weights)
