"""The gate and the report tell the whole truth (issue 19).

One workspace: a 600-account legacy database (seed 7) with post-snapshot activity
(``synth --window-activity``: payments and charges after the cutoff), every blocking exception
disposed of (``excluded``), loaded into a SQLite target. A second, 300-account workspace has
three accounts tampered with in the target for the FAIL report.

What was wrong before, each a test below:

* the gate said GO while the extract had seen payments and charges after the cutoff and no
  delta had replayed them ("delta … pass … billmig delta has not run");
* after GO, ``verify`` said "NOT intact — added cutover-run.json", the gate run again said
  NO-GO, and ``billmig runs`` did not show the run as live;
* the report showed PASS and nothing about readiness;
* a FAIL report named no account, field or value;
* money only in minor units, and map's "explained" figure was not validate's.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from migrate.cli.main import main
from migrate.core.config import Config, load_config
from migrate.core.display import money
from migrate.core.runs import RunDir
from migrate.extract.run import run_extract
from migrate.load.run import run_load
from migrate.mapping.run import run_map
from migrate.ops.compensation import run_compensate
from migrate.ops.cutover import run_cutover
from migrate.ops.delta import run_delta
from migrate.ops.overview import runs_overview
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import register_signers
from validate.pack import record_signoff, verify_pack
from validate.report import run_report
from validate.run import run_validate
from validate.signing import load_registry

REPO = Path(__file__).resolve().parents[2]
ROLES = ("migration_lead", "finance_controller", "internal_audit")


def _workspace(root: Path, accounts: int, window_activity: bool) -> Config:
    shutil.copy(REPO / "billmig.toml", root / "billmig.toml")
    shutil.copytree(REPO / "mappings", root / "mappings")
    register_signers(load_config(root / "billmig.toml", environ={}))
    legacy = f"sqlite:///{root / 'legacy.sqlite'}"
    options = SynthOptions(accounts=accounts, seed=7, window_activity=window_activity)
    run_synth(legacy, options, root / "planted.json")
    return load_config(
        root / "billmig.toml",
        environ={
            "BILLMIG_SOURCE_URL": legacy,
            "BILLMIG_TARGET_URL": f"sqlite:///{root / 'target.sqlite'}",
            "BILLMIG_VALIDATE__REVIEW_PER_10000_ACCOUNTS": "5000",
        },
    )


def _dispose_blocking(config: Config, run_id: str) -> None:
    """``excluded`` for every blocking exception of the run's map (then map again)."""
    found = pq.read_table(RunDir.of(config, run_id).mapped.exceptions).to_pylist()
    path = config.resolve(config.map.dispositions)
    lines = {
        f"{e['entity']},{e['legacy_key']},{e['reason_code']},excluded,Lead,2016-06-30,test"
        for e in found
        if e["severity"] == "block"
    }
    path.write_text(path.read_text(encoding="utf-8") + "\n".join(sorted(lines)) + "\n", "utf-8")


def _approve(config: Config, run_id: str) -> None:
    for role in ROLES:
        record_signoff(config, run_id=run_id, role=role, name=f"{role} person", decision="approve")


