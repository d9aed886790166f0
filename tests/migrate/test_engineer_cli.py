"""The engineer's CLI at 3 a.m. (issue 21): each observation of the issue is a test here.

The fixture workspace ``loaded`` holds, on SQLite, a 300-account legacy database and three runs
(hand-countable: the ledger lists exactly these):

* ``big1``: a production run extracted, mapped, loaded and validated;
* ``mock-1-20261201T233319Z-296d``: a rehearsal labelled ``mock-1``, extracted and mapped;
* ``broken``: an extract refused by its configuration (an unknown wave) — an attempt, no run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import pytest

from migrate.cli.main import cli, main
from migrate.core.config import load_config
from migrate.core.ledger import latest, read_ledger
from migrate.extract.run import run_extract
from migrate.load.run import run_load
from migrate.mapping.run import run_map
from migrate.synth import SynthOptions, run_synth
from validate.report import REPORT_STEPS, run_report
from validate.run import STAGES, run_validate
from validate.signing import DEMO_SIGNER, demo_registry
from validate.target import TARGET_ROWS

REHEARSAL = "mock-1-20261201T233319Z-296d"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("engineer") / "ws"
    root.mkdir()
    repo = Path(__file__).resolve().parents[2]
    (root / "billmig.toml").write_text((repo / "billmig.toml").read_text(encoding="utf-8"))
    (root / "mappings").symlink_to(repo / "mappings")
    legacy, target = root / "legacy.sqlite", root / "target.sqlite"
    env = {"BILLMIG_SOURCE_URL": f"sqlite:///{legacy}", "BILLMIG_TARGET_URL": f"sqlite:///{target}"}
    config = load_config(root / "billmig.toml", environ=env)
    run_synth(env["BILLMIG_SOURCE_URL"], SynthOptions(accounts=300, seed=7), root / "planted.json")
    run_extract(config, run_id="big1")
    run_map(config, run_id="big1")
    run_load(config, run_id="big1")
    run_validate(config, run_id="big1")
    run_extract(config, run_id=REHEARSAL, label="mock-1", kind="rehearsal")
    run_map(config, run_id=REHEARSAL)
    with pytest.raises(Exception, match="wave"):
        run_extract(config, run_id="broken", wave="no-such-wave")
    yield {"root": root, "env": env, "config": config, "target": target}


@pytest.fixture
def at(loaded: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Inside the loaded workspace, with its URLs in the environment."""
    monkeypatch.chdir(loaded["root"])
    for name, value in loaded["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BILLMIG_CONFIG", raising=False)
    return loaded


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def _rows(target: Path, table: str) -> int:
    with sqlite3.connect(target) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# -- progress ----------------------------------------------------------------------------------


class _Bar:
    def __init__(self, total: int | None) -> None:
        self.total, self.done, self.moves = total, 0, 0

    def advance(self, rows: int) -> None:
        self.done += rows
        self.moves += 1


class _Recorder:
    """A Progress that keeps every bar it was asked for."""

    def __init__(self) -> None:
        self.bars: dict[str, _Bar] = {}

    @contextmanager
    def task(self, label: str, total: int | None, unit: str = "rows") -> Iterator[_Bar]:
        del unit
        self.bars[label] = _Bar(total)
        yield self.bars[label]


def test_validate_report_and_map_show_real_totals_that_move(at: dict[str, Any]) -> None:
    # observed: validate silent for 53 s, report for 23 s; map accounts at 0 % until it jumped
    recorder = _Recorder()
    run_validate(at["config"], run_id="big1", progress=recorder)
    config = at["config"]
    signing = replace(
        config,
        signoff=replace(config.signoff, signers=demo_registry(config, at["root"] / "signers")),
    )
    run_report(signing, run_id="big1", signer=DEMO_SIGNER, progress=recorder)
    run_map(at["config"], run_id=REHEARSAL, progress=recorder)
    target_rows = sum(_rows(at["target"], t.removeprefix("target_")) for t in TARGET_ROWS)
    wanted = {
        "validate: target rows": target_rows,
        "validate: stages": len(STAGES),
        "report: steps": len(REPORT_STEPS),
        "map accounts": 300,
    }
    for label, total in wanted.items():
        bar = recorder.bars[label]
        assert (bar.total, bar.done) == (total, total), label  # known up front, reached
    assert recorder.bars["validate: stages"].moves == len(STAGES)  # one step per stage


