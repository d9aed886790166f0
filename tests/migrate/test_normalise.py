"""Normalisation of driver values into snapshot columns: strict, engine-independent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa

from migrate.core.legacy_schema import ACCOUNTS, SUBSCRIPTIONS, TARIFFS
from migrate.core.reasons import ReasonCode
from migrate.extract.normalise import ColumnContext, currency_exponents, normalise_column

ALMATY = ZoneInfo("Asia/Almaty")
OPENED = ACCOUNTS.column("opened_at")
CHARGED = SUBSCRIPTIONS.column("fee_charged_through")


def test_time_zone_aware_values_become_operator_local_time() -> None:
    midnight_utc6 = datetime(2016, 6, 30, 18, 0, tzinfo=UTC)  # 2016-07-01 00:00 in Almaty
    ctx = ColumnContext(zone=ALMATY)
    from_python, _ = normalise_column(OPENED, [midnight_utc6, None], ctx)
    arrow = pa.array([midnight_utc6, None], type=pa.timestamp("us", tz="UTC"))
    from_arrow, _ = normalise_column(OPENED, arrow, ctx)
    assert from_python.to_pylist() == from_arrow.to_pylist() == [datetime(2016, 7, 1), None]


def test_text_dates_are_strict_even_where_arrow_strptime_is_not() -> None:
    ctx = ColumnContext(zone=ALMATY, fmt="%d.%m.%Y")
    parsed, issues = normalise_column(CHARGED, ["30.06.2016", "31.02.2016", " ", None], ctx)
    assert parsed.to_pylist() == [date(2016, 6, 30), None, None, None]
    assert [(i.index, i.reason) for i in issues] == [(1, ReasonCode.DATE_UNPARSEABLE)]


def test_iso_text_from_sqlite_and_typed_values_agree() -> None:
    ctx = ColumnContext(zone=ALMATY)
    text, _ = normalise_column(OPENED, ["2016-06-30 12:00:00", "2016-06-30T12:00:00.5"], ctx)
    typed, _ = normalise_column(
        OPENED, [datetime(2016, 6, 30, 12), datetime(2016, 6, 30, 12, 0, 0, 500000)], ctx
    )
    assert text.equals(typed)


def test_integers_and_flags_from_text() -> None:
    ctx = ColumnContext(zone=ALMATY)
    ints, issues = normalise_column(TARIFFS.column("data_mb"), pa.array(["3072", None]), ctx)
    assert ints.to_pylist() == [3072, None] and not issues
    bad, issues = normalise_column(TARIFFS.column("data_mb"), ["3 GB"], ctx)
    assert bad.to_pylist() == [None]
    assert issues[0].reason is ReasonCode.VALUE_UNPARSEABLE
    flags, issues = normalise_column(TARIFFS.column("has_video"), ["t", "0", True, "maybe"], ctx)
    assert flags.to_pylist() == [True, False, True, None]
    assert [i.index for i in issues] == [3]


def test_currency_exponents_flag_unknown_codes() -> None:
    # issue 15: 'kzt ' was read as KZT and stored as is; an ISO 4217 code is exact
    exps, unknown = currency_exponents(["KZT", "kzt ", "JPY", "XXX", None])
    assert exps.tolist() == [2, 2, 0, 2, 2]
    assert unknown == [1, 3, 4]


def test_an_integer_beyond_64_bits_is_withheld_not_a_crash() -> None:
    # observed (issue 15): a client_id above 2^63 crashed map with an overflow
    client = ACCOUNTS.column("client_id")
    values = ["99999999999999999999", "7", str(2**63 - 1), str(-(2**63) - 1)]
    parsed, issues = normalise_column(client, values, ColumnContext(zone=ALMATY))
    assert parsed.to_pylist() == [None, 7, 2**63 - 1, None]
    assert [(i.index, i.reason) for i in issues] == [
        (0, ReasonCode.VALUE_UNPARSEABLE),
        (3, ReasonCode.VALUE_UNPARSEABLE),
    ]
    assert "outside the 64-bit integer range" in issues[0].detail
