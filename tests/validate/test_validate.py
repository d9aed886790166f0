"""``billmig validate``: a clean load passes; each deliberate corruption is caught by account.

One legacy database (1 500 accounts, 1 % per planted code) is extracted and mapped once per
module; each test loads it into a fresh PostgreSQL database, corrupts one thing, validates.
datacompy, as an independent oracle, must find the same set of differing accounts.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from migrate.core.db import create_engine
from migrate.core.errors import InputError
from migrate.core.runs import RunDir
from migrate.extract.run import run_extract
from migrate.load.run import run_load
from migrate.mapping.run import run_map
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import config_for, new_workspace
from validate import run as validate_run
from validate.run import per_account_sides, run_validate
from validate.workbench import rows, workbench

OPTIONS = SynthOptions(accounts=1_500, seed=9, anomaly_rate=0.01)


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("validate")
    url = new_workspace(root)
    run_synth(url, OPTIONS, root / "planted.json")
    run_extract(config_for(root, url), run_id="r1")
    run_map(config_for(root, url), run_id="r1")
    return {"root": root, "url": url}


@pytest.fixture
def loaded(mapped: dict[str, Any], postgres_url: str) -> dict[str, Any]:
    # 1 % of accounts per planted code: allow review-level exceptions up to 20 % here.
    config = config_for(
        mapped["root"],
        mapped["url"],
        BILLMIG_TARGET_URL=postgres_url,
        BILLMIG_VALIDATE__REVIEW_PER_10000_ACCOUNTS="2000",
    )
    run_load(config, run_id="r1", another_target=True)  # one workspace, a new target per test
    return {**mapped, "config": config, "target": postgres_url}


def _corrupt(target: str, *statements: str) -> None:
    engine = create_engine(target)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def _differences(result: Any) -> dict[str, set[str]]:
    with (result.directory / "differences.csv").open(encoding="utf-8") as handle:
        found: dict[str, set[str]] = {}
        for row in csv.DictReader(handle):
            found.setdefault(row["legacy_account_no"], set()).add(row["field"])
    return found


def _first(target: str, sql: str) -> Any:
    engine = create_engine(target)
    with engine.connect() as conn:
        value = conn.execute(sa.text(sql)).first()
    engine.dispose()
    return value


@pytest.mark.postgres
def test_a_byte_appended_to_the_snapshot_is_refused_not_a_crash(loaded: dict[str, Any]) -> None:
    accounts = loaded["root"] / "runs" / "r1" / "snapshot" / "accounts.parquet"
    original = accounts.read_bytes()
    accounts.write_bytes(original + b"\0")
    try:
        with pytest.raises(InputError, match=r"snapshot/accounts\.parquet of run r1 is missing or"):
            run_validate(loaded["config"], run_id="r1")
    finally:
        accounts.write_bytes(original)


def test_a_clean_load_passes(loaded: dict[str, Any]) -> None:
    result = run_validate(loaded["config"], run_id="r1")
    assert result.passed and result.exit_code == 0
    assert _differences(result) == {}
    assert _datacompy_differences(loaded) == set()
    verdict = json.loads((result.directory / "verdict.json").read_text())
    assert verdict["verdict"] == "PASS" and len(verdict["criteria"]) == 7
    gx_target = json.loads((result.directory / "gx" / "target.json").read_text())
    assert gx_target and all(f["success"] for f in gx_target)
    gx_snapshot = json.loads((result.directory / "gx" / "snapshot.json").read_text())
    failed = {f["expectation"] for f in gx_snapshot if not f["success"]}
    assert failed <= {"expect_column_values_to_not_be_null"}  # withheld balances (planted)
    totals = json.loads((result.directory / "totals.json").read_text())
    assert totals["money_by_currency"]["KZT"]["difference_minor"] == 0
    accounts = totals["control_totals"]["accounts_by_brand_rating_state"]
    assert sum(a["legacy"] for a in accounts) == 1_500
    assert sum(a["left_out"] for a in accounts) == verdict["reconciliation"]["left_out"] > 0
    assert verdict["reconciliation"]["accounts"] == 1_500
    rows = totals["rows"]["target_tables"]
    assert all(t["mapped"] == t["target"] for t in rows.values())


@pytest.mark.slow
@pytest.mark.postgres
def test_a_validate_stopped_before_it_publishes_leaves_the_last_evidence_whole(
    loaded: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: validate wrote into validation/ in place; a kill left a mixture of two runs."""
    run = RunDir.of(loaded["config"], "r1")
    run_validate(loaded["config"], run_id="r1")
    evidence = {p: p.read_bytes() for p in run.validation.path.rglob("*") if p.is_file()}

    def killed(staging: Path, final: Path) -> None:
        raise KeyboardInterrupt  # as if SIGKILLed with everything written but not published

    monkeypatch.setattr(validate_run, "publish_folder", killed)
    with pytest.raises(KeyboardInterrupt):
        run_validate(loaded["config"], run_id="r1")
    assert {p: p.read_bytes() for p in run.validation.path.rglob("*") if p.is_file()} == evidence
    assert run.validation_staging.path.is_dir()
    monkeypatch.undo()
    assert run_validate(loaded["config"], run_id="r1").passed
    assert not run.validation_staging.path.exists()


