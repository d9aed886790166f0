"""The run ledger: every phase of every run, with who, when, hashes and outcome (SPEC §9).

``runs/ledger.jsonl`` is append-only: a phase writes a ``started`` line when it begins and an
``ok``, ``failed`` or ``interrupted`` line when it ends, each with the operator, host, times,
duration, rows and rows per second, and the SHA-256 of what it read and what it wrote.

Before a phase runs, :func:`check_ready` reads the ledger: the previous phase of the run must
have ended ``ok``, and every file an earlier phase of the run read or wrote must still have the
hash it had then; otherwise the phase is refused with the phase to rerun. One phase runs at a
time per workspace (:mod:`migrate.core.lock`).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from migrate.core.config import Config
from migrate.core.errors import EXIT_OK, BillmigError, InputError
from migrate.core.lock import workspace_lock
from migrate.core.manifest import sha256_file
from migrate.core.rendering import TableData

LEDGER_FILE = "ledger.jsonl"
PHASES = ("extract", "map", "load", "validate", "report", "cutover")
REPORTED_EVEN_IF_FAILED = {"validate"}
"""Phases whose completed run counts as done for the next phase even when a check failed:
a FAIL verdict is what the sign-off pack reports."""


class PhaseResult(Protocol):
    """What every phase's core function returns."""

    @property
    def exit_code(self) -> int:
        """0 ok, 1 checks failed."""


@dataclass(frozen=True)
class LedgerEntry:
    """One line of the ledger."""

    run_id: str
    phase: str
    outcome: str
    """started; ok; checks failed (ran to the end, a check did not hold); failed (stopped by
    an error); interrupted."""
    operator: str
    host: str
    pid: int
    at: str
    seconds: float | None = None
    rows: int | None = None
    rows_per_second: int | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    wave: str | None = None
    label: str | None = None
    message: str | None = None


def read_ledger(runs_path: Path) -> list[LedgerEntry]:
    """Every entry, oldest first."""
    path = runs_path / LEDGER_FILE
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as handle:
        return [LedgerEntry(**json.loads(line)) for line in handle if line.strip()]


def latest(entries: list[LedgerEntry]) -> dict[str, dict[str, LedgerEntry]]:
    """Per run, per phase: its latest entry."""
    found: dict[str, dict[str, LedgerEntry]] = {}
    for entry in entries:
        found.setdefault(entry.run_id, {})[entry.phase] = entry
    return found


def append_entry(runs_path: Path, entry: LedgerEntry) -> None:
    """Append one entry to the ledger."""
    _append(runs_path, entry)


def command_for(phase: str, run_id: str) -> str:
    """The command that runs ``phase`` of ``run_id``."""
    if phase == "extract":
        return f"billmig extract --run-id {run_id}"
    return f"billmig {phase} --run {run_id}"


def _append(runs_path: Path, entry: LedgerEntry) -> None:
    runs_path.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(entry), sort_keys=True, ensure_ascii=False)
    with (runs_path / LEDGER_FILE).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


# -- what each phase reads and writes ------------------------------------------------------


def phase_inputs(config: Config, phase: str, run_id: str) -> dict[str, str]:
    """The files ``phase`` reads, with their SHA-256 now (workspace-relative names)."""
    run = f"{config.workspace.runs_dir}/{run_id}"
    names = {
        "delta": [f"{run}/snapshot/manifest.json", f"{run}/load-run.json"],
        "rollback": [],
        "window": ["mappings/window.toml"],
        "extract": [config.source.profile],
        "map": [f"{run}/snapshot/manifest.json", config.map.tariffs, config.map.dispositions],
        "load": [f"{run}/mapped/manifest.json"],
        "validate": [
            f"{run}/snapshot/manifest.json",
            f"{run}/mapped/manifest.json",
            f"{run}/load-run.json",
            f"{run}/delta.json",
            config.map.dispositions,
        ],
        "report": [f"{run}/validation/manifest.json"],
        "cutover": [f"{run}/signoff/manifest.json"],
    }[phase]
    return _hashes(config, names)


def phase_outputs(config: Config, phase: str, run_id: str) -> dict[str, str]:
    """The file ``phase`` leaves as its evidence, with its SHA-256."""
    run = f"{config.workspace.runs_dir}/{run_id}"
    name = {
        "delta": f"{run}/delta.json",
        "rollback": "",
        "window": f"{config.workspace.runs_dir}/window.json",
        "extract": f"{run}/snapshot/manifest.json",
        "map": f"{run}/mapped/manifest.json",
        "load": f"{run}/load-run.json",
        "validate": f"{run}/validation/manifest.json",
        "report": f"{run}/signoff/manifest.json",
        "cutover": f"{run}/cutover.json",
    }[phase]
    return _hashes(config, [name])