# -- run references -------------------------------------------------------------------------


def test_a_rehearsal_label_names_its_run(at: dict[str, Any], capsys: Any) -> None:
    # observed: `compare mock-1 mock-2` refused; only the whole generated id was accepted
    assert main(["--json", "exceptions", "--run", "mock-1"]) == 0
    assert _json(capsys)["run_id"] == REHEARSAL
    assert main(["exceptions", "--run", "mock-1"]) == 0
    assert f"run mock-1 is {REHEARSAL}" in capsys.readouterr().err  # the engineer sees which


def test_a_unique_prefix_names_its_run(at: dict[str, Any], capsys: Any) -> None:
    assert main(["--json", "exceptions", "--run", "mock"]) == 0
    assert _json(capsys)["run_id"] == REHEARSAL


def test_an_unknown_run_is_refused_with_did_you_mean(at: dict[str, Any], capsys: Any) -> None:
    # observed: `map --run bgi1` advised "run billmig extract --run-id bgi1 first"
    assert main(["map", "--run", "bgi1"]) == 2
    err = capsys.readouterr().err
    assert "no run 'bgi1'" in err and "did you mean big1" in err
    assert "extract" not in err
    assert "bgi1" not in latest(read_ledger(at["config"].runs_path))


def test_an_ambiguous_prefix_lists_the_runs(at: dict[str, Any], capsys: Any) -> None:
    assert main(["map", "--run", "b"]) == 2  # big1 and broken
    err = capsys.readouterr().err
    assert "matches 2 runs" in err and "big1" in err and "broken" in err


