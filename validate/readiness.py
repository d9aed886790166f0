"""Ready for cutover: the gate's criteria, computed once for the gate and the report (SPEC §9).

``billmig cutover`` opens only when every criterion holds; the report prints the same
criteria, computed by the same functions, as its second verdict ("ready for cutover"), so a
PASS can never be read as "ready" while the gate would say NO-GO. A criterion that has not
been checked fails:

* validation PASS;
* the sign-off pack intact and signed (the gate only: the report *is* the pack being built);
* the run is loaded and not rolled back since;
* no blocking exception without a disposition (map's exceptions and the freeze breaches
  ``billmig window breaches`` found);
* every required role approved the pack's current manifest hash;
* the post-snapshot delta replayed and reconciled: required whenever the extract saw charges
  or payments after the cutoff, and without any record "not recorded" fails unless the run
  declared ``no-delta`` in the ledger (``billmig declare``), naming who and why;
* the restricted-services window open: "not recorded" fails unless the run declared
  ``no-window``.

Only data files are read here (verdict, manifests, exceptions, dispositions, the window's
state file, the ledger): nothing of migrate's mapping code, so the four-eyes rule holds.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from migrate.core.artifacts import DeltaRecord, SnapshotManifest
from migrate.core.config import Config
from migrate.core.ledger import command_for, declaration, rolled_back_since
from migrate.core.runs import RunDir, RunsFolder
from migrate.core.window_state import window_state
from validate.artifacts import Verdict
from validate.pack import read_signoffs, verify_pack
from validate.signing import Registry

DELTA_ENTITIES = ("payments", "charges")
"""The legacy events ``billmig delta`` replays: their rows after the cutoff are the delta."""


@dataclass(frozen=True)
class Criterion:
    """One go/no-go criterion with its evidence."""

    name: str
    passed: bool
    evidence: str


@dataclass(frozen=True)
class Readiness:
    """Every criterion of the gate for one run, and whether all hold."""

    run_id: str
    criteria: tuple[Criterion, ...]
    manifest_sha256: str | None

    @property
    def ready(self) -> bool:
        """Every criterion holds."""
        return all(c.passed for c in self.criteria)

    @property
    def why_not(self) -> tuple[str, ...]:
        """Each failed criterion with its evidence, in the gate's order."""
        return tuple(f"{c.name}: {c.evidence}" for c in self.criteria if not c.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "ready": self.ready,
            "manifest_sha256": self.manifest_sha256,
            "criteria": [asdict(c) for c in self.criteria],
        }


def assess(
    config: Config,
    run: RunDir,
    registry: Registry,
    *,
    manifest_sha256: str | None,
    check_pack: bool = True,
) -> Readiness:
    """Every criterion for ``run``; approvals count only for ``manifest_sha256``.

    ``check_pack=False`` and ``manifest_sha256=None`` is the report's view while it builds
    the pack: no pack to verify yet, and no approval of it yet.
    """
    criteria = (
        _verdict(run),
        *((_pack(run, registry),) if check_pack else ()),
        _loaded(config, run.run_id),
        _blocking(config, run),
        *_signoffs(config, run, registry, manifest_sha256),
        _delta(config, run),
        _window(config, run),
    )
    return Readiness(run.run_id, criteria, manifest_sha256)


def _verdict(run: RunDir) -> Criterion:
    verdict = Verdict.read(run.validation.verdict)
    failed = verdict.failed_criteria
    return Criterion(
        "validation PASS",
        verdict.passed,
        "PASS" if not failed else "FAIL: " + "; ".join(failed),
    )


def _pack(run: RunDir, registry: Registry) -> Criterion:
    found = verify_pack(run, registry)
    named = [*found.changed, *found.missing, *found.added, *found.problems]
    if found.incomplete:
        named.append("snapshot or mapped output missing")
    return Criterion(
        "sign-off pack intact and signed",
        found.intact,
        f"{found.checked} files match the manifest signed by {found.built_by}"
        if found.intact
        else "; ".join(named[:5]),
    )


def _loaded(config: Config, run_id: str) -> Criterion:
    when = rolled_back_since(config, run_id)
    return Criterion(
        "the run is loaded (not rolled back since)",
        when is None,
        "loaded" if when is None else f"rolled back at {when}: the pack is void",
    )


def _blocking(config: Config, run: RunDir) -> Criterion:
    exceptions = pq.read_table(
        run.mapped.exceptions, columns=["reason_code", "severity", "disposition"]
    )
    open_blocks = exceptions.filter(
        pc.and_(pc.equal(exceptions["severity"], "block"), pc.is_null(exceptions["disposition"]))
    )
    found: dict[str, int] = {
        str(v["values"]): int(v["counts"])
        for v in pc.value_counts(open_blocks["reason_code"]).to_pylist()
    }
    breaches = open_breaches(run.freeze_breaches, config.resolve(config.map.dispositions))
    if breaches:
        found["FREEZE_BREACH"] = found.get("FREEZE_BREACH", 0) + breaches
    counts = sorted(found.items(), key=lambda item: (-item[1], item[0]))
    return Criterion(
        "no blocking exception without a disposition",
        not counts,
        "none"
        if not counts
        else ", ".join(f"{code} {n:,}" for code, n in counts)
        + " (decide them in mappings/dispositions.csv, then rerun from map)",
    )


