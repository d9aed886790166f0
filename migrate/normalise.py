"""Normalise raw driver values into the snapshot's Arrow columns (SPEC §2, §3).

Each engine hands back its own Python types (SQLite: text dates and REAL amounts; PostgreSQL and
MariaDB: ``datetime`` and ``Decimal``). Normalising by the reference column's kind makes the
snapshot identical whatever the engine. A value that cannot be converted exactly becomes null
and an :class:`Issue`, never a silent guess and never a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from migrate.amounts import to_minor
from migrate.legacy_schema import CURRENCY_EXPONENTS, Column, Kind
from migrate.reasons import ReasonCode


@dataclass(frozen=True)
class Issue:
    """A value the extractor withheld or normalised, by position in the chunk."""

    index: int
    column: str
    reason: ReasonCode
    detail: str
    amount_minor: int | None = None


@dataclass(frozen=True)
class ColumnContext:
    """What a column's conversion needs beyond its own values."""

    zone: ZoneInfo
    fmt: str | None = None
    """strptime format for dates stored as text."""
    minor_units: bool = False
    """Money already in minor units."""
    exponents: npt.NDArray[np.int64] | None = None
    """Per-row decimal places for money (from the row's currency)."""


def normalise_column(
    column: Column, values: Sequence[object], ctx: ColumnContext
) -> tuple[pa.Array, list[Issue]]:
    """One reference column's raw values as an Arrow array of its snapshot type, plus issues."""
    if column.kind in (Kind.MONEY, Kind.QUANTITY):
        return _money(column, values, ctx)
    if column.kind in (Kind.DATE, Kind.TIMESTAMP):
        return _temporal(column, values, ctx)
    if column.kind is Kind.INT:
        return _integers(column, values)
    if column.kind is Kind.BOOL:
        return _booleans(column, values)
    return _text(values), []


def currency_exponents(currencies: Sequence[object]) -> tuple[npt.NDArray[np.int64], list[int]]:
    """Exponent per row and the positions whose currency is unknown (they get 2 and an issue)."""
    exps = np.empty(len(currencies), dtype=np.int64)
    unknown: list[int] = []
    cache: dict[object, int | None] = {}
    for i, code in enumerate(currencies):
        if code not in cache:
            cache[code] = CURRENCY_EXPONENTS.get(str(code).strip().upper()) if code else None
        exp = cache[code]
        if exp is None:
            unknown.append(i)
            exps[i] = 2
        else:
            exps[i] = exp
    return exps, unknown


def _money(
    column: Column, values: Sequence[object], ctx: ColumnContext
) -> tuple[pa.Array, list[Issue]]:
    exps = 0 if ctx.minor_units else (ctx.exponents if ctx.exponents is not None else 2)
    converted = to_minor(values, exps)
    issues = [
        Issue(i.index, column.name, i.reason, i.detail, i.amount_minor) for i in converted.issues
    ]
    array = pa.array(converted.minor, type=pa.int64(), mask=~converted.valid)
    return array, issues


def _text(values: Sequence[object]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_as_text(v) for v in values], type=pa.string())


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _integers(column: Column, values: Sequence[object]) -> tuple[pa.Array, list[Issue]]:
    try:
        return pa.array(values, type=pa.int64()), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    out: list[int | None] = []
    issues: list[Issue] = []
    for i, value in enumerate(values):
        parsed = _as_int(value)
        if parsed is None and value is not None:
            issues.append(
                Issue(i, column.name, ReasonCode.VALUE_UNPARSEABLE, f"{value!r} is not an integer")
            )
        out.append(parsed)
    return pa.array(out, type=pa.int64()), issues


def _as_int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, float) else None
        if number is not None:
            return int(number) if number.is_integer() else None
        text = str(value).strip()
        return int(text) if text.lstrip("-").isdigit() else None
    except (ValueError, OverflowError):
        return None


_TRUE = {"1", "t", "true", "y", "yes"}
_FALSE = {"0", "f", "false", "n", "no"}


def _booleans(column: Column, values: Sequence[object]) -> tuple[pa.Array, list[Issue]]:
    out: list[bool | None] = []
    issues: list[Issue] = []
    for i, value in enumerate(values):
        if value is None or isinstance(value, bool):
            out.append(value)
            continue
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            out.append(text in _TRUE)
        else:
            issues.append(
                Issue(i, column.name, ReasonCode.VALUE_UNPARSEABLE, f"{value!r} is not a flag")
            )
            out.append(None)
    return pa.array(out, type=pa.bool_()), issues


def _temporal(
    column: Column, values: Sequence[object], ctx: ColumnContext
) -> tuple[pa.Array, list[Issue]]:
    arrow_type = column.arrow_type
    native = [_native_temporal(v, ctx.zone, column.kind) for v in values]
    if all(v is None or not isinstance(v, str) for v in native):
        return pa.array(native, type=arrow_type), []
    texts = pd.Series([v if isinstance(v, str) else None for v in native], dtype=object)
    if ctx.fmt:
        parsed = pd.to_datetime(texts, format=ctx.fmt, errors="coerce")
    else:
        parsed = pd.to_datetime(texts, format="ISO8601", errors="coerce")
    out: list[object] = []
    issues: list[Issue] = []
    for i, (raw, stamp) in enumerate(zip(native, parsed.tolist(), strict=True)):
        if isinstance(raw, str):
            if pd.isna(stamp):
                detail = f"{raw!r} is not a date" + (f" in format {ctx.fmt}" if ctx.fmt else "")
                issues.append(Issue(i, column.name, ReasonCode.DATE_UNPARSEABLE, detail))
                out.append(None)
            else:
                value = stamp.to_pydatetime()
                out.append(value.date() if column.kind is Kind.DATE else value)
        else:
            out.append(raw)
    return pa.array(out, type=arrow_type), issues


def _native_temporal(value: object, zone: ZoneInfo, kind: Kind) -> object:
    """A driver's date/time value in operator local time, naive; text is left for parsing."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str):
        text = value.strip()
        return text if text else None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(zone).replace(tzinfo=None)
        return value.date() if kind is Kind.DATE else value
    if isinstance(value, date):
        return value if kind is Kind.DATE else datetime(value.year, value.month, value.day)
    return str(value)
