"""Money exact at the edges (issue 20): corporate-size balances on every engine.

A corporate account with 90 071 992 547 409.93 KZT, i.e. 9 007 199 254 740 993 tiyn: above
2^53 (where a float stops counting tiyn), well inside int64 tiyn. Before: extract exited 2 on
every engine (SQLite "integer overflow", PostgreSQL "bigint out of range", MariaDB
"ArrowInvalid: overflow"), because control totals were summed as int64 micro-units.

Fixture: 200 synthetic accounts; the first active one gets the corporate balance, the second
−90 071 992 547 409.92 (a debt of that size less one tiyn). SQLite stores such a literal in a
NUMERIC column as a REAL, which holds 90 071 992 547 409.93 only to 1/64 KZT (SQLite's own
loss, before any extract): there the balances are 90 071 992 547 410.25 and −90 071 992 547
410.00, which a double holds exactly and which are still beyond 2^53 tiyn.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.core.db import create_engine
from migrate.core.reasons import ReasonCode
from migrate.extract.run import run_extract
from migrate.load.run import run_load
from migrate.mapping.run import run_map
from migrate.money.amounts import to_minor
from migrate.money.arithmetic import RoundingPolicy, prorate
from migrate.ops.compensation import Scope, run_compensate
from migrate.ops.delta import run_delta
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import config_for, file_hashes, widen_balance
from validate.run import run_validate

BALANCES = {  # engine → (corporate balance, corporate debt), and both in tiyn
    "exact": (Decimal("90071992547409.93"), Decimal("-90071992547409.92")),
    "sqlite": (Decimal("90071992547410.25"), Decimal("-90071992547410.00")),
}


def _corporate(url: str, tmp_path: Path) -> tuple[dict[str, int], Decimal]:
    run_synth(url, SynthOptions(accounts=200, seed=5, anomaly_rate=0.0), tmp_path / "p.json")
    engine = create_engine(url)
    with engine.begin() as conn:  # the reference NUMERIC(22, 10) stops at 10^12; a real one may not
        widen_balance(conn)
        first, second = conn.execute(
            sa.text(
                "SELECT account_no FROM accounts WHERE status = 'active' "
                "ORDER BY account_no LIMIT 2"
            )
        ).scalars()
        balances = BALANCES["sqlite" if url.startswith("sqlite") else "exact"]
        for account, balance in zip((first, second), balances, strict=True):
            conn.execute(
                sa.text("UPDATE accounts SET balance = :b WHERE account_no = :a"),
                {"b": str(balance) if url.startswith("sqlite") else balance, "a": account},
            )
    engine.dispose()
    tiyn = {first: int(balances[0] * 100), second: int(balances[1] * 100)}
    assert all(abs(t) >= 2**53 for t in tiyn.values())
    return tiyn, balances[0]


@pytest.mark.slow
def test_a_corporate_balance_beyond_2_53_tiyn_migrates_exactly(
    any_url: str, workspace: Path, tmp_path: Path
) -> None:
    expected, _ = _corporate(any_url, tmp_path)
    config = config_for(
        workspace,
        any_url,
        BILLMIG_TARGET_URL=any_url,
        BILLMIG_VALIDATE__REVIEW_PER_10000_ACCOUNTS="10000",
    )
    extracted = run_extract(config, run_id="big")
    assert extracted.reconciled and extracted.exit_code == 0
    accounts = pq.read_table(extracted.snapshot_dir / "accounts.parquet").to_pydict()
    balance = dict(zip(accounts["account_no"], accounts["balance_minor"], strict=True))
    assert {account: balance[account] for account in expected} == expected
    manifest = json.loads((extracted.snapshot_dir / "manifest.json").read_text("utf-8"))
    assert manifest["reconciled"] is True
    run_map(config, run_id="big")
    run_load(config, run_id="big")
    verdict = run_validate(config, run_id="big")
    assert verdict.passed, [c for c in verdict.criteria if not c.passed]


INT64 = 2**63 - 1


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_control_totals_are_exact_for_any_int64_balances(
    any_url: str, workspace: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Balances up to int64 tiyn each, 40 per total: the snapshot reconciles, to the tiyn.

    On SQLite a NUMERIC column holds such a value as a REAL, exact when a double holds it: whole
    tenge here, bound as a float (SQLite's own text-to-REAL conversion is not exact beyond 15
    digits, a loss before any extract).
    """
    folder = tmp_path_factory.mktemp("totals")
    url = any_url if not any_url.startswith("sqlite") else f"sqlite:///{folder / 'l.sqlite'}"
    engine = create_engine(url)
    if not sa.inspect(engine).has_table("accounts"):
        _corporate(url, folder)
    sqlite = url.startswith("sqlite")
    limit = INT64 // 100 if sqlite else INT64  # tiyn
    tiyn = st.integers(-limit, limit).map(lambda t: t - t % 100 if sqlite else t)
    amounts = data.draw(st.lists(tiyn, min_size=40, max_size=40))
    with engine.begin() as conn:
        if not sqlite:
            widen_balance(conn)  # 20 integer digits: int64 tiyn is 17 in tenge
        accounts = (
            conn.execute(sa.text("SELECT account_no FROM accounts ORDER BY account_no LIMIT 40"))
            .scalars()
            .all()
        )
        for account, amount in zip(accounts, amounts, strict=True):
            value = Decimal(amount).scaleb(-2)
            conn.execute(
                sa.text("UPDATE accounts SET balance = :b WHERE account_no = :a"),
                {"b": float(value) if sqlite else value, "a": account},  # a double holds it
            )
    engine.dispose()
    config = config_for(workspace, url)
    run_id = f"t{uuid.uuid4().hex[:10]}"
    extracted = run_extract(config, run_id=run_id)
    assert extracted.reconciled
    snapshot = pq.read_table(extracted.snapshot_dir / "accounts.parquet").to_pydict()
    got = dict(zip(snapshot["account_no"], snapshot["balance_minor"], strict=True))
    assert [got[a] for a in accounts] == amounts


