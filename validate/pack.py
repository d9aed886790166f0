"""The sign-off pack's manifest, its signatures, its verification and the sign-offs (SPEC §10).

``signoff/manifest.json`` lists the SHA-256 of every artifact of the run (snapshot, mapped
output, validation evidence, the pack itself), the configuration and mapping files, the tool
version, the workspace's git commit, the hash of the previous phase's manifest (validate's,
which names map's and extract's), and who built it with which key. The builder signs its exact
bytes (``manifest.json.sig``, Ed25519, :mod:`validate.signing`); ``SHA256SUMS`` repeats the
artifact hashes in ``sha256sum -c`` form and its own hash is in the manifest, so the pack can
be checked with ``openssl`` and ``sha256sum`` alone.

``signoff/signoffs.jsonl`` is append-only: one decision per line, signed by the signer's own
key, bound to the manifest hash it was given for and chained to the line before.
``signoffs.head.json`` holds the chain's length and last line hash, signed by whoever appended
that line, so an edited, removed or appended line is named by :func:`verify_pack`.

:func:`verify_pack` is fail-closed: intact only when every hash matches, the manifest's
signature verifies against a registered builder key, every decision's signature verifies
against a key registered for its role, and the chain and its head agree. A run folder without
its snapshot or mapped output is *incomplete* unless the caller says it holds the pack alone.
"""

from __future__ import annotations

import base64
import binascii
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
from migrate.core.ledger import rolled_back_since
from migrate.core.lock import workspace_lock
from migrate.core.manifest import canonical_json, git_state, sha256_file, write_atomic
from migrate.core.provenance import host, operator, os_user
from migrate.core.rendering import TableData
from migrate.core.runs import PACKED_FOLDERS, RunDir, RunsFolder
from validate.signing import BUILDER, Registry, SigningKey, load_registry, signing_key

DECISIONS = ("approve", "reject")
RUN_DATA = ("snapshot", "mapped")
"""Without both, the folder holds the pack alone (as sent by email): whatever the manifest
lists outside ``signoff/`` was not received, and the result is incomplete unless the caller
says it expects the pack alone."""


def tool_version() -> str:
    """The installed billmig version."""
    try:
        return version("billmig")
    except PackageNotFoundError:  # running from a source tree without installing
        return "unknown"


def artifacts(run: RunDir) -> dict[str, str]:
    """Every artifact of the run: relative path → SHA-256.

    Not the pack's manifest, signature, checksums and sign-offs: they are about the artifacts.
    Not the cutover gate's records either (``cutover/``): the gate writes them after the pack.
    """
    found: dict[str, str] = {}
    after_the_pack = run.cutover_record_at_root  # the gate's record, written after the pack
    for path in sorted(run.path.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path != after_the_pack:
            found[path.name] = sha256_file(path)
    about = run.signoff.not_artifacts
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


@dataclass(frozen=True)
class BuiltBy:
    """Who built (and signed) the pack, with which registered key."""

    signer: str
    key_sha256: str
    os_user: str
    host: str


@dataclass(frozen=True, kw_only=True)
class PackManifest(Artifact):
    """``signoff/manifest.json``: every artifact's hash, who built it, its own hash."""

    NAME: ClassVar[str] = "signoff"
    VERSION: ClassVar[int] = 2
    WRITER: ClassVar[str] = "billmig report --run RUN"

    run_id: str
    created_at: str
    operator: str
    masked: bool
    tool: ToolRef
    workspace: PackWorkspace
    previous: PreviousManifest | None
    built_by: BuiltBy
    artifacts: Mapping[str, str]
    """Run-relative path → SHA-256."""
    checksums_sha256: str
    """SHA-256 of ``SHA256SUMS``, the same hashes in ``sha256sum -c`` form."""
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
    signing: SigningKey,
    previous: tuple[str, Path] | Literal["validate"] | None = "validate",
    rules: Path | None = None,
) -> tuple[Path, str]:
    """Write and sign the pack's manifest in ``run``'s ``signoff/``; returns path and hash.

    ``previous`` is the phase and manifest chained in (by default validate's); ``rules`` a
    compensation rule file the pack was computed from; ``signing`` the builder's key.
    """
    if previous == "validate":
        previous = ("validate", run.validation.manifest)
    listed = artifacts(run)
    pack = run.signoff
    pack.path.mkdir(parents=True, exist_ok=True)
    write_atomic(
        pack.checksums, "".join(f"{digest}  {name}\n" for name, digest in sorted(listed.items()))
    )
    git = git_state(config.root)
    unsigned = PackManifest(
        run_id=run.run_id,
        created_at=datetime.now(UTC).isoformat(),
        operator=operator(),
        masked=masked,
        tool=ToolRef("billmig", tool_version()),
        workspace=PackWorkspace(
            git.commit, git.dirty, config.sha256 or None, _mapping_hashes(config, rules)
        ),
        previous=None
        if previous is None
        else PreviousManifest(previous[0], run.relative(previous[1]), sha256_file(previous[1])),
        built_by=BuiltBy(signing.signer.id, signing.signer.key_sha256, os_user(), host()),
        artifacts=listed,
        checksums_sha256=sha256_file(pack.checksums),
    )
    manifest = replace(unsigned, manifest_sha256=unsigned.self_hash())
    # The signature is written last: a pack is published by it, so a report or compensate
    # killed before this line leaves a manifest nobody accepts (verify: no valid signature).
    pack.manifest_signature.unlink(missing_ok=True)
    manifest.write(pack.manifest)
    write_atomic(pack.manifest_signature, signing.sign(pack.manifest.read_bytes()))
    return pack.manifest, manifest.manifest_sha256


