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

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from migrate.core.config import Config
from migrate.core.errors import EXIT_OK, BillmigError, InputError, Refused
from migrate.core.lock import workspace_lock
from migrate.core.manifest import sha256_file
from migrate.core.provenance import host, operator
from migrate.core.rendering import TableData
from migrate.core.runs import PhaseFiles, RunDir, RunsFolder, check_id

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
    an error); refused (declined before changing anything); interrupted; for a declaration
    (``declare-<what>``) declared or withdrawn."""
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
    kind: str | None = None
    """production, rehearsal or demo (set by extract; lines written before it existed: see
    :func:`kind_of`)."""


def read_ledger(runs_path: Path) -> list[LedgerEntry]:
    """Every entry, oldest first.

    A torn last line (a disk full or a crash mid-write) is set aside, never rewritten: the next
    entry starts on a line of its own and :func:`torn_lines` names it.

    Raises:
        InputError: a line before the last is not a ledger entry (the file was edited).
    """
    path = RunsFolder(runs_path).ledger
    if not path.exists():
        return []
    entries = []
    lines = path.read_bytes().split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        entry = _entry_of(raw)
        if entry is not None:
            entries.append(entry)
        elif number != len(lines) and not _torn(raw):
            raise InputError(
                f"{path} line {number} is not a ledger entry: the ledger was edited",
                hint="restore the ledger from its backup; it is append-only evidence",
            )
    return entries


def torn_lines(runs_path: Path) -> list[int]:
    """Numbers of the ledger lines set aside as torn (an interrupted write)."""
    path = RunsFolder(runs_path).ledger
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    return [
        n for n, raw in enumerate(lines, start=1)
        if raw.strip() and _entry_of(raw) is None and (n == len(lines) or _torn(raw))
    ]  # fmt: skip


def _entry_of(raw: bytes) -> LedgerEntry | None:
    try:
        data = json.loads(raw)
        return LedgerEntry(**data) if isinstance(data, dict) else None
    except (ValueError, TypeError):
        return None


def _torn(raw: bytes) -> bool:
    """A line cut off mid-write: the start of an entry that never got its end."""
    text = raw.strip()
    return text.startswith(b"{") and not text.endswith(b"}")


def latest(entries: list[LedgerEntry]) -> dict[str, dict[str, LedgerEntry]]:
    """Per run, per phase: its latest entry."""
    found: dict[str, dict[str, LedgerEntry]] = {}
    for entry in entries:
        found.setdefault(entry.run_id, {})[entry.phase] = entry
    return found


def command_for(phase: str, run_id: str) -> str:
    """The command that runs ``phase`` of ``run_id``."""
    return f"billmig {phase} --run {run_id}"


def _append(runs_path: Path, entry: LedgerEntry) -> None:
    runs_path.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(entry), sort_keys=True, ensure_ascii=False)
    path = RunsFolder(runs_path).ledger
    with path.open("a+b") as handle:
        handle.seek(0, 2)
        if handle.tell():
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":  # after a torn line: never glue onto it
                handle.write(b"\n")
        handle.write(line.encode("utf-8") + b"\n")


# -- what each phase reads and writes ------------------------------------------------------


def _hashes(config: Config, paths: Sequence[Path | str | None]) -> dict[str, str]:
    """SHA-256 of each existing file, named as the workspace names it (``runs/<run>/…``)."""
    found = {}
    for path in paths:
        if path is None:
            continue
        absolute = config.resolve(str(path))
        if absolute.is_file():
            found[config.relative(absolute)] = sha256_file(absolute)
    return found


def phase_inputs(config: Config, files: PhaseFiles, run_id: str) -> dict[str, str]:
    """The files the phase reads, with their SHA-256 now (workspace-relative names)."""
    run = RunDir.of(config, run_id)
    return _hashes(config, [*files.inputs(run), *files.config_inputs(config)])


def phase_outputs(config: Config, files: PhaseFiles, run_id: str) -> dict[str, str]:
    """The file the phase leaves as its evidence, with its SHA-256."""
    return _hashes(config, [files.output(RunDir.of(config, run_id))])


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
    kind: str = "production"


KINDS = ("production", "rehearsal", "demo")
"""What a run was for: only production runs count in the wave totals of ``billmig runs``."""


def kind_of(entry: LedgerEntry) -> str:
    """What the run of ``entry`` was for: production, rehearsal or demo.

    Ledger lines older than the field are inferred from the label (a rehearsal) and the
    ``demo-`` prefix that ``billmig demo`` gives its runs.
    """
    if entry.kind in KINDS:
        return entry.kind
    if entry.label:
        return "rehearsal"
    return "demo" if entry.run_id.startswith("demo-") else "production"


R = TypeVar("R", bound=PhaseResult)


def run_phase(
    config: Config,
    files: PhaseFiles,
    run_id: str,
    work: Callable[[], R],
    context: PhaseContext | None = None,
) -> R:
    """Check, lock, run and record one phase of one run; returns what ``work`` returned.

    ``files`` is the phase's own declaration of what it reads and writes: the ledger hashes
    those files and knows no phase's file names itself.
    """
    phase = files.name
    check_id(run_id)  # before anything is locked or recorded
    with workspace_lock(RunsFolder.of(config).lock, phase, run_id):
        check_ready(config, phase, run_id)
        context = context or _context_of(config, run_id)
        started = time.perf_counter()
        _append(config.runs_path, _entry(config, phase, run_id, "started", context))
        try:
            result = work()
        except KeyboardInterrupt:
            _finish(config, files, run_id, "interrupted", started, context, "Ctrl-C")
            raise
        except Refused as exc:
            _finish(config, files, run_id, "refused", started, context, exc.one_line())
            raise
        except BillmigError as exc:
            _finish(config, files, run_id, "failed", started, context, exc.one_line())
            raise
        except Exception as exc:
            _finish(config, files, run_id, "failed", started, context, type(exc).__name__)
            raise
        outcome = "ok" if result.exit_code == EXIT_OK else "checks failed"
        _finish(config, files, run_id, outcome, started, context, None)
        return result


def _context_of(config: Config, run_id: str) -> PhaseContext:
    """The wave and label the run's extract was recorded with."""
    extract = latest(read_ledger(config.runs_path)).get(run_id, {}).get("extract")
    if extract is None:
        return PhaseContext()
    return PhaseContext(extract.wave, extract.label, kind_of(extract))


