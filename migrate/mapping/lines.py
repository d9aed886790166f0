"""Lines and the subscriptions on them (SPEC §5.7, §5.8): numbers, consent, orphans.

Runs on one partition by phone number: every line and subscription whose number normalises to
the same E.164 value is in the same partition, so "one number live on two lines" is exact.

* A number that is not a Kazakh mobile in any way legacy writes it is ``INVALID_MSISDN``; a
  number live (active or suspended) on two lines is ``DUPLICATE_MSISDN`` on both; a line
  terminated before it was activated is ``DATE_INCONSISTENT``. All three block: the line and
  its products are held.
* A dealer-channel line without consent evidence is ``UNCONSENTED_LINE``: with policy ``flag``
  it migrates with ``consent_state = pending``; with ``hold`` it is held.
* A subscription is attached to the line with the same number as legacy writes it (a live line
  first, then the latest activated). A subscription with no such line is ``ORPHAN_ROW``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from migrate.core.numbering import NumberingPlan
from migrate.core.reasons import ReasonCode
from migrate.mapping.identity import in_duplicate_groups, normalise_msisdns
from migrate.mapping.outcomes import (
    EXCEPTION_COLUMNS,
    LINEAGE_COLUMNS,
    Outcome,
    concat,
    exceptions,
    lineage,
    lookup,
    member,
)
from migrate.mapping.policy import MapPolicy

LIVE = ("active", "suspended")


@dataclass(frozen=True)
class LinkedLines:
    """Lines and subscriptions of one partition, checked and linked to their accounts."""

    lines: pd.DataFrame
    """iccid, account_no, e164, status, hold_code, consent_state, language."""
    subscriptions: pd.DataFrame
    """The subscription columns plus account_no, iccid, e164, line_hold, consent_state."""
    exceptions: pd.DataFrame
    lineage: pd.DataFrame
    """Only for subscriptions that found no line (the rest get lineage with their account)."""


def msisdn_partition_keys(msisdns: pa.Array | pa.ChunkedArray, plan: NumberingPlan) -> pa.Array:
    """What lines and subscriptions are partitioned by: the E.164 form, else the raw text."""
    raw = msisdns.combine_chunks() if isinstance(msisdns, pa.ChunkedArray) else msisdns
    raw = raw.cast(pa.string())
    return pc.coalesce(normalise_msisdns(raw, plan), raw)


def link_lines(
    lines: pd.DataFrame,
    subscriptions: pd.DataFrame,
    policy: MapPolicy,
    withheld: Mapping[str, str] | None = None,
) -> LinkedLines:
    """Check the lines of a partition and attach the subscriptions to them.

    ``withheld`` holds the lines extract raised a blocking code on (an unknown status, a
    missing iccid …): each is held by that code, and its subscriptions with it.
    """
    checked, line_exceptions = check_lines(lines, policy, withheld or {})
    linked, orphan_exceptions, orphan_lineage = attach_subscriptions(subscriptions, checked)
    return LinkedLines(
        lines=checked,
        subscriptions=linked,
        exceptions=concat([line_exceptions, orphan_exceptions], EXCEPTION_COLUMNS),
        lineage=orphan_lineage,
    )


def check_lines(
    lines: pd.DataFrame, policy: MapPolicy, withheld: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normalised numbers, consent state and the blocking code (if any) of every line."""
    raw = pa.array(lines["msisdn"].astype(object), type=pa.string())
    e164 = normalise_msisdns(raw, policy.numbering)
    valid = e164.is_valid().to_numpy(zero_copy_only=False)
    live = member(lines["status"], LIVE)
    duplicate = in_duplicate_groups(e164, live & valid)
    inconsistent = (lines["terminated_at"] < lines["activated_at"]).fillna(False).to_numpy()
    dealer = (lines["channel"] == "dealer").fillna(False).to_numpy()
    no_consent = lines["consent_ref"].isna().to_numpy()
    unconsented = dealer & no_consent
    consent_state = np.where(
        unconsented, "pending", np.where(no_consent, "not_recorded", "given")
    ).astype(object)
    hold = np.full(len(lines), None, dtype=object)
    if policy.unconsented == "hold":
        hold[unconsented] = ReasonCode.UNCONSENTED_LINE.value
    for code, mask in (
        (ReasonCode.DATE_INCONSISTENT, inconsistent),
        (ReasonCode.DUPLICATE_MSISDN, duplicate),
        (ReasonCode.INVALID_MSISDN, ~valid),
    ):
        hold[mask] = code.value
    if withheld:  # the extractor's own code wins: it names the value that is wrong
        extract_code = lookup(lines["iccid"], withheld).to_numpy(dtype=object)
        hold = np.where(pd.isna(extract_code), hold, extract_code)
    no_iccid = lines["iccid"].isna().to_numpy()
    hold[no_iccid] = ReasonCode.VALUE_MISSING.value
    checked = pd.DataFrame(
        {
            "iccid": lines["iccid"].array,
            "msisdn": lines["msisdn"].array,
            "account_no": lines["account_no"].array,
            "e164": e164.to_pandas().array,
            "status": lines["status"].array,
            "activated_at": lines["activated_at"].array,
            "hold_code": hold,
            "consent_state": consent_state,
            "language": lines["language"].array,
        }
    )
    iccid = lines["iccid"]
    found = [
        exceptions("lines", iccid[~valid], ReasonCode.INVALID_MSISDN, _quoted(lines, ~valid)),
        exceptions(
            "lines",
            iccid[duplicate],
            ReasonCode.DUPLICATE_MSISDN,
            "number live on another line too: " + checked["e164"][duplicate].astype(str),
        ),
        exceptions(
            "lines",
            iccid[inconsistent],
            ReasonCode.DATE_INCONSISTENT,
            "terminated_at before activated_at",
        ),
        exceptions(
            "lines",
            iccid[unconsented],
            ReasonCode.UNCONSENTED_LINE,
            "dealer "
            + lines["dealer_id"][unconsented].fillna("?").astype(str)
            + " attached it without consent evidence; policy "
            + policy.unconsented,
        ),
    ]
    return checked, concat(found, EXCEPTION_COLUMNS)


