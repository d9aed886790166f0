"""Subscriptions into products (SPEC §5.4–5.6): offerings, dates, fee state, cancellations.

Pure functions of one account partition's subscriptions, already linked to their lines.

* Offering from ``mappings/tariffs.csv``; a live (active or suspended) subscription on an
  unmapped code is ``TARIFF_UNMAPPED`` (block, held). An ended one migrates as history with no
  offering.
* Dates: the original start, ``charged_through_date`` and ``next_charge_date`` are carried so
  the new platform neither charges twice nor skips a period. ``fee_state`` of a live product:
  ``paid`` when charged through the cutover month (or the offering has no fee), ``due`` when
  charged through the month before (the fee is taken on the 1st if funds suffice), ``payg``
  when legacy could not take an earlier month's fee (usage is billed from the balance until a
  top-up), ``prorated_due`` when the subscription started in the cutover month and nothing
  was charged for it yet: ``first_charge_minor`` is then the prorated fee of the joining month
  (SPEC §2: ``fee × days_left / days_in_month``, the joining day counted, one rounding step by
  ``[money]``; seed 004: 2000 KZT from 10 July 2016 → 1419 KZT), taken on ``next_charge_date``,
  its start day. ``next_charge_date`` is otherwise the day after ``charged_through_date``,
  never before the first of the cutover month, and never before the product's own start.
* A subscription cancelled before the cutoff but still active in legacy migrates terminated;
  fees charged after the cancellation are ``CHARGED_AFTER_CANCELLATION`` with their sum as a
  suggested refund.
* A subscription ending before it started is ``DATE_INCONSISTENT`` (block, held).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

from migrate.core.legacy_schema import CURRENCY_EXPONENTS
from migrate.core.reasons import ReasonCode
from migrate.mapping.outcomes import (
    EXCEPTION_COLUMNS,
    concat,
    exceptions,
    id_column,
    lookup,
    member,
    where_or_none,
)
from migrate.mapping.policy import MapPolicy
from migrate.money.arithmetic import prorate

LIVE = ("active", "suspended")
_STATUS = {"active": "active", "suspended": "suspended", "ended": "terminated"}


@dataclass(frozen=True)
class MappedProducts:
    """Products of one partition and the subscriptions' own blocks."""

    product: pd.DataFrame
    exceptions: pd.DataFrame
    own_hold: pd.Series
    """Per input subscription (same index): its own blocking code, or NA."""
    monthly_fee_minor: pd.Series
    """Per product row: the offering's monthly fee (for the top-up forecast)."""


def map_products(
    subscriptions: pd.DataFrame,
    account_ids: pd.Series,
    tariffs: pd.DataFrame,
    fee_charges: pd.DataFrame,
    policy: MapPolicy,
) -> MappedProducts:
    """Map subscriptions whose account migrates.

    Args:
        subscriptions: linked subscriptions (see :mod:`migrate.mapping.lines`) plus
            ``held_by`` (NA, or why the line or account is held).
        account_ids: billing_account_id per migrating account_no.
        tariffs: tariff_code, offering_id, monthly_fee_minor of every mapped legacy code.
        fee_charges: fee charges of these accounts (account_no, msisdn, amount_minor,
            occurred_at, currency).
        policy: cutoff and namespace.
    """
    subs = subscriptions.merge(tariffs, on="tariff_code", how="left", validate="many_to_one")
    subs.index = subscriptions.index
    cancelled = (
        subs["cancelled_at"].notna()
        & (subs["cancelled_at"] < policy.cutoff_ts)
        & member(subs["status"], LIVE)
    ).to_numpy(dtype=bool)
    live = member(subs["status"], LIVE) & ~cancelled
    unmapped = live & subs["offering_id"].isna().to_numpy()
    inconsistent = (subs["ended_at"] < subs["started_at"]).fillna(False).to_numpy(dtype=bool)
    own = pd.Series(pd.NA, index=subs.index, dtype="string")
    own[unmapped] = ReasonCode.TARIFF_UNMAPPED.value
    own[inconsistent] = ReasonCode.DATE_INCONSISTENT.value
    found = [
        exceptions(
            "subscriptions",
            subs["subscription_id"][unmapped],
            ReasonCode.TARIFF_UNMAPPED,
            "live subscription on tariff "
            + subs["tariff_code"][unmapped].astype(str)
            + " which mappings/tariffs.csv does not map",
        ),
        exceptions(
            "subscriptions",
            subs["subscription_id"][inconsistent],
            ReasonCode.DATE_INCONSISTENT,
            "ended_at before started_at",
        ),
    ]
    migrating = (own.isna() & subs["held_by"].isna()).to_numpy(dtype=bool)
    found.append(_charged_after_cancellation(subs[cancelled & migrating], fee_charges))
    chosen = subs[migrating]
    status = np.where(
        cancelled[migrating], "terminated", lookup(chosen["status"], _STATUS).to_numpy(dtype=object)
    )
    fee_state, next_charge, first_charge = _fee_state(chosen, status, policy)
    product = pd.DataFrame(
        {
            "product_id": id_column(
                policy.namespace, "product", chosen["subscription_id"].astype(str)
            ),
            "billing_account_id": lookup(chosen["account_no"], account_ids).array,
            "msisdn": chosen["e164"].array,
            "iccid": chosen["iccid"].array,
            "offering_id": chosen["offering_id"].array,
            "legacy_subscription_id": chosen["subscription_id"].astype(str).array,
            "status": status,
            "original_start_date": chosen["started_at"].dt.normalize().array,
            "charged_through_date": pd.to_datetime(chosen["fee_charged_through"]).array,
            "next_charge_date": next_charge.array,
            "fee_state": fee_state,
            "first_charge_minor": first_charge,
            "consent_state": chosen["consent_state"].array,
        }
    )
    return MappedProducts(
        product=product,
        exceptions=concat(found, EXCEPTION_COLUMNS),
        own_hold=own,
        monthly_fee_minor=pd.Series(chosen["monthly_fee_minor"].fillna(0).to_numpy(dtype=np.int64)),
    )