@pytest.fixture(scope="module")
def active(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("gate")
    config = _workspace(root, 600, window_activity=True)
    run_extract(config, run_id="g1")
    run_map(config, run_id="g1")
    _dispose_blocking(config, "g1")
    mapped = run_map(config, run_id="g1")
    run_load(config, run_id="g1")
    run_validate(config, run_id="g1")
    report = run_report(config, run_id="g1")
    return {"root": root, "config": config, "mapped": mapped, "report": report}


def _cli(config: Config, *args: str) -> int:
    return main(["--config", str(config.root / "billmig.toml"), *args])


def _failed(result: Any) -> dict[str, str]:
    return {c.name: c.evidence for c in result.checks if not c.passed}


def test_the_report_says_pass_and_not_ready_with_the_reasons(active: dict[str, Any]) -> None:
    html = active["report"].html.read_text(encoding="utf-8")
    assert "Reconciliation: <strong>PASS</strong>" in html
    assert "Ready for cutover: <strong>no</strong>" in html
    why = html[html.index("Ready for cutover") : html.index("1. Criteria")]
    assert "delta replayed and reconciled" in why and "payments" in why and "charges" in why
    assert "restricted-services window open" in why
    assert "internal_audit approved this pack" in why and "awaiting a decision" in why
    from migrate.core.provenance import host, operator  # map's operator and end time were missing

    assert f"<tr><td>map</td><td>ok</td><td>{operator()}</td><td>{host()}</td><td>" in html
    assert html.count("<thead>") >= 10  # table headers repeat on every PDF page


def test_no_go_without_the_delta_and_a_declaration_cannot_cover_known_events(
    active: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    config = active["config"]
    _approve(config, "g1")
    before = run_cutover(config, run_id="g1")
    failed = _failed(before)
    assert not before.go and before.exit_code == 1
    assert set(failed) == {"delta replayed and reconciled", "restricted-services window open"}
    events = json.loads(RunDir.of(config, "g1").snapshot.manifest.read_text())["entities"]
    late = events["payments"]["rows_after_cutoff"], events["charges"]["rows_after_cutoff"]
    assert all(late)
    assert (
        f"{late[0]:,} payments and {late[1]:,} charges" in failed["delta replayed and reconciled"]
    )
    assert "not recorded" in failed["restricted-services window open"]
    assert _cli(config, "declare", "--run", "g1", "no-delta", "--reason", "legacy frozen") == 0
    declared = run_cutover(config, run_id="g1")
    assert "cannot cover them" in _failed(declared)["delta replayed and reconciled"]
    assert not (RunDir.of(config, "g1").cutover_record).exists()


def test_go_after_the_delta_then_verify_intact_and_the_gate_again_says_live(
    active: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = active["config"]
    monkeypatch.setenv("BILLMIG_TARGET_URL", str(config.target.url))
    assert run_delta(config, run_id="g1").exit_code == 0
    run_validate(config, run_id="g1")
    run_report(config, run_id="g1")
    _approve(config, "g1")
    why = "gate rehearsal without a window"
    assert _cli(config, "declare", "--run", "g1", "no-window", "--reason", why) == 0
    go = run_cutover(config, run_id="g1")
    assert go.go, _failed(go)
    window = {c.name: c.evidence for c in go.checks}["restricted-services window open"]
    assert window.startswith("declared no-window by ") and "gate rehearsal" in window
    run = RunDir.of(config, "g1")
    assert run.cutover_record.is_file() and not run.cutover_record_at_root.exists()
    assert verify_pack(run, load_registry(config)).intact  # the GO record is outside the pack
    capsys.readouterr()
    assert _cli(config, "cutover", "--run", "g1") == 0
    assert "already cut over at" in capsys.readouterr().out
    assert runs_overview(config).runs[-1].phases["cutover"] == "live"
    assert (
        main(["--config", str(config.root / "billmig.toml"), "rollback", "--run", "g1", "--yes"])
        == 2
    )
    assert runs_overview(config).runs[-1].phases["rollback"] == "refused"


def test_the_bridge_sums_exactly_and_map_and_validate_explain_the_same(
    active: dict[str, Any],
) -> None:
    config = active["config"]
    totals = json.loads(RunDir.of(config, "g1").validation.totals.read_text())
    (bridge,) = totals["bridges"]
    movements = {line["key"]: line for line in bridge["movements"]}
    explained = sum(line["amount_minor"] for line in movements.values())
    assert bridge["legacy"]["amount_minor"] + explained == bridge["target_net"]["amount_minor"]
    assert totals["money_by_currency"]["KZT"]["explained_minor"] == explained
    delta = json.loads(RunDir.of(config, "g1").delta_record.read_text())
    assert (
        movements["delta_payments"]["amount_minor"]
        == delta["money_by_currency"]["KZT"]["payments_minor"]
    )
    assert (
        movements["delta_charges"]["amount_minor"]
        == -delta["money_by_currency"]["KZT"]["charges_minor"]
    )
    (by_map,) = active["mapped"].totals  # map ran before the delta: the same lines without it
    without_delta = explained - movements["delta_payments"]["amount_minor"]
    without_delta -= movements["delta_charges"]["amount_minor"]
    assert by_map.explained_minor == without_delta and by_map.difference_minor == 0
    drawn = {line.key: line for line in by_map.bridge().lines}
    for key in ("legacy", "pending", "bonus_money", "write_off", "left_out"):  # same counts too
        line = bridge["legacy"] if key == "legacy" else movements[key]
        assert (drawn[key].accounts, drawn[key].amount_minor) == (
            line["accounts"], line["amount_minor"]), key  # fmt: skip
    assert drawn["target_net"].accounts == bridge["target_net"]["accounts"]
    html = active["report"].html.read_text(encoding="utf-8")
    assert money(bridge["legacy"]["amount_minor"], "KZT", "ru_KZ") in html
    assert "₸" in html


def test_the_bridge_still_closes_after_a_compensation(active: dict[str, Any]) -> None:
    """Compensation credits are balance actions the platform applies: no balance moves."""
    config = active["config"]
    credited = run_compensate(
        config, rules=config.resolve("mappings/compensation/kcell-2017-12-billing.toml"),
        incident="INC-G1", start=date(2016, 7, 2), end=date(2016, 7, 3),
    )  # fmt: skip
    assert credited.applied > 0
    after = run_validate(config, run_id="g1")
    assert after.passed, [c for c in after.criteria if not c.passed]
    (bridge,) = after.bridges
    assert bridge.difference_minor == 0 and bridge.target_net.accounts


def test_money_is_shown_exactly_in_major_units() -> None:
    assert money(396686885, "KZT", "ru_KZ") == "3\xa0966\xa0868,85\xa0₸"
    assert money(-12345, "KWD", "en") == "-KWD12.345"
    assert money(100, "JPY", "en") == "¥100"
    assert money(10**22 + 1, "KZT", "en") == "KZT100,000,000,000,000,000,000.01"


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tampered")
    config = _workspace(root, 300, window_activity=False)
    run_extract(config, run_id="t1")
    run_map(config, run_id="t1")
    run_load(config, run_id="t1")
    with sqlite3.connect(root / "target.sqlite") as conn:
        accounts = [
            row[0]
            for row in conn.execute(
                "SELECT a.legacy_account_no FROM billing_account a JOIN balance_bucket b "
                "ON b.billing_account_id = a.billing_account_id AND b.bucket_type = 'main' "
                "ORDER BY a.legacy_account_no LIMIT 3"
            )
        ]
        conn.execute(
            "UPDATE balance_bucket SET amount_minor = amount_minor + 100 "
            "WHERE bucket_type = 'main' AND billing_account_id IN (SELECT billing_account_id "
            f"FROM billing_account WHERE legacy_account_no IN ({','.join('?' * 3)}))",
            accounts,
        )
    validation = run_validate(config, run_id="t1")
    report = run_report(config, run_id="t1")
    return {"accounts": accounts, "validation": validation, "report": report}


def test_a_fail_report_names_the_accounts_fields_and_values(tampered: dict[str, Any]) -> None:
    assert not tampered["validation"].passed
    html = tampered["report"].html.read_text(encoding="utf-8")
    assert "Reconciliation: <strong>FAIL</strong>" in html
    shown = html[html.index("Differences found") : html.index("2. Reconciliation bridge")]
    for account in tampered["accounts"]:
        assert f"<code>{account}</code>" in shown
    assert "<td>main_minor</td>" in shown and "<td>net_minor</td>" in shown
