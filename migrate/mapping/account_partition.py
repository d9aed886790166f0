"""One account partition end to end: accounts, lines, products, payments, bonuses, history.

Every legacy row of the partition ends in lineage exactly once. A row is held when something it
depends on does not migrate (its account, its line), so the target never holds a product of an
account that is not there; the lineage rule names the blocking code that held it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from migrate.core.reasons import ReasonCode
from migrate.mapping.accounts import AccountMoney, map_account_money
from migrate.mapping.outcomes import (
    EXCEPTION_COLUMNS,
    LINEAGE_COLUMNS,
    Outcome,
    concat,
    exceptions,
    id_column,
    lineage,
    lookup,
    member,
    where_or_none,
)
from migrate.mapping.policy import MapPolicy
from migrate.mapping.products import LIVE, MappedProducts, map_products

EXCLUDED = "EXCLUDED"
"""Hold marker of an account a disposition excluded (not a reason code: nothing is wrong)."""
FORECAST_COLUMNS = (
    "msisdn", "language", "legacy_account_no", "billing_account_id", "currency",
    "main_balance_minor", "next_fees_minor", "needed_minor", "next_charge_date",
)  # fmt: skip


@dataclass(frozen=True)
class BucketContext:
    """What every partition needs from outside itself (small; sent to worker processes)."""

    policy: MapPolicy
    tariffs: pd.DataFrame
    """tariff_code, offering_id, monthly_fee_minor of mapped legacy codes."""
    survivor_of: dict[int, int]
    """Merged-away client id → surviving client id."""
    client_ids_file: Path | None
    """``.npy`` of every client id in the snapshot, sorted (accounts pointing elsewhere are
    orphans). A file, memory-mapped by each worker, so the context stays a few bytes however
    many clients there are; None when the snapshot has no clients."""
    withheld: dict[str, dict[str, str]] = field(default_factory=dict)
    """entity → legacy key → blocking code the extractor raised (value withheld)."""
    excluded_accounts: frozenset[str] = frozenset()
    """Accounts a disposition excluded from this migration."""


def map_bucket(frames: dict[str, pd.DataFrame], ctx: BucketContext) -> dict[str, pd.DataFrame]:
    """Map one partition; returns target tables, exceptions, lineage and the top-up forecast."""
    policy = ctx.policy
    accounts = frames["accounts"].reset_index(drop=True)
    hold, pre_found = _pre_holds(accounts, ctx)
    accounts = accounts.assign(hold_code=hold)
    party_ids = _party_ids(accounts, ctx, policy.namespace)
    payments = frames["payments"]
    known = pa.array(accounts["account_no"], from_pandas=True)
    in_transit = _in_transit(payments, ctx)
    roaming = _roaming(frames["charges"], policy)
    money = _exclude(
        map_account_money(accounts, party_ids, in_transit, roaming, policy),
        accounts["account_no"],
        ctx.excluded_accounts,
    )
    account_ids = pd.Series(
        money.billing_account["billing_account_id"].to_numpy(),
        index=money.billing_account["legacy_account_no"].to_numpy(),
    )
    account_hold = pd.Series(money.hold_code.to_numpy(), index=accounts["account_no"].to_numpy())
    lines = frames["lines"]
    subs = frames["subscriptions"].assign(
        held_by=_held_by(frames["subscriptions"], account_hold, known, ctx)
    )
    fees = frames["charges"][frames["charges"]["kind"] == "fee"]
    products = map_products(subs, account_ids, ctx.tariffs, fees, policy)
    currency = pd.Series(accounts["currency"].to_numpy(), index=accounts["account_no"].to_numpy())
    bonus_buckets, bonus_actions, bonus_parts = _bonuses(
        frames["bonuses"], account_hold, currency, known, ctx
    )
    product_of = pd.Series(
        products.product["product_id"].to_numpy(),
        index=products.product["legacy_subscription_id"].to_numpy(),
    )
    found = [pre_found, money.exceptions, products.exceptions, bonus_parts[0]]
    trail = [bonus_parts[1]]
    trail.append(_account_lineage(accounts, money.hold_code, account_ids))
    trail.append(_subscription_lineage(subs, products.own_hold, product_of))
    line_parts = _line_lineage(lines, subs, product_of, account_hold, known)
    pay_parts = _payment_lineage(payments, account_hold, known, in_transit, ctx)
    found += [line_parts[0], pay_parts[0]]
    trail += [line_parts[1], pay_parts[1]]
    for entity in ("charges", "orders"):
        history = _history_lineage(entity, frames[entity], known, ctx)
        found.append(history[0])
        trail.append(history[1])
    return {
        "billing_account": money.billing_account,
        "balance_bucket": concat(
            [money.balance_bucket, bonus_buckets], [str(c) for c in money.balance_bucket.columns]
        ),
        "debt_item": money.debt_item,
        "pending_payment": money.pending_payment,
        "product": products.product,
        "balance_action": concat(
            [money.balance_action, bonus_actions], [str(c) for c in money.balance_action.columns]
        ),
        "exceptions": concat(found, EXCEPTION_COLUMNS),
        "lineage": concat(trail, LINEAGE_COLUMNS),
        "totals": _totals(accounts, money.hold_code, money, bonus_buckets),
        "topup_forecast": _forecast(money.billing_account, money.balance_bucket, products, subs),
    }


def _pre_holds(accounts: pd.DataFrame, ctx: BucketContext) -> tuple[pd.Series, pd.DataFrame]:
    """Blocks decided before the account rules: the extractor's, a missing client."""
    keys = accounts["account_no"]
    hold = lookup(keys, ctx.withheld.get("accounts", {})).astype("string")
    hold[keys.isna().to_numpy()] = ReasonCode.VALUE_MISSING.value  # no account_no: held alone
    readable = accounts["client_id"].notna().to_numpy()
    client_ids = accounts["client_id"].fillna(-1).to_numpy(dtype=np.int64)
    known: npt.NDArray[np.int64] = (
        np.load(ctx.client_ids_file, mmap_mode="r")
        if ctx.client_ids_file
        else np.zeros(0, np.int64)
    )
    if len(known):
        position = np.minimum(np.searchsorted(known, client_ids), len(known) - 1)
        no_client = known[position] != client_ids
    else:
        no_client = np.ones(len(keys), dtype=bool)
    orphan = (no_client | ~readable) & hold.isna().to_numpy()
    hold[orphan] = ReasonCode.ORPHAN_ROW.value
    found = exceptions(
        "accounts",
        keys[orphan],
        ReasonCode.ORPHAN_ROW,
        _orphan_detail(client_ids[orphan], readable[orphan], ctx.withheld.get("clients", {})),
    )
    return hold, found