def _mapping_hashes(config: Config, rules: Path | None) -> dict[str, str]:
    mappings = [config.resolve(config.map.tariffs), config.resolve(config.map.dispositions)]
    if rules is not None:
        mappings.append(rules)
    if config.source.profile:
        mappings.append(config.resolve(config.source.profile))
    return {config.relative(path): sha256_file(path) for path in mappings if path.is_file()}


def manifest_hash(run: RunDir) -> str:
    """The current pack's manifest hash (what a sign-off binds to).

    Raises:
        InputError: the run has no sign-off pack.
    """
    path = run.signoff.manifest
    if not path.is_file():
        raise InputError(f"run {run.run_id} has no sign-off pack", hint="run billmig report")
    return PackManifest.read(path).manifest_sha256


# -- sign-offs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Signoff:
    """One recorded decision, as signed by its signer."""

    run_id: str
    role: str
    name: str
    """The name the signer declared (``--name``); the key's owner is ``signer``'s name."""
    decision: str
    comment: str
    at: str
    manifest_sha256: str
    previous_line_sha256: str | None
    signer: str
    key_sha256: str
    os_user: str
    host: str
    signature: str = ""
    """Base64 Ed25519 signature of :meth:`signed_bytes`, kept in ``signoffs.sig``."""

    def signed_bytes(self) -> bytes:
        """The line as written and signed: every other field, canonical JSON on one line."""
        return _compact({k: v for k, v in self.__dict__.items() if k != "signature"})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)

    def tables(self) -> list[TableData]:
        """The recorded decision, for the terminal."""
        return [
            TableData(
                title=f"sign-off recorded for {self.run_id}",
                headers=("role", "name", "signer", "decision", "manifest", "at"),
                rows=[
                    (
                        self.role,
                        self.name,
                        self.signer,
                        self.decision,
                        self.manifest_sha256[:16],
                        self.at,
                    )
                ],
            )
        ]

    @property
    def exit_code(self) -> int:
        """Always 0: refusals raise."""
        return EXIT_OK


@dataclass(frozen=True)
class SignoffHead:
    """The chain's length and last line, signed by the signer who appended that line."""

    run_id: str
    lines: int
    head_sha256: str
    signer: str

    def signed_bytes(self) -> bytes:
        """The head as written and signed."""
        return _compact(dict(self.__dict__))