def _tiyn_moved(target: str) -> set[str]:
    rows = _first(
        target,
        "SELECT string_agg(bucket_id, ',') FROM (SELECT bucket_id FROM balance_bucket "
        "WHERE bucket_type = 'main' AND amount_minor > 0 ORDER BY bucket_id LIMIT 2) s",
    )
    first, second = rows[0].split(",")
    _corrupt(
        target,
        f"UPDATE balance_bucket SET amount_minor = amount_minor - 1 WHERE bucket_id = '{first}'",
        f"UPDATE balance_bucket SET amount_minor = amount_minor + 1 WHERE bucket_id = '{second}'",
    )
    return _accounts_of(target, "balance_bucket", "bucket_id", [first, second])


def _accounts_of(target: str, table: str, key: str, ids: list[str]) -> set[str]:
    listed = ",".join(f"'{i}'" for i in ids)
    engine = create_engine(target)
    with engine.connect() as conn:
        found = conn.execute(sa.text(
            f"SELECT b.legacy_account_no FROM {table} t JOIN billing_account b "
            f"ON b.billing_account_id = t.billing_account_id WHERE t.{key} IN ({listed})"
        )).scalars().all()  # fmt: skip
    engine.dispose()
    return set(found)


def _one(target: str, table: str, key: str, where: str = "TRUE") -> tuple[str, set[str]]:
    row = _first(target, f"SELECT {key} FROM {table} WHERE {where} ORDER BY {key} LIMIT 1")
    return row[0], _accounts_of(target, table, key, [row[0]])


def _product_deleted(target: str) -> set[str]:
    key, accounts = _one(target, "product", "product_id")
    _corrupt(target, f"DELETE FROM product WHERE product_id = '{key}'")
    return accounts


def _debt_doubled(target: str) -> set[str]:
    key, accounts = _one(target, "debt_item", "debt_id")
    _corrupt(
        target, f"UPDATE debt_item SET amount_minor = amount_minor * 2 WHERE debt_id = '{key}'"
    )
    return accounts


def _account_duplicated(target: str) -> set[str]:
    row = _first(target, "SELECT billing_account_id, legacy_account_no FROM billing_account "
                 "ORDER BY legacy_account_no LIMIT 1")  # fmt: skip
    _corrupt(
        target,
        "ALTER TABLE billing_account DROP CONSTRAINT uq_billing_account_legacy",
        "INSERT INTO billing_account SELECT '00000000-0000-5000-8000-000000000001', party_id, "
        "legacy_account_no, brand, rating_type, state, currency, credit_limit_minor, "
        "credit_limit_period, dunning_suppressed, region, run_id FROM billing_account "
        f"WHERE billing_account_id = '{row[0]}'",
    )
    return {row[1]}


def _prepaid_main_negative(target: str) -> set[str]:
    key, accounts = _one(
        target,
        "balance_bucket",
        "bucket_id",
        "bucket_type = 'main' AND billing_account_id IN "
        "(SELECT billing_account_id FROM billing_account WHERE rating_type = 'prepaid')",
    )
    _corrupt(
        target,
        "ALTER TABLE balance_bucket DROP CONSTRAINT IF EXISTS balance_bucket_amount_minor_check",
        f"UPDATE balance_bucket SET amount_minor = -100 WHERE bucket_id = '{key}'",
    )
    return accounts


