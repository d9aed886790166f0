"""Exact conversion of legacy amounts to minor units (SPEC §2)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from migrate.core.reasons import ReasonCode
from migrate.money.amounts import to_minor


def test_each_driver_type_converts_exactly() -> None:
    converted = to_minor([12.34, Decimal("-99.9900"), "7", 5, " 3.10 ", None], 2)
    assert converted.minor.tolist()[:5] == [1234, -9999, 700, 500, 310]
    assert converted.valid.tolist() == [True, True, True, True, True, False]
    assert converted.issues == ()


def test_float_artefact_is_normalised_and_reported() -> None:
    converted = to_minor([1500.0000000004, Decimal("1500.0000000004")], 2)
    assert converted.minor.tolist() == [150000, 150000]
    assert converted.valid.all()
    assert [i.reason for i in converted.issues] == [ReasonCode.AMOUNT_FLOAT_ARTEFACT] * 2
    assert converted.issues[0].detail == converted.issues[1].detail


def test_finer_than_a_tiyn_is_withheld_with_the_same_detail_on_every_engine() -> None:
    # SQLite hands back a float, PostgreSQL a NUMERIC(22,10) Decimal, a text column a string.
    converted = to_minor([12.345, Decimal("12.3450000000"), "12.345"], 2)
    assert not converted.valid.any()
    assert {i.reason for i in converted.issues} == {ReasonCode.AMOUNT_PRECISION}
    assert {i.detail for i in converted.issues} == {"12.345 is finer than one minor unit (10^-2)"}


def test_text_that_is_not_a_number_is_withheld() -> None:
    converted = to_minor(["abc", float("nan"), "1e400000"], 2)
    assert not converted.valid.any()
    assert [i.reason for i in converted.issues] == [ReasonCode.AMOUNT_UNPARSEABLE] * 3


def test_exponent_follows_the_currency() -> None:
    converted = to_minor(["100", "100", "1.5"], np.array([2, 0, 3]))
    assert converted.minor.tolist() == [10000, 100, 1500]


@given(st.integers(min_value=-(10**14), max_value=10**14))
def test_any_two_decimal_amount_round_trips_through_float_and_text(minor: int) -> None:
    as_text = str(Decimal(minor).scaleb(-2))
    converted = to_minor([float(as_text), as_text, Decimal(as_text)], 2)
    assert converted.minor.tolist() == [minor, minor, minor]
    assert converted.valid.all()
    assert converted.issues == ()


@given(
    st.integers(min_value=-(10**9), max_value=10**9),
    st.integers(min_value=1, max_value=9),
)
def test_a_third_decimal_is_always_a_precision_exception(minor: int, extra: int) -> None:
    as_text = f"{Decimal(minor).scaleb(-2)}{extra}"
    converted = to_minor([as_text, float(as_text)], 2)
    assert not converted.valid.any()
    assert [i.reason for i in converted.issues] == [ReasonCode.AMOUNT_PRECISION] * 2


@given(
    st.lists(
        st.decimals(
            min_value=Decimal("-1e11"), max_value=Decimal("1e11"), places=12, allow_nan=False
        ),
        min_size=1,
        max_size=40,
    )
)
def test_bulk_paths_agree_with_the_exact_one_value_path(values: list[Decimal]) -> None:
    """Decimals (MariaDB), decimal text (PostgreSQL via ADBC) and one-by-one all agree."""
    import pyarrow as pa

    from migrate.money.amounts import _convert_one

    expected = [_convert_one(v, 2, i) for i, v in enumerate(values)]
    for bulk in (values, [str(v) for v in values], pa.array([str(v) for v in values])):
        converted = to_minor(bulk, 2)
        issues = {i.index: i.reason for i in converted.issues}
        for index, (amount, issue) in enumerate(expected):
            assert converted.valid[index] == (amount is not None)
            if amount is not None:
                assert converted.minor[index] == amount
            assert issues.get(index) == (issue.reason if issue else None)


def test_a_nan_legacy_stored_is_unparseable_never_a_silent_null() -> None:
    # found by the server fuzz: a PostgreSQL DOUBLE balance 'NaN' became a NULL balance with no
    # exception (NaN also marked the nulls of the float path)
    import pyarrow as pa

    for values in ([1.5, float("nan"), None], pa.array([1.5, float("nan"), None], pa.float64())):
        found = to_minor(values, 2)
        assert found.valid.tolist() == [True, False, False]
        assert [(i.index, i.reason) for i in found.issues] == [(1, ReasonCode.AMOUNT_UNPARSEABLE)]
