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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar, Literal

from migrate.core.artifacts import Artifact
from migrate.core.config import Config
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError
from migrate.core.manifest import canonical_json, git_state, sha256_file
from migrate.core.rendering import TableData
from migrate.core.runs import PACKED_FOLDERS, RunDir

DECISIONS = ("approve", "reject")


def tool_version() -> str:
    """The installed billmig version."""
    try:
        return version("billmig")
    except PackageNotFoundError:  # running from a source tree without installing
        return "unknown"


def artifacts(run: RunDir) -> dict[str, str]:
    """Every artifact of the run: relative path → SHA-256.

    Not the pack's own manifest and sign-offs: they are about the artifacts.
    """
    found: dict[str, str] = {}
    for path in sorted(run.path.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            found[path.name] = sha256_file(path)
    about = {run.signoff.manifest, run.signoff.signoffs}
    for folder in PACKED_FOLDERS:
        if not (run.path / folder).is_dir():
            continue
        for path in sorted((run.path / folder).rglob("*")):
            if path.is_file() and path not in about:
                found[run.relative(path)] = sha256_file(path)
    return found


@dataclass(frozen=True)
class ToolRef:
    """The tool that built the pack."""

    name: str
    version: str


@dataclass(frozen=True)
class PackWorkspace:
    """The workspace the pack was built in: git state, configuration and mapping files."""

    commit: str | None
    dirty: bool | None
    config_sha256: str | None
    mappings: Mapping[str, str]
    """Workspace-relative path → SHA-256 of each mapping, profile or rule file used."""


@dataclass(frozen=True)
class PreviousManifest:
    """The manifest of the phase before, chained in (validate's, which names map's …)."""

    phase: str
    manifest: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class PackManifest(Artifact):
    """``signoff/manifest.json``: every artifact's hash, and the manifest's own hash."""

    NAME: ClassVar[str] = "signoff"
    WRITER: ClassVar[str] = "billmig report --run RUN"

    run_id: str
    created_at: str
    operator: str
    masked: bool
    tool: ToolRef
    workspace: PackWorkspace
    previous: PreviousManifest | None
    artifacts: Mapping[str, str]
    """Run-relative path → SHA-256."""
    manifest_sha256: str = ""
    """SHA-256 of this manifest's canonical JSON without this field."""

    def self_hash(self) -> str:
        """The hash this manifest should carry."""
        body = {k: v for k, v in self.to_dict().items() if k != "manifest_sha256"}
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def write_manifest(
    config: Config,
    run: RunDir,
    *,
    masked: bool,
    operator: str,
    previous: tuple[str, Path] | Literal["validate"] | None = "validate",
    rules: Path | None = None,
) -> tuple[Path, str]:
    """Write the pack's manifest into ``run``'s ``signoff/``; returns its path and its hash.

    ``previous`` is the phase and manifest chained in (by default validate's); ``rules`` a
    compensation rule file the pack was computed from.
    """
    if previous == "validate":
        previous = ("validate", run.validation.manifest)
    mappings = [config.resolve(config.map.tariffs), config.resolve(config.map.dispositions)]
    if rules is not None:
        mappings.append(rules)
    if config.source.profile:
        mappings.append(config.resolve(config.source.profile))
    git = git_state(config.root)
    unsigned = PackManifest(
        run_id=run.run_id,
        created_at=datetime.now(UTC).isoformat(),
        operator=operator,
        masked=masked,
        tool=ToolRef("billmig", tool_version()),
        workspace=PackWorkspace(
            commit=git.commit,
            dirty=git.dirty,
            config_sha256=config.sha256 or None,
            mappings={
                _relative(path, config.root): sha256_file(path)
                for path in mappings
                if path.is_file()
            },
        ),
        previous=None
        if previous is None
        else PreviousManifest(previous[0], run.relative(previous[1]), sha256_file(previous[1])),
        artifacts=artifacts(run),
    )
    manifest = replace(unsigned, manifest_sha256=unsigned.self_hash())
    manifest.write(run.signoff.manifest)
    return run.signoff.manifest, manifest.manifest_sha256


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def manifest_hash(run: RunDir) -> str:
    """The current pack's manifest hash (what a sign-off binds to).

    Raises:
        InputError: the run has no sign-off pack.
    """
    path = run.signoff.manifest
    if not path.is_file():
        raise InputError(f"run {run.run_id} has no sign-off pack", hint="run billmig report")
    return PackManifest.read(path).manifest_sha256


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
    run = RunDir.of(config, run_id)
    current = manifest_hash(run)
    path = run.signoff.signoffs
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


def read_signoffs(run: RunDir | Path) -> tuple[list[Signoff], list[str]]:
    """The recorded decisions and what is wrong with the file (edited or removed lines).

    ``run`` is a run's folder, or a folder holding a pack received by email.
    """
    run = run if isinstance(run, RunDir) else RunDir.at(run)
    path = run.signoff.signoffs
    name = run.relative(path)
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
            problems.append(f"{name} line {number} is not a sign-off record")
            previous = hashlib.sha256(raw).hexdigest()
            continue
        if record.previous_line_sha256 != previous:
            problems.append(
                f"{name} line {number - 1 or 1} was changed or removed "
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


def verify_pack(run: RunDir | Path) -> Verification:
    """Recompute every hash the manifest lists; name each changed, missing or added file.

    ``run`` may be the whole run or a folder holding the pack alone (``signoff/``, with or
    without ``validation/``, as sent by email): then the snapshot and mapped files it does not
    carry are listed as not received instead of missing.

    Raises:
        InputError: no such run or no sign-off pack.
    """
    run = run if isinstance(run, RunDir) else RunDir.at(run)
    path = run.signoff.manifest
    manifest_name = run.relative(path)
    if not path.is_file():
        raise InputError(
            f"no sign-off pack at {run.signoff.path}",
            hint="check the run id (billmig verify RUN_ID) or run billmig report first",
        )
    problems: list[str] = []
    try:
        manifest = PackManifest.read(path)
    except InputError:
        return Verification(
            run.run_id, None, 0, problems=(f"{manifest_name} is unreadable or changed",)
        )
    listed, recorded = dict(manifest.artifacts), manifest.manifest_sha256
    written = path.read_text(encoding="utf-8")
    if manifest.self_hash() != recorded or canonical_json(manifest.to_dict()) != written:
        problems.append(f"{manifest_name} was changed after it was written")
    present = artifacts(run)
    received = {f for f in PACKED_FOLDERS if (run.path / f).is_dir()}
    partial = not (run.snapshot.path.is_dir() or run.mapped.path.is_dir())  # e.g. by email
    not_received = tuple(
        n for n in listed if partial and n not in present and n.split("/")[0] not in received
    )
    changed = tuple(n for n in listed if n in present and present[n] != listed[n])
    missing = tuple(n for n in listed if n not in present and n not in not_received)
    added = tuple(n for n in present if n not in listed)
    signoffs, signoff_problems = read_signoffs(run)
    problems.extend(signoff_problems)
    return Verification(
        run_id=run.run_id,
        manifest_sha256=recorded,
        checked=len(listed),
        changed=changed,
        missing=missing,
        added=added,
        problems=tuple(problems),
        not_received=not_received,
        signoffs=tuple({**s.to_dict(), "current": s.manifest_sha256 == recorded} for s in signoffs),
    )
