"""What happened to each legacy row: exception rows (SPEC §6) and lineage rows.

Every legacy row of a snapshot ends in ``lineage`` exactly once, with an :class:`Outcome`; rows
that raise a reason code also appear in ``exceptions`` (a row may raise more than one code).
Rules build both as small DataFrames with the helpers below, so every rule writes them alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from migrate.core.reasons import ReasonCode
from migrate.core.target_schema import stable_id_array


class Outcome(StrEnum):
    """Where a legacy row went."""

    MAPPED = "mapped"
    """Became the target row named in lineage."""
    MERGED = "merged"
    """Folded into another row (a duplicate client into the earliest one)."""
    EXCEPTION = "exception"
    """Not mapped: a blocking reason code on the row itself (see exceptions)."""
    HELD = "held"
    """Not mapped because a row it depends on is not (lineage ``rule`` says which and why)."""
    NOT_MIGRATED = "not_migrated"
    """Deliberately left in legacy: history (posted payments, charges, orders), expired bonuses,
    unused tariffs; reported, never loaded."""


EXCEPTION_COLUMNS = (
    "entity", "legacy_key", "reason_code", "severity", "detail", "amount_minor", "currency",
)  # fmt: skip
LINEAGE_COLUMNS = ("entity", "legacy_key", "outcome", "target_table", "target_id", "rule")

RUN_EXCEPTIONS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("phase", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("legacy_key", pa.string()),
        pa.field("reason_code", pa.string()),
        pa.field("severity", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("amount_minor", pa.int64()),
        pa.field("currency", pa.string()),
        pa.field("disposition", pa.string()),
        pa.field("disposition_by", pa.string()),
        pa.field("disposition_at", pa.date32()),
        pa.field("disposition_why", pa.string()),
    ]
)
"""``runs/<run_id>/mapped/exceptions.parquet``: SPEC §6's table, with the phase that raised
each row and the recorded disposition (who decided, when, why)."""

LINEAGE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("legacy_key", pa.string()),
        pa.field("outcome", pa.string()),
        pa.field("target_table", pa.string()),
        pa.field("target_id", pa.string()),
        pa.field("rule", pa.string()),
    ]
)
"""``runs/<run_id>/mapped/lineage.parquet``: legacy key → new key and the rule applied."""


def exceptions(
    entity: str,
    keys: Sequence[object] | pd.Series | np.ndarray,
    code: ReasonCode,
    detail: str | pd.Series,
    amount_minor: pd.Series | np.ndarray | None = None,
    currency: pd.Series | np.ndarray | str | None = None,
) -> pd.DataFrame:
    """Exception rows for ``keys`` of ``entity`` raising ``code``."""
    key_values = _texts(keys)
    n = len(key_values)
    amounts = (
        pd.array(np.full(n, None), dtype="Int64")
        if amount_minor is None
        else pd.array(np.asarray(amount_minor), dtype="Int64")
    )
    return pd.DataFrame(
        {
            "entity": entity,
            "legacy_key": key_values,
            "reason_code": code.value,
            "severity": code.severity.value,
            "detail": _texts(detail) if isinstance(detail, pd.Series) else [detail] * n,
            "amount_minor": amounts,
            "currency": _texts(currency) if not isinstance(currency, str | None) else currency,
        },
        columns=list(EXCEPTION_COLUMNS),
    )


def lineage(
    entity: str,
    keys: Sequence[object] | pd.Series | np.ndarray,
    outcome: Outcome,
    rule: str | pd.Series,
    target_table: str | None = None,
    target_ids: Sequence[str | None] | pd.Series | pd.api.extensions.ExtensionArray | None = None,
) -> pd.DataFrame:
    """Lineage rows for ``keys`` of ``entity``."""
    key_values = _texts(keys)
    n = len(key_values)
    return pd.DataFrame(
        {
            "entity": entity,
            "legacy_key": key_values,
            "outcome": outcome.value,
            "target_table": target_table,
            "target_id": [None] * n if target_ids is None else _texts(target_ids),
            "rule": _texts(rule) if isinstance(rule, pd.Series) else [rule] * n,
        },
        columns=list(LINEAGE_COLUMNS),
    )


def concat(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """Concatenate rule outputs (empty input gives an empty frame with ``columns``)."""
    present = [f for f in frames if len(f)]
    if not present:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return pd.concat(present, ignore_index=True)


def _texts(values: object) -> pd.Series:
    """Values as text (keys may be integers in the snapshot), nulls kept as nulls."""
    array = values.to_numpy() if isinstance(values, pd.Series) else values
    return pd.Series(array).astype("string").reset_index(drop=True)


def where_or_none(condition: np.ndarray | pd.Series, values: object) -> np.ndarray:
    """An object array of ``values`` where ``condition`` holds and None elsewhere."""
    mask = np.asarray(condition, dtype=bool)
    out = np.full(len(mask), None, dtype=object)
    out[mask] = np.broadcast_to(np.asarray(values, dtype=object), len(mask))[mask]
    return out


def member(values: pd.Series | pd.Index, candidates: Iterable[object] | pa.Array) -> np.ndarray:
    """True where a value is among ``candidates`` (nulls never are), as a numpy bool array.

    pandas' ``isin`` on Arrow-backed text walks the values in Python; Arrow's ``is_in`` does
    not, which matters at millions of rows.
    """
    if isinstance(values, pd.Index):
        values = pd.Series(values)
    array = pa.array(values, from_pandas=True)
    if len(array) == 0:
        return np.zeros(0, dtype=bool)
    if isinstance(candidates, pa.Array):
        value_set = candidates
    elif isinstance(candidates, pd.Series):
        value_set = pa.array(candidates, from_pandas=True)
    else:
        listed = list(candidates.tolist() if isinstance(candidates, pd.Index) else candidates)
        value_set = pa.array(listed, type=array.type if listed else None)
    if len(value_set) == 0 or len(array) == 0:
        return np.zeros(len(array), dtype=bool)
    if value_set.type != array.type:
        value_set = value_set.cast(array.type)
    found = pc.is_in(array, value_set=value_set)
    return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), dtype=bool)


def lookup(values: pd.Series, mapping: pd.Series | Mapping[Any, Any]) -> pd.Series:
    """``values.map(mapping)`` computed by Arrow (missing keys give nulls), same index.

    pandas' ``map`` hashes Arrow-backed text through Python objects; ``index_in`` + ``take``
    stays in Arrow. The result is Arrow-backed: nullable integers stay integers.
    """
    if not isinstance(mapping, pd.Series):
        mapping = pd.Series(list(mapping.values()), index=list(mapping.keys()), dtype=object)
    probe = pa.array(values.reset_index(drop=True), from_pandas=True)
    if len(mapping) == 0 or len(probe) == 0:
        return pd.Series([None] * len(values), index=values.index, dtype=object)
    keys = pa.array(pd.Series(mapping.index), from_pandas=True)
    if keys.type != probe.type:
        keys = keys.cast(probe.type)
    targets = pa.array(mapping.reset_index(drop=True), from_pandas=True)
    found = pc.take(targets, pc.index_in(probe, value_set=keys))
    return pd.Series(pd.arrays.ArrowExtensionArray(found), index=values.index)


def id_column(
    namespace: str, entity: str, legacy_keys: Iterable[object]
) -> pd.api.extensions.ExtensionArray:
    """Stable IDs (:func:`~migrate.core.target_schema.stable_id_array`) as a frame column."""
    ids = stable_id_array(namespace, entity, legacy_keys)
    return pd.arrays.ArrowExtensionArray(ids)