def test_a_float_beyond_2_53_minor_units_that_no_double_holds_exactly_is_withheld() -> None:
    """-922 337 203 685 474.2 and .25 KZT are one double: which tiyn it was is unknowable."""
    converted = to_minor([-922337203685474.25, 90071992547410.25, 1419.35], 2)
    assert converted.valid.tolist() == [False, True, True]
    assert converted.minor.tolist()[1:] == [9_007_199_254_741_025, 141_935]
    (issue,) = converted.issues
    assert issue.reason is ReasonCode.AMOUNT_PRECISION and "beyond 2^53" in issue.detail


def test_sqlite_text_then_real_amounts_are_read_exactly_by_storage_class(
    sqlite_url: str, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text amount before REAL ones: each value is read by its own storage class.

    Before: after a text value, ADBC read the later REALs as 7-digit text (1.419350e+03):
    1419.3500000001 was normalised silently and 123456.78 became 12 345 680 tiyn.
    """
    import migrate.extract.reader as legacy_reader

    run_synth(sqlite_url, SynthOptions(accounts=60, seed=5, anomaly_rate=0.0), tmp_path / "p.json")
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        first, second, third = conn.execute(
            sa.text("SELECT account_no FROM accounts ORDER BY account_no LIMIT 3")
        ).scalars()
        for account, value in ((first, "1 550,00"), (second, 123456.78), (third, 1419.3500000001)):
            conn.execute(
                sa.text("UPDATE accounts SET balance = :b WHERE account_no = :a"),
                {"b": value, "a": account},
            )
        classes = (
            conn.execute(
                sa.text("SELECT typeof(balance) FROM accounts ORDER BY account_no LIMIT 3")
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert classes == ["text", "real", "real"]
    config = config_for(workspace, sqlite_url)
    adbc = run_extract(config, run_id="adbc")
    original = legacy_reader._available
    monkeypatch.setattr(
        legacy_reader, "_available", lambda m: m != "adbc_driver_sqlite.dbapi" and original(m)
    )
    cursor = run_extract(config, run_id="cursor")
    for result in (adbc, cursor):
        assert result.reconciled
        table = pq.read_table(result.snapshot_dir / "accounts.parquet").to_pydict()
        balance = dict(zip(table["account_no"], table["balance_minor"], strict=True))
        assert (balance[first], balance[second], balance[third]) == (None, 12_345_678, 141_935)
        found = pq.read_table(result.snapshot_dir / "exceptions.parquet").to_pydict()
        codes = dict(zip(found["legacy_key"], found["reason_code"], strict=True))
        assert codes[first] == "AMOUNT_UNPARSEABLE"
        assert codes[third] == "AMOUNT_FLOAT_ARTEFACT"  # as PostgreSQL and MariaDB say
    assert file_hashes(adbc.snapshot_dir) == file_hashes(cursor.snapshot_dir)


def test_no_parquet_output_holds_an_amount_or_a_date_as_a_float(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    """Every Parquet file a run writes: integers for amounts, date or timestamp types for dates.

    Before: ``exceptions.parquet`` stored ``amount_minor`` as float64 (a tiyn above 2^53 lost).
    """
    run_synth(sqlite_url, SynthOptions(accounts=300, seed=8, window_activity=True), tmp_path / "p")
    config = config_for(workspace, sqlite_url, BILLMIG_TARGET_URL=sqlite_url)
    run_extract(config, run_id="types")
    run_map(config, run_id="types")
    run_load(config, run_id="types")
    run_delta(config, run_id="types")
    files = sorted((workspace / "runs" / "types").rglob("*.parquet"))
    assert len(files) >= 20
    wrong = []
    for path in files:
        for field in pq.read_schema(path):
            name, kind = field.name, field.type
            if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
                wrong.append(f"{path.name}:{name} is {kind}")
            dated = name.endswith(("_date", "_at", "_on")) or name in ("date", "day")
            if dated and not (pa.types.is_date(kind) or pa.types.is_timestamp(kind)):
                wrong.append(f"{path.name}:{name} is {kind}, not a date")
    assert wrong == []


def test_the_prorated_first_charge_holds_through_map_and_load(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    """Seed 004 end to end: a prepaid line joining on 10 July 2016 with nothing charged yet.

    Its product migrates ``prorated_due`` with the first charge ``fee × 22/31`` rounded once
    (1419 KZT for a 2000 KZT plan), to be taken on 10 July, not on the 1st.
    """
    run_synth(sqlite_url, SynthOptions(accounts=200, seed=6, anomaly_rate=0.0), tmp_path / "p")
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        subscription, tariff = conn.execute(
            sa.text(
                "SELECT s.subscription_id, s.tariff_code FROM subscriptions s "
                "JOIN lines l ON l.msisdn = s.msisdn JOIN accounts a ON a.account_no = "
                "l.account_no WHERE s.status = 'active' AND a.status = 'active' AND "
                "s.tariff_code IN ('ALGA', 'PRESTIGE') ORDER BY s.subscription_id LIMIT 1"
            )
        ).one()
        conn.execute(
            sa.text(
                "UPDATE subscriptions SET started_at = '2016-07-10 12:00:00', "
                "fee_charged_through = NULL, cancelled_at = NULL WHERE subscription_id = :s"
            ),
            {"s": subscription},
        )
    engine.dispose()
    config = config_for(
        workspace,
        sqlite_url,
        BILLMIG_TARGET_URL=sqlite_url,
        BILLMIG_EXTRACT__CUTOFF="2016-07-10T23:00:00",
    )
    run_extract(config, run_id="joined")
    run_map(config, run_id="joined")
    run_load(config, run_id="joined")
    fee = {"ALGA": 199_000, "PRESTIGE": 499_000}[tariff]  # mappings/tariffs.csv
    expected = prorate(fee, date(2016, 7, 10), RoundingPolicy(), 2)  # 1990 × 22/31 → 1412
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        state, first, next_charge = conn.execute(
            sa.text(
                "SELECT fee_state, first_charge_minor, next_charge_date FROM product "
                "WHERE legacy_subscription_id = :s"
            ),
            {"s": str(subscription)},
        ).one()
    engine.dispose()
    assert (state, first, str(next_charge)) == ("prorated_due", expected, "2016-07-10")
    assert expected == {199_000: 141_200, 499_000: 354_100}[fee]


A1_RULES = Path(__file__).resolve().parents[2] / "mappings/compensation/a1-2020-08-internet.toml"


def test_belarusian_numbers_migrate_and_the_a1_rules_credit_them(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    """A1 Belarus (seed 002): its lines are +375 numbers, written the ways legacy writes them.

    Before: every number outside Kazakhstan's mobile ranges was INVALID_MSISDN (block), so
    these lines could never migrate nor be compensated. With ``[numbering] countries = ["BY"]``
    they normalise to E.164 and the A1 rules credit the Алга lines (3 GB: 30 % of 3 days).
    """
    run_synth(sqlite_url, SynthOptions(accounts=60, seed=7, anomaly_rate=0.0), tmp_path / "p")
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        numbers = conn.execute(sa.text("SELECT msisdn FROM lines ORDER BY msisdn")).scalars().all()
        shapes = ("+375 (29) {0}-{1}-{2}", "80 29 {0} {1} {2}", "37529{0}{1}{2}")
        belarusian = {
            old: shapes[n % 3].format(f"{n + 1000000:07d}"[:3], f"{n:07d}"[3:5], f"{n:07d}"[5:])
            for n, old in enumerate(numbers)
        }
        for table in ("lines", "subscriptions", "charges", "orders"):
            for old, new in belarusian.items():
                conn.execute(
                    sa.text(f"UPDATE {table} SET msisdn = :new WHERE msisdn = :old"),
                    {"new": new, "old": old},
                )
    engine.dispose()
    toml = workspace / "billmig.toml"
    kazakh = toml.read_text("utf-8").split("\n[numbering]")[0]  # the reference plan: KZ
    toml.write_text(kazakh + '\n[numbering]\ncountries = ["BY"]\n', "utf-8")
    config = config_for(workspace, sqlite_url, BILLMIG_TARGET_URL=sqlite_url)
    run_extract(config, run_id="a1")
    run_map(config, run_id="a1")
    found = pq.read_table(workspace / "runs/a1/mapped/exceptions.parquet").to_pydict()
    assert "INVALID_MSISDN" not in found["reason_code"]
    run_load(config, run_id="a1")
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        msisdns = conn.execute(sa.text("SELECT msisdn FROM product")).scalars().all()
        alga = (
            conn.execute(
                sa.text(
                    "SELECT DISTINCT a.legacy_account_no FROM product p JOIN billing_account a "
                    "ON a.billing_account_id = p.billing_account_id JOIN product_offering o "
                    "ON o.offering_id = p.offering_id WHERE o.name = 'Алга' AND p.status = 'active'"
                )
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert msisdns
    assert [m for m in msisdns if not (m.startswith("+37529") and len(m) == 13)] == []
    assert alga
    result = run_compensate(
        config,
        rules=A1_RULES,
        incident="a1-by",
        start=date(2016, 8, 9),
        end=date(2016, 8, 11),
        scope=Scope(accounts=frozenset(alga)),
    )
    assert result.gaps == () and result.applied > 0
    credited = {(c.account_no, c.amount_minor) for c in result.credits}
    for account in alga:  # Алга, 1990.00 KZT a month: 30 % of 3 days of 31 = 5 777.4 tiyn
        assert (account, 5_777) in credited
