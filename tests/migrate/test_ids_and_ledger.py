"""Ids never become paths, and a torn ledger line never stops the workspace (issue 17).

* ``--run ../../x``, an absolute path, ``.`` or a name with a slash is refused (exit 2) before
  anything is locked, recorded or written, by every phase and by compensate's incident id.
* A last ledger line cut off mid-write is set aside: every command still reads the ledger,
  the next entry starts on its own line, ``billmig runs`` names the torn line; an edited line
  in the middle is refused with the line named.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from migrate.cli.main import main
from migrate.core.config import load_config
from migrate.core.errors import InputError
from migrate.core.ledger import read_ledger, torn_lines
from migrate.core.runs import RunsFolder, check_id
from migrate.extract.run import run_extract
from migrate.synth import SynthOptions, run_synth

BAD_IDS = ("../../x", "/tmp/billmig-outside", ".", "..", "a/b", "a b", "", "-leading", "x" * 97)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_an_id_that_would_be_a_path_is_refused(bad: str) -> None:
    with pytest.raises(InputError, match="is not valid"):
        check_id(bad)


def test_every_phase_refuses_a_path_as_run_id_before_writing(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(workspace)
    outside = workspace.parent / "x"
    for command in (["extract", "--run", "../x"], ["map", "--run", "../x"],
                    ["load", "--run", "../x"], ["validate", "--run", "/tmp/x"],
                    ["report", "--run", "."], ["rollback", "--run", "a/../../x"]):  # fmt: skip
        assert main(command) == 2, command
        assert "is not valid" in capsys.readouterr().err
    assert not outside.exists()
    assert not (workspace / "runs" / "ledger.jsonl").exists()  # nothing recorded
    with pytest.raises(InputError, match="incident id"):
        RunsFolder(workspace / "runs").compensation("a/../../../../x")


def test_a_torn_last_ledger_line_is_set_aside_and_named(
    workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = f"sqlite:///{workspace / 'legacy.sqlite'}"
    run_synth(legacy, SynthOptions(accounts=200, seed=3), workspace / "p.json")
    config = load_config(workspace / "billmig.toml", environ={"BILLMIG_SOURCE_URL": legacy})
    run_extract(config, run_id="first")
    ledger = RunsFolder.of(config).ledger
    with ledger.open("ab") as handle:  # a crash mid-write: half a line, no newline
        handle.write(b'{"run_id": "second", "phase": "extract", "outc')
    assert [e.run_id for e in read_ledger(config.runs_path)] == ["first", "first"]
    torn = len(ledger.read_bytes().split(b"\n"))
    assert torn_lines(config.runs_path) == [torn]
    run_extract(config, run_id="second")  # the next entry starts on a line of its own
    assert [e.run_id for e in read_ledger(config.runs_path)][-2:] == ["second", "second"]
    assert torn_lines(config.runs_path) == [torn]
    monkeypatch.chdir(workspace)
    assert main(["--json", "runs"]) == 0
    assert json.loads(capsys.readouterr().out)["torn_ledger_lines"] == [torn]
    lines = ledger.read_bytes().split(b"\n")
    lines[0] = b'{"run_id": "first", "phase": "extract", "outcome": "ok"'  # an edited line
    ledger.write_bytes(b"\n".join([*lines[:1], b"not json at all", *lines[1:]]))
    with pytest.raises(InputError, match="line 2 is not a ledger entry"):
        read_ledger(config.runs_path)


def test_an_extract_killed_after_publishing_but_before_recording_is_redone(
    workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A snapshot its extract never recorded as finished is redone, not refused.

    Found by the kill campaign: the snapshot was renamed into place, the ``ok`` ledger line
    never written; the run id was then refused for good ("already has a snapshot").
    """
    legacy = f"sqlite:///{workspace / 'legacy.sqlite'}"
    run_synth(legacy, SynthOptions(accounts=50, seed=3), workspace / "p.json")
    config = load_config(workspace / "billmig.toml", environ={"BILLMIG_SOURCE_URL": legacy})
    run_extract(config, run_id="r1")
    ledger = RunsFolder.of(config).ledger
    lines = ledger.read_bytes().splitlines(keepends=True)
    ledger.write_bytes(b"".join(lines[:-1]))  # the kill came before the ok line
    with caplog.at_level(logging.WARNING, logger="billmig"):
        assert run_extract(config, run_id="r1").reconciled
    assert "never recorded as finished" in caplog.text
    assert [e.outcome for e in read_ledger(config.runs_path)][-2:] == ["started", "ok"]
    with pytest.raises(InputError, match="already has a snapshot"):  # a finished one stays
        run_extract(config, run_id="r1")


def test_a_workspace_lock_left_by_a_dead_holder_is_taken_over_with_a_line_saying_so(
    workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = f"sqlite:///{workspace / 'legacy.sqlite'}"
    run_synth(legacy, SynthOptions(accounts=50, seed=3), workspace / "p.json")
    config = load_config(workspace / "billmig.toml", environ={"BILLMIG_SOURCE_URL": legacy})
    lock = RunsFolder.of(config).lock
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(  # what a SIGKILLed map leaves: its record, no flock
        '{"user": "ops", "host": "jump1", "pid": 4242, "phase": "map", "run_id": "r0", '
        '"since": "2026-12-01T23:00:00+00:00"}',
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="billmig"):
        run_extract(config, run_id="after-a-kill")
    assert "took over the workspace lock: its last holder, map of run r0 by ops" in caplog.text
    assert lock.read_text(encoding="utf-8") == ""  # let go: nothing left to take over
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="billmig"):
        run_extract(config, run_id="next")
    assert "took over" not in caplog.text


HOLDER = """
import os, sys, time
from pathlib import Path
from migrate.core.lock import workspace_lock
from migrate.core.processes import worker_pool

with workspace_lock(Path(sys.argv[1]), "map", "killed"), worker_pool(1) as pool:
    worker = pool.submit(os.getpid).result()  # forked and started (its initializer ran)
    pool.submit(time.sleep, 60)
    print(worker, flush=True)
    time.sleep(60)
"""


def test_a_killed_phase_leaves_no_worker_holding_the_workspace(tmp_path: Path) -> None:
    """Kill -9 of a phase with a live pool worker: the lock is free at once, the worker ends."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from migrate.core.lock import workspace_lock

    lock = tmp_path / ".billmig.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert holder.stdout is not None
    worker = int(holder.stdout.readline())
    busy = pytest.raises(InputError, match="the workspace is busy: map of run killed")
    with busy, workspace_lock(lock, "extract", "next"):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with workspace_lock(lock, "extract", "next"):  # the worker does not hold it
        pass
    for _ in range(100):  # and the worker ended with its parent
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"worker {worker} outlived its killed parent")