def _credit_limit_changed(target: str) -> set[str]:
    row = _first(
        target,
        "SELECT legacy_account_no FROM billing_account "
        "WHERE credit_limit_minor IS NOT NULL ORDER BY legacy_account_no LIMIT 1",
    )
    _corrupt(
        target,
        "UPDATE billing_account SET credit_limit_minor = credit_limit_minor + 100000 "
        f"WHERE legacy_account_no = '{row[0]}'",
    )
    return {row[0]}


def _pending_lost(target: str) -> set[str]:
    key, accounts = _one(target, "pending_payment", "payment_id")
    _corrupt(target, f"DELETE FROM pending_payment WHERE payment_id = '{key}'")
    return accounts


CORRUPTIONS: dict[str, tuple[Callable[[str], set[str]], set[str]]] = {
    "one tiyn moved between two accounts": (_tiyn_moved, {"main_minor", "net_minor"}),
    "one product deleted": (_product_deleted, {"products"}),
    "one debt doubled": (_debt_doubled, {"debt_minor", "net_minor"}),
    "one account duplicated": (_account_duplicated, {"copies"}),
    "one prepaid main bucket set negative": (
        _prepaid_main_negative,
        {"main_minor", "negative_amounts", "net_minor"},
    ),
    "one credit limit changed": (_credit_limit_changed, {"credit_limit_minor"}),
    "one pending payment lost": (_pending_lost, {"pending_minor"}),
}


@pytest.mark.postgres
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_each_corruption_is_caught_and_named_by_account(
    loaded: dict[str, Any], corruption: str
) -> None:
    corrupt, fields = CORRUPTIONS[corruption]
    accounts = corrupt(loaded["target"])
    result = run_validate(loaded["config"], run_id="r1")
    assert not result.passed and result.exit_code == 1
    found = _differences(result)
    assert set(found) == accounts, corruption
    assert set().union(*found.values()) == fields, corruption
    assert _datacompy_differences(loaded) == accounts, corruption


def _datacompy_differences(loaded: dict[str, Any]) -> set[str]:
    """The accounts datacompy finds different between validate's expected and actual tables."""
    import datacompy

    run_dir = RunDir.at(loaded["root"] / "runs" / "r1")
    dispositions = loaded["root"] / "mappings" / "dispositions.csv"
    with workbench(loaded["root"] / "oracle") as duck:
        per_account_sides(duck, run_dir, loaded["target"], pd.Timestamp("2016-07-01"), dispositions)
        want = _frame(duck, "SELECT * FROM expected WHERE left_out_because IS NULL")
        have = _frame(duck, "SELECT * FROM actual")
    columns = ["legacy_account_no", "currency", "rating_type", "state", "credit_limit_minor",
               "main_minor", "main_buckets", "debt_minor", "pending_minor",
               "bonus_money_minor", "negative_amounts", "products"]  # fmt: skip
    compare = datacompy.PandasCompare(
        _canonical(want[columns]), _canonical(have[columns]), join_columns=["legacy_account_no"]
    )
    differing = set(compare.all_mismatch()["legacy_account_no"])
    differing |= set(compare.df2_unq_rows["legacy_account_no"])
    differing |= set(compare.df1_unq_rows["legacy_account_no"])
    duplicated = have[have["copies"].astype(int) > 1]["legacy_account_no"]
    return differing | set(duplicated)


