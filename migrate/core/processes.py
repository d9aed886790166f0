"""Worker processes that cannot outlive the phase that started them.

Map's workers are forked (they share the parent's read-only state for free). Two things keep
a killed phase from leaving anything behind: each worker closes the workspace lock it
inherited (:func:`migrate.core.lock.forget_inherited_locks`), and on Linux asks the kernel to
end it when its parent dies (``PR_SET_PDEATHSIG``), so ``kill -9`` of the phase ends its
workers too instead of leaving them computing for a run nobody records.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

from migrate.core.lock import forget_inherited_locks

_PR_SET_PDEATHSIG = 1


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` forked processes that die with this one."""
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_worker_start,
        initargs=(os.getpid(),),
    )


def _worker_start(parent: int) -> None:
    forget_inherited_locks()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
