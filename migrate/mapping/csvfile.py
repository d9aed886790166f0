"""Reading the workspace's CSV mapping files: header checked, bytes kept for hashing."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from migrate.core.errors import InputError


def read_rows(path: Path, columns: Sequence[str]) -> tuple[bytes, list[dict[str, str]]]:
    """The file's bytes and its rows as dicts; a missing column is an InputError."""
    data = path.read_bytes()
    reader = csv.DictReader(data.decode("utf-8-sig").splitlines())
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(
            f"{path.name} lacks column(s) {', '.join(missing)}",
            hint=f"the header is: {','.join(columns)}",
        )
    return data, list(reader)
