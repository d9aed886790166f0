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
from typing import TypeAlias
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from migrate.core.legacy_schema import CURRENCY_EXPONENTS, Column, Kind
from migrate.core.reasons import ReasonCode
from migrate.money.amounts import to_minor


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


RawColumn: TypeAlias = Sequence[object] | pa.Array
"""A column as the driver gave it: Python values, or Arrow text (PostgreSQL's COPY stream)."""


def normalise_column(
    column: Column, values: RawColumn, ctx: ColumnContext
) -> tuple[pa.Array, list[Issue]]:
    """One reference column's raw values as an Arrow array of its snapshot type, plus issues."""
    if isinstance(values, pa.Array) and column.kind in (Kind.BOOL,):
        values = values.to_pylist()
    if column.kind in (Kind.MONEY, Kind.QUANTITY):
        return _money(column, values, ctx)
    if column.kind in (Kind.DATE, Kind.TIMESTAMP):
        return _temporal(column, values, ctx)
    if column.kind is Kind.INT:
        return _integers(column, values)
    if column.kind is Kind.BOOL:
        return _booleans(column, values)
    return _checked_text(column, _text(values))


def domain_issues(column: Column, raw: RawColumn, array: pa.Array) -> list[Issue]:
    """Violations of ``column``'s declared domain (SPEC §3), vectorised.

    NULL where a value is required, a code outside the allowed set. A value the type check
    already refused is not reported twice (null in ``array``, but not NULL in ``raw``).
    """
    issues: list[Issue] = []
    if column.required:
        missing = _raw_nulls(raw)
        issues += [
            Issue(int(i), column.name, ReasonCode.VALUE_MISSING, "NULL where a value is required")
            for i in np.flatnonzero(missing)
        ]
    if column.codes:
        allowed = pa.array(column.codes, type=pa.string())
        known = pc.is_in(array, value_set=allowed)
        unknown = pc.and_(array.is_valid(), pc.invert(known))  # NULL is VALUE_MISSING's
        allowed_text = ", ".join(column.codes)
        for i in np.flatnonzero(unknown.to_numpy(zero_copy_only=False)):
            value = array[int(i)].as_py()
            detail = f"{value!r} is not one of {allowed_text}"
            issues.append(Issue(int(i), column.name, ReasonCode.CODE_UNKNOWN, detail))
    return issues


def _raw_nulls(values: RawColumn) -> npt.NDArray[np.bool_]:
    if isinstance(values, pa.Array):
        return np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
    return np.fromiter((v is None for v in values), dtype=np.bool_, count=len(values))


def currency_exponents(currencies: RawColumn) -> tuple[npt.NDArray[np.int64], list[int]]:
    """Exponent per row and the positions whose currency is unknown (they get 2 and an issue)."""
    if not isinstance(currencies, pa.Array):
        currencies = pa.array(currencies, type=pa.string())
    encoded = currencies.dictionary_encode()
    by_code = [
        CURRENCY_EXPONENTS.get(code, -1) if code else -1  # exact: 'kzt' or ' KZT' is no code
        for code in encoded.dictionary.to_pylist()
    ]
    lookup = np.array([*by_code, -1], dtype=np.int64)  # the extra slot serves null currencies
    indices = encoded.indices.fill_null(len(by_code)).to_numpy(zero_copy_only=False)
    exps = lookup[indices]
    unknown = np.flatnonzero(exps < 0)
    exps[unknown] = 2
    return exps, [int(i) for i in unknown]


def _money(column: Column, values: RawColumn, ctx: ColumnContext) -> tuple[pa.Array, list[Issue]]:
    exps = 0 if ctx.minor_units else (ctx.exponents if ctx.exponents is not None else 2)
    converted = to_minor(values, exps)
    issues = [
        Issue(i.index, column.name, i.reason, i.detail, i.amount_minor) for i in converted.issues
    ]
    array = pa.array(converted.minor, type=pa.int64(), mask=~converted.valid)
    return array, issues


_CONTROL = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]"
"""Control characters a name never holds: C0 but tab, newline and carriage return, and DEL.
C1 (U+0080–U+009F) stays: it is what UTF-8 read as Latin-1 leaves, the evidence map's
``ENCODING_DAMAGE`` check reads and the repair reverses."""


def _checked_text(column: Column, array: pa.Array) -> tuple[pa.Array, list[Issue]]:
    """Text as valid UTF-8, and names without control characters, each repair an issue.

    Invalid UTF-8 (a legacy that stored bytes of another encoding) would make the snapshot
    unreadable: the bad bytes become U+FFFD and the value is ``ENCODING_DAMAGE`` (review).
    In a name, NUL, BEL, ESC and the other control characters are removed by this rule and
    the value is ``TEXT_CONTROL_CHARS`` (review), the raw text escaped in the detail.
    """
    issues: list[Issue] = []
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        array, issues = _repaired_utf8(column, array)
    if column.printable and len(array):
        dirty = pc.fill_null(pc.match_substring_regex(array, _CONTROL), False)
        positions = np.flatnonzero(dirty.to_numpy(zero_copy_only=False))
        if len(positions):
            raw = array.to_pylist()
            for i in positions.tolist():
                detail = f"control characters removed from {raw[i]!r}"
                issues.append(Issue(i, column.name, ReasonCode.TEXT_CONTROL_CHARS, detail))
            array = pc.replace_substring_regex(array, _CONTROL, "")
    return array, issues


