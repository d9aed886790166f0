"""Dispositions (SPEC §6): recorded decisions on exceptions, kept in a versioned workspace file.

``mappings/dispositions.csv`` has one decision per row::

    entity,legacy_key,reason_code,disposition,decided_by,decided_at,why
    accounts,4000000123,REFUND_LIABILITY,accepted,A. Nurlanova (finance),2016-06-28,refund by bank
    payments,*,PAYMENT_IN_TRANSIT,accepted,QA lead,2016-06-28,settlement centre lag, seed 003

``legacy_key = *`` covers every row of that entity with that code. A disposition is one of
``accepted`` (migrate as mapped), ``excluded`` (leave the row out of this migration) or
``fix_in_source`` (legacy is corrected and re-extracted). A blocking code cannot be
``accepted``: its row has no correct mapping to accept, so the file is refused. Decisions are
copied onto each exception they cover, so the exceptions table carries the audit trail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from migrate.core.errors import InputError
from migrate.core.reasons import ReasonCode, Severity
from migrate.mapping.csvfile import read_rows

COLUMNS = ("entity", "legacy_key", "reason_code", "disposition", "decided_by", "decided_at", "why")
DISPOSITIONS = ("accepted", "excluded", "fix_in_source")
_RECORDED = ("disposition", "disposition_by", "disposition_at", "disposition_why")


@dataclass(frozen=True)
class Dispositions:
    """The parsed file: one row per decision."""

    decisions: pd.DataFrame
    sha256: str

    def apply(self, exceptions: pd.DataFrame) -> pd.DataFrame:
        """``exceptions`` with the decision covering each row (exact key before ``*``)."""
        out = exceptions.copy()
        for column in _RECORDED:
            out[column] = pd.Series([None] * len(out), dtype="string", index=out.index)
        if self.decisions.empty or out.empty:
            return out
        keys = ["entity", "legacy_key", "reason_code"]
        for exact in (False, True):  # wildcard first, so exact decisions overwrite it
            chosen = self.decisions[(self.decisions["legacy_key"] != "*") == exact]
            if chosen.empty:
                continue
            on = keys if exact else ["entity", "reason_code"]
            matched = out[on].merge(chosen[[*on, *_RECORDED]], on=on, how="left")
            hit = matched["disposition"].notna().to_numpy()
            for column in _RECORDED:
                out.loc[hit, column] = matched.loc[hit, column].to_numpy()
        return out

    def excluded(self, entity: str) -> set[str]:
        """Legacy keys of ``entity`` with an exact ``excluded`` decision."""
        rows = self.decisions[
            (self.decisions["entity"] == entity)
            & (self.decisions["disposition"] == "excluded")
            & (self.decisions["legacy_key"] != "*")
        ]
        return set(rows["legacy_key"].tolist())


def load_dispositions(path: Path) -> Dispositions:
    """Read and check the file; a missing file means no decisions yet."""
    if not path.exists():
        empty = pd.DataFrame({c: pd.Series(dtype="string") for c in [*COLUMNS[:3], *_RECORDED]})
        return Dispositions(empty, "")
    data, reader = read_rows(path, COLUMNS)
    rows = []
    seen: set[tuple[str, str, str]] = set()
    for line, row in enumerate(reader, start=2):
        rows.append(_decision(row, f"{path.name}:{line}", seen))
    frame = pd.DataFrame(rows, columns=[*COLUMNS[:3], *_RECORDED], dtype="string")
    return Dispositions(frame, hashlib.sha256(data).hexdigest())


def _check_date(value: str, where: str) -> None:
    """``decided_at`` is an ISO date or date-time, not in the future: it dates a decision."""
    try:
        decided = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"{where}: decided_at {value!r} is not a date",
            hint="write it as 2016-06-28 or 2016-06-28T14:30",
        ) from None
    now = datetime.now(decided.tzinfo) if decided.tzinfo else datetime.now()
    if decided > now + timedelta(days=1):
        raise InputError(
            f"{where}: decided_at {value} is in the future",
            hint="date the decision when it was made",
        )


def _decision(row: dict[str, str], where: str, seen: set[tuple[str, str, str]]) -> list[str]:
    values = {k: (row.get(k) or "").strip() for k in COLUMNS}
    empty = [k for k, v in values.items() if not v]
    if empty:
        raise InputError(f"{where}: {', '.join(empty)} empty", hint="every column is required")
    try:
        code = ReasonCode[values["reason_code"]]
    except KeyError as exc:
        raise InputError(
            f"{where}: unknown reason code {values['reason_code']}",
            hint="use a code from the exceptions table (see runbooks/02-map.md)",
        ) from exc
    if values["disposition"] not in DISPOSITIONS:
        raise InputError(
            f"{where}: disposition {values['disposition']!r} unknown",
            hint=f"use one of {', '.join(DISPOSITIONS)}",
        )
    if code.severity is Severity.BLOCK and values["disposition"] == "accepted":
        raise InputError(
            f"{where}: {code} blocks migration and cannot be accepted as is",
            hint="record excluded (leave the row out) or fix_in_source (correct and re-extract)",
        )
    _check_date(values["decided_at"], where)
    key = (values["entity"], values["legacy_key"], values["reason_code"])
    if key in seen:
        raise InputError(f"{where}: a second decision on {' '.join(key)}", hint="keep one")
    seen.add(key)
    return [
        values["entity"],
        values["legacy_key"],
        values["reason_code"],
        values["disposition"],
        values["decided_by"],
        values["decided_at"],
        values["why"],
    ]