def _orphan_detail(
    client_ids: npt.NDArray[np.int64],
    readable: npt.NDArray[np.bool_],
    held_clients: Mapping[str, str],
) -> pd.Series:
    """Why an account has no client: one that does not exist, one held, or none at all."""
    named = pd.Series(client_ids).astype(str)
    held = lookup(named, held_clients)
    missing = ("client " + named + " does not exist").where(
        held.isna().to_numpy(), "client " + named + " is held (" + held.astype(str) + ")"
    )
    return pd.Series(np.where(readable, missing, "no client_id (NULL or unreadable)"))


def _exclude(money: AccountMoney, account_nos: pd.Series, excluded: frozenset[str]) -> AccountMoney:
    """Leave out accounts a disposition excluded.

    Their rules ran, so their exceptions are listed with the decision; nothing of theirs
    reaches the target, and their hold marker holds everything on them.
    """
    out = member(account_nos, excluded) & money.hold_code.isna().to_numpy()
    if not out.any():
        return money
    hold = money.hold_code.copy()
    hold[out] = EXCLUDED
    gone_keys = set(account_nos[out])
    gone = member(money.billing_account["legacy_account_no"], gone_keys)
    gone_ids = set(money.billing_account["billing_account_id"][gone])

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[~member(frame["billing_account_id"], gone_ids)].reset_index(drop=True)

    return replace(
        money,
        billing_account=keep(money.billing_account),
        balance_bucket=keep(money.balance_bucket),
        debt_item=keep(money.debt_item),
        pending_payment=keep(money.pending_payment),
        balance_action=keep(money.balance_action),
        hold_code=hold,
        write_off=money.write_off[~member(money.write_off.index, gone_keys)],
    )


