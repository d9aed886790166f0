"""How long-running core functions report progress without knowing who is watching.

The core calls a :class:`Progress`; the CLI passes the console's rich implementation on a
terminal and :data:`SILENT` elsewhere (CI logs, tests, library use).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Task(Protocol):
    """One bar: rows done so far out of an optional total."""

    def advance(self, rows: int) -> None:
        """Record ``rows`` more rows done."""


class Progress(Protocol):
    """A factory of progress tasks."""

    def task(
        self, label: str, total: int | None, unit: str = "rows"
    ) -> AbstractContextManager[Task]:
        """Context manager yielding a task for ``label`` with ``total`` units, if known.

        ``unit`` is what is counted: rows (shown with rows/s), or steps of a stage-wise
        phase (validate, report) whose work is not a stream of rows.
        """


class _NullTask:
    def advance(self, rows: int) -> None:
        del rows


class _Silent:
    @contextmanager
    def task(self, label: str, total: int | None, unit: str = "rows") -> Iterator[Task]:
        del label, total, unit
        yield _NullTask()


SILENT: Progress = _Silent()