def _compact(body: Mapping[str, Any]) -> bytes:
    """Canonical one-line JSON: sorted keys, no spaces, UTF-8 kept readable."""
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def record_signoff(
    config: Config,
    *,
    run_id: str,
    role: str,
    name: str,
    decision: str,
    comment: str = "",
    signer: str | None = None,
) -> Signoff:
    """Sign and append a decision, bound to the current manifest hash, and re-sign the head.

    Raises:
        InputError: unknown role or decision, empty name, a reject without a comment, no pack,
            a rolled-back run, a pack that does not verify, or no key to sign as the role with.
    """
    _check_decision(config, role, name, decision, comment)
    run = RunDir.of(config, run_id)
    current = manifest_hash(run)
    if (when := rolled_back_since(config, run_id)) is not None:
        raise InputError(
            f"run {run_id} was rolled back at {when}: its pack is void",
            hint=f"load and validate it again, then billmig report --run {run_id}",
        )
    registry = load_registry(config)
    found = verify_pack(run, registry)
    if not found.intact:
        raise InputError(
            f"the pack of run {run_id} does not verify: {found.first_problem()}",
            hint=f"see billmig verify {run_id}; never sign a pack that does not verify",
        )
    key = signing_key(config, registry, role, signer)
    lines = _chain(run).lines if found.signoffs else []  # with an interrupted one completed
    unsigned = Signoff(
        run_id=run_id, role=role, name=name.strip(), decision=decision, comment=comment,
        at=datetime.now(UTC).isoformat(), manifest_sha256=current,
        previous_line_sha256=hashlib.sha256(lines[-1]).hexdigest() if lines else None,
        signer=key.signer.id, key_sha256=key.signer.key_sha256, os_user=os_user(), host=host(),
    )  # fmt: skip
    record = replace(unsigned, signature=key.sign_b64(unsigned.signed_bytes()))
    line = record.signed_bytes() + b"\n"
    head = SignoffHead(run_id, len(lines) + 1, hashlib.sha256(line).hexdigest(), key.signer.id)
    with workspace_lock(RunsFolder.of(config).lock, "signoff", run_id):  # one decision at a time
        finish_pending(run)  # a sign-off killed mid-write is completed first
        if run.signoff.signoffs.exists() and len(_lines_of(run)) != len(lines):
            raise InputError(
                f"another decision on run {run_id} was recorded meanwhile",
                hint="run billmig signoff again: it signs against the chain as it is now",
            )
        PendingSignoff(
            lines_before=len(lines),
            line=record.signed_bytes().decode("utf-8"),
            signature=record.signature,
            head=head.signed_bytes().decode("utf-8"),
            head_signature=base64.b64encode(key.sign(head.signed_bytes())).decode("ascii"),
        ).write(run.signoff.signoffs_pending)
        finish_pending(run)
    return record


@dataclass(frozen=True, kw_only=True)
class PendingSignoff(Artifact):
    """``signoffs.pending.json``: a decision being recorded, written before any chain file.

    Four files change when a decision is recorded (the chain, its signatures, the head and the
    head's signature) and no file system renames four files at once. So the whole change is
    first written here (atomically), then applied, then this file is removed: a sign-off killed
    at any point leaves either no pending file (nothing or everything applied) or this one, from
    which readers see the completed state and the next ``billmig signoff`` completes the files.
    Everything in it is signed, so it cannot be forged without the signer's key.
    """

    NAME: ClassVar[str] = "signoff-pending"
    WRITER: ClassVar[str] = "billmig signoff"

    lines_before: int
    line: str
    """The new line as signed, without its newline."""
    signature: str
    """Its base64 signature (the line of ``signoffs.sig``)."""
    head: str
    head_signature: str
    """Base64 of the raw signature of ``head``."""


@dataclass(frozen=True)
class _Chain:
    """The sign-off files as readers see them: with a pending decision applied."""

    lines: list[bytes]
    signatures: list[str]
    head: bytes | None
    head_signature: bytes | None
    problems: list[str]


def _chain(run: RunDir) -> _Chain:
    pack = run.signoff
    lines = pack.signoffs.read_bytes().splitlines(keepends=True) if pack.signoffs.exists() else []
    signatures = _signature_lines(run)
    head = pack.signoffs_head.read_bytes() if pack.signoffs_head.is_file() else None
    head_sig = (
        pack.signoffs_head_signature.read_bytes()
        if pack.signoffs_head_signature.is_file()
        else None
    )
    if not pack.signoffs_pending.is_file():
        return _Chain(lines, signatures, head, head_sig, [])
    try:
        pending = PendingSignoff.read(pack.signoffs_pending)
    except InputError as exc:
        return _Chain(lines, signatures, head, head_sig, [str(exc)])
    new = pending.line.encode("utf-8") + b"\n"
    n = pending.lines_before
    rest, sig_rest = b"".join(lines[n:]), signatures[n:]
    torn_signature = len(sig_rest) > 1 or not pending.signature.startswith("".join(sig_rest))
    if len(lines) < n or not new.startswith(rest) or torn_signature:
        where = run.relative(pack.signoffs_pending)
        return _Chain(lines, signatures, head, head_sig, [f"{where} does not continue the chain"])
    return _Chain(
        [*lines[:n], new],
        [*signatures[:n], pending.signature],
        pending.head.encode("utf-8"),
        base64.b64decode(pending.head_signature),
        [],
    )