def _entry(
    config: Config, phase: str, run_id: str, outcome: str, context: PhaseContext, **more: Any
) -> LedgerEntry:
    return LedgerEntry(
        run_id=run_id,
        phase=phase,
        outcome=outcome,
        operator=operator(),
        host=host(),
        pid=os.getpid(),
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        wave=context.wave,
        label=context.label,
        kind=context.kind,
        **more,
    )


def _finish(
    config: Config,
    files: PhaseFiles,
    run_id: str,
    outcome: str,
    started: float,
    context: PhaseContext,
    message: str | None,
) -> None:
    seconds = time.perf_counter() - started
    completed = outcome in ("ok", "checks failed")
    rows = files.rows(RunDir.of(config, run_id)) if completed else None
    entry = _entry(
        config,
        files.name,
        run_id,
        outcome,
        context,
        seconds=round(seconds, 3),
        rows=rows,
        rows_per_second=int(rows / seconds) if rows and seconds > 0 else None,
        inputs=phase_inputs(config, files, run_id) if completed else {},
        outputs=phase_outputs(config, files, run_id) if completed else {},
        message=message,
    )
    _append(config.runs_path, entry)


def went_live_at(phases: dict[str, LedgerEntry]) -> str | None:
    """When the run whose latest entries are ``phases`` went live (None: it is not live).

    Not live: never cut over, or rolled back (forced) since.
    """
    went_live, rollback = phases.get("cutover"), phases.get("rollback")
    if went_live is None or went_live.outcome != "ok":
        return None
    if rollback is not None and rollback.outcome == "ok" and rollback.at >= went_live.at:
        return None
    return went_live.at