def test_rollback_of_an_unknown_run_exits_2(at: dict[str, Any], capsys: Any) -> None:
    # observed: `rollback --run nope` exited 0
    assert main(["rollback", "--run", "nope", "--yes"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


# -- rollback shows, asks, or only shows ----------------------------------------------------


def test_rollback_dry_run_counts_exactly_and_deletes_nothing(
    at: dict[str, Any], capsys: Any
) -> None:
    before = _rows(at["target"], "billing_account")
    assert main(["--json", "rollback", "--run", "big1", "--dry-run"]) == 0
    plan = _json(capsys)
    assert plan["dry_run"] is True and plan["outcome"] == "would roll back"
    counted = {t["name"]: t["run_rows_deleted"] for t in plan["tables"]}
    assert counted["billing_account"] == before
    assert _rows(at["target"], "billing_account") == before
    assert "rollback" not in latest(read_ledger(at["config"].runs_path))["big1"]


def test_rollback_without_yes_where_nobody_can_answer_deletes_nothing(
    at: dict[str, Any], capsys: Any
) -> None:
    before = _rows(at["target"], "billing_account")
    assert main(["rollback", "--run", "big1"]) == 2  # pytest's stdin is no terminal
    captured = capsys.readouterr()
    assert "would delete" in captured.out and "--yes" in captured.err
    assert _rows(at["target"], "billing_account") == before


# -- billmig runs ---------------------------------------------------------------------------


def test_global_options_may_follow_the_subcommand(at: dict[str, Any], capsys: Any) -> None:
    # observed: `billmig runs --json` failed with "No such option"
    assert main(["runs", "--json"]) == 0
    assert "runs" in _json(capsys)


def test_runs_shows_kind_start_and_operator_and_keeps_failures_apart(
    at: dict[str, Any], capsys: Any
) -> None:
    assert main(["runs", "--json"]) == 0
    overview = _json(capsys)
    runs = {r["run_id"]: r for r in overview["runs"]}
    assert set(runs) == {"big1", REHEARSAL}
    assert runs["big1"]["kind"] == "production" and runs[REHEARSAL]["kind"] == "rehearsal"
    assert runs["big1"]["operator"] and runs["big1"]["started_at"][:2] == "20"
    assert [a["run_id"] for a in overview["attempts"]] == ["broken"]
    assert "no-such-wave" in overview["attempts"][0]["message"]


def test_wave_totals_count_production_runs_only(
    at: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # observed: a rehearsal shown as the latest loaded run, hiding the production run
    from migrate.ops.overview import runs_overview

    config = at["config"]
    waves = runs_overview(config).waves
    assert [(w[0], w[1]) for w in waves] == [("all", "big1")]
    ledger = config.runs_path / "ledger.jsonl"
    original = ledger.read_bytes()
    try:  # the rehearsal loaded and validated later than big1 must not replace it
        lines = [json.loads(line) for line in original.splitlines()]
        copies = [
            {**line, "run_id": REHEARSAL, "label": "mock-1", "kind": "rehearsal"}
            for line in lines
            if line["run_id"] == "big1" and line["phase"] in ("load", "validate")
        ]
        ledger.write_bytes(original + b"".join(json.dumps(c).encode() + b"\n" for c in copies))
        totals = config.runs_path / REHEARSAL / "validation"
        totals.mkdir(exist_ok=True)
        source = config.runs_path / "big1" / "validation" / "totals.json"
        (totals / "totals.json").write_bytes(source.read_bytes())
        assert [(w[0], w[1]) for w in runs_overview(config).waves] == [("all", "big1")]
    finally:
        ledger.write_bytes(original)
        (config.runs_path / REHEARSAL / "validation" / "totals.json").unlink(missing_ok=True)


# -- no workspace, init, doctor -------------------------------------------------------------


def test_a_folder_without_billmig_toml_is_refused_and_stays_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # observed: `billmig runs` silently created runs/ in an empty folder
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BILLMIG_CONFIG", raising=False)
    for command in (["runs"], ["demo", "--accounts", "10"], ["map", "--run", "x"]):
        assert main(command) == 2
        assert "billmig init" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_init_makes_a_workspace_that_doctor_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    workspace = tmp_path / "kcell-2016"
    assert main(["--json", "init", str(workspace)]) == 0
    created = _json(capsys)["created"]
    assert {"billmig.toml", "mappings/", "runbooks/", "docs/", ".gitignore"} <= set(created)
    assert (workspace / "mappings" / "tariffs.csv").is_file()
    assert (workspace / "docs" / "SPEC.md").is_file()
    assert (workspace / ".git").is_dir()
    assert "runs/" in (workspace / ".gitignore").read_text(encoding="utf-8")
    assert main(["init", str(workspace)]) == 2  # never over a workspace
    assert "already is a workspace" in capsys.readouterr().err

    monkeypatch.chdir(workspace)
    for name in ("BILLMIG_SOURCE_URL", "BILLMIG_TARGET_URL", "BILLMIG_REHEARSAL_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--json", "doctor"]) == 1  # no URLs yet: each says what to set
    checks = {c["name"]: c for c in _json(capsys)["checks"]}
    assert checks["configuration"]["status"] == "ok"
    assert checks["source URL"]["status"] == "fail"
    assert "BILLMIG_SOURCE_URL" in checks["source URL"]["todo"]
    assert checks["PDF (WeasyPrint)"]["status"] == "ok"

    legacy = workspace / "legacy.sqlite"
    sqlite3.connect(legacy).close()
    monkeypatch.setenv("BILLMIG_SOURCE_URL", f"sqlite:///{legacy}")
    monkeypatch.setenv("BILLMIG_TARGET_URL", f"sqlite:///{workspace / 'target.sqlite'}")
    assert main(["--json", "doctor"]) == 0
    checks = {c["name"]: c for c in _json(capsys)["checks"]}
    assert checks["source database"]["detail"].split(": ")[-1].startswith("SQLite 3.")
    assert "does not exist yet" in checks["target database"]["detail"]
    assert not (workspace / "target.sqlite").exists()  # the doctor writes nothing
    assert "free" in checks["disk"]["detail"]


@pytest.mark.postgres
def test_doctor_names_each_server_and_its_version(
    at: dict[str, Any], postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setenv("BILLMIG_TARGET_URL", postgres_url)
    monkeypatch.setenv("BILLMIG_REHEARSAL_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["--json", "doctor"]) == 1
    checks = {c["name"]: c for c in _json(capsys)["checks"]}
    assert "PostgreSQL" in checks["target database"]["detail"]
    assert checks["rehearsal database"]["status"] == "fail"


# -- exceptions and trace -------------------------------------------------------------------


def test_exceptions_filter_by_code_severity_and_account(at: dict[str, Any], capsys: Any) -> None:
    # observed: reading exceptions meant writing pandas against Parquet files
    import pyarrow.parquet as pq

    everything = pq.read_table(at["root"] / "runs/big1/mapped/exceptions.parquet").to_pylist()
    assert main(["--json", "exceptions", "--run", "big1"]) == 0
    assert _json(capsys)["total"] == len(everything)
    blocking = [r for r in everything if r["severity"] == "block"]
    assert main(["--json", "exceptions", "--run", "big1", "--severity", "block"]) == 0
    assert len(_json(capsys)["rows"]) == len(blocking) > 0
    code = blocking[0]["reason_code"]
    assert main(["exceptions", "--run", "big1", "--code", code, "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("run_id,phase,entity,legacy_key,reason_code")
    assert len(lines) == 1 + sum(r["reason_code"] == code for r in everything)
    key = blocking[0]["legacy_key"]
    assert main(["--json", "exceptions", "--run", "big1", "--account", key]) == 0
    assert {r["legacy_key"] for r in _json(capsys)["rows"]} == {key}
    assert main(["exceptions", "--run", "big1", "--code", "NO_SUCH"]) == 2


def test_trace_follows_one_account_to_the_target_and_the_verdict(
    at: dict[str, Any], capsys: Any
) -> None:
    import pyarrow.parquet as pq

    accounts = pq.read_table(at["root"] / "runs/big1/mapped/billing_account.parquet")
    account = accounts.column("legacy_account_no")[0].as_py()
    assert main(["--json", "trace", "--run", "big1", account]) == 0
    sections = {(s["stage"], s["table"]): s for s in _json(capsys)["sections"]}
    assert sections[("legacy snapshot", "accounts")]["rows"][0]["account_no"] == account
    assert sections[("mapped", "billing_account")]["rows"][0]["legacy_account_no"] == account
    target = sections[("target", "billing_account")]["rows"]
    assert [row["legacy_account_no"] for row in target] == [account]
    lineage = next(s for (stage, _), s in sections.items() if stage == "lineage")
    assert any(r["entity"] == "accounts" and r["legacy_key"] == account for r in lineage["rows"])
    verdict = next(s for (stage, _), s in sections.items() if stage == "reconciliation")
    assert verdict["rows"] == [] and "no difference" in verdict["note"]
    assert main(["trace", "--run", "big1", "NO-SUCH-ACCOUNT"]) == 1


# -- plain output, help ---------------------------------------------------------------------


def test_output_off_a_terminal_is_never_wrapped(at: dict[str, Any]) -> None:
    # observed: in CI/tee logs paths split ('…/legacy.sq' / 'lite') and headers read 'labe|l'
    done = subprocess.run(
        [sys.executable, "-m", "migrate", "runs"], capture_output=True, text=True,
        cwd=at["root"], env={**os.environ, "COLUMNS": "80"}, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    title = "waves: latest loaded and validated production run of each"
    assert any(title in line and "demos are not counted)" in line for line in lines)
    header = next(line for line in lines if "started (UTC)" in line)
    assert "label" in header and "extract" in header and "cutover" in header
    assert any(REHEARSAL in line and "rehearsal" in line for line in lines)


@pytest.mark.parametrize(
    ("command", "variable"),
    [("map", ""), ("load", "BILLMIG_TARGET_URL"), ("extract", "BILLMIG_SOURCE_URL"),
     ("rollback", "BILLMIG_TARGET_URL"), ("trace", ""), ("doctor", "BILLMIG_SOURCE_URL")],
)  # fmt: skip
def test_help_shows_an_example_and_the_variables(command: str, variable: str, capsys: Any) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example:" in out and f"billmig {command}" in out
    assert variable in out


def _options(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Option]]:
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _options(sub, (*path, name))
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            yield " ".join(path), param


def test_every_option_says_what_it_holds() -> None:
    # observed: `demo --accounts` (and others) had no description in --help
    silent = [f"{where} {option.opts[0]}" for where, option in _options(cli) if not option.help]
    assert silent == []


def test_every_command_has_an_example() -> None:
    from migrate.cli.main import EXAMPLES, cli

    assert set(EXAMPLES) == set(cli.commands)


# -- manifests record the libraries ---------------------------------------------------------


def test_manifests_record_the_versions_of_the_libraries_that_shape_outputs(
    at: dict[str, Any],
) -> None:
    import pyarrow

    for manifest in ("snapshot/manifest.json", "mapped/manifest.json"):
        recorded = json.loads((at["root"] / "runs/big1" / manifest).read_text())["libraries"]
        assert recorded["pyarrow"] == pyarrow.__version__
        assert {"pandas", "duckdb", "SQLAlchemy", "billmig"} <= set(recorded)


# -- Ctrl-C during load ---------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_during_load_is_interrupted_and_the_load_resumes(tmp_path: Path) -> None:
    # observed: "the target refused batch 3 of billing_account: NOT_IMPLEMENTED", exit 2, failed
    root = tmp_path / "ws"
    root.mkdir()
    repo = Path(__file__).resolve().parents[2]
    (root / "billmig.toml").write_text((repo / "billmig.toml").read_text(encoding="utf-8"))
    (root / "mappings").symlink_to(repo / "mappings")
    legacy, target = root / "legacy.sqlite", root / "target.sqlite"
    env = {
        **os.environ, "BILLMIG_SOURCE_URL": f"sqlite:///{legacy}",
        "BILLMIG_TARGET_URL": f"sqlite:///{target}", "BILLMIG_LOAD__BATCH_ROWS": "20",
    }  # fmt: skip
    env.pop("CI", None)
    config = load_config(root / "billmig.toml", environ=env)
    run_synth(env["BILLMIG_SOURCE_URL"], SynthOptions(accounts=1500, seed=3), root / "p.json")
    run_extract(config, run_id="r1")
    run_map(config, run_id="r1")
    load = subprocess.Popen(
        [sys.executable, "-m", "migrate", "load", "--run", "r1"], cwd=root, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and load.poll() is None:
        # batches are committing (only the file's size is read: a reader's lock on the
        # SQLite file would make the load's own commit fail)
        if target.exists() and target.stat().st_size > 400_000:
            break
        time.sleep(0.01)
    if load.poll() is not None:
        pytest.fail(f"load ended before it could be interrupted: {load.communicate()}")
    load.send_signal(signal.SIGINT)
    _, err = load.communicate(timeout=60)
    assert load.returncode == 130, err
    assert "interrupted" in err and "refused" not in err
    assert latest(read_ledger(config.runs_path))["r1"]["load"].outcome == "interrupted"
    resumed = subprocess.run(
        [sys.executable, "-m", "migrate", "load", "--run", "r1"], cwd=root, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert run_validate(config, run_id="r1").passed
    with sqlite3.connect(target) as conn:  # the interrupted batch went in whole or not at all
        journaled = conn.execute("SELECT sum(rows) FROM billmig_load_journal").fetchone()[0]
        loaded = sum(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("party", "billing_account", "balance_bucket", "debt_item",
                      "pending_payment", "product_offering", "product", "balance_action")
        )  # fmt: skip
    assert journaled == loaded


def test_a_url_without_its_driver_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # observed: every driver was mandatory (803 MB venv); as extras, a missing one must be named
    import importlib.util

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "billmig.toml").write_text((repo / "billmig.toml").read_text(encoding="utf-8"))
    (tmp_path / "mappings").symlink_to(repo / "mappings")
    monkeypatch.chdir(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    monkeypatch.setenv("BILLMIG_SOURCE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("BILLMIG_TARGET_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert main(["extract", "--run", "needs-pg"]) == 2
    err = capsys.readouterr().err
    assert "(psycopg); pip install 'billmig[postgresql]'" in err
    assert main(["doctor"]) == 1
    assert "pip install 'billmig[postgresql]'" in capsys.readouterr().out
