"""The one module that prints: results, errors and progress bars (rich).

Data goes to stdout; errors and progress go to stderr. Progress bars and colour appear only on
a terminal, never in CI logs (``CI`` set) or with ``--quiet`` / ``--json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from rich.console import Console as RichConsole
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.progress import Task as RichTask
from rich.prompt import Confirm
from rich.table import Table
from rich.text import Text

from migrate.core.errors import InputError
from migrate.core.progress import SILENT, Progress, Task
from migrate.core.rendering import TableData


class Renderable(Protocol):
    """What the console can show: every result dataclass offers these."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""

    def tables(self) -> Sequence[TableData]:
        """Tables for the terminal."""


class _RowsPerSecond(ProgressColumn):
    def render(self, task: RichTask) -> Text:
        unit = task.fields.get("unit", "rows")
        speed = task.finished_speed or task.speed
        if not speed and task.elapsed:  # finished between two refreshes
            speed = task.completed / task.elapsed
        if unit != "rows":
            return Text(unit, style="cyan")  # steps of a stage-wise phase: no rate to show
        return Text(f"{speed:,.0f} rows/s" if speed else "— rows/s", style="cyan")


class _RichTask:
    def __init__(self, progress: RichProgress, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, rows: int) -> None:
        self._progress.advance(self._task_id, rows)


class _RichProgress:
    def __init__(self, console: RichConsole) -> None:
        self._console = console

    @contextmanager
    def task(self, label: str, total: int | None, unit: str = "rows") -> Iterator[Task]:
        columns = (
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            _RowsPerSecond(),
            TimeRemainingColumn(),
        )
        with RichProgress(*columns, console=self._console, transient=False) as progress:
            task_id = progress.add_task(label, total=total, unit=unit)
            yield _RichTask(progress, task_id)


class Console:
    """Output for one CLI invocation."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self.out = _console(stderr=False)
        self.err = _console(stderr=True)

    def progress(self) -> Progress:
        """Progress bars on an interactive terminal, silence everywhere else."""
        interactive = self.err.is_terminal and not os.environ.get("CI")
        if self.quiet or self.json_mode or not interactive:
            return SILENT
        return _RichProgress(self.err)

    def render(self, result: Renderable) -> None:
        """Show a result: JSON on stdout with --json, tables otherwise (nothing with --quiet)."""
        if self.json_mode:
            sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
            return
        if self.quiet:
            return
        for data in result.tables():
            # Text, not str: a cell such as "[validate] in billmig.toml" is data, not markup
            table = Table(
                title=Text(data.title),
                title_justify="left",
                caption=Text(data.footer) if data.footer else None,
            )
            for header in data.headers:
                # fold, never "…": a path or a hash cut short is one nobody can use
                table.add_column(
                    header, justify="right" if header.endswith("#") else "left", overflow="fold"
                )
            for row in data.rows:
                table.add_row(*(Text(_cell(v)) for v in row))
            self.out.print(table)

    def write(self, text: str) -> None:
        """Data as it is (CSV) on stdout: no table, no markup, no wrapping."""
        sys.stdout.write(text)

    def confirm(self, question: str) -> bool:
        """Ask on the terminal; refused where nobody can answer (a script, --json, CI).

        Raises:
            InputError: stdin is not a terminal, or --json / --quiet is set.
        """
        if self.json_mode or self.quiet or not sys.stdin.isatty() or os.environ.get("CI"):
            raise InputError(
                "this deletes rows and nobody can answer the question here",
                hint="add --yes to go ahead, or --dry-run to only show what it would do",
            )
        return Confirm.ask(Text(question), console=self.err, default=False)

    def error(self, message: str) -> None:
        """One line on stderr saying what is wrong and what to do next."""
        self.err.print(Text("error: ", style="bold red") + Text(message))

    def show_warnings(self) -> None:
        """Print the core's warnings (``billmig`` logger: a lock taken over) on stderr.

        One line each, also with --json (stderr is not data) and --quiet (they matter).
        """
        logger = logging.getLogger("billmig")
        logger.handlers = [_WarningLine(self.err)]
        logger.setLevel(logging.WARNING)
        logger.propagate = False

    def note(self, message: str) -> None:
        """A one-line remark on stderr (suppressed by --quiet and --json)."""
        if not (self.quiet or self.json_mode):
            self.err.print(message)


class _WarningLine(logging.Handler):
    def __init__(self, err: RichConsole) -> None:
        super().__init__(logging.WARNING)
        self._err = err

    def emit(self, record: logging.LogRecord) -> None:
        self._err.print(Text("warning: ", style="bold yellow") + Text(record.getMessage()))


PLAIN_WIDTH = 10_000
"""Width of output that is not a terminal (CI, tee, a log): wide enough that no path, hash,
timestamp or header is ever wrapped or cut; tables stay as wide as their content."""


def _console(*, stderr: bool) -> RichConsole:
    """A rich console: the terminal's width on a terminal, no wrapping anywhere else."""
    console = RichConsole(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = RichConsole(
            stderr=stderr, highlight=False, soft_wrap=True, width=PLAIN_WIDTH, color_system=None
        )
    return console


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "" if value is None else str(value)