def _party_ids(accounts: pd.DataFrame, ctx: BucketContext, namespace: str) -> pd.Series:
    """Each account's party id; None where its client_id is unreadable (the account is held)."""
    readable = accounts["client_id"].notna()
    client = accounts["client_id"][readable].astype(np.int64)
    survivor = lookup(client, ctx.survivor_of).fillna(client).astype(np.int64)
    party = pd.Series(None, index=accounts.index, dtype=object)
    party[readable] = id_column(namespace, "party", survivor.astype(str))
    return party


def _in_transit(payments: pd.DataFrame, ctx: BucketContext) -> pd.DataFrame:
    withheld = member(payments["payment_id"].astype(str), ctx.withheld.get("payments", {}).keys())
    transit = payments["posted_at"].isna() & ~withheld & payments["amount_minor"].notna()
    return payments[transit.to_numpy(dtype=bool)]


def _roaming(charges: pd.DataFrame, policy: MapPolicy) -> pd.Series:
    window = (
        (charges["kind"] == "roaming")
        & (charges["occurred_at"] >= policy.roaming_since)
        & (charges["occurred_at"] < policy.cutoff_ts)
    )
    return charges[window.to_numpy(dtype=bool)].groupby("account_no")["amount_minor"].sum()


def _held_by(
    subs: pd.DataFrame, account_hold: pd.Series, known: pa.Array, ctx: BucketContext
) -> pd.Series:
    """Why each subscription cannot migrate because of its line or account (NA if it can)."""
    why = pd.Series(pd.NA, index=subs.index, dtype="string")
    withheld = lookup(subs["subscription_id"].astype(str), ctx.withheld.get("subscriptions", {}))
    why = why.fillna(withheld.astype("string"))
    line = ("line " + subs["line_hold"].astype("string")).astype("string")
    why = why.fillna(line)
    orphan_line = ~member(subs["account_no"], known)
    why[orphan_line & why.isna().to_numpy()] = "line ORPHAN_ROW"
    account = ("account " + lookup(subs["account_no"], account_hold).astype("string")).astype(
        "string"
    )
    return why.fillna(account)


def _account_lineage(
    accounts: pd.DataFrame, hold: pd.Series, account_ids: pd.Series
) -> pd.DataFrame:
    keys = accounts["account_no"]
    mapped = hold.isna().to_numpy()
    excluded = (hold == EXCLUDED).fillna(False).to_numpy(dtype=bool)
    blocked = ~mapped & ~excluded
    return concat(
        [
            lineage(
                "accounts",
                keys[mapped],
                Outcome.MAPPED,
                "billing_account",
                "billing_account",
                lookup(keys[mapped], account_ids),
            ),
            lineage("accounts", keys[blocked], Outcome.EXCEPTION, hold[blocked]),
            lineage("accounts", keys[excluded], Outcome.NOT_MIGRATED, "disposition: excluded"),
        ],
        LINEAGE_COLUMNS,
    )