def finish_pending(run: RunDir) -> None:
    """Apply a pending decision to the chain files (each replaced whole), then drop it.

    Idempotent: killed while applying, it is applied again from the same pending file.

    Raises:
        InputError: the pending file does not continue the chain (edited files).
    """
    pack = run.signoff
    if not pack.signoffs_pending.is_file():
        return
    chain = _chain(run)
    if chain.problems or chain.head is None or chain.head_signature is None:
        raise InputError(
            f"the interrupted sign-off of run {run.run_id} cannot be completed: "
            f"{'; '.join(chain.problems) or 'it names no head'}",
            hint=f"see billmig verify {run.run_id}; the sign-off files were changed by hand",
        )
    write_atomic(pack.signoffs, b"".join(chain.lines))
    write_atomic(pack.signoff_signatures, "".join(f"{s}\n" for s in chain.signatures))
    write_atomic(pack.signoffs_head, chain.head)
    write_atomic(pack.signoffs_head_signature, chain.head_signature)
    pack.signoffs_pending.unlink()


def _lines_of(run: RunDir) -> list[bytes]:
    return run.signoff.signoffs.read_bytes().splitlines(keepends=True)


def _check_decision(config: Config, role: str, name: str, decision: str, comment: str) -> None:
    if role not in config.signoff.roles:
        raise InputError(
            f"role {role!r} is not one of the configured roles: {', '.join(config.signoff.roles)}",
            hint="use one of them, or add the role to [signoff] roles in billmig.toml",
        )
    if decision not in DECISIONS:
        raise InputError(f"decision must be approve or reject, not {decision!r}")
    if not name.strip():
        raise InputError("the signer's name is empty", hint="pass --name 'First Last'")
    if decision == "reject" and not comment.strip():
        raise InputError(
            "a reject needs a comment", hint="say what would change the decision: --comment ..."
        )


def read_signoffs(
    run: RunDir | Path, registry: Registry | None = None
) -> tuple[list[Signoff], list[str]]:
    """The recorded decisions and what is wrong with them.

    With a ``registry``, every decision's signature is checked against a key registered for
    its role, and the signed head against the chain; without one, only the chain of hashes.
    ``run`` is a run's folder, or a folder holding a pack received by email.
    """
    run = run if isinstance(run, RunDir) else RunDir.at(run)
    path = run.signoff.signoffs
    chain = _chain(run)
    if not chain.lines:
        removed = [f"{run.relative(path)} was removed (its signed head remains)"]
        return [], chain.problems or (removed if chain.head is not None else [])
    name = run.relative(path)
    found: list[Signoff] = []
    problems: list[str] = list(chain.problems)
    previous: str | None = None
    raw_lines = chain.lines
    signatures = chain.signatures
    if registry is not None and len(signatures) != len(raw_lines):
        problems.append(
            f"{run.relative(run.signoff.signoff_signatures)} has {len(signatures)} signature(s) "
            f"for {len(raw_lines)} decision(s)"
        )
    for number, raw in enumerate(raw_lines, start=1):
        record = _parse_line(raw, signatures[number - 1] if number <= len(signatures) else "")
        if record is None:
            problems.append(f"{name} line {number} is not a sign-off record")
        else:
            if record.previous_line_sha256 != previous:
                problems.append(
                    f"{name} line {number - 1 or 1} was changed or removed "
                    f"(line {number} was chained to another)"
                )
            if registry is not None:
                where = f"{name} line {number}"
                problems.extend(_signature_problems(record, raw, registry, where))
            found.append(record)
        previous = hashlib.sha256(raw).hexdigest()
    if registry is not None:
        problems.extend(_head_problems(run, chain, registry))
    return found, problems


def _signature_lines(run: RunDir) -> list[str]:
    path = run.signoff.signoff_signatures
    if not path.is_file():
        return []
    return path.read_text(encoding="ascii", errors="replace").splitlines()


def _parse_line(raw: bytes, signature: str) -> Signoff | None:
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or "signature" in data:
            return None
        return Signoff(**data, signature=signature)
    except (ValueError, TypeError):
        return None


