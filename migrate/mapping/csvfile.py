"""Reading the workspace's CSV mapping files: header checked, bytes kept for hashing.

Every way a hand-edited CSV goes wrong is an :class:`InputError` naming the file and line:
bytes that are not UTF-8, an unbalanced quote, a row with fewer or more fields than the header,
a missing column.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from migrate.core.errors import InputError


def read_rows(path: Path, columns: Sequence[str]) -> tuple[bytes, list[dict[str, str]]]:
    """The file's bytes and its rows as dicts.

    Raises:
        InputError: not UTF-8, not CSV, a missing column, or a row of the wrong width.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path.name}:{line}: not UTF-8 text (byte {exc.start})",
            hint="save the file as UTF-8 (a spreadsheet's 'CSV UTF-8' format)",
        ) from None
    reader = csv.DictReader(text.splitlines(), strict=True)
    try:
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(
                f"{path.name} lacks column(s) {', '.join(missing)}",
                hint=f"the header is: {','.join(columns)}",
            )
        rows = []
        for row in reader:
            width = _width(row)
            if width != len(header):
                raise InputError(
                    f"{path.name}:{reader.line_num}: the row has {width} field(s), "
                    f"the header {len(header)}",
                    hint="every row needs exactly the header's columns (quote commas in text)",
                )
            rows.append(row)
    except csv.Error as exc:
        raise InputError(
            f"{path.name}:{reader.line_num}: not valid CSV ({exc})",
            hint="check the quotes on that line",
        ) from None
    return data, rows


def _width(row: dict[str, object]) -> int:
    """Fields the row really had: a short row's missing ones are None, extras sit under None."""
    extra = row.get(None)  # type: ignore[call-overload]
    present = sum(1 for key, value in row.items() if key is not None and value is not None)
    return present + (len(extra) if isinstance(extra, list) else 0)
