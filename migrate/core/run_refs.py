"""Run references: what an operator may type wherever a run id is asked for.

A reference is, in this order: a run id of the ledger; a rehearsal label (``mock-1``, as
``billmig rehearse`` prints it); or a prefix that only one run id starts with. Anything else is
refused with the closest ids and labels ("did you mean …"), never taken as a new run: a typo
must not send an operator to run a phase that nothing needs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from migrate.core.config import Config
from migrate.core.errors import InputError
from migrate.core.ledger import LedgerEntry, read_ledger
from migrate.core.runs import check_id

SHOWN_AT_MOST = 5


@dataclass(frozen=True)
class KnownRun:
    """One run the ledger knows, with the label its extract was recorded under."""

    run_id: str
    label: str | None


def known_runs(entries: Iterable[LedgerEntry]) -> tuple[KnownRun, ...]:
    """Every run of the ledger that a phase ran for, oldest first (window entries aside)."""
    labels: dict[str, str | None] = {}
    for entry in entries:
        if entry.phase.startswith("window"):
            continue
        if entry.run_id not in labels or entry.label:
            labels[entry.run_id] = entry.label or labels.get(entry.run_id)
    return tuple(KnownRun(run_id, label) for run_id, label in labels.items())


def resolve_run(config: Config, reference: str) -> str:
    """The run id ``reference`` names in this workspace's ledger.

    Raises:
        InputError: not a valid id, no run matches, or a label or prefix matches several runs.
    """
    check_id(reference)
    runs = known_runs(read_ledger(config.runs_path))
    if any(run.run_id == reference for run in runs):
        return reference
    for candidates, how in (
        ([r.run_id for r in runs if r.label == reference], "label"),
        ([r.run_id for r in runs if r.run_id.startswith(reference)], "prefix"),
    ):
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise InputError(
                f"run {how} {reference!r} matches {len(candidates)} runs: "
                f"{_listed(candidates[::-1])}",
                hint="give the whole run id (billmig runs lists them)",
            )
    raise InputError(f"no run {reference!r} in {config.relative(config.runs_path)}/ledger.jsonl",
                     hint=_suggestion(reference, runs))  # fmt: skip


def _suggestion(reference: str, runs: tuple[KnownRun, ...]) -> str:
    names = [r.run_id for r in runs] + sorted({r.label for r in runs if r.label})
    close = difflib.get_close_matches(reference, names, n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(close)}? (billmig runs lists every run)"
    if not runs:
        return "this workspace has no runs yet: start one with billmig extract"
    return "billmig runs lists every run of this workspace"


def _listed(run_ids: list[str]) -> str:
    shown = ", ".join(run_ids[:SHOWN_AT_MOST])
    more = len(run_ids) - SHOWN_AT_MOST
    return f"{shown} and {more} more" if more > 0 else shown
