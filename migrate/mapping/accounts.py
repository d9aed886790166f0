"""Accounts and their money (SPEC §5.1–5.3, §5.10): buckets, debts, credit limits, payments.

Pure functions of one partition of accounts (DataFrames in, DataFrames out). For every account
that migrates, with ``legacy`` its signed balance:

* ``legacy ≥ 0``: a main bucket of ``legacy``. ``legacy < 0``: a main bucket of 0 and a debt
  of ``−legacy`` — prepaid: origin ``roaming`` when roaming charges in the look-back window
  cover it (``ROAMING_DEBT``), else ``legacy_negative`` (``PREPAID_NEGATIVE_BALANCE``);
  postpaid: ``postpaid_receivable``, ``CREDIT_LIMIT_EXCEEDED`` beyond the limit.
* A debt below ``debt_threshold_minor`` is ``DEBT_BELOW_THRESHOLD``; prepaid debts below
  ``write_off_below_minor`` (and, with ``small_debt = write_off``, small debts) are written
  off by a ``balance_action(write_off)`` instead of becoming a debt item.
* Received-but-unposted payments become ``pending_payment`` (``PAYMENT_IN_TRANSIT``); an account
  whose remaining debt they cover gets ``dunning_suppressed``.
* A closed account holding money is ``REFUND_LIABILITY``: it migrates closed, money and all.
* A credit limit on a prepaid account, or none or a negative one on a postpaid account, is
  ``CREDIT_LIMIT_INVALID``; an account closed before it opened is ``DATE_INCONSISTENT``. Both
  block: the account and everything on it are held.

So per migrating account, exactly: ``target net − legacy = Σ pending payments + Σ write-offs``
(the explained adjustments), with ``net = Σ monetary buckets + Σ pending − Σ debt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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
from migrate.money.arithmetic import format_major

PREPAID, POSTPAID = "advance", "credit"


@dataclass(frozen=True)
class AccountMoney:
    """What one partition of accounts became."""

    billing_account: pd.DataFrame
    balance_bucket: pd.DataFrame
    debt_item: pd.DataFrame
    pending_payment: pd.DataFrame
    balance_action: pd.DataFrame
    exceptions: pd.DataFrame
    hold_code: pd.Series
    """Per input account (same index): the blocking code holding it back, or NA."""
    write_off: pd.Series
    """Per migrating account_no: minor units written off (0 if none)."""


def account_holds(accounts: pd.DataFrame) -> pd.Series:
    """Blocking codes the account rules themselves raise (NA where none)."""
    limit = accounts["credit_limit_minor"]
    prepaid = accounts["payment_type"] == PREPAID
    invalid_limit = (prepaid & limit.notna()) | (~prepaid & (limit.isna() | (limit < 0)))
    inconsistent = (accounts["closed_at"] < accounts["opened_at"]).fillna(False)
    codes = pd.Series(pd.NA, index=accounts.index, dtype="string")
    codes[invalid_limit.to_numpy(dtype=bool)] = ReasonCode.CREDIT_LIMIT_INVALID.value
    codes[inconsistent.to_numpy(dtype=bool)] = ReasonCode.DATE_INCONSISTENT.value
    return codes


def map_account_money(
    accounts: pd.DataFrame,
    party_ids: pd.Series,
    pending: pd.DataFrame,
    roaming_minor: pd.Series,
    policy: MapPolicy,
) -> AccountMoney:
    """Map a partition of accounts.

    Args:
        accounts: snapshot columns, plus ``hold_code`` (a block raised before, e.g. by the
            extractor or a missing client; NA otherwise).
        party_ids: party_id of each account's (surviving) client, same index as ``accounts``.
        pending: in-transit payments of these accounts (payment_id, account_no, amount_minor,
            currency, received_at).
        roaming_minor: per account_no, roaming charges inside the look-back window.
        policy: thresholds and write-off policy.
    """
    own = account_holds(accounts)
    hold = accounts["hold_code"].astype("string").fillna(own)
    found = [_invalid_limit_rows(accounts, own, hold), _inconsistent_rows(accounts, own, hold)]
    migrating = accounts[hold.isna().to_numpy()].reset_index(drop=True)
    parties = party_ids[hold.isna().to_numpy()].reset_index(drop=True)
    pending = pending[member(pending["account_no"], migrating["account_no"])]
    money = _money(migrating, pending, roaming_minor, policy)
    found.extend(_money_exceptions(migrating, money, policy))
    account_ids = pd.Series(id_column(policy.namespace, "billing_account", migrating["account_no"]))
    billing_account = _billing_accounts(migrating, account_ids, parties, money)
    return AccountMoney(
        billing_account=billing_account,
        balance_bucket=_main_buckets(migrating, account_ids, money, policy),
        debt_item=_debts(migrating, account_ids, money, policy),
        pending_payment=_pending(pending, migrating, account_ids, policy),
        balance_action=_actions(migrating, account_ids, money, policy),
        exceptions=concat(found, EXCEPTION_COLUMNS),
        hold_code=hold,
        write_off=pd.Series(
            money["write_off"].to_numpy(), index=migrating["account_no"].to_numpy()
        ),
    )


def _invalid_limit_rows(accounts: pd.DataFrame, own: pd.Series, hold: pd.Series) -> pd.DataFrame:
    mask = ((own == ReasonCode.CREDIT_LIMIT_INVALID.value) & (hold == own)).fillna(False)
    rows = accounts[mask.to_numpy(dtype=bool)]
    detail = np.where(
        rows["payment_type"] == PREPAID,
        "credit limit on a prepaid account",
        np.where(
            rows["credit_limit_minor"].isna(),
            "postpaid account without a credit limit",
            "negative credit limit",
        ),
    )
    return exceptions(
        "accounts",
        rows["account_no"],
        ReasonCode.CREDIT_LIMIT_INVALID,
        pd.Series(detail),
        rows["credit_limit_minor"].to_numpy(),
        rows["currency"].to_numpy(),
    )


def _inconsistent_rows(accounts: pd.DataFrame, own: pd.Series, hold: pd.Series) -> pd.DataFrame:
    mask = ((own == ReasonCode.DATE_INCONSISTENT.value) & (hold == own)).fillna(False)
    rows = accounts[mask.to_numpy(dtype=bool)]
    return exceptions(
        "accounts", rows["account_no"], ReasonCode.DATE_INCONSISTENT, "closed_at before opened_at"
    )


def _money(
    accounts: pd.DataFrame, pending: pd.DataFrame, roaming_minor: pd.Series, policy: MapPolicy
) -> pd.DataFrame:
    """Per migrating account: main bucket, debt, its origin, write-off and pending total."""
    balance = accounts["balance_minor"].to_numpy(dtype=np.int64)
    prepaid = (accounts["payment_type"] == PREPAID).to_numpy()
    owed = np.maximum(-balance, 0)
    roaming = lookup(accounts["account_no"], roaming_minor).fillna(0).to_numpy(dtype=np.int64)
    origin = where_or_none(
        owed > 0,
        np.where(
            prepaid,
            np.where(roaming >= owed, "roaming", "legacy_negative"),
            "postpaid_receivable",
        ),
    )
    small = (owed > 0) & (owed < policy.debt_threshold_minor)
    write_off_mask = prepaid & (owed > 0) & (owed < policy.write_off_below_minor)
    if policy.small_debt == "write_off":
        write_off_mask |= small
    pending_sum = (
        lookup(accounts["account_no"], pending.groupby("account_no")["amount_minor"].sum())
        .fillna(0)
        .to_numpy(dtype=np.int64)
    )
    debt = np.where(write_off_mask, 0, owed)
    return pd.DataFrame(
        {
            "main": np.maximum(balance, 0),
            "owed": owed,
            "debt": debt,
            "origin": origin,
            "small": small,
            "write_off": np.where(write_off_mask, owed, 0),
            "pending": pending_sum,
            "dunning_suppressed": (debt > 0) & (pending_sum >= debt),
        }
    )


def _money_exceptions(
    accounts: pd.DataFrame, money: pd.DataFrame, policy: MapPolicy
) -> list[pd.DataFrame]:
    keys, currency = accounts["account_no"], accounts["currency"].to_numpy()
    owed = money["owed"].to_numpy()
    written = money["write_off"].to_numpy() > 0
    fate = np.where(written, "written off", "carried as debt")

    def rows(
        mask: np.ndarray, code: ReasonCode, detail: object, amount: np.ndarray
    ) -> pd.DataFrame:
        text = pd.Series(np.broadcast_to(np.asarray(detail, dtype=object), len(mask))[mask])
        return exceptions("accounts", keys[mask], code, text, amount[mask], currency[mask])

    origin = money["origin"].to_numpy()
    limit = accounts["credit_limit_minor"].fillna(0).to_numpy(dtype=np.int64)
    closed = (accounts["status"] == "closed").to_numpy()
    main = money["main"].to_numpy()
    exceeded = (origin == "postpaid_receivable") & (owed > limit)
    return [
        rows(
            origin == "legacy_negative",
            ReasonCode.PREPAID_NEGATIVE_BALANCE,
            "prepaid balance below zero, not explained by roaming; " + fate,
            owed,
        ),
        rows(
            origin == "roaming",
            ReasonCode.ROAMING_DEBT,
            f"covered by roaming charges of the last {policy.roaming_lookback_days} days; " + fate,
            owed,
        ),
        rows(
            exceeded,
            ReasonCode.CREDIT_LIMIT_EXCEEDED,
            _beyond_limit_texts(exceeded, owed, limit, currency),
            owed - limit,
        ),
        rows(
            money["small"].to_numpy(),
            ReasonCode.DEBT_BELOW_THRESHOLD,
            f"debt below {policy.debt_threshold_minor} minor units; " + fate,
            owed,
        ),
        rows(
            closed & (main > 0),
            ReasonCode.REFUND_LIABILITY,
            "closed account holding money: migrates closed, refund due",
            main,
        ),
    ]


def _beyond_limit_texts(
    exceeded: np.ndarray, owed: np.ndarray, limit: np.ndarray, currency: np.ndarray
) -> np.ndarray:
    """``debt 1500.00 KZT beyond the credit limit 1000.00 KZT by 500.00 KZT``, per exceeding row.

    Built only for the rows that exceed (few), in exact major units of each row's currency.
    """
    texts = np.full(len(exceeded), None, dtype=object)
    for i in np.flatnonzero(exceeded):
        cur = str(currency[i])
        exponent = CURRENCY_EXPONENTS[cur]  # extract holds an account of any other currency

        def major(amount: int, exponent: int = exponent, cur: str = cur) -> str:
            return f"{format_major(int(amount), exponent)} {cur}"

        texts[i] = (
            f"debt {major(owed[i])} beyond the credit limit {major(limit[i])} "
            f"by {major(owed[i] - limit[i])}"
        )
    return texts


def _billing_accounts(
    accounts: pd.DataFrame, ids: pd.Series, parties: pd.Series, money: pd.DataFrame
) -> pd.DataFrame:
    postpaid = accounts["payment_type"] == POSTPAID
    return pd.DataFrame(
        {
            "billing_account_id": ids,
            "party_id": parties.array,
            "legacy_account_no": accounts["account_no"].array,
            "brand": accounts["brand"].array,
            "rating_type": np.where(postpaid, "postpaid", "prepaid"),
            "state": accounts["status"].array,
            "currency": accounts["currency"].array,
            "credit_limit_minor": accounts["credit_limit_minor"].where(postpaid).astype("Int64"),
            "credit_limit_period": where_or_none(postpaid, "month"),
            "dunning_suppressed": money["dunning_suppressed"].array,
            "region": accounts["region"].array,
        }
    )


def _main_buckets(
    accounts: pd.DataFrame, ids: pd.Series, money: pd.DataFrame, policy: MapPolicy
) -> pd.DataFrame:
    keys = accounts["account_no"]
    return pd.DataFrame(
        {
            "bucket_id": id_column(policy.namespace, "balance_bucket", "main:" + keys),
            "billing_account_id": ids,
            "bucket_type": "main",
            "usage_type": "monetary",
            "amount_minor": pd.array(money["main"].to_numpy(), dtype="Int64"),
            "amount_units": pd.array([None] * len(keys), dtype="Int64"),
            "unit": accounts["currency"].array,
            "valid_to": pd.Series(pd.NaT, index=keys.index, dtype="datetime64[us]"),
            "legacy_key": keys.array,
        }
    )


def _debts(
    accounts: pd.DataFrame, ids: pd.Series, money: pd.DataFrame, policy: MapPolicy
) -> pd.DataFrame:
    owing = (money["debt"] > 0).to_numpy()
    keys = accounts["account_no"][owing]
    return pd.DataFrame(
        {
            "debt_id": id_column(policy.namespace, "debt_item", keys),
            "billing_account_id": ids[owing].array,
            "origin": money["origin"][owing].array,
            "amount_minor": money["debt"][owing].to_numpy(dtype=np.int64),
            "currency": accounts["currency"][owing].array,
            "aged_from": pd.Series([policy.cutoff_date] * len(keys), dtype=object),
            "legacy_key": keys.array,
        }
    )


def _pending(
    pending: pd.DataFrame, accounts: pd.DataFrame, ids: pd.Series, policy: MapPolicy
) -> pd.DataFrame:
    account_id = lookup(
        pending["account_no"], pd.Series(ids.to_numpy(), index=accounts["account_no"].to_numpy())
    )
    keys = pending["payment_id"].astype(str)
    return pd.DataFrame(
        {
            "payment_id": id_column(policy.namespace, "pending_payment", keys),
            "billing_account_id": account_id.array,
            "amount_minor": pending["amount_minor"].to_numpy(dtype=np.int64),
            "currency": pending["currency"].array,
            "received_at": pending["received_at"].array,
            "legacy_payment_id": keys.array,
        }
    )


def _actions(
    accounts: pd.DataFrame, ids: pd.Series, money: pd.DataFrame, policy: MapPolicy
) -> pd.DataFrame:
    """One opening_balance per main bucket and per debt, and one write_off per write-off."""
    keys = accounts["account_no"]
    owing = (money["debt"] > 0).to_numpy()
    written = (money["write_off"] > 0).to_numpy()
    write_off_reason = np.where(
        money["small"].to_numpy(),
        ReasonCode.DEBT_BELOW_THRESHOLD.value,
        ReasonCode.PREPAID_NEGATIVE_BALANCE.value,
    )
    parts: list[tuple[np.ndarray, str, pd.Series]] = [
        (np.ones(len(keys), bool), "opening_balance", pd.Series("main", index=keys.index)),
        (owing, "opening_balance", "debt:" + money["origin"].fillna("").astype(str)),
        (written, "write_off", pd.Series(write_off_reason, index=keys.index)),
    ]
    amounts: dict[str, pd.Series] = {
        "main": money["main"],
        "debt": money["debt"],
        "write_off": money["write_off"],
    }
    frames = []
    for (mask, kind, reason), amount in zip(parts, amounts.values(), strict=True):
        local = kind + ":" + keys[mask].astype(str) + ":" + reason[mask].astype(str)
        frames.append(
            pd.DataFrame(
                {
                    "action_id": id_column(policy.namespace, "balance_action", local),
                    "billing_account_id": ids[mask].array,
                    "kind": kind,
                    "amount_minor": pd.array(amount[mask].to_numpy(), dtype="Int64"),
                    "amount_units": pd.array([None] * int(mask.sum()), dtype="Int64"),
                    "currency": accounts["currency"][mask].array,
                    "reason_code": reason[mask].array,
                    "idempotency_key": (policy.namespace + ":" + local).array,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