def rolled_back_since(config: Config, run_id: str) -> str | None:
    """When the run was rolled back after its latest load, from the ledger (None: it was not)."""
    phases = latest(read_ledger(config.runs_path)).get(run_id, {})
    rollback, load = phases.get("rollback"), phases.get("load")
    if rollback is None or rollback.outcome != "ok":
        return None
    if load is not None and load.outcome == "ok" and load.at > rollback.at:
        return None
    return rollback.at


# -- declarations ----------------------------------------------------------------------------

DECLARATIONS = {
    "no-delta": "the legacy receives nothing after the snapshot (frozen): no delta to replay",
    "no-window": "this cutover runs without a restricted-services window",
}
"""What a run may declare in the ledger instead of a record the gate would otherwise need."""


@dataclass(frozen=True)
class Declaration:
    """A declaration made (or withdrawn) for a run: what, why, who, where and when."""

    run_id: str
    what: str
    reason: str
    operator: str
    host: str
    at: str
    withdrawn: bool = False

    @property
    def exit_code(self) -> int:
        """Always 0: recording it is the whole job."""
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def tables(self) -> list[TableData]:
        """The declaration in one table."""
        verb = "withdrawn" if self.withdrawn else "declared"
        return [
            TableData(
                title=f"run {self.run_id}: {self.what} {verb} in runs/ledger.jsonl",
                headers=("", ""),
                rows=[
                    ("means", DECLARATIONS[self.what]),
                    ("reason", self.reason),
                    ("by", f"{self.operator} on {self.host}"),
                    ("at", self.at),
                ],
            )
        ]

    def evidence(self) -> str:
        """One line for the gate: who declared what, when, and why."""
        return f"declared {self.what} by {self.operator} on {self.host} at {self.at}: {self.reason}"


def _declaration_phase(what: str) -> str:
    return f"declare-{what}"


def declare(
    config: Config, run_id: str, what: str, reason: str, *, withdraw: bool = False
) -> Declaration:
    """Record (or withdraw) declaration ``what`` for ``run_id`` in the ledger.

    Raises:
        InputError: an unknown declaration, an empty reason, or a run that never extracted.
    """
    check_id(run_id)
    if what not in DECLARATIONS:
        raise InputError(
            f"no declaration {what!r}", hint=f"declare one of {', '.join(DECLARATIONS)}"
        )
    if not reason.strip():
        raise InputError(
            "a declaration needs a reason", hint="say why, e.g. --reason 'legacy frozen at 00:00'"
        )
    with workspace_lock(RunsFolder.of(config).lock, _declaration_phase(what), run_id):
        if "extract" not in latest(read_ledger(config.runs_path)).get(run_id, {}):
            raise InputError(
                f"run {run_id} has no extract in the ledger",
                hint="check the run id: billmig runs lists the runs",
            )
        entry = _entry(
            config, _declaration_phase(what), run_id, "withdrawn" if withdraw else "declared",
            _context_of(config, run_id), message=reason.strip(),
        )  # fmt: skip
        _append(config.runs_path, entry)
    return _declaration_of(entry, what)


def declaration(config: Config, run_id: str, what: str) -> Declaration | None:
    """The run's standing declaration ``what`` (None: never made, or withdrawn since)."""
    entry = latest(read_ledger(config.runs_path)).get(run_id, {}).get(_declaration_phase(what))
    if entry is None or entry.outcome != "declared":
        return None
    return _declaration_of(entry, what)


def _declaration_of(entry: LedgerEntry, what: str) -> Declaration:
    return Declaration(
        entry.run_id, what, entry.message or "", entry.operator, entry.host, entry.at,
        entry.outcome == "withdrawn",
    )  # fmt: skip
