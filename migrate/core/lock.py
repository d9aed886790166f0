"""One phase at a time per workspace: an exclusive lock on ``runs/.billmig.lock``.

The lock is an ``flock`` on the file, so the operating system releases it when its holder
dies, however it dies (``kill -9`` included): a stale lock cannot block the next run. A forked
worker would inherit the locked descriptor and keep the workspace locked after its parent was
killed, so workers start with :func:`forget_inherited_locks` (see
:func:`migrate.core.processes.worker_pool`): only the phase's own process holds the lock. The
file's content says who holds it (user, host, process, phase, run, since when) for the
message a second phase gets; a holder empties it when it lets go, so content found by the
next holder names one that died, and the takeover is logged (``billmig`` logger, shown on
stderr by the CLI).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from migrate.core.errors import InputError
from migrate.core.provenance import host, operator

LOG = logging.getLogger("billmig")
_HELD: set[int] = set()
"""Descriptors of the locks this process holds (a forked child closes its copies)."""


def hold_descriptor(descriptor: int) -> None:
    """Note a descriptor that holds a lock, so forked workers close their copy."""
    _HELD.add(descriptor)


def release_descriptor(descriptor: int) -> None:
    """Forget a lock descriptor that is about to be closed."""
    _HELD.discard(descriptor)


def forget_inherited_locks() -> None:
    """In a forked child: close the lock descriptors inherited from the parent.

    The parent keeps its own; the lock then lives exactly as long as the parent process. Runs
    in every forked child right after the fork (``os.register_at_fork``), before anything else
    the child does, and again as the pool workers' initializer.
    """
    for descriptor in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _HELD.clear()


os.register_at_fork(after_in_child=forget_inherited_locks)


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
        left = handle.read()
        if left.strip():  # a holder that let go would have emptied the file
            LOG.warning(
                "took over the workspace lock: its last holder, %s, ended without letting go",
                _holder(left),
            )
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
        _HELD.add(handle.fileno())
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()  # let go: an empty file says nobody died holding it
            handle.flush()
    finally:
        _HELD.discard(handle.fileno())
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
