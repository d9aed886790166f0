"""The sign-off pack's manifest, its verification, and the sign-offs bound to it (SPEC §10).

``signoff/manifest.json`` lists the SHA-256 of every artifact of the run (snapshot, mapped
output, validation evidence, the pack itself), the configuration and mapping files, the tool
version, the workspace's git commit and whether it had uncommitted changes, and the hash of
the previous phase's manifest (validate's), which in turn names map's and extract's. Its own
hash, over its canonical JSON without that field, is recorded inside it: a changed byte in the
manifest shows as much as a changed byte anywhere else.

``signoff/signoffs.jsonl`` is append-only: one decision per line, each bound to the manifest
hash it was given for and chained to the line before (its SHA-256), so an edited or removed
line is named by :func:`verify_pack`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from migrate.core.config import Config
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError
from migrate.core.manifest import canonical_json, git_state, sha256_file, write_json
from migrate.core.rendering import TableData

MANIFEST_FORMAT = "billmig-signoff/1"
PACK_DIR = "signoff"
MANIFEST = "manifest.json"
SIGNOFFS = "signoffs.jsonl"
COVERED = ("snapshot", "mapped", "delta", "validation", "compensation", PACK_DIR)
"""Folders of a run whose every file the manifest lists (besides the run's top-level files)."""
NOT_ARTIFACTS = {f"{PACK_DIR}/{MANIFEST}", f"{PACK_DIR}/{SIGNOFFS}"}
DECISIONS = ("approve", "reject")


def tool_version() -> str:
    """The installed billmig version."""
    try:
        return version("billmig")
    except PackageNotFoundError:  # running from a source tree without installing
        return "unknown"


def artifacts(run_dir: Path) -> dict[str, str]:
    """Every artifact of the run: relative path → SHA-256."""
    found: dict[str, str] = {}
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            found[path.name] = sha256_file(path)
    for folder in COVERED:
        if not (run_dir / folder).is_dir():
            continue
        for path in sorted((run_dir / folder).rglob("*")):
            name = path.relative_to(run_dir).as_posix()
            if path.is_file() and name not in NOT_ARTIFACTS:
                found[name] = sha256_file(path)
    return found


def write_manifest(
    config: Config,
    run_dir: Path,
    *,
    masked: bool,
    operator: str,
    previous: tuple[str, str] | None = ("validate", "validation/manifest.json"),
    rules: Path | None = None,
) -> tuple[Path, str]:
    """Write the pack's manifest; returns its path and its hash.

    ``previous`` is the phase and manifest (relative to the run) chained in; ``rules`` a
    compensation rule file the pack was computed from.
    """
    mappings = [config.resolve(config.map.tariffs), config.resolve(config.map.dispositions)]
    if rules is not None:
        mappings.append(rules)
    if config.source.profile:
        mappings.append(config.resolve(config.source.profile))
    document: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "run_id": run_dir.name,
        "created_at": datetime.now(UTC).isoformat(),
        "operator": operator,
        "masked": masked,
        "tool": {"name": "billmig", "version": tool_version()},
        "workspace": {
            **git_state(config.root),
            "config_sha256": config.sha256 or None,
            "mappings": {
                _relative(path, config.root): sha256_file(path)
                for path in mappings
                if path.is_file()
            },
        },
        "previous": None
        if previous is None
        else {
            "phase": previous[0],
            "manifest": previous[1],
            "sha256": sha256_file(run_dir / previous[1]),
        },
        "artifacts": artifacts(run_dir),
    }
    document["manifest_sha256"] = _self_hash(document)
    path = run_dir / PACK_DIR / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, document)
    return path, document["manifest_sha256"]


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _self_hash(document: dict[str, Any]) -> str:
    body = {k: v for k, v in document.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def manifest_hash(run_dir: Path) -> str:
    """The current pack's manifest hash (what a sign-off binds to).

    Raises:
        InputError: the run has no sign-off pack.
    """
    path = run_dir / PACK_DIR / MANIFEST
    if not path.is_file():
        raise InputError(f"run {run_dir.name} has no sign-off pack", hint="run billmig report")
    return str(json.loads(path.read_text(encoding="utf-8"))["manifest_sha256"])


@dataclass(frozen=True)
class Signoff:
    """One recorded decision."""

    run_id: str
    role: str
    name: str
    decision: str
    comment: str
    at: str
    manifest_sha256: str
    previous_line_sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "role": self.role,
            "name": self.name,
            "decision": self.decision,
            "comment": self.comment,
            "at": self.at,
            "manifest_sha256": self.manifest_sha256,
        }

    def tables(self) -> list[TableData]:
        """The recorded decision, for the terminal."""
        return [
            TableData(
                title=f"sign-off recorded for {self.run_id}",
                headers=("role", "name", "decision", "manifest", "at"),
                rows=[(self.role, self.name, self.decision, self.manifest_sha256[:16], self.at)],
            )
        ]

    @property
    def exit_code(self) -> int:
        """Always 0: refusals raise."""
        return EXIT_OK


