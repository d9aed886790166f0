"""``billmig delta``: post-snapshot charges and payments replayed onto the target, once.

Two prepaid accounts of a 300-account legacy database (seed 4) are set to 100.00 KZT before
the snapshot (cutoff 1 July 2016 00:00). After it, legacy rates a delayed 150.00 voice charge
to the first (2 July) and a 150.00 roaming charge to the second; then the first pays 80.00
(3 July). Expected: first → main 0 and a 50.00 delayed_charge debt, then the payment clears
the debt and leaves 30.00 in main; second → main 0 and a 50.00 roaming debt.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from migrate.core.config import Config, load_config
from migrate.core.db import create_engine
from migrate.extract.run import run_extract
from migrate.load.run import run_load, run_rollback
from migrate.mapping.run import run_map
from migrate.ops.delta import run_delta
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import register_signers
from validate.run import run_validate

REPO = Path(__file__).resolve().parents[2]


def _plain_prepaid(legacy: str, planted: dict[str, Any], count: int) -> list[str]:
    flagged = {key for codes in planted.values() for keys in codes.values() for key in keys}
    engine = create_engine(legacy)
    with engine.connect() as conn:
        candidates = conn.execute(sa.text(
            "SELECT account_no FROM accounts WHERE payment_type = 'advance' "
            "AND status = 'active' AND credit_limit IS NULL "
            "ORDER BY account_no")).scalars()  # fmt: skip
        chosen = [a for a in candidates if a not in flagged][:count]
    engine.dispose()
    return chosen


def _insert(legacy: str, table: str, **values: Any) -> None:
    engine = create_engine(legacy)
    columns = ", ".join(values)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES "
                             f"({', '.join(':' + c for c in values)})"), values)  # fmt: skip
    engine.dispose()


def _state(target: str, account: str) -> tuple[int, list[tuple[str, int]]]:
    engine = create_engine(target)
    with engine.connect() as conn:
        main = conn.execute(
            sa.text(
                "SELECT k.amount_minor FROM balance_bucket k JOIN billing_account b "
                "USING (billing_account_id) "
                "WHERE b.legacy_account_no = :a AND k.bucket_type = 'main'"
            ),
            {"a": account},
        ).scalar_one()
        debts = conn.execute(sa.text(
            "SELECT d.origin, d.amount_minor FROM debt_item d JOIN billing_account b "
            "USING (billing_account_id) WHERE b.legacy_account_no = :a ORDER BY 1"),
            {"a": account}).all()  # fmt: skip
    engine.dispose()
    return int(main), [(str(o), int(a)) for o, a in debts]


@pytest.fixture
def loaded(tmp_path: Path) -> dict[str, Any]:
    shutil.copy(REPO / "billmig.toml", tmp_path / "billmig.toml")
    (tmp_path / "mappings").symlink_to(REPO / "mappings")
    legacy = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    synth = run_synth(legacy, SynthOptions(accounts=300, seed=4), tmp_path / "planted.json")
    planted = json.loads(synth.manifest_path.read_text())["planted"]
    first, second = _plain_prepaid(legacy, planted, 2)
    engine = create_engine(legacy)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE accounts SET balance = 100.00 WHERE account_no IN (:a, :b)"),
                     {"a": first, "b": second})  # fmt: skip
    engine.dispose()
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    config = load_config(
        tmp_path / "billmig.toml",
        environ={"BILLMIG_SOURCE_URL": legacy, "BILLMIG_TARGET_URL": target,
                 "BILLMIG_VALIDATE__REVIEW_PER_10000_ACCOUNTS": "2000"},
    )  # fmt: skip
    run_extract(config, run_id="r1")
    run_map(config, run_id="r1")
    run_load(config, run_id="r1")
    return {"config": config, "legacy": legacy, "target": target, "accounts": (first, second)}


def _charge(legacy: str, charge_id: int, account: str, kind: str, amount: str) -> None:
    _insert(legacy, "charges", charge_id=charge_id, account_no=account, kind=kind, amount=amount,
            currency="KZT", occurred_at=datetime(2016, 6, 30, 22), rated_at=datetime(2016, 7, 2, 9),
            roaming_partner="TUR-TCELL" if kind == "roaming" else None)  # fmt: skip


def test_charges_then_a_payment_replayed_once(loaded: dict[str, Any]) -> None:
    config: Config = loaded["config"]
    legacy, target = loaded["legacy"], loaded["target"]
    first, second = loaded["accounts"]
    assert _state(target, first) == (10000, [])
    _charge(legacy, 990001, first, "voice", "150.00")
    _charge(legacy, 990002, second, "roaming", "150.00")
    replay = run_delta(config, run_id="r1")
    assert replay.reconciled and replay.applied == 2
    assert _state(target, first) == (0, [("delayed_charge", 5000)])
    assert _state(target, second) == (0, [("roaming", 5000)])
    _insert(legacy, "payments", payment_id=990003, account_no=first, amount="80.00",
            currency="KZT", channel="settlement_centre", received_at=datetime(2016, 7, 3, 12),
            posted_at=datetime(2016, 7, 3, 12))  # fmt: skip
    replay = run_delta(config, run_id="r1")
    assert replay.applied == 1 and replay.already == 2 and replay.reconciled
    assert _state(target, first) == (3000, [])
    assert _state(target, second) == (0, [("roaming", 5000)])
    again = run_delta(config, run_id="r1")
    assert again.applied == 0 and again.already == 3
    assert "nothing new" in again.tables()[0].footer
    assert _state(target, first) == (3000, []) and _state(target, second) == (
        0,
        [("roaming", 5000)],
    )
    recorded = json.loads((config.runs_path / "r1" / "delta-run.json").read_text())
    assert recorded["rows_created"] == {"balance_action": 3, "debt_item": 2}
    assert recorded["rows_removed"] == {"debt_item": 1}
    assert recorded["money_by_currency"] == {
        "KZT": {"charges_minor": 30000, "payments_minor": 8000}
    }


@pytest.mark.slow
def test_validate_reconciles_snapshot_plus_delta(loaded: dict[str, Any]) -> None:
    config: Config = loaded["config"]
    first, second = loaded["accounts"]
    _charge(loaded["legacy"], 990001, first, "voice", "150.00")
    _charge(loaded["legacy"], 990002, second, "roaming", "150.00")
    run_delta(config, run_id="r1")
    verdict = run_validate(config, run_id="r1")
    assert verdict.passed, [c for c in verdict.criteria if not c.passed]
    engine = create_engine(loaded["target"])
    with engine.begin() as conn:  # the replay lost one tiyn somewhere: validate names the account
        conn.execute(sa.text(
            "UPDATE debt_item SET amount_minor = amount_minor - 1 WHERE origin = 'roaming' "
            "AND legacy_key = 'charge:990002'"))  # fmt: skip
    engine.dispose()
    broken = run_validate(config, run_id="r1")
    assert not broken.passed
    differences = (config.runs_path / "r1" / "validation" / "differences.csv").read_text()
    assert f"{second},net_minor,-5000,-4999" in differences


@pytest.mark.slow
def test_a_rollback_sets_the_delta_record_aside_so_a_reload_validates(
    loaded: dict[str, Any],
) -> None:
    """A rollback takes the replayed rows away, and their count with them.

    Before: delta-run.json outlived a rollback; after a reload, validate expected the replayed
    rows that the rollback had removed (row accounting failed).
    """
    config: Config = loaded["config"]
    first = loaded["accounts"][0]
    _charge(loaded["legacy"], 990001, first, "voice", "150.00")
    run_delta(config, run_id="r1")
    run = config.runs_path / "r1"
    run_rollback(config, run_id="r1")
    assert not (run / "delta-run.json").exists()
    assert (run / "delta-run.rolled-back.json").is_file()  # kept for the record
    run_load(config, run_id="r1")
    verdict = run_validate(config, run_id="r1")
    assert verdict.passed, [c for c in verdict.criteria if not c.passed]
    again = run_delta(config, run_id="r1")  # the replay applies anew, and counts from zero
    assert again.applied == 1 and again.reconciled
    assert run_validate(config, run_id="r1").passed


@pytest.mark.slow
def test_synth_window_activity_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Synth --window-activity → snapshot without it → delta replays it → validate PASS."""
    from migrate.cli.main import main

    shutil.copy(REPO / "billmig.toml", tmp_path / "billmig.toml")
    (tmp_path / "mappings").symlink_to(REPO / "mappings")
    legacy = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    synth = run_synth(
        legacy, SynthOptions(accounts=1_000, seed=6, window_activity=True), tmp_path / "p.json"
    )
    window = json.loads(synth.manifest_path.read_text())["window_activity"]
    assert window["charges"] > 0 and window["payments"] > 0 and window["orders"] > 0
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    environ = {"BILLMIG_SOURCE_URL": legacy, "BILLMIG_TARGET_URL": target,
               "BILLMIG_VALIDATE__REVIEW_PER_10000_ACCOUNTS": "2000"}  # fmt: skip
    config = load_config(tmp_path / "billmig.toml", environ=environ)
    register_signers(config)
    extracted = run_extract(config, run_id="r1")
    after = {e.name: e.rows_after_cutoff for e in extracted.entities}
    assert after["charges"] == window["charges"] and after["payments"] == window["payments"]
    run_map(config, run_id="r1")
    run_load(config, run_id="r1")
    replay = run_delta(config, run_id="r1")
    assert replay.reconciled and replay.applied > 0
    # every generated event is either replayed or listed as not in this run, none dropped
    assert replay.events + replay.not_in_run == window["charges"] + window["payments"]
    assert run_validate(config, run_id="r1").passed
    from validate.report import run_report

    pack = run_report(config, run_id="r1").directory
    assert "Delta replayed after the snapshot" in (pack / "report.html").read_text("utf-8")
    manifest = json.loads((pack / "manifest.json").read_text())
    assert {"delta-run.json", "delta/events.parquet"} <= set(manifest["artifacts"])
    monkeypatch.chdir(tmp_path)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["window", "open", "--from", "2016-07-01", "--to", "2016-07-05"]) == 0
    assert main(["window", "breaches", "--run", "r1"]) == 1
    breaches = (config.runs_path / "r1" / "freeze_breaches.csv").read_text().count("FREEZE_BREACH")
    assert breaches == window["orders"]
