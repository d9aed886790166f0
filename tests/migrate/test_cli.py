"""The ``billmig`` command line: exit codes 0/1/2/130 and one-line errors without secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from migrate.cli.main import main


@pytest.fixture
def in_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("BILLMIG_SOURCE_URL", raising=False)
    monkeypatch.delenv("BILLMIG_CONFIG", raising=False)
    return workspace


def test_help_is_fast_and_lists_the_commands() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "migrate", "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "extract" in done.stdout and "synth" in done.stdout
    heavy = {"pyarrow", "pandas", "sqlalchemy", "great_expectations", "duckdb", "weasyprint"}
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert not heavy & imported


def test_unknown_option_is_a_usage_error(
    in_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["extract", "--no-such-flag"]) == 2
    assert "no such option" in capsys.readouterr().err.lower()


def test_missing_source_url_says_what_to_set(
    in_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["extract"]) == 2
    err = capsys.readouterr().err
    assert "BILLMIG_SOURCE_URL" in err and len(err.strip().splitlines()) == 1


def test_unreachable_database_exits_2_without_password(
    in_workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLMIG_SOURCE_URL", "postgresql://u:hunter2@127.0.0.1:1/x")
    assert main(["extract"]) == 2
    captured = capsys.readouterr()
    assert "hunter2" not in captured.err + captured.out
    assert captured.err.count("\n") == 1


def test_broken_config_exits_2(in_workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (in_workspace / "billmig.toml").write_text("[extract\n")
    assert main(["extract"]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_the_old_run_id_spelling_is_refused_with_the_new_one(
    in_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["extract", "--run-id", "r1"]) == 2
    err = capsys.readouterr().err
    assert "--run-id is now --run" in err and "billmig extract --run r1" in err
    assert not (in_workspace / "runs" / "r1").exists()


def test_interrupt_exits_130(in_workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import migrate.extract.run

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(migrate.extract.run, "run_extract", interrupted)
    assert main(["extract"]) == 130


def test_synth_then_extract_json(
    in_workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{in_workspace / 'legacy.sqlite'}"
    assert main(["--quiet", "synth", "--url", url, "--accounts", "300"]) == 0
    assert (in_workspace / "runs/synth/planted.json").exists()
    capsys.readouterr()
    assert main(["--json", "--config", "billmig.toml", "extract", "--run", "r1"]) == 2
    assert "BILLMIG_SOURCE_URL" in capsys.readouterr().err
    monkeypatch.setenv("BILLMIG_SOURCE_URL", url)
    assert main(["--json", "extract", "--run", "r1"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["reconciled"] is True
    assert {e["name"] for e in document["entities"]} >= {"accounts", "lines", "payments"}


@pytest.mark.slow
def test_demo_runs_end_to_end(in_workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--accounts", "400"]) == 0
    out = "".join(line.strip(" │\n") for line in capsys.readouterr().out.splitlines())
    assert "legacy.sqlite" in out and "target.sqlite" in out and "report.html" in out
    assert list(in_workspace.glob("runs/demo-*/signoff/report.pdf"))
