"""Hashes, workspace provenance and the canonical JSON every manifest is written in."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; it replaces ``path`` (renamed) when done.

    A process killed while writing leaves ``path`` as it was (and a ``.<name>.tmp`` that the
    next write overwrites); nobody ever reads half a file. On failure the temporary is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` all at once or not at all (:func:`replacing`)."""
    with replacing(path) as temporary:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


@dataclass(frozen=True)
class GitState:
    """The workspace's git commit and whether it had uncommitted changes (None outside git)."""

    commit: str | None
    dirty: bool | None


def git_state(root: Path) -> GitState:
    """Commit of the workspace and whether it has uncommitted changes (None outside git)."""
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return GitState(None, None)
    return GitState(commit, dirty)


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def canonical_json(document: Any) -> str:
    """Sorted keys, two-space indent, UTF-8 text kept readable: stable bytes for hashing."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: Path, document: Any) -> None:
    """Write ``document`` as canonical JSON."""
    path.write_text(canonical_json(document), encoding="utf-8")
