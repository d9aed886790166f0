"""The restricted-services window's state as ``runs/window.json`` records it (SPEC §8).

Read by ``billmig window`` (which writes it), the cutover gate and the report's readiness
verdict (:mod:`validate.readiness`): the state file is data every side reads the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from migrate.core.errors import EXIT_OK
from migrate.core.rendering import TableData
from migrate.core.runs import RunsFolder


@dataclass(frozen=True)
class WindowState:
    """What ``runs/window.json`` says, and what a command did to it."""

    state: str
    """none, open or closed."""
    planned_from: str | None = None
    planned_to: str | None = None
    opened_at: str | None = None
    opened_by: str | None = None
    closed_at: str | None = None
    policy_sha256: str | None = None
    notices: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """Always 0."""
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def tables(self) -> list[TableData]:
        """The window in one table."""
        rows = [(k.replace("_", " "), v) for k, v in self.__dict__.items() if v and k != "notices"]
        rows += [("notice file", n) for n in self.notices]
        return [TableData(title=f"restricted-services window: {self.state}", headers=("", ""),
                          rows=rows)]  # fmt: skip


def window_state(runs: RunsFolder) -> WindowState:
    """The window's state as the runs folder's state file records it (``none`` before any)."""
    path = runs.window_state
    if not path.is_file():
        return WindowState("none")
    doc = json.loads(path.read_text(encoding="utf-8"))
    return WindowState(
        doc["state"], doc.get("planned_from"), doc.get("planned_to"), doc.get("opened_at"),
        doc.get("opened_by"), doc.get("closed_at"), doc.get("policy_sha256"),
    )  # fmt: skip