def _subscription_lineage(
    subs: pd.DataFrame, own_hold: pd.Series, product_of: pd.Series
) -> pd.DataFrame:
    keys = subs["subscription_id"].astype(str)
    target = lookup(keys, product_of)
    mapped = target.notna().to_numpy()
    own = own_hold.notna().to_numpy() & ~mapped
    held = ~mapped & ~own
    return concat(
        [
            lineage(
                "subscriptions", keys[mapped], Outcome.MAPPED, "product", "product", target[mapped]
            ),
            lineage("subscriptions", keys[own], Outcome.EXCEPTION, own_hold[own]),
            lineage("subscriptions", keys[held], Outcome.HELD, subs["held_by"][held].astype(str)),
        ],
        LINEAGE_COLUMNS,
    )


def _line_lineage(
    lines: pd.DataFrame,
    subs: pd.DataFrame,
    product_of: pd.Series,
    account_hold: pd.Series,
    known: pa.Array,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lines: orphans raise ORPHAN_ROW; the rest point to their latest migrated product."""
    keys = lines["iccid"]
    orphan = ~member(lines["account_no"], known)
    found = exceptions(
        "lines",
        keys[orphan],
        ReasonCode.ORPHAN_ROW,
        "account '" + lines["account_no"][orphan].fillna("").astype(str) + "' does not exist",
    )
    latest = (
        subs.assign(product_id=lookup(subs["subscription_id"].astype(str), product_of))
        .dropna(subset=["product_id"])
        .sort_values(["started_at", "subscription_id"], kind="stable")
        .drop_duplicates("iccid", keep="last")
        .set_index("iccid")["product_id"]
    )
    target = lookup(keys, latest)
    own = lines["hold_code"].notna().to_numpy() & ~orphan
    blocking = own & (lines["hold_code"] != ReasonCode.UNCONSENTED_LINE.value).to_numpy()
    account = lookup(lines["account_no"], account_hold).astype("string")
    mapped = target.notna().to_numpy() & ~orphan & ~own
    held = ~mapped & ~orphan & ~blocking
    held_rule = (
        ("line held: " + lines["hold_code"].astype("string"))
        .fillna("account " + account)
        .fillna("no migrated product on the line")
    )
    return found, concat(
        [
            lineage("lines", keys[orphan], Outcome.EXCEPTION, ReasonCode.ORPHAN_ROW.value),
            lineage("lines", keys[blocking], Outcome.EXCEPTION, lines["hold_code"][blocking]),
            lineage(
                "lines", keys[mapped], Outcome.MAPPED, "line_on_product", "product", target[mapped]
            ),
            lineage("lines", keys[held], Outcome.HELD, held_rule[held]),
        ],
        LINEAGE_COLUMNS,
    )


@dataclass(frozen=True)
class _Fates:
    """Where each row of an entity hanging off accounts stands before its own rule."""

    entity: str
    keys: pd.Series
    accounts: pd.Series
    orphan: np.ndarray
    """Its account is not in the snapshot: ORPHAN_ROW."""
    withheld: pd.Series
    own: np.ndarray
    """The extractor withheld one of its values (a blocking code)."""
    account: pd.Series
    held: np.ndarray
    """Its account does not migrate."""

    @property
    def rest(self) -> np.ndarray:
        """Rows the entity's own rule decides."""
        return np.asarray(~self.orphan & ~self.own & ~self.held, dtype=bool)

    def orphan_exceptions(
        self, amounts: pd.Series | None = None, currency: pd.Series | None = None
    ) -> pd.DataFrame:
        """ORPHAN_ROW for every orphan, with its amount where money is involved."""
        mask = self.orphan
        return exceptions(
            self.entity,
            self.keys[mask],
            ReasonCode.ORPHAN_ROW,
            "account '" + self.accounts[mask].fillna("").astype(str) + "' does not exist",
            None if amounts is None else amounts[mask].to_numpy(),
            None if currency is None else currency[mask].to_numpy(),
        )

    def lineage(self) -> list[pd.DataFrame]:
        """Lineage of orphans, withheld rows and rows held with their account."""
        return [
            lineage(self.entity, self.keys[self.orphan], Outcome.EXCEPTION, "ORPHAN_ROW"),
            lineage(self.entity, self.keys[self.own], Outcome.EXCEPTION, self.withheld[self.own]),
            lineage(
                self.entity,
                self.keys[self.held],
                Outcome.HELD,
                "account " + self.account[self.held].astype(str),
            ),
        ]


def _fates(
    entity: str,
    rows: pd.DataFrame,
    key: str,
    account_hold: pd.Series | None,
    known: pa.Array,
    ctx: BucketContext,
) -> _Fates:
    present = rows[key].notna()
    keys = rows[key].astype("string").where(present, None)
    orphan = ~member(rows["account_no"], known)
    withheld = lookup(keys.fillna(""), ctx.withheld.get(entity, {}))
    withheld = withheld.where(present, ReasonCode.VALUE_MISSING.value)  # a NULL key: held
    own = withheld.notna().to_numpy() & ~orphan
    if account_hold is None:
        account = pd.Series([None] * len(rows), index=rows.index, dtype=object)
    else:
        account = lookup(rows["account_no"], account_hold)
    held = account.notna().to_numpy() & ~orphan & ~own
    return _Fates(entity, keys, rows["account_no"], orphan, withheld, own, account, held)


def _payment_lineage(
    payments: pd.DataFrame,
    account_hold: pd.Series,
    known: pa.Array,
    in_transit: pd.DataFrame,
    ctx: BucketContext,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    fate = _fates("payments", payments, "payment_id", account_hold, known, ctx)
    transit = member(payments.index, in_transit.index) & fate.rest
    posted = fate.rest & ~transit
    transit_keys = fate.keys[transit]
    found = [
        fate.orphan_exceptions(payments["amount_minor"], payments["currency"]),
        exceptions(
            "payments",
            transit_keys,
            ReasonCode.PAYMENT_IN_TRANSIT,
            "received " + payments["received_at"][transit].astype(str) + ", not yet posted",
            payments["amount_minor"][transit].to_numpy(),
            payments["currency"][transit].to_numpy(),
        ),
    ]
    ids = id_column(ctx.policy.namespace, "pending_payment", transit_keys)
    trail = [
        *fate.lineage(),
        lineage("payments", transit_keys, Outcome.MAPPED, "in_transit", "pending_payment", ids),
        lineage(
            "payments", fate.keys[posted], Outcome.NOT_MIGRATED, "posted: in the legacy balance"
        ),
    ]
    return concat(found, EXCEPTION_COLUMNS), concat(trail, LINEAGE_COLUMNS)


def _history_lineage(
    entity: str, rows: pd.DataFrame, known: pa.Array, ctx: BucketContext
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Charges and orders stay in legacy (history); those of unknown accounts are orphans."""
    key = "charge_id" if entity == "charges" else "order_id"
    fate = _fates(entity, rows, key, None, known, ctx)
    history = lineage(
        entity, fate.keys[fate.rest], Outcome.NOT_MIGRATED, "history: stays in legacy"
    )
    return fate.orphan_exceptions(), concat([*fate.lineage(), history], LINEAGE_COLUMNS)


def _bonuses(
    bonuses: pd.DataFrame,
    account_hold: pd.Series,
    account_currency: pd.Series,
    known: pa.Array,
    ctx: BucketContext,
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[pd.DataFrame, pd.DataFrame]]:
    """Live bonuses become bonus buckets with their expiry; expired ones are reported."""
    policy = ctx.policy
    fate = _fates("bonuses", bonuses, "bonus_id", account_hold, known, ctx)
    keys = fate.keys
    expired = (bonuses["expires_at"] < policy.cutoff_ts).fillna(False).to_numpy(dtype=bool)
    expired = expired & fate.rest
    live = fate.rest & ~expired
    chosen = bonuses[live]
    chosen_keys = keys[live]
    money = (chosen["kind"] == "money").to_numpy()
    amount = chosen["amount_units"].to_numpy(dtype=np.int64)
    account_ids = id_column(policy.namespace, "billing_account", chosen["account_no"])
    # A bonus has no currency of its own: money bonuses are in the account's currency.
    currency = lookup(chosen["account_no"], account_currency).to_numpy()
    unit = np.where(money, currency, np.where(chosen["kind"] == "data_mb", "MB", "MIN"))
    bucket_ids = id_column(policy.namespace, "balance_bucket", "bonus:" + chosen_keys)
    buckets = pd.DataFrame(
        {
            "bucket_id": bucket_ids,
            "billing_account_id": account_ids,
            "bucket_type": "bonus",
            "usage_type": np.where(
                money, "monetary", np.where(chosen["kind"] == "data_mb", "data", "voice")
            ),
            "amount_minor": pd.array(where_or_none(money, amount), dtype="Int64"),
            "amount_units": pd.array(where_or_none(~money, amount), dtype="Int64"),
            "unit": unit,
            "valid_to": chosen["expires_at"].array,
            "legacy_key": chosen_keys.array,
        }
    )
    local = "opening_balance:bonus:" + chosen_keys
    actions = pd.DataFrame(
        {
            "action_id": id_column(policy.namespace, "balance_action", local),
            "billing_account_id": account_ids,
            "kind": "opening_balance",
            "amount_minor": buckets["amount_minor"].array,
            "amount_units": buckets["amount_units"].array,
            "currency": where_or_none(money, currency),
            "reason_code": "bonus",
            "idempotency_key": (policy.namespace + ":" + local).array,
        }
    )
    found = concat(
        [
            fate.orphan_exceptions(),
            exceptions(
                "bonuses",
                keys[expired],
                ReasonCode.BONUS_EXPIRED,
                "expired " + bonuses["expires_at"][expired].astype(str) + "; not migrated",
                bonuses["amount_units"][expired].to_numpy(),
            ),
        ],
        EXCEPTION_COLUMNS,
    )
    trail = concat(
        [
            *fate.lineage(),
            lineage("bonuses", keys[expired], Outcome.NOT_MIGRATED, "BONUS_EXPIRED"),
            lineage(
                "bonuses", chosen_keys, Outcome.MAPPED, "bonus_bucket", "balance_bucket", bucket_ids
            ),
        ],
        LINEAGE_COLUMNS,
    )
    return buckets, actions, (found, trail)


TOTAL_COLUMNS = (
    "currency", "accounts", "legacy_balance_minor", "withheld_balances", "held_balance_minor",
    "main_minor", "bonus_money_minor", "pending_minor", "debt_minor", "write_off_minor",
    "held_accounts", "pending_accounts", "bonus_money_accounts", "write_off_accounts",
)  # fmt: skip


def _totals(
    accounts: pd.DataFrame, hold: pd.Series, money: AccountMoney, bonus_buckets: pd.DataFrame
) -> pd.DataFrame:
    """Per currency: legacy balances, what was held back, and the target's money.

    Over the whole run ``legacy − held = target net − explained`` must hold exactly.
    """
    held = hold.notna().to_numpy()
    frame = pd.DataFrame(
        {
            "currency": accounts["currency"].array,
            "accounts": 1,
            "legacy_balance_minor": accounts["balance_minor"].fillna(0).to_numpy(dtype=np.int64),
            "withheld_balances": accounts["balance_minor"].isna().to_numpy().astype(np.int64),
            "held_balance_minor": np.where(
                held, accounts["balance_minor"].fillna(0).to_numpy(dtype=np.int64), 0
            ),
            "held_accounts": held.astype(np.int64),
        }
    )
    totals = frame.groupby("currency").sum()
    ids = money.billing_account.set_index("billing_account_id")["currency"]

    def by_currency(rows: pd.DataFrame, column: str = "amount_minor") -> pd.Series:
        values = rows[column].fillna(0).astype(np.int64)
        return values.groupby(lookup(rows["billing_account_id"], ids).to_numpy()).sum()

    bonus_money = bonus_buckets[bonus_buckets["usage_type"] == "monetary"]
    actions = money.balance_action

    def accounts_with(rows: pd.DataFrame) -> pd.Series:
        """Per currency, the accounts whose rows sum to anything but zero (the bridge's count)."""
        per_account = (
            rows["amount_minor"]
            .fillna(0)
            .astype(np.int64)
            .groupby(rows["billing_account_id"].to_numpy())
            .sum()
        )
        moved = per_account[per_account != 0]
        return (
            pd.Series(1, index=lookup(pd.Series(moved.index), ids).to_numpy())
            .groupby(level=0)
            .sum()
        )

    write_offs = actions[actions["kind"] == "write_off"]
    for column, part in (
        ("main_minor", by_currency(money.balance_bucket)),
        ("bonus_money_minor", by_currency(bonus_money)),
        ("pending_minor", by_currency(money.pending_payment)),
        ("debt_minor", by_currency(money.debt_item)),
        ("write_off_minor", by_currency(write_offs)),
        ("pending_accounts", accounts_with(money.pending_payment)),
        ("bonus_money_accounts", accounts_with(bonus_money)),
        ("write_off_accounts", accounts_with(write_offs)),
    ):
        totals[column] = part.reindex(totals.index).fillna(0).astype(np.int64)
    return totals.reset_index()[list(TOTAL_COLUMNS)]


def _forecast(
    accounts: pd.DataFrame,
    main_buckets: pd.DataFrame,
    products: MappedProducts,
    subs: pd.DataFrame,
) -> pd.DataFrame:
    """Lines of prepaid accounts whose main balance is below the fees of the next charge.

    One row per live product whose fee is due (or could not be taken); the amounts are the
    account's: its main balance, the sum of its due fees and the top-up that covers them.
    """
    monthly = pd.Series(products.monthly_fee_minor.to_numpy(), index=products.product.index)
    first = products.product["first_charge_minor"]
    prorated = (products.product["fee_state"] == "prorated_due").fillna(False)
    product = products.product.assign(fee=first.where(prorated, monthly).astype("int64"))
    charged_next = ["due", "payg", "prorated_due"]  # a prorated first charge counts as itself
    due = product[member(product["status"], LIVE) & member(product["fee_state"], charged_next)]
    fees = due.groupby("billing_account_id")["fee"].sum().rename("next_fees_minor")
    main = main_buckets.set_index("billing_account_id")["amount_minor"].rename("main_balance_minor")
    prepaid = accounts[accounts["rating_type"] == "prepaid"].set_index("billing_account_id")
    owing = prepaid.join(fees, how="inner").join(main, how="inner")
    owing = owing[owing["main_balance_minor"] < owing["next_fees_minor"]]
    rows = due[member(due["billing_account_id"], owing.index)].join(owing, on="billing_account_id")
    language = subs.set_index(subs["subscription_id"].astype(str))["language"]
    rows = rows.sort_values(["legacy_account_no", "msisdn"], kind="stable")
    return pd.DataFrame(
        {
            "msisdn": rows["msisdn"].array,
            "language": lookup(rows["legacy_subscription_id"], language).array,
            "legacy_account_no": rows["legacy_account_no"].array,
            "billing_account_id": rows["billing_account_id"].array,
            "currency": rows["currency"].array,
            "main_balance_minor": rows["main_balance_minor"].to_numpy(dtype=np.int64),
            "next_fees_minor": rows["next_fees_minor"].to_numpy(dtype=np.int64),
            "needed_minor": (rows["next_fees_minor"] - rows["main_balance_minor"]).to_numpy(
                dtype=np.int64
            ),
            "next_charge_date": rows["next_charge_date"].array,
        },
        columns=list(FORECAST_COLUMNS),
    )
