"""The restricted-services window: policy checks, state for front-ends, notices, breaches.

A 300-account legacy database (seed 3) plus three hand-written orders: a tariff change on
2 July 2016 (inside the 1–5 July window: FREEZE_BREACH), a top-up order on 3 July (limited,
not blocked: no breach) and a VAS order on 20 June (before the window: no breach).
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from migrate.cli.main import main
from migrate.core.config import load_config
from migrate.core.db import create_engine
from migrate.core.runs import RunDir
from migrate.extract.run import run_extract
from migrate.mapping.run import run_map
from migrate.synth import SynthOptions, run_synth
from validate.readiness import _window, open_breaches

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    shutil.copy(REPO / "billmig.toml", tmp_path / "billmig.toml")
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    legacy = f"sqlite:///{tmp_path / 'legacy.sqlite'}"
    run_synth(legacy, SynthOptions(accounts=300, seed=3), tmp_path / "planted.json")
    engine = create_engine(legacy)
    with engine.begin() as conn:
        for n, (kind, day) in enumerate((("tariff_change", 2), ("topup", 3))):
            conn.execute(sa.text(
                "INSERT INTO orders (order_id, account_no, kind, created_at, status) "
                f"VALUES ({900000 + n}, '4000000001', '{kind}', :at, 'completed')"),
                {"at": datetime(2016, 7, day, 10)})  # fmt: skip
        conn.execute(sa.text(
            "INSERT INTO orders (order_id, account_no, kind, created_at, status) "
            "VALUES (900009, '4000000002', 'vas', :at, 'completed')"),
            {"at": datetime(2016, 6, 20, 10)})  # fmt: skip
    engine.dispose()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BILLMIG_SOURCE_URL", legacy)
    config = load_config(tmp_path / "billmig.toml", environ={"BILLMIG_SOURCE_URL": legacy})
    run_extract(config, run_id="r1")
    run_map(config, run_id="r1")
    return {"root": tmp_path, "config": config}


def test_the_window_from_open_to_close(workspace: dict[str, Any], capsys: Any) -> None:
    root = workspace["root"]
    assert main(["window", "check", "tariff_change"]) == 0  # no window yet
    assert (
        main(["window", "open", "--from", "2016-07-01", "--to", "2016-07-05", "--run", "r1"]) == 0
    )
    state = json.loads((root / "runs" / "window.json").read_text(encoding="utf-8"))
    assert state["state"] == "open" and state["planned_from"] == "2016-07-01"
    assert state["operations"]["tariff_change"]["status"] == "blocked"
    assert state["operations"]["voice_call"]["status"] == "allowed"
    capsys.readouterr()
    assert main(["window", "check", "tariff_change"]) == 1
    assert "Смена тарифного плана недоступна" in capsys.readouterr().out
    assert main(["window", "check", "voice_call"]) == 0
    assert main(["window", "check", "topup"]) == 0  # limited, not blocked
    assert main(["window", "check", "teleport"]) == 2
    assert main(["window", "breaches", "--run", "r1"]) == 1
    with (root / "runs" / "r1" / "freeze_breaches.csv").open(encoding="utf-8") as handle:
        breaches = list(csv.DictReader(handle))
    assert [(b["legacy_key"], b["reason_code"], b["severity"]) for b in breaches] == [
        ("900000", "FREEZE_BREACH", "block")
    ]
    config = workspace["config"]
    dispositions = root / "mappings" / "dispositions.csv"
    breaches_file = RunDir.of(config, "r1").freeze_breaches
    assert open_breaches(breaches_file, dispositions) == 1  # the gate counts it as blocking
    with dispositions.open("a", encoding="utf-8") as handle:
        handle.write("orders,900000,FREEZE_BREACH,fix_in_source,CRM lead,2016-07-02,reversed\n")
    assert open_breaches(breaches_file, dispositions) == 0
    assert _window(config, RunDir.of(config, "r1")).passed  # the cutover gate's window criterion
    assert main(["window", "close"]) == 0
    closed = _window(config, RunDir.of(config, "r1"))
    assert not closed.passed and "window closed at" in closed.evidence
    assert main(["window", "check", "tariff_change"]) == 0
    assert main(["window", "check", "voice_call"]) == 0
    ledger = [json.loads(line) for line in (root / "runs" / "ledger.jsonl").open()]
    assert [(e["label"], e["outcome"]) for e in ledger if e["run_id"] == "window"] == [
        ("open", "started"), ("open", "ok"), ("close", "started"), ("close", "ok"),
    ]  # fmt: skip


def test_opening_writes_the_notices_never_sends(workspace: dict[str, Any]) -> None:
    root = workspace["root"]
    assert (
        main(["window", "open", "--from", "2016-07-01", "--to", "2016-07-05", "--run", "r1"]) == 0
    )
    notices = root / "runs" / "window" / "notices"
    blocked_texts = {"ru": "Замена и восстановление SIM-карты", "kk": "SIM-картаны ауыстыру",
                     "en": "SIM cards cannot"}  # fmt: skip
    for language, blocked in blocked_texts.items():
        text = (notices / f"restrictions.{language}.txt").read_text(encoding="utf-8")
        assert "01.07.2016 – 05.07.2016" in text and blocked in text
    forecast = root / "runs" / "r1" / "mapped" / "topup_forecast.csv"
    with forecast.open(encoding="utf-8") as handle:
        expected = sum(1 for _ in csv.DictReader(handle))
    with (notices / "topup_reminders.csv").open(encoding="utf-8") as handle:
        reminders = list(csv.DictReader(handle))
    assert len(reminders) == expected > 0
    assert all("01.07.2016" in r["text"] for r in reminders)
    assert main(["window", "open", "--from", "2016-07-01", "--to", "2016-07-05"]) == 2  # open