def _signature_problems(record: Signoff, raw: bytes, registry: Registry, where: str) -> list[str]:
    signer = registry.get(record.signer)
    if signer is None:
        return [f"{where}: signer {record.signer!r} is not registered"]
    if record.role not in signer.roles:
        return [f"{where}: signer {record.signer} is not registered for role {record.role}"]
    written = raw.rstrip(b"\n")
    if written != record.signed_bytes() or not signer.verifies(_b64(record.signature), written):
        return [f"{where}: the signature of {record.signer} does not verify (edited or forged)"]
    return []


def _head_problems(run: RunDir, chain: _Chain, registry: Registry) -> list[str]:
    where = run.relative(run.signoff.signoffs_head)
    raw_lines = chain.lines
    if not raw_lines:
        return []
    written, signature = chain.head, chain.head_signature
    if written is None or signature is None:
        return [f"{where} or its signature is missing: the chain's length and end are not signed"]
    try:
        head = SignoffHead(**json.loads(written))
    except (ValueError, TypeError):
        return [f"{where} is not a signed chain head"]
    signer = registry.get(head.signer)
    if signer is None or written != head.signed_bytes() or not signer.verifies(signature, written):
        return [f"{where}: its signature does not verify"]
    last = _parse_line(raw_lines[-1], "")
    if head.lines != len(raw_lines):
        how = "removed" if head.lines > len(raw_lines) else "appended"
        return [
            f"{where} says {head.lines} decision(s), the file has {len(raw_lines)}: "
            f"a line was {how}"
        ]
    if head.head_sha256 != hashlib.sha256(raw_lines[-1]).hexdigest() or (
        last is not None and last.signer != head.signer
    ):
        return [f"{where} names another last line: the last decision was changed or replaced"]
    return []


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


# -- verification --------------------------------------------------------------------------


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
    pack_only: bool = False
    """The caller said the folder holds the pack alone: not-received files are allowed."""
    built_by: str | None = None
    signoffs: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def incomplete(self) -> bool:
        """Run data the manifest lists is not here, and the caller did not say pack only."""
        return bool(self.not_received) and not self.pack_only

    @property
    def intact(self) -> bool:
        """Every hash matches, every signature verifies, and nothing is missing or added."""
        return not (self.changed or self.missing or self.added or self.problems) and not (
            self.incomplete
        )

    @property
    def exit_code(self) -> int:
        """0 intact, 1 otherwise (incomplete included)."""
        return EXIT_OK if self.intact else EXIT_CHECKS_FAILED

    def first_problem(self) -> str:
        """The first thing wrong, for a one-line refusal."""
        found = (("changed", self.changed), ("missing", self.missing), ("added", self.added))
        for kind, names in found:
            if names:
                return f"{kind} {names[0]}"
        if self.problems:
            return self.problems[0]
        return "incomplete: snapshot and mapped output not here" if self.incomplete else "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "intact": self.intact,
            "incomplete": self.incomplete,
            "pack_only": self.pack_only,
            "manifest_sha256": self.manifest_sha256,
            "built_by": self.built_by,
            "checked": self.checked,
            "changed": list(self.changed),
            "missing": list(self.missing),
            "added": list(self.added),
            "problems": list(self.problems),
            "not_received": list(self.not_received),
            "signoffs": list(self.signoffs),
        }

    def _verdict(self) -> str:
        if self.incomplete and not (self.changed or self.missing or self.added or self.problems):
            return "INCOMPLETE (snapshot and mapped output not here; --pack-only for a pack alone)"
        if not self.intact:
            return "NOT intact"
        return (
            "intact (pack only: snapshot and mapped output not checked)"
            if (self.not_received)
            else "intact"
        )

    def tables(self) -> list[TableData]:
        """Each finding on a line, then the sign-offs and whether they bind the current pack."""
        rows = [
            *(("changed", name) for name in self.changed),
            *(("missing", name) for name in self.missing),
            *(("added", name) for name in self.added),
            *(("problem", text) for text in self.problems),
        ]
        signed = f"; built and signed by {self.built_by}" if self.built_by else ""
        out = [
            TableData(
                title=f"verify {self.run_id}: {self._verdict()}",
                headers=("finding", "file"),
                rows=rows or [("none", f"{self.checked - len(self.not_received)} files match")],
                footer=f"manifest sha256 {self.manifest_sha256}{signed}"
                + (
                    f"; {len(self.not_received)} run files outside the pack not received"
                    if self.not_received
                    else ""
                ),
            )
        ]
        if self.signoffs:
            out.append(
                TableData(
                    title="sign-offs (each signature checked against the registered keys)",
                    headers=("role", "name", "signer", "decision", "for this manifest", "at"),
                    rows=[
                        (
                            s["role"],
                            s["name"],
                            s["signer"],
                            s["decision"],
                            "yes" if s["current"] else "no",
                            s["at"],
                        )
                        for s in self.signoffs
                    ],
                )
            )
        return out


