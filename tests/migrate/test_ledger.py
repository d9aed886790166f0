"""Run ledger, phase order and staleness, rehearsals and their comparison, the cutover gate.

One workspace per module with its own copy of ``mappings/`` (tests edit tariffs.csv and
dispositions.csv), a 600-account legacy database (seed 5, 1 % of accounts per planted code)
and a SQLite rehearsal target.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from migrate.core.config import Config, load_config
from migrate.core.errors import InputError
from migrate.core.ledger import declare, read_ledger
from migrate.extract.run import run_extract
from migrate.load.run import run_load, run_rollback
from migrate.mapping.run import run_map
from migrate.ops.cutover import run_cutover
from migrate.ops.overview import runs_overview
from migrate.ops.rehearse import compare_runs, run_rehearsal
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import register_signers
from validate.pack import record_signoff
from validate.report import run_report
from validate.run import run_validate

REPO = Path(__file__).resolve().parents[2]
ROLES = ("migration_lead", "finance_controller", "internal_audit")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ledger")
    shutil.copy(REPO / "billmig.toml", root / "billmig.toml")
    shutil.copytree(REPO / "mappings", root / "mappings")
    register_signers(load_config(root / "billmig.toml", environ={}))
    legacy = f"sqlite:///{root / 'legacy.sqlite'}"
    planted = run_synth(
        legacy, SynthOptions(accounts=600, seed=5, anomaly_rate=0.01), root / "planted.json"
    )
    return {
        "root": root,
        "legacy": legacy,
        "planted": json.loads(planted.manifest_path.read_text()),
    }


def _config(workspace: dict[str, Any]) -> Config:
    rehearsal = f"sqlite:///{workspace['root'] / 'rehearsal.sqlite'}"
    return load_config(
        workspace["root"] / "billmig.toml",
        environ={
            "BILLMIG_SOURCE_URL": workspace["legacy"],
            "BILLMIG_TARGET_URL": rehearsal,
            "BILLMIG_REHEARSAL_URL": rehearsal,
            "BILLMIG_VALIDATE__REVIEW_PER_10000_ACCOUNTS": "2000",
        },
    )


def test_phases_refuse_to_run_out_of_order(workspace: dict[str, Any]) -> None:
    config = _config(workspace)
    with pytest.raises(InputError, match=r"needs extract first.*billmig extract --run early"):
        run_map(config, run_id="early")
    run_extract(config, run_id="early")
    with pytest.raises(InputError, match=r"load first.*billmig load --run early"):
        run_validate(config, run_id="early")
    run_map(config, run_id="early")
    with pytest.raises(InputError, match=r"validate first.*billmig validate --run early"):
        run_report(config, run_id="early")
    states = {r.run_id: r.phases for r in runs_overview(config).runs}
    assert states["early"] == {"extract": "ok", "map": "ok"}


def test_a_phase_on_stale_inputs_names_the_phase_to_rerun(workspace: dict[str, Any]) -> None:
    config = _config(workspace)
    run_extract(config, run_id="stale")
    run_map(config, run_id="stale")
    tariffs = workspace["root"] / "mappings" / "tariffs.csv"
    original = tariffs.read_text(encoding="utf-8")
    tariffs.write_text(original + "\n", encoding="utf-8")
    try:
        with pytest.raises(
            InputError, match=r"mappings/tariffs.csv changed since map.*billmig map --run stale"
        ):
            run_load(config, run_id="stale")
    finally:
        tariffs.write_text(original, encoding="utf-8")
    entries = [e for e in read_ledger(config.runs_path) if e.run_id == "stale"]
    assert [(e.phase, e.outcome) for e in entries] == [
        ("extract", "started"), ("extract", "ok"), ("map", "started"), ("map", "ok"),
    ]  # fmt: skip
    done = entries[-1]
    assert done.operator and done.seconds and done.rows and done.rows_per_second
    assert set(done.inputs) == {
        "runs/stale/snapshot/manifest.json", "mappings/tariffs.csv", "mappings/dispositions.csv",
    }  # fmt: skip
    assert set(done.outputs) == {"runs/stale/mapped/manifest.json"}


def test_a_killed_holder_does_not_block_the_next_phase(workspace: dict[str, Any]) -> None:
    config = _config(workspace)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path\n"
         "from migrate.core.lock import workspace_lock\n"
         "with workspace_lock(Path(sys.argv[1]) / '.billmig.lock', 'map', 'other'):\n"
         "    print('held', flush=True); time.sleep(60)",
         str(config.runs_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(InputError, match="the workspace is busy: map of run other"):
        run_extract(config, run_id="blocked")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert run_extract(config, run_id="after-kill").exit_code == 0


@pytest.fixture(scope="module")
def rehearsals(workspace: dict[str, Any]) -> dict[str, Any]:
    config = _config(workspace)
    first = run_rehearsal(config, label="mock-1")
    second = run_rehearsal(config, label="mock-2")
    tariffs = workspace["root"] / "mappings" / "tariffs.csv"
    with tariffs.open("a", encoding="utf-8") as handle:
        handle.write("PROMO2015,KC-PROMO2015,Акция Жаз 2015,1500.00,KZT,2048,bundle,false,kept\n")
    third = run_rehearsal(config, label="mock-3")
    return {"config": config, "first": first, "second": second, "third": third}


@pytest.mark.slow
def test_two_rehearsals_on_unchanged_inputs_do_not_drift(rehearsals: dict[str, Any]) -> None:
    first, second = rehearsals["first"], rehearsals["second"]
    assert first.comparison is None and second.comparison is not None
    assert second.rolled_back == (first.run_id,)  # the rehearsal target holds one rehearsal
    compared = second.comparison
    assert compared.run_a == first.run_id and compared.drift == ()
    assert compared.identical_outputs and len(compared.outputs) >= 10
    assert all(new == resolved == 0 for _, new, resolved, _ in compared.exceptions)
    assert [p for p, _, _ in second.phases] == ["extract", "map", "load", "validate", "report"]
    assert compared.forecast is not None and compared.forecast.hours_needed > 0
    assert "against a 120 h window" in compared.forecast.sentence()


@pytest.mark.slow
def test_after_a_tariff_edit_compare_shows_exactly_the_drift(
    rehearsals: dict[str, Any], workspace: dict[str, Any]
) -> None:
    compared = rehearsals["third"].comparison
    planted = len(workspace["planted"]["planted"]["TARIFF_UNMAPPED"]["subscriptions"])
    changes = {code: (new, resolved) for code, new, resolved, _ in compared.exceptions}
    assert changes.pop("TARIFF_UNMAPPED") == (0, planted)
    assert all(change == (0, 0) for change in changes.values())
    drifted = {metric.split(".")[0:2][-1] for metric, _, _ in compared.drift}
    assert drifted == {
        "live_products_by_offering", "legacy_entities", "target_tables",
    }, compared.drift  # fmt: skip
    offering = [m for m, a, b in compared.drift if "Акция Жаз 2015" in m]
    assert offering and all(a is None for m, a, b in compared.drift if m in offering)
    assert not compared.identical_outputs
    same = dict(compared.outputs)
    assert same["billing_account.parquet"] and not same["product.parquet"]
    again = compare_runs(
        rehearsals["config"], rehearsals["second"].run_id, rehearsals["third"].run_id
    )
    assert again.to_dict() == compared.to_dict()


def _dispose_blocking(config: Config, run_id: str) -> None:
    exceptions = pq.read_table(config.runs_path / run_id / "mapped" / "exceptions.parquet")
    blocking = sorted(
        {(e, c) for e, c, s in zip(exceptions["entity"].to_pylist(),
         exceptions["reason_code"].to_pylist(), exceptions["severity"].to_pylist(), strict=True)
         if s == "block"}
    )  # fmt: skip
    lines = [
        f"{entity},*,{code},fix_in_source,QA lead,2016-06-28,test" for entity, code in blocking
    ]
    path = config.resolve(config.map.dispositions)
    path.write_text(path.read_text(encoding="utf-8") + "\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_the_cutover_gate(rehearsals: dict[str, Any]) -> None:
    config = rehearsals["config"]
    undecided = run_cutover(config, run_id=rehearsals["third"].run_id)
    failed = {c.name.split(" approved")[0] for c in undecided.checks if not c.passed}
    assert undecided.exit_code == 1
    unchecked = {"delta replayed and reconciled", "restricted-services window open"}
    assert failed == {"no blocking exception without a disposition", *ROLES, *unchecked}
    _dispose_blocking(config, rehearsals["third"].run_id)
    with pytest.raises(InputError, match=r"dispositions\.csv changed since map"):
        run_cutover(config, run_id=rehearsals["third"].run_id)
    run_id = run_rehearsal(config, label="mock-4").run_id
    for role in ROLES[:2]:
        record_signoff(config, run_id=run_id, role=role, name=f"{role} person", decision="approve")
    missing_one = run_cutover(config, run_id=run_id)
    assert [c.name.split(" ")[0] for c in missing_one.checks if not c.passed] == [
        "internal_audit", "delta", "restricted-services"]  # fmt: skip
    record_signoff(config, run_id=run_id, role=ROLES[2], name="auditor", decision="approve")
    run_report(config, run_id=run_id)  # a new pack: every approval is for the older manifest
    stale = run_cutover(config, run_id=run_id)
    assert stale.exit_code == 1
    assert sum("older pack" in c.evidence for c in stale.checks if not c.passed) == 3
    for role in ROLES:
        record_signoff(config, run_id=run_id, role=role, name=f"{role} person", decision="approve")
    unchecked = run_cutover(config, run_id=run_id)  # no delta, no window: neither checked
    assert {c.name: c.evidence[:12] for c in unchecked.checks if not c.passed} == {
        "delta replayed and reconciled": "not recorded",
        "restricted-services window open": "not recorded",
    }
    declare(config, run_id, "no-delta", "this legacy receives nothing after the cutoff")
    declare(config, run_id, "no-window", "a rehearsal of the gate")
    go = run_cutover(config, run_id=run_id)
    assert go.go and go.exit_code == 0, go.checks
    assert (config.runs_path / run_id / "cutover" / "cutover-run.json").is_file()
    assert runs_overview(config).runs[-1].phases["cutover"] == "live"
    with pytest.raises(InputError, match="was cut over"):
        run_rollback(config, run_id=run_id)
    assert run_rollback(config, run_id=run_id, force=True).outcome