def _hashes(config: Config, names: Sequence[str | None]) -> dict[str, str]:
    found = {}
    for name in names:
        if name and config.resolve(name).is_file():
            found[name] = sha256_file(config.resolve(name))
    return found


def phase_rows(config: Config, phase: str, run_id: str) -> int | None:
    """Rows the phase handled, read from its own evidence (None when it says none)."""
    run_dir = config.runs_path / run_id

    def read(name: str) -> Any:
        path = run_dir / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    if phase == "extract" and (doc := read("snapshot/manifest.json")):
        return sum(int(e["rows"]) for e in doc["entities"].values())
    if phase == "map" and (doc := read("map-run.json")):
        return int(doc.get("rows", {}).get("lineage", 0)) or None
    if phase == "load" and (doc := read("load-run.json")):
        return sum(int(v) for v in doc.get("rows", {}).values())
    if phase == "validate" and (doc := read("validation/verdict.json")):
        return int(doc.get("reconciliation", {}).get("accounts", 0))
    return None


# -- order and staleness -------------------------------------------------------------------


def check_ready(config: Config, phase: str, run_id: str) -> None:
    """Refuse ``phase`` of ``run_id`` when an earlier phase has not run, failed, or is stale.

    Raises:
        InputError: naming the phase to run or rerun first.
    """
    if phase not in PHASES[1:]:
        return  # extract starts a run; rollback may follow any phase
    runs = latest(read_ledger(config.runs_path))
    done = runs.get(run_id, {})
    earlier = PHASES[: PHASES.index(phase)]
    previous = earlier[-1]
    entry = done.get(previous)
    finished = ("ok", "checks failed") if previous in REPORTED_EVEN_IF_FAILED else ("ok",)
    if entry is None or entry.outcome not in finished:
        state = "has not run" if entry is None else f"ended {entry.outcome}"
        raise InputError(
            f"{phase} of run {run_id} needs {previous} first: {previous} {state} for this run",
            hint=f"run {command_for(previous, run_id)} first, then {phase}",
        )
    for name in earlier:
        record = done.get(name)
        if record is None:
            continue
        for path, digest in {**record.inputs, **record.outputs}.items():
            now = config.resolve(path)
            if not now.is_file() or sha256_file(now) != digest:
                change = "is missing" if not now.is_file() else "changed"
                raise InputError(
                    f"{path} {change} since {name} of run {run_id} ran: its results are stale",
                    hint=f"rerun {command_for(name, run_id)}, then the phases after it",
                )


# -- recording a phase ---------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseContext:
    """Who runs a phase, for the ledger."""

    wave: str | None = None
    label: str | None = None


R = TypeVar("R", bound=PhaseResult)


def run_phase(
    config: Config,
    phase: str,
    run_id: str,
    work: Callable[[], R],
    context: PhaseContext | None = None,
) -> R:
    """Check, lock, run and record one phase of one run; returns what ``work`` returned."""
    with workspace_lock(config.runs_path, phase, run_id):
        check_ready(config, phase, run_id)
        context = context or _context_of(config, run_id)
        started = time.perf_counter()
        _append(config.runs_path, _entry(config, phase, run_id, "started", context))
        try:
            result = work()
        except KeyboardInterrupt:
            _finish(config, phase, run_id, "interrupted", started, context, "Ctrl-C")
            raise
        except BillmigError as exc:
            _finish(config, phase, run_id, "failed", started, context, exc.one_line())
            raise
        except Exception as exc:
            _finish(config, phase, run_id, "failed", started, context, type(exc).__name__)
            raise
        outcome = "ok" if result.exit_code == EXIT_OK else "checks failed"
        _finish(config, phase, run_id, outcome, started, context, None)
        return result


def _context_of(config: Config, run_id: str) -> PhaseContext:
    """The wave and label the run's extract was recorded with."""
    extract = latest(read_ledger(config.runs_path)).get(run_id, {}).get("extract")
    return PhaseContext(extract.wave, extract.label) if extract else PhaseContext()


def _entry(
    config: Config, phase: str, run_id: str, outcome: str, context: PhaseContext, **more: Any
) -> LedgerEntry:
    return LedgerEntry(
        run_id=run_id,
        phase=phase,
        outcome=outcome,
        operator=os.environ.get("BILLMIG_OPERATOR") or getpass.getuser(),
        host=socket.gethostname(),
        pid=os.getpid(),
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        wave=context.wave,
        label=context.label,
        **more,
    )