def verify_pack(run: RunDir | Path, registry: Registry, *, pack_only: bool = False) -> Verification:
    """Recompute every hash and check every signature the pack carries.

    ``run`` may be the whole run or a folder holding the pack alone (``signoff/``, with or
    without ``validation/``, as sent by email): its snapshot and mapped files are then *not
    received*, which makes the result incomplete unless ``pack_only`` is set.

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
    try:
        manifest = PackManifest.read(path)
    except InputError as exc:
        return Verification(run.run_id, None, 0, problems=(f"{manifest_name}: {exc.message}",))
    problems = [*_manifest_problems(run, manifest, registry)]
    listed = dict(manifest.artifacts)
    present = artifacts(run)
    alone = not any((run.path / folder).is_dir() for folder in RUN_DATA)
    not_received = tuple(
        n for n in listed if alone and n not in present and not n.startswith("signoff/")
    )
    signoffs, signoff_problems = read_signoffs(run, registry)
    problems.extend(signoff_problems)
    recorded = manifest.manifest_sha256
    return Verification(
        run_id=run.run_id,
        manifest_sha256=recorded,
        checked=len(listed),
        changed=tuple(n for n in listed if n in present and present[n] != listed[n]),
        missing=tuple(n for n in listed if n not in present and n not in not_received),
        added=tuple(n for n in present if n not in listed),
        problems=tuple(problems),
        not_received=not_received,
        pack_only=pack_only,
        built_by=manifest.built_by.signer,
        signoffs=tuple({**s.to_dict(), "current": s.manifest_sha256 == recorded} for s in signoffs),
    )


def _manifest_problems(run: RunDir, manifest: PackManifest, registry: Registry) -> list[str]:
    """The manifest's own hash, the builder's signature, and the checksum file."""
    pack, problems = run.signoff, []
    name = run.relative(pack.manifest)
    written = pack.manifest.read_text(encoding="utf-8")
    if (
        manifest.self_hash() != manifest.manifest_sha256
        or canonical_json(manifest.to_dict()) != written
    ):
        problems.append(f"{name} was changed after it was written")
    builder = registry.get(manifest.built_by.signer)
    if builder is None or BUILDER not in builder.roles:
        who = manifest.built_by.signer
        problems.append(f"{name} was built by {who!r}, not a registered {BUILDER}")
    elif not pack.manifest_signature.is_file():
        problems.append(f"{run.relative(pack.manifest_signature)} is missing: the pack is unsigned")
    elif not builder.verifies(pack.manifest_signature.read_bytes(), pack.manifest.read_bytes()):
        problems.append(f"{name}: the signature of {builder.id} does not verify (forged or edited)")
    if not pack.checksums.is_file() or sha256_file(pack.checksums) != manifest.checksums_sha256:
        problems.append(f"{run.relative(pack.checksums)} is missing or changed")
    return problems


def verify_run(config: Config, run: RunDir | Path, *, pack_only: bool = False) -> Verification:
    """:func:`verify_pack` against the workspace's registered signers, and the run's state.

    A pack of a run the workspace's ledger shows rolled back since its load is void.
    """
    run = run if isinstance(run, RunDir) else RunDir.at(run)
    found = verify_pack(run, load_registry(config), pack_only=pack_only)
    when = rolled_back_since(config, run.run_id)
    if when is None:
        return found
    void = f"void: run {run.run_id} was rolled back at {when}, after this pack was built"
    return replace(found, problems=(*found.problems, void))


def locate_pack(config: Config, reference: str) -> RunDir:
    """The run folder a ``billmig verify`` argument names.

    A folder holding ``signoff/``, the ``signoff/`` folder itself, or a run id of the workspace.
    """
    folder = Path(reference).resolve()
    if RunDir.at(folder).signoff.path.is_dir():
        return RunDir.at(folder)
    if folder.is_dir() and RunDir.at(folder.parent).signoff.path == folder:
        return RunDir.at(folder.parent)
    return RunDir.of(config, reference)