def _fee_state(
    subs: pd.DataFrame, status: np.ndarray, policy: MapPolicy
) -> tuple[np.ndarray, pd.Series, ExtensionArray]:
    """fee_state, next_charge_date and first_charge_minor of each product (null unless live)."""
    month_start = pd.Timestamp(policy.cutover_month_start)
    through = pd.to_datetime(subs["fee_charged_through"]).reset_index(drop=True)
    started = pd.to_datetime(subs["started_at"]).dt.normalize().reset_index(drop=True)
    live = np.isin(status, LIVE)
    free = (subs["monthly_fee_minor"].fillna(0) == 0).to_numpy()
    paid = (through >= pd.Timestamp(policy.cutover_month_end)).fillna(False).to_numpy(dtype=bool)
    due = (through >= month_start - pd.Timedelta(days=1)).fillna(False).to_numpy(dtype=bool)
    uncharged = through.isna() | (through < started)
    joined = ((started >= month_start) & uncharged).fillna(False).to_numpy(dtype=bool)
    joined = joined & live & ~free & ~paid
    state = np.where(
        free | paid, "paid", np.where(joined, "prorated_due", np.where(due, "due", "payg"))
    )
    day_after = through + pd.Timedelta(days=1)
    next_charge = day_after.where(day_after >= month_start, month_start)
    next_charge = next_charge.where(~(next_charge < started).fillna(False), started)
    next_charge = next_charge.where(live & ~free)
    return where_or_none(live, state), next_charge, _first_charge(subs, started, joined, policy)


def _first_charge(
    subs: pd.DataFrame, started: pd.Series, joined: np.ndarray, policy: MapPolicy
) -> ExtensionArray:
    """The prorated fee of the joining month, where the product is ``prorated_due``."""
    fees = subs["monthly_fee_minor"].reset_index(drop=True)
    currencies = subs["fee_currency"].reset_index(drop=True)
    values: list[int | None] = [None] * len(subs)
    for i in np.flatnonzero(joined).tolist():
        exponent = CURRENCY_EXPONENTS[str(currencies[i])]
        day = started[i].date()
        values[i] = prorate(int(fees[i]), day, policy.rounding, exponent)
    return pd.array(values, dtype="Int64")


def _charged_after_cancellation(cancelled: pd.DataFrame, fee_charges: pd.DataFrame) -> pd.DataFrame:
    """Per cancelled subscription: fees charged on its number after the cancellation."""
    joined = cancelled[["subscription_id", "account_no", "msisdn", "cancelled_at"]].merge(
        fee_charges, on=["account_no", "msisdn"], how="inner"
    )
    joined = joined[joined["occurred_at"] > joined["cancelled_at"]]
    totals = joined.groupby("subscription_id", sort=True).agg(
        amount_minor=("amount_minor", "sum"),
        currency=("currency", "first"),
        fees=("amount_minor", "size"),
    )
    totals = totals[totals["amount_minor"] > 0]
    return exceptions(
        "subscriptions",
        totals.index.to_numpy(),
        ReasonCode.CHARGED_AFTER_CANCELLATION,
        pd.Series(
            totals["fees"].astype(str).to_numpy()
            + " fee(s) charged after cancellation; suggested refund",
        ),
        totals["amount_minor"].to_numpy(dtype=np.int64),
        totals["currency"].to_numpy(),
    )