def record_signoff(
    config: Config, *, run_id: str, role: str, name: str, decision: str, comment: str = ""
) -> Signoff:
    """Append a decision to the run's ``signoffs.jsonl``, bound to the current manifest hash.

    Raises:
        InputError: unknown role or decision, empty name, or no pack (run ``report`` first).
    """
    if role not in config.signoff.roles:
        raise InputError(
            f"role {role!r} is not one of the configured roles: {', '.join(config.signoff.roles)}",
            hint="use one of them, or add the role to [signoff] roles in billmig.toml",
        )
    if decision not in DECISIONS:
        raise InputError(f"decision must be approve or reject, not {decision!r}")
    if not name.strip():
        raise InputError("the signer's name is empty", hint="pass --name 'First Last'")
    run_dir = config.runs_path / run_id
    current = manifest_hash(run_dir)
    path = run_dir / PACK_DIR / SIGNOFFS
    lines = path.read_bytes().splitlines(keepends=True) if path.exists() else []
    previous = hashlib.sha256(lines[-1]).hexdigest() if lines else None
    record = Signoff(
        run_id=run_id,
        role=role,
        name=name.strip(),
        decision=decision,
        comment=comment,
        at=datetime.now(UTC).isoformat(),
        manifest_sha256=current,
        previous_line_sha256=previous,
    )
    line = json.dumps(
        {**record.to_dict(), "previous_line_sha256": previous}, sort_keys=True, ensure_ascii=False
    )
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    return record


def read_signoffs(run_dir: Path) -> tuple[list[Signoff], list[str]]:
    """The recorded decisions and what is wrong with the file (edited or removed lines)."""
    path = run_dir / PACK_DIR / SIGNOFFS
    if not path.exists():
        return [], []
    found: list[Signoff] = []
    problems: list[str] = []
    previous: str | None = None
    for number, raw in enumerate(path.read_bytes().splitlines(keepends=True), start=1):
        try:
            data = json.loads(raw)
            record = Signoff(**data)
        except (ValueError, TypeError):
            problems.append(f"{PACK_DIR}/{SIGNOFFS} line {number} is not a sign-off record")
            previous = hashlib.sha256(raw).hexdigest()
            continue
        if record.previous_line_sha256 != previous:
            problems.append(
                f"{PACK_DIR}/{SIGNOFFS} line {number - 1 or 1} was changed or removed "
                f"(line {number} was chained to another)"
            )
        found.append(record)
        previous = hashlib.sha256(raw).hexdigest()
    return found, problems


