"""Plain data a result offers for display; the console turns it into rich tables.

Kept free of rich so core modules can describe their output without importing the console.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TableData:
    """A table a result offers for display: title, headers, rows and an optional footer.

    A header ending in ``#`` marks a right-aligned numeric column.
    """

    title: str
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]
    footer: str = ""

    def to_text(self) -> str:
        """The table as plain aligned text (for logs and tests)."""
        cells = [list(self.headers), *[[_plain(v) for v in row] for row in self.rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.headers))]
        lines = [self.title]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        if self.footer:
            lines.append(self.footer)
        return "\n".join(lines)


def _plain(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)