def open_breaches(breaches: Path, dispositions: Path) -> int:
    """Freeze breaches in ``breaches`` (window breaches' CSV) no disposition covers.

    A decision covers a breach by entity, reason code and legacy key, or ``*`` for every key.
    """
    if not breaches.is_file():
        return 0
    with breaches.open(encoding="utf-8", newline="") as handle:
        found = [_key(row) for row in csv.DictReader(handle)]
    decided: set[tuple[str, str, str]] = set()
    if dispositions.is_file():
        with dispositions.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                if (row.get("disposition") or "").strip():
                    decided.add(_key(row))
    return sum(
        1
        for entity, key, code in found
        if (entity, key, code) not in decided and (entity, "*", code) not in decided
    )


def _key(row: Mapping[str, str | None]) -> tuple[str, str, str]:
    entity, key, code = (
        (row.get(k) or "").strip() for k in ("entity", "legacy_key", "reason_code")
    )
    return entity, key, code


def _signoffs(
    config: Config, run: RunDir, registry: Registry, current: str | None
) -> list[Criterion]:
    decisions, problems = read_signoffs(run, registry)
    criteria = []
    for role in config.signoff.roles:
        mine = [d for d in decisions if d.role == role]
        for_now = [d for d in mine if current is not None and d.manifest_sha256 == current]
        if problems:
            passed, evidence = False, "; ".join(problems)
        elif for_now and for_now[-1].decision == "approve":
            passed, evidence = True, f"approved by {for_now[-1].name} at {for_now[-1].at}"
        elif for_now:
            passed, evidence = False, f"rejected by {for_now[-1].name}: {for_now[-1].comment}"
        elif current is None:
            passed, evidence = False, "awaiting a decision on this pack (billmig signoff)"
        elif mine:
            passed, evidence = False, "decided on an older pack only (manifest "
            evidence += f"{mine[-1].manifest_sha256[:16]}…); sign the current one"
        else:
            passed, evidence = False, "no decision recorded"
        which = f"manifest {current[:16]}…" if current else "this pack"
        criteria.append(Criterion(f"{role} approved {which}", passed, evidence))
    return criteria


def post_snapshot_events(run: RunDir) -> Mapping[str, int]:
    """Per replayed entity, the rows legacy received after the cutoff (the extract counted)."""
    manifest = SnapshotManifest.read(run.snapshot.manifest)
    return {
        name: manifest.entities[name].rows_after_cutoff
        for name in DELTA_ENTITIES
        if name in manifest.entities and manifest.entities[name].rows_after_cutoff
    }


def _delta(config: Config, run: RunDir) -> Criterion:
    name = "delta replayed and reconciled"
    replay = DeltaRecord.read_if_present(run.delta_record)
    if replay is not None:
        evidence = f"{replay.events:,} event(s) replayed; reconciled: {replay.reconciled}"
        if replay.problems:
            evidence += "; " + "; ".join(replay.problems[:3])
        return Criterion(name, replay.reconciled, evidence)
    pending = post_snapshot_events(run)
    declared = declaration(config, run.run_id, "no-delta")
    if pending:
        seen = " and ".join(f"{n:,} {entity}" for entity, n in pending.items())
        evidence = (
            f"legacy received {seen} after the snapshot's cutoff and no delta has replayed "
            f"them: run {command_for('delta', run.run_id)}"
        )
        if declared is not None:
            evidence += f" (the no-delta declaration by {declared.operator} cannot cover them)"
        return Criterion(name, False, evidence)
    if declared is not None:
        return Criterion(name, True, declared.evidence())
    return Criterion(
        name,
        False,
        f"not recorded: {command_for('delta', run.run_id)} has not run (a replay of no event "
        "is a record too), and the run declared no frozen legacy "
        f"(billmig declare --run {run.run_id} no-delta --reason ...)",
    )


def _window(config: Config, run: RunDir) -> Criterion:
    name = "restricted-services window open"
    window = window_state(RunsFolder.of(config))
    declared = declaration(config, run.run_id, "no-window")
    if window.state == "open":
        return Criterion(
            name,
            True,
            f"window open since {window.opened_at} "
            f"(planned {window.planned_from} to {window.planned_to})",
        )
    if declared is not None:
        return Criterion(name, True, declared.evidence())
    if window.state == "closed":
        return Criterion(
            name,
            False,
            f"window closed at {window.closed_at}: cut over inside an open window "
            "(billmig window open)",
        )
    return Criterion(
        name,
        False,
        "not recorded: no window was opened (billmig window open --from ... --to ...), and "
        f"the run declared none (billmig declare --run {run.run_id} no-window --reason ...)",
    )
