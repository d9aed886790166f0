"""``billmig cutover --run ID``: the go/no-go gate (SPEC §9).

Every criterion is printed with its evidence; the gate opens only when all hold:

* validation PASS, and the run's phases are current (the run ledger refuses a stale run);
* the sign-off pack verifies (no artifact changed since it was built);
* no blocking exception without a disposition (the run's exceptions and the freeze breaches
  ``billmig window breaches`` recorded for it);
* every required role (``[signoff] roles``) approved the pack's *current* manifest hash, and its
  latest decision is not a rejection;
* the post-snapshot delta is replayed and reconciled (``runs/<run>/delta-run.json``, written
  by ``billmig delta``), and the restricted-services window is open (``runs/window.json``) —
  each checked once its record exists; without one the evidence says so.

On success the cutover is recorded in the ledger and ``runs/<run>/cutover-run.json``, and the
target marks the run ``cut_over``: from then on ``rollback`` needs ``--force``.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from migrate.core.artifacts import DeltaRecord
from migrate.core.config import Config
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK
from migrate.core.ledger import rolled_back_since, run_phase
from migrate.core.manifest import write_json
from migrate.core.provenance import operator
from migrate.core.rendering import TableData
from migrate.core.runs import PhaseFiles, RunDir, RunsFolder
from migrate.load.run import mark_cut_over
from migrate.mapping.dispositions import load_dispositions
from migrate.ops.window import window_state
from validate.artifacts import Verdict
from validate.pack import manifest_hash, read_signoffs, verify_pack
from validate.signing import Registry, load_registry

CUTOVER_FORMAT = "billmig.cutover-run/1"


CUTOVER = PhaseFiles(
    "cutover",
    inputs=lambda run: (run.signoff.manifest,),
    output=lambda run: run.cutover_record,
)
"""What the gate reads (the pack, through its manifest) and leaves on GO, for the ledger."""


@dataclass(frozen=True)
class GateCheck:
    """One go/no-go criterion."""

    name: str
    passed: bool
    evidence: str


@dataclass(frozen=True)
class CutoverResult:
    """The gate's decision."""

    run_id: str
    checks: tuple[GateCheck, ...]
    manifest_sha256: str | None

    @property
    def go(self) -> bool:
        """Every criterion holds."""
        return all(c.passed for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 go, 1 no-go."""
        return EXIT_OK if self.go else EXIT_CHECKS_FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "decision": "GO" if self.go else "NO-GO",
            "manifest_sha256": self.manifest_sha256,
            "checks": [asdict(c) for c in self.checks],
        }

    def tables(self) -> list[TableData]:
        """Every criterion with its evidence."""
        decision = "GO: cutover recorded" if self.go else "NO-GO: nothing recorded"
        return [
            TableData(
                title=f"cutover gate for {self.run_id}: {decision}",
                headers=("criterion", "result", "evidence"),
                rows=[(c.name, "pass" if c.passed else "FAIL", c.evidence) for c in self.checks],
            )
        ]


def run_cutover(config: Config, *, run_id: str) -> CutoverResult:
    """Check every criterion; on GO record the cutover (ledger, its record, target status).

    Raises:
        InputError: the run's phases have not all run, or are stale (the run ledger).
    """
    return run_phase(config, CUTOVER, run_id, lambda: _gate(config, run_id))


def _gate(config: Config, run_id: str) -> CutoverResult:
    run = RunDir.of(config, run_id)
    current = manifest_hash(run)
    registry = load_registry(config)
    checks = (
        _verdict(run),
        _pack(run, registry),
        _loaded(config, run_id),
        _blocking(config, run),
        *_signoffs(config, run, registry, current),
        _delta(run),
        _window(RunsFolder.of(config)),
    )
    result = CutoverResult(run_id, checks, current)
    if result.go:
        mark_cut_over(config, run_id)
        write_json(
            run.cutover_record,
            {
                "format": CUTOVER_FORMAT,
                **result.to_dict(),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "operator": operator(),
            },
        )
    return result


def _verdict(run: RunDir) -> GateCheck:
    verdict = Verdict.read(run.validation.verdict)
    failed = verdict.failed_criteria
    return GateCheck(
        "validation PASS",
        verdict.passed,
        "PASS" if not failed else "FAIL: " + "; ".join(failed),
    )


def _pack(run: RunDir, registry: Registry) -> GateCheck:
    found = verify_pack(run, registry)
    named = [*found.changed, *found.missing, *found.added, *found.problems]
    if found.incomplete:
        named.append("snapshot or mapped output missing")
    return GateCheck(
        "sign-off pack intact and signed",
        found.intact,
        f"{found.checked} files match the manifest signed by {found.built_by}"
        if found.intact
        else "; ".join(named[:5]),
    )


def _loaded(config: Config, run_id: str) -> GateCheck:
    when = rolled_back_since(config, run_id)
    return GateCheck(
        "the run is loaded (not rolled back since)",
        when is None,
        "loaded" if when is None else f"rolled back at {when}: the pack is void",
    )


def _blocking(config: Config, run: RunDir) -> GateCheck:
    exceptions = pq.read_table(
        run.mapped.exceptions,
        columns=["reason_code", "severity", "disposition"],
    )
    open_blocks = exceptions.filter(
        pc.and_(pc.equal(exceptions["severity"], "block"), pc.is_null(exceptions["disposition"]))
    )
    found: dict[str, int] = {
        str(v["values"]): int(v["counts"])
        for v in pc.value_counts(open_blocks["reason_code"]).to_pylist()
    }
    breaches = _open_breaches(config, run)
    if breaches:
        found["FREEZE_BREACH"] = found.get("FREEZE_BREACH", 0) + breaches
    counts = sorted(found.items())
    return GateCheck(
        "no blocking exception without a disposition",
        not counts,
        "none"
        if not counts
        else ", ".join(f"{code} {n}" for code, n in counts)
        + " (decide them in mappings/dispositions.csv, then rerun from map)",
    )


def _open_breaches(config: Config, run: RunDir) -> int:
    """Freeze breaches found for the run that no disposition covers."""
    path = run.freeze_breaches
    if not path.is_file():
        return 0
    with path.open(encoding="utf-8", newline="") as handle:
        rows = pd.DataFrame(list(csv.DictReader(handle)))
    if rows.empty:
        return 0
    decided = load_dispositions(config.resolve(config.map.dispositions)).apply(rows)
    return int(decided["disposition"].isna().sum())


def _signoffs(config: Config, run: RunDir, registry: Registry, current: str) -> list[GateCheck]:
    decisions, problems = read_signoffs(run, registry)
    checks = []
    for role in config.signoff.roles:
        mine = [d for d in decisions if d.role == role]
        for_now = [d for d in mine if d.manifest_sha256 == current]
        if problems:
            passed, evidence = False, "; ".join(problems)
        elif for_now and for_now[-1].decision == "approve":
            passed, evidence = True, f"approved by {for_now[-1].name} at {for_now[-1].at}"
        elif for_now:
            passed, evidence = False, f"rejected by {for_now[-1].name}: {for_now[-1].comment}"
        elif mine:
            passed, evidence = False, "decided on an older pack only (manifest "
            evidence += f"{mine[-1].manifest_sha256[:16]}…); sign the current one"
        else:
            passed, evidence = False, "no decision recorded"
        checks.append(GateCheck(f"{role} approved manifest {current[:16]}…", passed, evidence))
    return checks


def _delta(run: RunDir) -> GateCheck:
    name = "delta replayed and reconciled"
    delta = DeltaRecord.read_if_present(run.delta_record)
    if delta is None:
        return GateCheck(
            name, True, "no post-snapshot delta recorded for this run (billmig delta has not run)"
        )
    evidence = f"{delta.events} event(s) replayed; reconciled: {delta.reconciled}"
    return GateCheck(name, delta.reconciled, evidence)


def _window(runs: RunsFolder) -> GateCheck:
    name = "restricted-services window open"
    window = window_state(runs)
    if window.state == "none":
        return GateCheck(name, True, "no window recorded (billmig window open has not run)")
    evidence = f"window {window.state}: opened {window.opened_at}" + (
        f", closed {window.closed_at}" if window.closed_at else ""
    )
    return GateCheck(name, window.state == "open", evidence)