def _finish(
    config: Config,
    phase: str,
    run_id: str,
    outcome: str,
    started: float,
    context: PhaseContext,
    message: str | None,
) -> None:
    seconds = time.perf_counter() - started
    completed = outcome in ("ok", "checks failed")
    rows = phase_rows(config, phase, run_id) if completed else None
    entry = _entry(
        config,
        phase,
        run_id,
        outcome,
        context,
        seconds=round(seconds, 3),
        rows=rows,
        rows_per_second=int(rows / seconds) if rows and seconds > 0 else None,
        inputs=phase_inputs(config, phase, run_id) if completed else {},
        outputs=phase_outputs(config, phase, run_id) if completed else {},
        message=message,
    )
    _append(config.runs_path, entry)


# -- billmig runs --------------------------------------------------------------------------

SHOWN = (*PHASES[:3], "delta", *PHASES[3:], "rollback")


@dataclass(frozen=True)
class RunsOverview:
    """Every run of the workspace with its phase states, and totals per wave."""

    runs: tuple[tuple[str, str, str, dict[str, str]], ...]
    """run, wave, label, phase → latest outcome."""
    waves: tuple[tuple[str, str, int, int, dict[str, int]], ...]
    """wave, its latest loaded run, accounts in target, cumulative accounts, target net per
    currency (minor units; currencies are never added together)."""

    @property
    def exit_code(self) -> int:
        """Always 0."""
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "runs": [
                {"run_id": r, "wave": w, "label": lbl, "phases": phases}
                for r, w, lbl, phases in self.runs
            ],
            "waves": [
                {
                    "wave": w,
                    "run_id": r,
                    "accounts": a,
                    "cumulative_accounts": c,
                    "target_net_minor_by_currency": m,
                }
                for w, r, a, c, m in self.waves
            ],
        }

    def tables(self) -> list[TableData]:
        """One row per run, then the waves."""
        runs = TableData(
            title="runs (latest outcome per phase, from runs/ledger.jsonl)",
            headers=("run", "wave", "label", *SHOWN),
            rows=[
                (r, w, lbl, *(phases.get(p, "—") for p in SHOWN)) for r, w, lbl, phases in self.runs
            ]
            or [("no runs yet", "", "", *("" for _ in SHOWN))],
        )
        waves = TableData(
            title="waves: latest loaded and validated run of each (not rolled back)",
            headers=("wave", "run", "accounts #", "cumulative #", "target net (minor units)"),
            rows=[
                (w, r, a, c, "; ".join(f"{cur} {v:,}" for cur, v in sorted(m.items())))
                for w, r, a, c, m in self.waves
            ]
            or [("none loaded", "", 0, 0, "")],
        )
        return [runs, waves]


def runs_overview(config: Config) -> RunsOverview:
    """Every run in the ledger and the accounts each wave moved, per wave and cumulative."""
    entries = read_ledger(config.runs_path)
    by_run = latest(entries)
    runs = []
    for run_id, phases in by_run.items():
        if not set(phases) & set(SHOWN):
            continue  # the window's own entries: billmig window status shows them
        extract = phases.get("extract")
        runs.append(
            (
                run_id,
                (extract.wave if extract else None) or "all",
                (extract.label if extract else None) or "",
                {name: entry.outcome for name, entry in phases.items()},
            )
        )
    waves: dict[str, tuple[str, int, dict[str, int]]] = {}
    for run_id, wave, _, outcomes in runs:
        loaded = outcomes.get("load") == "ok" and outcomes.get("rollback") != "ok"
        totals = config.runs_path / run_id / "validation" / "totals.json"
        if loaded and outcomes.get("validate") in ("ok", "checks failed") and totals.is_file():
            money = json.loads(totals.read_text(encoding="utf-8"))["money_by_currency"]
            accounts = sum(int(m.get("accounts", 0)) for m in money.values())
            net = {cur: int(m.get("target_net_minor", 0)) for cur, m in money.items()}
            waves[wave] = (run_id, accounts, net)  # later runs of a wave replace earlier ones
    cumulative = 0
    wave_rows = []
    for wave, (run_id, accounts, net) in waves.items():
        cumulative += accounts
        wave_rows.append((wave, run_id, accounts, cumulative, net))
    return RunsOverview(tuple(runs), tuple(wave_rows))
