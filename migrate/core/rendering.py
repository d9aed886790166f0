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
