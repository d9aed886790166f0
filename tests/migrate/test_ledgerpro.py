"""A differently shaped legacy schema read through its own profile (tests/fixtures/ledgerpro.sql).

The fixture's header comment lists what a correct extract must find; these tests check exactly
that, by hand-countable values.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from migrate.extract.run import ExtractResult, run_extract
from tests.migrate.helpers import config_for, manifest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ledgerpro.sql"


@pytest.fixture
def ledgerpro(workspace: Path, tmp_path: Path) -> ExtractResult:
    db = tmp_path / "ledgerpro.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(FIXTURE.read_text(encoding="utf-8"))
    config = config_for(
        workspace, f"sqlite:///{db}", BILLMIG_SOURCE__PROFILE="mappings/profiles/ledgerpro.toml"
    )
    return run_extract(config, run_id="ledgerpro")


def _rows(result: ExtractResult, entity: str) -> list[dict]:  # type: ignore[type-arg]
    return pq.read_table(result.snapshot_dir / f"{entity}.parquet").to_pylist()  # type: ignore[no-any-return]


def test_row_counts_and_cutoff(ledgerpro: ExtractResult) -> None:
    counts = {e.name: (e.rows, e.rows_after_cutoff) for e in ledgerpro.entities}
    assert counts == {
        "clients": (3, 0), "accounts": (4, 0), "lines": (5, 0), "tariffs": (2, 0),
        "subscriptions": (4, 0), "payments": (5, 1), "charges": (3, 0), "orders": (2, 0),
        "bonuses": (1, 0),
    }  # fmt: skip
    assert ledgerpro.reconciled


def test_integer_tiyn_and_text_amounts_become_minor_units(ledgerpro: ExtractResult) -> None:
    balances = {a["account_no"]: a["balance_minor"] for a in _rows(ledgerpro, "accounts")}
    assert balances == {"700001": 150050, "700002": -2500, "700003": 0, "700004": 990000}
    payments = {p["payment_id"]: p["amount_minor"] for p in _rows(ledgerpro, "payments")}
    assert payments == {501: 150000, 502: 200050, 503: None, 504: None, 505: 9999}
    fees = {t["tariff_code"]: t["monthly_fee_minor"] for t in _rows(ledgerpro, "tariffs")}
    assert fees == {"ALGA": 199000, "HOMETV": 690000}


def test_codes_and_text_dates_are_normalised(ledgerpro: ExtractResult) -> None:
    account = _rows(ledgerpro, "accounts")[3]
    assert (account["payment_type"], account["credit_limit_minor"]) == ("credit", 5000000)
    assert str(account["opened_at"]) == "2014-06-15 11:20:00"
    subscription = _rows(ledgerpro, "subscriptions")[3]
    assert str(subscription["fee_charged_through"]) == "2016-05-31"
    assert _rows(ledgerpro, "tariffs")[1]["has_video"] is True


def test_exceptions_are_exactly_the_three_bad_values(ledgerpro: ExtractResult) -> None:
    found = [
        (r["entity"], r["legacy_key"], r["reason_code"])
        for r in pq.read_table(ledgerpro.snapshot_dir / "exceptions.parquet").to_pylist()
    ]
    assert found == [
        ("payments", "503", "AMOUNT_PRECISION"),
        ("payments", "504", "AMOUNT_UNPARSEABLE"),
        ("orders", "902", "DATE_UNPARSEABLE"),
    ]


def test_withheld_amounts_are_explained_in_the_control_totals(ledgerpro: ExtractResult) -> None:
    payments = manifest(ledgerpro.snapshot_dir)["entities"]["payments"]
    assert payments["withheld_totals"] == [
        {"amount_micro": 12_345_000, "channel": "cash", "currency": "KZT", "rows": 0}
    ]
    assert payments["after_cutoff_totals"][0]["amount_micro"] == 500_000_000


def test_an_inexact_amount_after_the_cutoff_still_reconciles(
    workspace: Path, tmp_path: Path
) -> None:
    """A withheld value on a row held out as delta is explained like any other withheld value."""
    db = tmp_path / "late.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(FIXTURE.read_text(encoding="utf-8"))
        conn.execute(
            "INSERT INTO platezh VALUES (507, 700001, '0.005', 'KZT', 'card', "
            "'03.07.2016 08:00:00', '03.07.2016 08:00:05')"
        )
    config = config_for(
        workspace, f"sqlite:///{db}", BILLMIG_SOURCE__PROFILE="mappings/profiles/ledgerpro.toml"
    )
    result = run_extract(config, run_id="late")
    payments = manifest(result.snapshot_dir)["entities"]["payments"]
    assert payments["rows_after_cutoff"] == 2
    assert payments["differences"] == []
    assert result.reconciled