def _frame(duck: Any, query: str) -> pd.DataFrame:
    """A query's rows with exact integers (Arrow-backed; 128-bit sums as text)."""
    table = rows(duck, query)
    return pd.DataFrame(
        {name: [None if v is None else str(v) for v in table[name].to_pylist()]
         for name in table.column_names}
    )  # fmt: skip


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell as text, nulls as empty, integers without a decimal point."""

    def text(value: object) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return frame.astype(object).apply(lambda column: column.map(text))


def test_amounts_beyond_two_to_the_53_stay_exact(tmp_path: Path) -> None:
    """Floats lose the tiyn above 2**53; validate compares and sums integers only."""
    from migrate.core.target_schema import METADATA
    from validate.reconcile import reconcile
    from validate.target import copy_target, currency_totals

    big, huge = 2**53 + 1, 2**62 + 3
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    engine = create_engine(target)
    METADATA.create_all(engine)

    def account(conn: sa.Connection, n: int, *amounts: int) -> None:
        conn.execute(METADATA.tables["billing_account"].insert().values(
            billing_account_id=f"a{n}", legacy_account_no=f"40{n}", rating_type="prepaid",
            state="active", currency="KZT", dunning_suppressed=False, run_id="r"))  # fmt: skip
        for m, amount in enumerate(amounts):
            conn.execute(METADATA.tables["balance_bucket"].insert().values(
                bucket_id=f"b{n}.{m}", billing_account_id=f"a{n}", bucket_type="main",
                usage_type="monetary", amount_minor=amount, unit="KZT", legacy_key=f"40{n}",
                run_id="r"))  # fmt: skip

    with engine.begin() as conn:
        account(conn, 0, big, big)
        account(conn, 1, huge)
        totals = currency_totals(conn)  # summed by the database
        account(conn, 2, huge, huge)  # beyond int64 (SQLite's own SUM would refuse it)
    engine.dispose()
    assert totals["KZT"]["main_minor"] == 2 * big + huge
    with workbench(tmp_path / "work") as duck:
        copy_target(target, duck)
        sums = dict(duck.execute("SELECT legacy_account_no, main_minor FROM actual").fetchall())
        assert sums == {"400": 2 * big, "401": huge, "402": 2 * huge}
        duck.execute(
            "CREATE TABLE expected AS SELECT legacy_account_no, NULL AS left_out_because, "
            "false AS has_delta, "
            "* EXCLUDE (legacy_account_no, write_off_minor) FROM actual"
        )
        assert reconcile(duck, tmp_path / "same.csv").differing_accounts == 0
        duck.execute(
            "UPDATE expected SET main_minor = main_minor - 1 WHERE legacy_account_no = '400'"
        )
        assert float(2 * big) == float(2 * big - 1)  # one tiyn less, invisible to a float64
        found = reconcile(duck, tmp_path / "bumped.csv")
    assert found.differing_accounts == 1
    differences = pd.read_csv(tmp_path / "bumped.csv", dtype=str)
    assert differences.values.tolist() == [
        ["400", "main_minor", str(2 * big - 1), str(2 * big), "KZT"]
    ]


@pytest.mark.postgres
def test_review_exceptions_beyond_the_threshold_fail_the_verdict(loaded: dict[str, Any]) -> None:
    strict = config_for(
        loaded["root"],
        loaded["url"],
        BILLMIG_TARGET_URL=loaded["target"],
        BILLMIG_VALIDATE__REVIEW_PER_10000_ACCOUNTS="10",
    )
    result = run_validate(strict, run_id="r1")
    failed = [c for c in result.criteria if not c.passed]
    assert [c.name for c in failed] == ["review-level exceptions within threshold"]
    assert "at most 10 per 10\xa0000 accounts (1)" in failed[0].threshold  # ru_KZ's separator
    assert result.exit_code == 1


def test_rows_without_their_account_are_counted_per_table(tmp_path: Path) -> None:
    """A bucket and a product whose billing account is missing: 1 each, nothing else."""
    from migrate.core.target_schema import METADATA
    from validate.target import copy_target, orphans

    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    engine = create_engine(target)
    METADATA.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            METADATA.tables["balance_bucket"]
            .insert()
            .values(
                bucket_id="b1",
                billing_account_id="gone",
                bucket_type="main",
                usage_type="monetary",
                amount_minor=5,
                unit="KZT",
                legacy_key="1",
                run_id="r",
            )
        )
        conn.execute(METADATA.tables["product"].insert().values(
            product_id="p1", billing_account_id="gone", legacy_subscription_id="7",
            status="active", run_id="r"))  # fmt: skip
    engine.dispose()
    with workbench(tmp_path / "work") as duck:
        copy_target(target, duck)
        found = orphans(duck)
    assert found == {"balance_bucket": 1, "debt_item": 0, "pending_payment": 0, "product": 1,
                     "balance_action": 0}  # fmt: skip
