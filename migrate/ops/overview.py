"""``billmig runs``: every run of the workspace with its phase states, and totals per wave.

Read from the run ledger; the accounts and target net of each wave come from the validation
totals of its latest loaded, validated, not rolled-back run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migrate.core.config import Config
from migrate.core.errors import EXIT_OK
from migrate.core.ledger import PHASES, latest, read_ledger, rolled_back_since, torn_lines
from migrate.core.rendering import TableData
from migrate.core.runs import RunDir
from validate.artifacts import Totals

SHOWN = (*PHASES[:3], "delta", *PHASES[3:], "rollback")


@dataclass(frozen=True)
class RunsOverview:
    """Every run of the workspace with its phase states, and totals per wave."""

    runs: tuple[tuple[str, str, str, dict[str, str]], ...]
    """run, wave, label, phase → latest outcome."""
    waves: tuple[tuple[str, str, int, int, dict[str, int]], ...]
    """wave, its latest loaded run, accounts in target, cumulative accounts, target net per
    currency (minor units; currencies are never added together)."""
    torn_lines: tuple[int, ...] = ()
    """Ledger lines set aside as torn (a write cut off by a crash or a full disk)."""

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
            "torn_ledger_lines": list(self.torn_lines),
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
            footer=(
                f"ledger line(s) {', '.join(map(str, self.torn_lines))} torn by an interrupted "
                "write: set aside, not rewritten; the phase that wrote it shows as started"
            )
            if self.torn_lines
            else "",
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
        loaded = outcomes.get("load") == "ok" and rolled_back_since(config, run_id) is None
        totals = RunDir.of(config, run_id).validation.totals
        if loaded and outcomes.get("validate") in ("ok", "checks failed") and totals.is_file():
            money = Totals.read(totals).money_by_currency
            accounts = sum(m.accounts for m in money.values())
            net = {cur: m.target_net_minor for cur, m in money.items()}
            waves[wave] = (run_id, accounts, net)  # later runs of a wave replace earlier ones
    cumulative = 0
    wave_rows = []
    for wave, (run_id, accounts, net) in waves.items():
        cumulative += accounts
        wave_rows.append((wave, run_id, accounts, cumulative, net))
    return RunsOverview(tuple(runs), tuple(wave_rows), tuple(torn_lines(config.runs_path)))
