"""``billmig runs``: every run of the workspace with its phase states, and totals per wave.

Read from the run ledger; the accounts and target net of each wave come from the validation
totals of its latest loaded, validated, not rolled-back run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from migrate.core.config import Config
from migrate.core.errors import EXIT_OK
from migrate.core.ledger import (
    PHASES,
    LedgerEntry,
    kind_of,
    latest,
    read_ledger,
    rolled_back_since,
    torn_lines,
    went_live_at,
)
from migrate.core.rendering import TableData
from migrate.core.runs import RunDir
from validate.artifacts import Totals

SHOWN = (*PHASES[:3], "delta", *PHASES[3:], "rollback")


@dataclass(frozen=True)
class RunRow:
    """One run in the overview: what it was for, who started it when, each phase's outcome."""

    run_id: str
    kind: str
    started_at: str
    operator: str
    wave: str
    label: str
    phases: dict[str, str]
    """phase → its latest outcome."""
    message: str = ""
    """For an attempt that left no snapshot: why its extract stopped."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "started_at": self.started_at,
            "operator": self.operator,
            "wave": self.wave,
            "label": self.label,
            "phases": self.phases,
            **({"message": self.message} if self.message else {}),
        }


@dataclass(frozen=True)
class RunsOverview:
    """Every run of the workspace with its phase states, and totals per wave."""

    runs: tuple[RunRow, ...]
    """Runs whose extract produced a snapshot, oldest first."""
    attempts: tuple[RunRow, ...]
    """Runs whose extract never finished (a configuration refused, a source unreachable, a
    kill): kept apart, they hold nothing to map."""
    waves: tuple[tuple[str, str, int, int, dict[str, int]], ...]
    """wave, its latest loaded production run, accounts in target, cumulative accounts, target
    net per currency (minor units; currencies are never added together)."""
    torn_lines: tuple[int, ...] = ()
    """Ledger lines set aside as torn (a write cut off by a crash or a full disk)."""

    @property
    def exit_code(self) -> int:
        """Always 0."""
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "runs": [row.to_dict() for row in self.runs],
            "attempts": [row.to_dict() for row in self.attempts],
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
            "torn_ledger_lines": list(self.torn_lines),
        }

    def tables(self) -> list[TableData]:
        """One row per run, the attempts that left no snapshot, then the production waves."""
        headers = ("run", "kind", "started (UTC)", "operator", "wave", "label")
        runs = TableData(
            title="runs (latest outcome per phase, from runs/ledger.jsonl)",
            headers=(*headers, *SHOWN),
            rows=[(*_identity(row), *(row.phases.get(p, "—") for p in SHOWN)) for row in self.runs]
            or [("no runs yet", *("" for _ in headers[1:]), *("" for _ in SHOWN))],
            footer=(
                f"ledger line(s) {', '.join(map(str, self.torn_lines))} torn by an interrupted "
                "write: set aside, not rewritten; the phase that wrote it shows as started"
            )
            if self.torn_lines
            else "",
        )
        tables = [runs]
        if self.attempts:
            tables.append(
                TableData(
                    title="attempts that left no snapshot (nothing to map; extract again)",
                    headers=(*headers, "extract", "why"),
                    rows=[
                        (*_identity(row), row.phases.get("extract", "—"), row.message)
                        for row in self.attempts
                    ],
                )
            )
        tables.append(
            TableData(
                title="waves: latest loaded and validated production run of each "
                "(not rolled back; rehearsals and demos are not counted)",
                headers=("wave", "run", "accounts #", "cumulative #", "target net (minor units)"),
                rows=[
                    (w, r, a, c, "; ".join(f"{cur} {v:,}" for cur, v in sorted(m.items())))
                    for w, r, a, c, m in self.waves
                ]
                or [("none loaded", "", 0, 0, "")],
            )
        )
        return tables


def _identity(row: RunRow) -> tuple[str, ...]:
    return (row.run_id, row.kind, row.started_at, row.operator, row.wave, row.label)


def runs_overview(config: Config) -> RunsOverview:
    """Every run in the ledger and the accounts each wave moved, per wave and cumulative."""
    entries = read_ledger(config.runs_path)
    first: dict[str, LedgerEntry] = {}
    for entry in entries:
        first.setdefault(entry.run_id, entry)
    runs, attempts = [], []
    for run_id, phases in latest(entries).items():
        if not set(phases) & set(SHOWN):
            continue  # the window's own entries: billmig window status shows them
        row = _row(run_id, phases, first[run_id])
        extract = phases.get("extract")
        if extract is None or extract.outcome in ("ok", "checks failed"):
            runs.append(row)
        else:
            attempts.append(replace(row, message=extract.message or ""))
    waves = _waves(config, [row for row in runs if row.kind == "production"])
    return RunsOverview(tuple(runs), tuple(attempts), waves, tuple(torn_lines(config.runs_path)))


def _row(run_id: str, phases: dict[str, LedgerEntry], first: LedgerEntry) -> RunRow:
    extract = phases.get("extract")
    return RunRow(
        run_id=run_id,
        kind=kind_of(extract or first),
        started_at=first.at.replace("T", " ")[:16],
        operator=first.operator,
        wave=(extract.wave if extract else None) or "all",
        label=(extract.label if extract else None) or "",
        phases=_outcomes(phases),
    )


def _outcomes(phases: dict[str, LedgerEntry]) -> dict[str, str]:
    """Each phase's latest outcome; a cutover not rolled back since shows as ``live``."""
    outcomes = {name: entry.outcome for name, entry in phases.items()}
    if went_live_at(phases):
        outcomes["cutover"] = "live"
    return outcomes


def _waves(
    config: Config, production: list[RunRow]
) -> tuple[tuple[str, str, int, int, dict[str, int]], ...]:
    waves: dict[str, tuple[str, int, dict[str, int]]] = {}
    for row in production:
        outcomes = row.phases
        loaded = outcomes.get("load") == "ok" and rolled_back_since(config, row.run_id) is None
        totals = RunDir.of(config, row.run_id).validation.totals
        if loaded and outcomes.get("validate") in ("ok", "checks failed") and totals.is_file():
            money = Totals.read(totals).money_by_currency
            accounts = sum(m.accounts for m in money.values())
            net = {cur: m.target_net_minor for cur, m in money.items()}
            waves[row.wave] = (row.run_id, accounts, net)  # later runs replace earlier ones
    cumulative = 0
    wave_rows = []
    for wave, (run_id, accounts, net) in waves.items():
        cumulative += accounts
        wave_rows.append((wave, run_id, accounts, cumulative, net))
    return tuple(wave_rows)