def _quoted(lines: pd.DataFrame, mask: np.ndarray) -> pd.Series:
    return "not a Kazakh mobile number: '" + lines["msisdn"][mask].fillna("").astype(str) + "'"


def attach_subscriptions(
    subscriptions: pd.DataFrame, lines: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Each subscription with its line's account, SIM and state; orphans reported."""
    preferred = lines.assign(_live=member(lines["status"], LIVE)).sort_values(
        ["_live", "activated_at", "iccid"], ascending=[False, False, True], kind="stable"
    )
    preferred = preferred.drop_duplicates("msisdn", keep="first")[
        ["msisdn", "account_no", "iccid", "e164", "hold_code", "consent_state", "language"]
    ].rename(columns={"hold_code": "line_hold"})
    linked = subscriptions.merge(preferred, on="msisdn", how="left", validate="many_to_one")
    orphan = linked["iccid"].isna().to_numpy()
    keys = linked["subscription_id"][orphan]
    orphan_exceptions = exceptions(
        "subscriptions",
        keys,
        ReasonCode.ORPHAN_ROW,
        "no line carries number '" + linked["msisdn"][orphan].fillna("").astype(str) + "'",
    )
    orphan_lineage = lineage("subscriptions", keys, Outcome.EXCEPTION, "ORPHAN_ROW")
    lines_lineage = concat([orphan_lineage], LINEAGE_COLUMNS)
    return linked[~orphan].reset_index(drop=True), orphan_exceptions, lines_lineage


LINKED_LINES_SCHEMA = pa.schema(
    [
        ("iccid", pa.string()),
        ("msisdn", pa.string()),
        ("account_no", pa.string()),
        ("e164", pa.string()),
        ("status", pa.string()),
        ("activated_at", pa.timestamp("us")),
        ("hold_code", pa.string()),
        ("consent_state", pa.string()),
        ("language", pa.string()),
    ]
)
"""Lines after :func:`check_lines`, as they travel to their account's partition."""

LINKED_SUBSCRIPTIONS_SCHEMA = pa.schema(
    [
        ("subscription_id", pa.int64()),
        ("msisdn", pa.string()),
        ("tariff_code", pa.string()),
        ("started_at", pa.timestamp("us")),
        ("cancelled_at", pa.timestamp("us")),
        ("ended_at", pa.timestamp("us")),
        ("fee_charged_through", pa.date32()),
        ("status", pa.string()),
        ("account_no", pa.string()),
        ("iccid", pa.string()),
        ("e164", pa.string()),
        ("line_hold", pa.string()),
        ("consent_state", pa.string()),
        ("language", pa.string()),
    ]
)
"""Subscriptions after :func:`attach_subscriptions`."""
