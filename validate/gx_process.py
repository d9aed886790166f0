"""Great Expectations in a process of its own, run while the reconciliation runs.

GX takes seconds to import and its suites are mostly the target database's work, so
``validate`` starts them first in a spawned process (nothing of the parent's DuckDB threads or
connections is inherited) and collects the findings at the end. Only
:mod:`validate.gx_suites` imports GX; this module and the parent never do.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection

from migrate.core.errors import BillmigError, TargetError
from migrate.core.runs import SnapshotFolder, ValidationFolder
from validate.findings import Finding


@dataclass(frozen=True)
class SuiteResults:
    """What the GX process sends back: findings, or the failure that stopped it."""

    target: tuple[Finding, ...] = ()
    snapshot: tuple[Finding, ...] = ()
    error: str | None = None
    hint: str | None = None


class Suites:
    """The target and snapshot suites, running in a spawned process of their own."""

    def __init__(self, url: str, snapshot: SnapshotFolder) -> None:
        context = multiprocessing.get_context("spawn")
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_serve, args=(sender, url, snapshot), name="billmig-gx", daemon=True
        )
        self._process.start()
        sender.close()

    def finish(self, out: ValidationFolder) -> list[Finding]:
        """Wait for the suites, keep both results in ``out/gx/``, return the target's findings.

        Raises:
            TargetError: the suites could not run against the target.
        """
        try:
            results: SuiteResults = self._results.recv()
        except EOFError:
            raise TargetError(
                "the Great Expectations process ended without results",
                hint="rerun validate with --debug; if it repeats, report it with the log",
            ) from None
        finally:
            self._process.join()
        if results.error is not None:
            raise TargetError(results.error, hint=results.hint)
        out.gx.mkdir(exist_ok=True)
        for name, findings in (("target", results.target), ("snapshot", results.snapshot)):
            out.gx_suite(name).write_text(
                json.dumps([asdict(f) for f in findings], indent=2, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
        return list(results.target)

    def stop(self) -> None:
        """End the process if it is still running (validate failed or was interrupted)."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._results.close()


def _serve(sender: Connection, url: str, snapshot: SnapshotFolder) -> None:
    # Ctrl-C is the parent's to handle: it stops this process (no second traceback from here).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sender.send(_run_suites(url, snapshot))
    sender.close()


def _run_suites(url: str, snapshot: SnapshotFolder) -> SuiteResults:
    from migrate.core.db import normalise_url, translate_errors
    from validate.gx_suites import run_snapshot_suites, run_target_suites

    try:
        with translate_errors(url, "running the target's Great Expectations suites", TargetError):
            target = run_target_suites(normalise_url(url).render_as_string(hide_password=False))
        return SuiteResults(tuple(target), tuple(run_snapshot_suites(snapshot)))
    except BillmigError as exc:
        return SuiteResults(error=exc.message, hint=exc.hint)
