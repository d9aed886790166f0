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
from decimal import Decimal
from pathlib import Path

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
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import config_for
from validate.run import run_validate

BALANCES = {  # engine → (corporate balance, corporate debt), and both in tiyn
    "exact": (Decimal("90071992547409.93"), Decimal("-90071992547409.92")),
    "sqlite": (Decimal("90071992547410.25"), Decimal("-90071992547410.00")),
}


def _corporate(url: str, tmp_path: Path) -> tuple[dict[str, int], Decimal]:
    run_synth(url, SynthOptions(accounts=200, seed=5, anomaly_rate=0.0), tmp_path / "p.json")
    engine = create_engine(url)
    widen = {  # the reference schema's NUMERIC(22, 10) stops at 10^12; a real one may not
        "postgresql": "ALTER TABLE accounts ALTER COLUMN balance TYPE NUMERIC(30, 10)",
        "mysql": "ALTER TABLE accounts MODIFY balance DECIMAL(30, 10)",
    }.get(engine.dialect.name)
    with engine.begin() as conn:
        if widen:
            conn.execute(sa.text(widen))
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
            widen = {
                "postgresql": "ALTER TABLE accounts ALTER COLUMN balance TYPE NUMERIC(40, 10)",
                "mysql": "ALTER TABLE accounts MODIFY balance DECIMAL(40, 10)",
            }[engine.dialect.name]
            conn.execute(sa.text(widen))
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
