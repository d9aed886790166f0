"""The toolkit's error hierarchy.

Every expected failure is a :class:`BillmigError` carrying the exit code the CLI returns and a
message that says what is wrong and what to do next. The CLI catches them in one place.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECKS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class BillmigError(Exception):
    """An expected failure with an operator-facing message and an exit code."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        """The message and, when known, the next step, on one line."""
        return f"{self.message}; {self.hint}" if self.hint else self.message


class ConfigError(BillmigError):
    """``billmig.toml``, a profile or an environment override is missing or invalid."""


class SourceError(BillmigError):
    """The legacy database cannot be reached or a profile query fails."""


class TargetError(BillmigError):
    """The target database cannot be reached or refuses a write."""


class InputError(BillmigError):
    """A run directory, snapshot or file the command needs is missing or damaged."""


class Refused(InputError):
    """The phase declined before it changed anything (a live run's rollback without --force).

    The ledger records it as ``refused``, not ``failed``: nothing went wrong.
    """
