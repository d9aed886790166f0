"""What an expectation suite found, in this toolkit's own terms (no Great Expectations types).

Shared by :mod:`validate.gx_suites`, which runs the suites, and :mod:`validate.gx_process`,
which runs them in a process of their own, so neither imports the other's module for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One expectation's outcome."""

    suite: str
    table: str
    expectation: str
    column: str | None
    success: bool
    unexpected: int | None
    """Rows (or values) that broke it, where GX counts them."""
