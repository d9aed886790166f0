"""One phase at a time per workspace: an exclusive lock on ``runs/.billmig.lock``.

The lock is an ``flock`` on the file, so the operating system releases it when its holder
dies, however it dies (``kill -9`` included): a stale lock cannot block the next run. The
file's content says who holds it (user, host, process, phase, run, since when) for the
message a second phase gets.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from migrate.core.errors import InputError
from migrate.core.provenance import host, operator


@contextmanager
def workspace_lock(path: Path, phase: str, run_id: str) -> Iterator[None]:
    """Hold the workspace lock file ``path`` for ``phase`` of ``run_id``; refuse if held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise InputError(
                f"the workspace is busy: {_holder(handle.read())}",
                hint="wait for it to finish, or stop that process; a dead one releases the lock",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "user": operator(),
                    "host": host(),
                    "pid": os.getpid(),
                    "phase": phase,
                    "run_id": run_id,
                    "since": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
        )
        handle.flush()
        yield
    finally:
        handle.close()  # closing the descriptor releases the flock


def _holder(text: str) -> str:
    try:
        who = json.loads(text)
        return (
            f"{who['phase']} of run {who['run_id']} by {who['user']} on {who['host']} "
            f"(pid {who['pid']}) since {who['since']}"
        )
    except (ValueError, KeyError, TypeError):
        return "another billmig process holds runs/.billmig.lock"
