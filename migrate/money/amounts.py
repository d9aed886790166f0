"""Exact conversion of legacy amounts to integer minor units (SPEC §2).

Legacy amounts arrive as NUMERIC (``Decimal``), float, integer or text. Each value is read as
the decimal a person wrote (a float by its shortest round-trip repr), scaled by the currency's
exponent, and kept only if that is a whole number of minor units:

* whole → the minor amount;
* within 1e-6 of a whole minor unit → normalised, and reported as ``AMOUNT_FLOAT_ARTEFACT``;
* finer than a minor unit → null, reported as ``AMOUNT_PRECISION``;
* not a number → null, reported as ``AMOUNT_UNPARSEABLE``;
* a float of 2^53 minor units or more whose shortest decimal and exact binary value name
  different minor units (-922337203685474.2 and .25 are one double) → null,
  ``AMOUNT_PRECISION``: no float of that size is exact to the minor unit.

Floats take a vectorised path: a float ``x`` is exactly ``m / 10**e`` for integer ``m`` when the
double nearest to ``m / 10**e`` is ``x`` itself; below 1e13 major units no two such decimals
share a double, so the check is exact. Everything else goes through :mod:`decimal`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from migrate.core.reasons import ReasonCode

ARTEFACT_TOLERANCE = Decimal("0.000001")
"""A scaled value this close to a whole minor unit is a float artefact, not a real fraction."""
_FAST_LIMIT = 10**13
"""Below this many major units the bulk paths are exact (and ×10^exp fits in int64)."""
_INT64_LIMIT = 2**63
_FLOAT_EXACT = 2**53
"""From here on a double cannot tell neighbouring minor units apart in every case."""


@dataclass(frozen=True)
class AmountIssue:
    """One value that was not a whole number of minor units."""

    index: int
    """Position of the value in the converted sequence."""
    reason: ReasonCode
    detail: str
    amount_minor: int | None
    """The normalised amount for an artefact, else None."""


@dataclass(frozen=True)
class ConvertedAmounts:
    """A column of amounts in minor units with its nulls and issues."""

    minor: npt.NDArray[np.int64]
    valid: npt.NDArray[np.bool_]
    """False where the value was null or could not be converted."""
    issues: tuple[AmountIssue, ...]


def to_minor(
    values: Sequence[object] | pa.Array, exponents: npt.NDArray[np.int64] | int
) -> ConvertedAmounts:
    """Convert legacy amounts in major units to integer minor units, exactly.

    Args:
        values: raw values from the driver (None, int, float, Decimal or str), or an Arrow
            string array (PostgreSQL's COPY stream).
        exponents: decimal places per value (the currency's ISO 4217 exponent), or one for all.
    """
    count = len(values)
    exps = np.broadcast_to(np.asarray(exponents, dtype=np.int64), (count,))
    minor = np.zeros(count, dtype=np.int64)
    valid = np.zeros(count, dtype=np.bool_)
    if isinstance(values, pa.Array) and (
        pa.types.is_floating(values.type) or pa.types.is_integer(values.type)
    ):
        # SQLite through ADBC: the same float test as for Python floats, on the whole array.
        missing = values.is_null().to_numpy(zero_copy_only=False)
        floats = values.to_numpy(zero_copy_only=False)
        pending = _float_path(floats, exps, minor, valid, missing)
        python_values: Sequence[object] = _LazyScalars(values)
    elif isinstance(values, pa.Array):
        pending = _decimal_path(values, exps, minor, valid)
        python_values = _LazyScalars(values)
    else:
        pending = _fast_path(values, exps, minor, valid)
        python_values = values
    issues: list[AmountIssue] = []
    for index in pending:
        value = python_values[index]
        if value is None:
            continue
        amount, issue = _convert_one(value, int(exps[index]), index)
        if amount is not None:
            minor[index] = amount
            valid[index] = True
        if issue is not None:
            issues.append(issue)
    return ConvertedAmounts(minor, valid, tuple(issues))


class _LazyScalars(Sequence[object]):
    """Python values of an Arrow array, converted only where asked for."""

    def __init__(self, array: pa.Array) -> None:
        self._array = array

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, index: int) -> object:  # type: ignore[override]
        return self._array[index].as_py()


_DECIMAL = pa.decimal128(24, 12)
"""Bulk decimal type: up to 10^12 major units with 12 places; anything else goes value by value."""


def _decimal_path(
    values: pa.Array,
    exps: npt.NDArray[np.int64],
    minor: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
) -> list[int]:
    """Convert Decimal or decimal-text amounts in bulk with Arrow's exact decimal arithmetic."""
    try:
        decimals = values.cast(_DECIMAL)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return list(range(len(values)))
    exact = np.zeros(len(values), dtype=np.bool_)
    for exponent in np.unique(exps).tolist():
        rows = exps == exponent
        factor = pa.scalar(Decimal(10) ** exponent, pa.decimal128(4, 0))
        scaled = pc.multiply(decimals, factor)
        whole = pc.fill_null(pc.equal(pc.round(scaled, ndigits=0), scaled), False)
        ints = pc.cast(pc.if_else(whole, scaled, pa.scalar(Decimal(0), scaled.type)), pa.int64())
        ok = whole.to_numpy(zero_copy_only=False) & rows
        minor[ok] = ints.to_numpy(zero_copy_only=False)[ok]
        exact |= ok
    valid |= exact
    present = values.is_valid().to_numpy(zero_copy_only=False)
    return [int(i) for i in np.flatnonzero(~exact & present)]


def _fast_path(
    values: Sequence[object],
    exps: npt.NDArray[np.int64],
    minor: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
) -> list[int]:
    """Convert ints and floats (or Decimals and text) in bulk; return indices left over.

    SQLite hands back NUMERIC amounts as ints (whole) and floats (the rest); PostgreSQL and
    MariaDB hand back Decimals, which all take the slow path. An int below 1e13 is exactly a
    float, so both go through the float round-trip test described in the module doc.
    """
    count = len(values)
    kinds = set(map(type, values))
    if kinds <= {Decimal, str, type(None)} and kinds - {type(None)}:
        text_or_decimal = pa.array(values, type=pa.string() if str in kinds else None)
        return _decimal_path(text_or_decimal, exps, minor, valid)
    if not kinds <= {int, float, type(None)}:
        return list(range(count))
    missing = np.fromiter((v is None for v in values), dtype=np.bool_, count=count)
    return _float_path(np.array(values, dtype=np.float64), exps, minor, valid, missing)


def _float_path(
    floats: npt.NDArray[Any],
    exps: npt.NDArray[np.int64],
    minor: npt.NDArray[np.int64],
    valid: npt.NDArray[np.bool_],
    missing: npt.NDArray[np.bool_],
) -> list[int]:
    """The float round-trip test of the module doc over a whole array.

    ``missing`` marks the nulls (NaN in ``floats`` too). A NaN legacy stored — a DOUBLE
    column's own 'NaN' — is not missing: it is left over, and becomes AMOUNT_UNPARSEABLE.
    """
    floats = floats.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.power(10.0, exps)
        candidate = np.round(floats * scale)
        exact = np.isfinite(floats) & (np.abs(floats) < _FAST_LIMIT) & (candidate / scale == floats)
    minor[exact] = candidate[exact].astype(np.int64)
    valid[exact] = True
    return [int(i) for i in np.flatnonzero(~exact & ~missing)]


def _convert_one(value: object, exponent: int, index: int) -> tuple[int | None, AmountIssue | None]:
    decimal_value = as_decimal(value)
    if decimal_value is None:
        detail = f"{value!r} is not a number"
        return None, AmountIssue(index, ReasonCode.AMOUNT_UNPARSEABLE, detail, None)
    written = format(decimal_value.normalize(), "f")
    scaled = decimal_value.scaleb(exponent)
    whole = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    if abs(whole) >= _INT64_LIMIT:
        detail = f"{written} is beyond the range of 64-bit minor units"
        return None, AmountIssue(index, ReasonCode.AMOUNT_UNPARSEABLE, detail, None)
    if scaled == whole:
        if (
            isinstance(value, float)
            and abs(whole) >= _FLOAT_EXACT
            and whole != _exact(value, exponent)
        ):
            detail = (
                f"{written} is a floating-point value beyond 2^53 minor units: the nearest double "
                f"is {_exact(value, exponent)} minor units, so it cannot be exact to the minor unit"
            )
            return None, AmountIssue(index, ReasonCode.AMOUNT_PRECISION, detail, None)
        return int(whole), None
    if abs(scaled - whole) <= ARTEFACT_TOLERANCE:
        detail = f"{written} normalised to {int(whole)} minor units"
        return int(whole), AmountIssue(index, ReasonCode.AMOUNT_FLOAT_ARTEFACT, detail, int(whole))
    detail = f"{written} is finer than one minor unit (10^-{exponent})"
    return None, AmountIssue(index, ReasonCode.AMOUNT_PRECISION, detail, None)


def _exact(value: float, exponent: int) -> Decimal:
    """A float's exact binary value, in minor units."""
    return Decimal(value).scaleb(exponent)


def as_decimal(value: object) -> Decimal | None:
    """The decimal a legacy value stands for, or None if it is not a finite number."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, Decimal):
            result = value
        elif isinstance(value, int):
            result = Decimal(value)
        elif isinstance(value, float):
            result = Decimal(repr(value))
        elif isinstance(value, str):
            result = Decimal(value.strip())
        elif isinstance(value, bytes):
            result = Decimal(value.decode("ascii").strip())
        else:
            return None
    except (InvalidOperation, UnicodeDecodeError):
        return None
    return result if result.is_finite() else None
