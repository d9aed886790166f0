"""Who ran something, and where: the one answer every ledger line and artifact records.

``BILLMIG_OPERATOR`` names the person when the OS account is shared (a jump host's
``migration`` user); otherwise the OS user is the operator. Every record that says who did
something (ledger lines, the workspace lock, run records, verdicts, packs, the window state,
compensations) asks :func:`operator`, so no two of them can name different people.
"""

from __future__ import annotations

import getpass
import os
import socket

OPERATOR_VARIABLE = "BILLMIG_OPERATOR"


def operator() -> str:
    """The person running billmig: ``$BILLMIG_OPERATOR``, else the OS user."""
    return os.environ.get(OPERATOR_VARIABLE, "").strip() or getpass.getuser()


def os_user() -> str:
    """The OS account billmig runs under (recorded beside a declared or signing identity)."""
    return getpass.getuser()


def host() -> str:
    """The machine billmig runs on."""
    return socket.gethostname()


SHAPING_LIBRARIES = (
    "billmig", "pyarrow", "pandas", "numpy", "duckdb", "SQLAlchemy", "psycopg", "PyMySQL",
    "adbc-driver-postgresql", "adbc-driver-sqlite", "phonenumbers", "great_expectations",
    "weasyprint",
)  # fmt: skip
"""The libraries whose version can change an output byte (Parquet encoding, CSV, type
inference, the report): each manifest records what was installed."""


def library_versions() -> dict[str, str]:
    """Installed version of each library in :data:`SHAPING_LIBRARIES` ("absent" if not)."""
    from importlib import metadata

    found = {}
    for name in SHAPING_LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found
