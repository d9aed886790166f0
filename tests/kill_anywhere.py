"""Kill every phase at random moments, resume, and compare with an uninterrupted run.

Used two ways:

* by ``tests/test_kill_anywhere.py`` (marked ``kill``; CI runs it on SQLite and PostgreSQL
  with a few kills per phase on a small workspace);
* by hand, for the campaign issue 17 asks for::

      .venv/bin/python -m tests.kill_anywhere --accounts 5000 --kills 20 --target postgresql
          --out bench/results/kills-postgresql.json

Two workspaces are made from one synthetic legacy database (with post-snapshot activity, so
delta has work): the *reference* runs every phase once; the *victim* runs each phase and is
SIGKILLed (its main process only, as ``kill -9 PID`` would) at a random moment of the phase's
reference duration, ``kills`` times, then the phase is run to its end. After each phase the
victim must agree with the reference:

* extract, map: the snapshot's and mapped output's file hashes;
* load, delta, compensate: every target table's rows (count and SHA-256 in key order);
* validate: PASS (after load and delta, on the victim's target);
* report: the pack verifies;
* rollback (killed too): the run's rows are gone, and a reload gives the reference's rows.

A phase that cannot be started again (``workspace is busy``, ``target is busy`` after the
wait, any other refusal) is a stuck workspace and fails the campaign.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from migrate.core.db import create_engine
from migrate.core.target_schema import TARGET_TABLES

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "mappings" / "compensation" / "kcell-2017-12-billing.toml"
RUN = "kills"


@dataclass
class PhaseCampaign:
    """What happened to one phase."""

    phase: str
    reference_seconds: float
    kills: int = 0
    finished_before_kill: int = 0
    stuck: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    takeovers: int = 0


@dataclass(frozen=True)
class Phase:
    """One phase: its command line and how to compare the victim with the reference."""

    name: str
    args: tuple[str, ...]
    ok_codes: tuple[int, ...] = (0,)


PHASES = (
    Phase("extract", ("extract", "--run", RUN)),
    Phase("map", ("map", "--run", RUN)),
    Phase("load", ("load", "--run", RUN)),
    Phase("delta", ("delta", "--run", RUN)),
    Phase("validate", ("validate", "--run", RUN)),
    Phase("report", ("report", "--run", RUN)),
    Phase(
        "compensate",
        (
            "compensate",
            str(RULES),
            "--incident",
            "kills",
            "--from",
            "2016-07-01",
            "--to",
            "2016-07-02",
        ),
    ),
    Phase("rollback", ("rollback", "--run", RUN, "--yes")),
)


RESET = {
    "load": ("rollback",),
    "delta": ("rollback", "load"),
    "compensate": ("rollback", "load", "delta"),
    "rollback": ("load",),
}
"""What to run after an attempt finished before its kill, so the next has the whole work:
load, delta and compensate resume where they stopped, so a finished one has nothing left."""


class Workspace:
    """One workspace folder and its target database."""

    def __init__(self, root: Path, legacy: str, target: str) -> None:
        self.root, self.legacy, self.target = root, legacy, target

    def env(self) -> dict[str, str]:
        """The environment billmig runs in: this workspace's databases, no terminal."""
        return {
            **os.environ,
            "BILLMIG_SOURCE_URL": self.legacy,
            "BILLMIG_TARGET_URL": self.target,
            "BILLMIG_LOAD__BATCH_ROWS": "500",
            # the planted anomalies exceed the review threshold of a small run: PASS here
            # means every reconciliation criterion holds
            "BILLMIG_VALIDATE__REVIEW_PER_10000_ACCOUNTS": "10000",
            "CI": "1",
        }

    def start(self, args: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start ``billmig ARGS`` in the workspace."""
        return subprocess.Popen(
            [sys.executable, "-m", "migrate", "--quiet", *args],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def run(self, args: Sequence[str]) -> tuple[int, str]:
        """Run ``billmig ARGS`` to its end: exit code and stderr."""
        process = self.start(args)
        _, err = process.communicate(timeout=1800)
        return process.returncode, err.decode("utf-8", "replace")


def fingerprints(url: str) -> dict[str, tuple[int, str]]:
    """Per target table: row count and SHA-256 of its rows in primary-key order."""
    engine = create_engine(url)
    found = {}
    try:
        with engine.connect() as conn:
            for table in TARGET_TABLES:
                if not sa.inspect(conn).has_table(table.name):
                    found[table.name] = (0, hashlib.sha256().hexdigest())
                    continue
                digest, count = hashlib.sha256(), 0
                query = sa.select(table).order_by(*table.primary_key.columns)
                for row in conn.execution_options(yield_per=20_000).execute(query):
                    digest.update(repr(tuple(row)).encode())
                    count += 1
                found[table.name] = (count, digest.hexdigest())
    finally:
        engine.dispose()
    return found


def folder_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of the data files of a snapshot or mapped folder (not its manifest)."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.parquet"))
    }


def _evidence(phase: str, space: Workspace) -> Any:
    run = space.root / "runs" / RUN
    if phase == "extract":
        return folder_hashes(run / "snapshot")
    if phase == "map":
        return folder_hashes(run / "mapped")
    if phase in ("load", "delta", "compensate", "rollback"):
        return fingerprints(space.target)
    if phase == "validate":
        return json.loads((run / "validation" / "verdict.json").read_text("utf-8"))["verdict"]
    return None


def _checks(phase: str, victim: Workspace, reference: Any) -> list[str]:
    """What disagrees with the reference after ``phase`` finished in the victim."""
    problems = []
    if phase == "report":
        code, err = victim.run(("verify", RUN, "--pack-only"))
        if code != 0:
            problems.append(f"pack does not verify: {err.strip()[:300]}")
    elif phase == "rollback":
        left = {t: c for t, (c, _) in fingerprints(victim.target).items() if c}
        if left:
            problems.append(f"rows left after rollback: {left}")
        code, err = victim.run(("load", "--run", RUN))
        if code != 0:
            problems.append(f"reload after rollback failed: {err.strip()[:300]}")
        elif fingerprints(victim.target) != reference:
            problems.append("reload after rollback differs from the reference load")
    elif _evidence(phase, victim) != reference:
        problems.append(f"{phase} output differs from the uninterrupted run")
    if phase in ("load", "delta"):
        code, err = victim.run(("validate", "--run", RUN))
        if code != 0:
            problems.append(f"validate after {phase}: exit {code} {err.strip()[:300]}")
    return problems


def campaign(
    legacy: Path,
    targets: tuple[str, str],
    kills: int,
    seed: int,
    workdir: Path,
    log: Callable[[str], None] = lambda line: None,
) -> list[PhaseCampaign]:
    """Run the reference, then the killed victim, phase by phase; return what happened."""
    chooser = random.Random(seed)
    spaces = []
    for name, target in zip(("reference", "victim"), targets, strict=True):
        root = workdir / name
        root.mkdir()
        shutil.copy(REPO / "billmig.toml", root / "billmig.toml")
        (root / "mappings").symlink_to(REPO / "mappings")
        shutil.copy(legacy, root / "legacy.sqlite")
        spaces.append(Workspace(root, f"sqlite:///{root / 'legacy.sqlite'}", target))
    reference, victim = spaces
    _share_signers(reference, victim)
    expected: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    loaded_reference: Any = None
    for phase in PHASES:
        started = time.perf_counter()
        code, err = reference.run(phase.args)
        seconds[phase.name] = time.perf_counter() - started
        if code not in phase.ok_codes:
            raise SystemExit(f"reference {phase.name} failed ({code}): {err}")
        expected[phase.name] = _evidence(phase.name, reference)
        if phase.name == "load":
            loaded_reference = expected["load"]
        log(f"reference {phase.name}: {seconds[phase.name]:.1f} s")
    expected["rollback"] = loaded_reference
    results = []
    for phase in PHASES:
        result = PhaseCampaign(phase.name, round(seconds[phase.name], 2))
        done = _kill_phase(phase, victim, seconds[phase.name], kills, chooser, result, expected)
        code, err = (0, "") if done else victim.run(phase.args)  # resume / finish
        result.takeovers += err.count("took over")
        if code not in phase.ok_codes:
            result.stuck.append(f"resume exit {code}: {err.strip()[:300]}")
        else:
            result.mismatches.extend(_checks(phase.name, victim, expected[phase.name]))
        log(
            f"{phase.name}: {result.kills} kills, {result.finished_before_kill} finished first, "
            f"stuck {len(result.stuck)}, mismatches {len(result.mismatches)}"
        )
        results.append(result)
    return results


def _kill_phase(
    phase: Phase,
    victim: Workspace,
    seconds: float,
    kills: int,
    chooser: random.Random,
    result: PhaseCampaign,
    expected: dict[str, Any],
) -> bool:
    """SIGKILL ``phase`` in the victim ``kills`` times (attempts that finish first do not count).

    Returns whether the run's extract finished (nothing left to resume).

    Extract starts a run: once the run's extract has finished, a re-extract is refused by
    design, so later attempts extract scratch runs, each killed, resumed and compared.
    """
    args, scratch = phase.args, 0
    for _ in range(kills * 4):
        if result.kills >= kills:
            break
        process = victim.start(args)
        time.sleep(chooser.uniform(0.2, max(0.3, seconds * 0.95)))
        if process.poll() is not None:
            result.finished_before_kill += 1
            _, err = process.communicate()
            if process.returncode not in phase.ok_codes:
                result.stuck.append(f"exit {process.returncode}: {err.decode()[:300]}")
            if phase.name == "extract":
                scratch += 1
                args = ("extract", "--run", f"{RUN}-scratch-{scratch}")
            for again in RESET.get(phase.name, ()):  # give the phase its whole work again
                victim.run((again, "--run", RUN, *(("--yes",) if again == "rollback" else ())))
            continue
        process.send_signal(signal.SIGKILL)
        process.wait()
        if phase.name == "extract" and _extract_recorded(victim, args[-1]):
            # the kill came after the ledger's ok line (the process was exiting): it finished
            result.finished_before_kill += 1
            scratch += 1
            args = ("extract", "--run", f"{RUN}-scratch-{scratch}")
            continue
        result.kills += 1
        if args != phase.args:  # a scratch extract: resume it now and compare
            code, err = victim.run(args)
            if code != 0:
                result.stuck.append(f"scratch resume exit {code}: {err.strip()[:300]}")
            elif folder_hashes(victim.root / "runs" / args[-1] / "snapshot") != expected["extract"]:
                result.mismatches.append(f"{args[-1]}: snapshot differs after its kill")
            scratch += 1  # extracted now: the next attempt needs a new run
            args = ("extract", "--run", f"{RUN}-scratch-{scratch}")
    return scratch > 0


def _extract_recorded(victim: Workspace, run_id: str) -> bool:
    """Whether the victim's ledger says the run's extract ran to its end."""
    from migrate.core.ledger import latest, read_ledger

    entry = latest(read_ledger(victim.root / "runs")).get(run_id, {}).get("extract")
    return entry is not None and entry.outcome in ("ok", "checks failed")


def _share_signers(reference: Workspace, victim: Workspace) -> None:
    """One builder key per workspace (reports and compensations are signed)."""
    from migrate.core.config import load_config
    from validate.signing import BUILDER, new_key

    for space in (reference, victim):
        config = load_config(space.root / "billmig.toml", environ={})
        new_key(config, f"builder-{uuid.uuid4().hex[:8]}", "kill campaign", [BUILDER])


def synthesise(path: Path, accounts: int) -> None:
    """A legacy SQLite database with post-snapshot activity."""
    code = subprocess.call(
        [sys.executable, "-m", "migrate", "--quiet", "synth", "--accounts", str(accounts),
         "--window-activity", "--url", f"sqlite:///{path}", "--manifest",
         str(path.with_suffix(".planted.json"))],
        cwd=path.parent, env={**os.environ, "CI": "1"},
    )  # fmt: skip
    if code != 0:
        raise SystemExit(f"synth failed ({code})")


@contextmanager
def databases(kind: str, base: str | None) -> Iterator[tuple[str, str]]:
    """Two empty target databases (reference, victim) of ``kind``, dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield (f"sqlite:///{folder}/reference.sqlite", f"sqlite:///{folder}/victim.sqlite")
        return
    admin_url = base or "postgresql://postgres@127.0.0.1:5432/postgres"
    admin = create_engine(admin_url)
    names = [f"billmig_kill_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in names:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        root = admin_url.rsplit("/", 1)[0]
        yield (f"{root}/{names[0]}", f"{root}/{names[1]}")
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in names:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run a campaign from the command line; exit 1 if anything got stuck or differed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--target", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--admin-url", default=None, help="PostgreSQL URL to create DBs with")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder, databases(args.target, args.admin_url) as dbs:
        work = Path(folder)
        os.environ.setdefault("BILLMIG_KEY_DIR", str(work / "keys"))
        (work / "legacy").mkdir()
        synthesise(work / "legacy" / "legacy.sqlite", args.accounts)
        started = time.perf_counter()
        results = campaign(
            work / "legacy" / "legacy.sqlite", dbs, args.kills, args.seed, work, _say
        )
        seconds = time.perf_counter() - started
    document = {
        "accounts": args.accounts,
        "kills_per_phase": args.kills,
        "target": args.target,
        "seed": args.seed,
        "seconds": round(seconds, 1),
        "phases": [asdict(r) for r in results],
    }
    if args.out:
        args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    _say(json.dumps(document, indent=2))
    bad = any(r.stuck or r.mismatches for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