@dataclass(frozen=True)
class Verification:
    """What ``billmig verify`` found."""

    run_id: str
    manifest_sha256: str | None
    checked: int
    changed: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    not_received: tuple[str, ...] = ()
    """Run files outside the pack that a copy of the pack alone does not carry."""
    signoffs: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def intact(self) -> bool:
        """Nothing changed, missing, added, and the manifest and sign-offs are sound."""
        return not (self.changed or self.missing or self.added or self.problems)

    @property
    def exit_code(self) -> int:
        """0 intact, 1 otherwise."""
        return EXIT_OK if self.intact else EXIT_CHECKS_FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "intact": self.intact,
            "manifest_sha256": self.manifest_sha256,
            "checked": self.checked,
            "changed": list(self.changed),
            "missing": list(self.missing),
            "added": list(self.added),
            "problems": list(self.problems),
            "not_received": list(self.not_received),
            "signoffs": list(self.signoffs),
        }

    def tables(self) -> list[TableData]:
        """Each finding on a line, then the sign-offs and whether they bind the current pack."""
        rows = [
            *(("changed", name) for name in self.changed),
            *(("missing", name) for name in self.missing),
            *(("added", name) for name in self.added),
            *(("problem", text) for text in self.problems),
        ]
        verdict = "intact" if self.intact else "NOT intact"
        out = [
            TableData(
                title=f"verify {self.run_id}: {verdict}",
                headers=("finding", "file"),
                rows=rows or [("none", f"{self.checked - len(self.not_received)} files match")],
                footer=f"manifest sha256 {self.manifest_sha256}"
                + (
                    f"; {len(self.not_received)} run files outside the pack not received "
                    "(snapshot, mapped output): checked where they are kept"
                    if self.not_received
                    else ""
                ),
            )
        ]
        if self.signoffs:
            out.append(
                TableData(
                    title="sign-offs",
                    headers=("role", "name", "decision", "for this manifest", "at"),
                    rows=[
                        (
                            s["role"],
                            s["name"],
                            s["decision"],
                            "yes" if s["current"] else "no",
                            s["at"],
                        )
                        for s in self.signoffs
                    ],
                )
            )
        return out


def verify_pack(run_dir: Path) -> Verification:
    """Recompute every hash the manifest lists; name each changed, missing or added file.

    ``run_dir`` may hold the whole run or the pack alone (``signoff/``, with or without
    ``validation/``, as sent by email): then the snapshot and mapped files it does not carry
    are listed as not received instead of missing.

    Raises:
        InputError: no such run or no sign-off pack.
    """
    path = run_dir / PACK_DIR / MANIFEST
    if not path.is_file():
        raise InputError(
            f"no sign-off pack at {run_dir / PACK_DIR}",
            hint="check the run id (billmig verify RUN_ID) or run billmig report first",
        )
    problems: list[str] = []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        listed: dict[str, str] = dict(document["artifacts"])
        recorded = str(document["manifest_sha256"])
    except (ValueError, KeyError, TypeError):
        return Verification(
            run_dir.name, None, 0, problems=(f"{PACK_DIR}/{MANIFEST} is unreadable or changed",)
        )
    if _self_hash(document) != recorded or canonical_json(document) != path.read_text(
        encoding="utf-8"
    ):
        problems.append(f"{PACK_DIR}/{MANIFEST} was changed after it was written")
    present = artifacts(run_dir)
    received = {f for f in COVERED if (run_dir / f).is_dir()}
    partial = not received & {"snapshot", "mapped"}  # the pack alone, e.g. sent by email
    not_received = tuple(
        n for n in listed if partial and n not in present and n.split("/")[0] not in received
    )
    changed = tuple(n for n in listed if n in present and present[n] != listed[n])
    missing = tuple(n for n in listed if n not in present and n not in not_received)
    added = tuple(n for n in present if n not in listed)
    signoffs, signoff_problems = read_signoffs(run_dir)
    problems.extend(signoff_problems)
    return Verification(
        run_id=run_dir.name,
        manifest_sha256=recorded,
        checked=len(listed),
        changed=changed,
        missing=missing,
        added=added,
        problems=tuple(problems),
        not_received=not_received,
        signoffs=tuple({**s.to_dict(), "current": s.manifest_sha256 == recorded} for s in signoffs),
    )