def _repaired_utf8(column: Column, array: pa.Array) -> tuple[pa.Array, list[Issue]]:
    raw = array.cast(pa.binary()).to_pylist()  # the same buffers, read as bytes
    values: list[str | None] = []
    issues: list[Issue] = []
    for i, value in enumerate(raw):
        if value is None:
            values.append(None)
            continue
        try:
            values.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(value.decode("utf-8", errors="replace"))
            detail = f"invalid UTF-8 {value!r}; the bad bytes became U+FFFD"
            issues.append(Issue(i, column.name, ReasonCode.ENCODING_DAMAGE, detail))
    return pa.array(values, type=pa.string()), issues


def _text(values: RawColumn) -> pa.Array:
    if isinstance(values, pa.Array):
        return values.cast(pa.string())
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if any(isinstance(v, bytes) for v in values):  # as stored: _checked_text says if bad
            encoded = [v if isinstance(v, bytes) or v is None else str(v).encode() for v in values]
            return pa.array(encoded, type=pa.binary()).view(pa.string())
        return pa.array([_as_text(v) for v in values], type=pa.string())


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _integers(column: Column, values: RawColumn) -> tuple[pa.Array, list[Issue]]:
    try:
        if isinstance(values, pa.Array):
            return values.cast(pa.int64()), []
        return pa.array(values, type=pa.int64()), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        if isinstance(values, pa.Array):
            values = values.to_pylist()
    out: list[int | None] = []
    issues: list[Issue] = []
    for i, value in enumerate(values):
        parsed = _as_int(value)
        if parsed is not None and not INT64_MIN <= parsed <= INT64_MAX:
            detail = f"{value!r} is outside the 64-bit integer range"
            issues.append(Issue(i, column.name, ReasonCode.VALUE_UNPARSEABLE, detail))
            parsed = None
        elif parsed is None and value is not None:
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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""What an integer column of the snapshot holds; anything outside is withheld, not wrapped."""

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
    column: Column, values: RawColumn, ctx: ColumnContext
) -> tuple[pa.Array, list[Issue]]:
    """Dates and timestamps, vectorised: native values as they are, text parsed strictly."""
    if isinstance(values, pa.Array) and pa.types.is_temporal(values.type):
        return _arrow_temporal(values, column.arrow_type, ctx.zone), []
    if isinstance(values, pa.Array):
        texts = pc.utf8_trim_whitespace(values.cast(pa.string()))
    else:
        first = next((v for v in values if v is not None), None)
        aware = isinstance(first, datetime) and first.tzinfo is not None
        if not isinstance(first, str | bytes) and not aware:
            try:
                return pa.array(values, type=column.arrow_type), []
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
        try:
            texts = pc.utf8_trim_whitespace(pa.array(values, type=pa.string()))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return _temporal_mixed(column, values, ctx)
    texts = pc.if_else(pc.equal(texts, ""), pa.scalar(None, pa.string()), texts)
    parsed = _parse_texts(texts, column.arrow_type, ctx.fmt)
    failed = pc.and_(pc.is_valid(texts), pc.is_null(parsed))
    issues = [
        Issue(int(i), column.name, ReasonCode.DATE_UNPARSEABLE, _date_detail(texts[i], ctx.fmt))
        for i in pc.indices_nonzero(failed).to_pylist()
    ]
    return parsed, issues


def _arrow_temporal(values: pa.Array, arrow_type: pa.DataType, zone: ZoneInfo) -> pa.Array:
    """Typed Arrow dates/times in operator local time, naive (ADBC delivers these)."""
    if pa.types.is_timestamp(values.type) and values.type.tz is not None:
        values = pc.local_timestamp(values.cast(pa.timestamp("us", tz=zone.key)))
    if pa.types.is_timestamp(values.type):
        values = values.cast(pa.timestamp("us"))
    return values.cast(arrow_type)


def _parse_texts(texts: pa.Array, arrow_type: pa.DataType, fmt: str | None) -> pa.Array:
    """Text to dates or timestamps; invalid text (31 Feb included) becomes null."""
    if fmt is None:
        try:
            return texts.cast(arrow_type)  # Arrow's ISO 8601 parser is strict
        except pa.ArrowInvalid:
            pass
    # pandas parses a fixed format in C and, unlike Arrow's strptime, rejects 31.02.2016.
    series = pd.Series(texts.to_pandas(), dtype=object)
    stamps = pd.to_datetime(series, format=fmt or "ISO8601", errors="coerce")
    return pa.Array.from_pandas(stamps).cast(pa.timestamp("us")).cast(arrow_type)


def _date_detail(raw: pa.Scalar, fmt: str | None) -> str:
    return f"{raw.as_py()!r} is not a date" + (f" in format {fmt}" if fmt else "")


def _temporal_mixed(
    column: Column, values: Sequence[object], ctx: ColumnContext
) -> tuple[pa.Array, list[Issue]]:
    """Slow path for columns mixing driver types or carrying time zones: value by value."""
    native = [_native_temporal(v, ctx.zone, column.kind) for v in values]
    texts = [v if isinstance(v, str) else None for v in native]
    parsed = _parse_texts(pa.array(texts, type=pa.string()), column.arrow_type, ctx.fmt)
    out: list[object] = []
    issues: list[Issue] = []
    for i, raw in enumerate(native):
        if isinstance(raw, str):
            value = parsed[i].as_py()
            if value is None:
                issues.append(
                    Issue(
                        i,
                        column.name,
                        ReasonCode.DATE_UNPARSEABLE,
                        _date_detail(pa.scalar(raw), ctx.fmt),
                    )
                )
            out.append(value)
        else:
            out.append(raw)
    return pa.array(out, type=column.arrow_type), issues


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
