"""``billmig cutover --run ID``: the go/no-go gate (SPEC §9).

Every criterion is printed with its evidence; the gate opens only when all hold. The criteria
are :mod:`validate.readiness`'s, the same code the report's "ready for cutover" verdict runs:
validation PASS, the pack intact and signed, the run loaded, no undecided blocking exception,
every role's approval of the current manifest, the delta replayed and reconciled (or a frozen
legacy declared) and the restricted-services window open (or declared unneeded). The run
ledger refuses a run whose phases are stale or incomplete before any criterion is read.

On GO the cutover is recorded in the ledger and ``runs/<run>/cutover/cutover-run.json``, outside
the signed pack (``billmig verify`` stays intact), and the target marks the run ``cut_over``:
from then on ``rollback`` needs ``--force``. The gate run again on a live run says when it went
live and exits 0; it records nothing twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from migrate.core.config import Config
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError
from migrate.core.ledger import latest, read_ledger, run_phase, went_live_at
from migrate.core.manifest import write_json
from migrate.core.provenance import host, operator
from migrate.core.rendering import TableData
from migrate.core.runs import PhaseFiles, RunDir, check_id
from migrate.load.run import mark_cut_over
from validate.pack import manifest_hash
from validate.readiness import Criterion, assess
from validate.signing import load_registry

CUTOVER_FORMAT = "billmig.cutover-run/1"


CUTOVER = PhaseFiles(
    "cutover",
    inputs=lambda run: (run.signoff.manifest,),
    output=lambda run: run.cutover_record,
)
"""What the gate reads (the pack, through its manifest) and leaves on GO, for the ledger."""


@dataclass(frozen=True)
class CutoverResult:
    """The gate's decision."""

    run_id: str
    checks: tuple[Criterion, ...]
    manifest_sha256: str | None
    live_since: str | None = None
    """When the run went live, for the gate run again on a live run (it records nothing)."""

    @property
    def go(self) -> bool:
        """Every criterion holds (a live run: they held when it went live)."""
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
            "live_since": self.live_since,
        }

    def tables(self) -> list[TableData]:
        """Every criterion with its evidence."""
        decision = "GO: cutover recorded" if self.go else "NO-GO: nothing recorded"
        if self.live_since:
            decision = f"already cut over at {self.live_since}; the criteria as they held then"
        return [
            TableData(
                title=f"cutover gate for {self.run_id}: {decision}",
                headers=("criterion", "result", "evidence"),
                rows=[(c.name, "pass" if c.passed else "FAIL", c.evidence) for c in self.checks],
            )
        ]


def run_cutover(config: Config, *, run_id: str) -> CutoverResult:
    """Check every criterion; on GO record the cutover (ledger, its record, target status).

    A run that is live already is reported as such (when, and the criteria as they held),
    exit 0, and nothing is recorded again.

    Raises:
        InputError: the run's phases have not all run, or are stale (the run ledger).
    """
    check_id(run_id)
    live = live_record(config, run_id)
    if live is not None:
        return live
    return run_phase(config, CUTOVER, run_id, lambda: _gate(config, run_id))


def _gate(config: Config, run_id: str) -> CutoverResult:
    run = RunDir.of(config, run_id)
    current = manifest_hash(run)
    readiness = assess(config, run, load_registry(config), manifest_sha256=current)
    result = CutoverResult(run_id, readiness.criteria, current)
    if result.go:
        mark_cut_over(config, run_id)
        run.cutover.mkdir(exist_ok=True)
        write_json(
            run.cutover_record,
            {
                "format": CUTOVER_FORMAT,
                **result.to_dict(),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "operator": operator(),
                "host": host(),
            },
        )
    return result


def live_record(config: Config, run_id: str) -> CutoverResult | None:
    """The run's GO record while the run is live (cut over, not rolled back since), else None."""
    run = RunDir.of(config, run_id)
    if went_live_at(latest(read_ledger(config.runs_path)).get(run_id, {})) is None:
        return None
    path = next((p for p in (run.cutover_record, run.cutover_record_at_root) if p.is_file()), None)
    if path is None:
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        checks = tuple(Criterion(**c) for c in record["checks"])
        return CutoverResult(run_id, checks, record["manifest_sha256"], str(record["at"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(
            f"{config.relative(path)} is damaged ({type(exc).__name__}): the run is live, its "
            "GO record cannot be read",
            hint="restore it from the workspace's backup; the ledger keeps the cutover line",
        ) from None
