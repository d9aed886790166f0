"""The mapping rules of SPEC §5 as pure functions, on hand-countable frames (issue 3).

Every expected figure below is worked out in the comment beside it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.core.target_schema import stable_ids
from migrate.mapping.accounts import map_account_money
from migrate.mapping.hash_partition import partition_of, text_hash
from migrate.mapping.lines import attach_subscriptions, check_lines
from migrate.mapping.outcomes import lookup, member
from migrate.mapping.parties import map_parties
from migrate.mapping.policy import MapPolicy
from migrate.mapping.products import map_products
from migrate.money.arithmetic import RoundingMode, RoundingPolicy, RoundingUnit

CUTOFF = datetime(2016, 7, 1)
POLICY = MapPolicy(namespace="test", cutoff=CUTOFF)
NO_ROAMING = pd.Series(dtype=np.int64)


def _accounts(rows: list[tuple[str, str, int | None, int | None, str]]) -> pd.DataFrame:
    """(account_no, payment_type, balance_minor, credit_limit_minor, status) rows."""
    frame = pd.DataFrame(
        rows,
        columns=["account_no", "payment_type", "balance_minor", "credit_limit_minor", "status"],
    )
    n = len(frame)
    return frame.assign(
        balance_minor=frame["balance_minor"].astype("Int64"),
        credit_limit_minor=frame["credit_limit_minor"].astype("Int64"),
        client_id=np.arange(1, n + 1),
        brand="kcell",
        currency="KZT",
        opened_at=pd.Timestamp("2014-01-01"),
        closed_at=pd.NaT,
        region="Алматы",
        hold_code=pd.Series([None] * n, dtype="string"),
    )


def _pending(rows: list[tuple[int, str, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["payment_id", "account_no", "amount_minor"])
    return frame.assign(currency="KZT", received_at=pd.Timestamp("2016-06-29 10:00"))


def _map(accounts: pd.DataFrame, pending: pd.DataFrame, roaming: pd.Series, policy: MapPolicy):  # type: ignore[no-untyped-def]
    parties = pd.Series(stable_ids("test", "party", accounts["client_id"].astype(str)))
    return map_account_money(accounts, parties, pending, roaming, policy)


def _codes(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    found = result.exceptions
    return dict(zip(found["legacy_key"], found["reason_code"], strict=True))


def test_balances_debts_limits_and_refunds() -> None:
    accounts = _accounts(
        [
            ("A1", "advance", 150_000, None, "active"),  # 1500.00 → main bucket
            ("A2", "advance", -15_000, None, "active"),  # -150.00, roaming 200.00 covers it
            ("A3", "advance", -15_000, None, "active"),  # -150.00, nothing explains it
            ("A4", "credit", -1_200_000, 1_000_000, "active"),  # owes 12000 on a 10000 limit
            ("A5", "credit", -300, 1_000_000, "active"),  # owes 3.00: below 5.00
            ("A6", "advance", 0, 2_000_000, "active"),  # a credit limit on prepaid: blocked
            ("A7", "advance", 5_000, None, "closed"),  # closed holding 50.00
            ("A8", "credit", -10_000, 1_000_000, "active"),  # owes 100.00, 150.00 in transit
        ]
    )
    roaming = pd.Series({"A2": 20_000})
    result = _map(accounts, _pending([(9, "A8", 15_000)]), roaming, POLICY)
    assert _codes(result) == {
        "A2": "ROAMING_DEBT",
        "A3": "PREPAID_NEGATIVE_BALANCE",
        "A4": "CREDIT_LIMIT_EXCEEDED",
        "A5": "DEBT_BELOW_THRESHOLD",
        "A6": "CREDIT_LIMIT_INVALID",
        "A7": "REFUND_LIABILITY",
    }
    amounts = dict(
        zip(result.exceptions["legacy_key"], result.exceptions["amount_minor"], strict=True)
    )
    assert amounts["A4"] == 200_000  # 12000 − 10000 beyond the limit
    details = dict(zip(result.exceptions["legacy_key"], result.exceptions["detail"], strict=True))
    assert details["A4"] == (  # it used to end "debt beyond the credit limit by"
        "debt 12000.00 KZT beyond the credit limit 10000.00 KZT by 2000.00 KZT"
    )
    assert amounts["A7"] == 5_000
    assert result.hold_code.tolist()[5] == "CREDIT_LIMIT_INVALID"
    accounts_out = result.billing_account.set_index("legacy_account_no")
    assert "A6" not in accounts_out.index
    assert accounts_out.loc["A7", "state"] == "closed"
    assert accounts_out.loc["A8", "dunning_suppressed"]
    assert not accounts_out.loc["A4", "dunning_suppressed"]
    assert pd.isna(accounts_out.loc["A1", "credit_limit_minor"])
    assert accounts_out.loc["A4", "credit_limit_period"] == "month"
    main = result.balance_bucket.set_index("legacy_key")["amount_minor"]
    assert main.to_dict() == {
        "A1": 150_000, "A2": 0, "A3": 0, "A4": 0, "A5": 0, "A7": 5_000, "A8": 0,
    }  # fmt: skip
    debts = result.debt_item.set_index("legacy_key")
    assert debts["origin"].to_dict() == {
        "A2": "roaming",
        "A3": "legacy_negative",
        "A4": "postpaid_receivable",
        "A5": "postpaid_receivable",
        "A8": "postpaid_receivable",
    }
    assert debts["amount_minor"].to_dict() == {
        "A2": 15_000, "A3": 15_000, "A4": 1_200_000, "A5": 300, "A8": 10_000,
    }  # fmt: skip
    assert result.pending_payment["amount_minor"].tolist() == [15_000]
    actions = result.balance_action
    assert (actions["kind"] == "opening_balance").all()
    assert len(actions) == 7 + 5  # one per main bucket, one per debt
    assert actions["idempotency_key"].is_unique


def test_write_off_policies() -> None:
    accounts = _accounts(
        [
            ("B1", "advance", -15_000, None, "active"),  # 150.00 < 200.00: written off
            ("B2", "advance", -25_000, None, "active"),  # 250.00: carried
            ("B3", "credit", -300, 1_000_000, "active"),  # 3.00 small debt: written off
        ]
    )
    policy = MapPolicy(
        namespace="test", cutoff=CUTOFF, write_off_below_minor=20_000, small_debt="write_off"
    )
    result = _map(accounts, _pending([]), NO_ROAMING, policy)
    assert result.debt_item["legacy_key"].tolist() == ["B2"]
    offs = result.balance_action[result.balance_action["kind"] == "write_off"]
    assert dict(zip(offs["reason_code"], offs["amount_minor"], strict=False)) == {
        "PREPAID_NEGATIVE_BALANCE": 15_000,
        "DEBT_BELOW_THRESHOLD": 300,
    }
    assert result.write_off.to_dict() == {"B1": 15_000, "B2": 0, "B3": 300}
    details = dict(zip(result.exceptions["legacy_key"], result.exceptions["detail"], strict=True))
    assert details["B1"].endswith("written off") and details["B2"].endswith("carried as debt")


account_rows = st.lists(
    st.tuples(
        st.sampled_from(["advance", "credit"]),
        st.integers(-(10**13), 10**13),
        st.one_of(st.none(), st.integers(-(10**9), 10**11)),
        st.sampled_from(["active", "suspended", "closed"]),
        st.lists(st.integers(1, 10**9), max_size=3),
        st.integers(0, 10**9),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(
    rows=account_rows,
    write_off_below=st.integers(0, 10**6),
    threshold=st.integers(0, 10**5),
    small_debt=st.sampled_from(["flag", "write_off"]),
)
@pytest.mark.slow
def test_target_net_minus_legacy_net_is_the_explained_adjustments(
    rows: list[tuple[str, int, int | None, str, list[int], int]],
    write_off_below: int,
    threshold: int,
    small_debt: str,
) -> None:
    accounts = _accounts([(f"P{i}", row[0], row[1], row[2], row[3]) for i, row in enumerate(rows)])
    pending = _pending(
        [
            (i * 10 + j, f"P{i}", amount)
            for i, row in enumerate(rows)
            for j, amount in enumerate(row[4])
        ]
    )
    roaming = pd.Series({f"P{i}": row[5] for i, row in enumerate(rows)}, dtype=np.int64)
    policy = MapPolicy(
        namespace="test",
        cutoff=CUTOFF,
        write_off_below_minor=write_off_below,
        debt_threshold_minor=threshold,
        small_debt=small_debt,
    )
    result = _map(accounts, pending, roaming, policy)
    ids = result.billing_account.set_index("billing_account_id")["legacy_account_no"]

    def per_account(frame: pd.DataFrame) -> pd.Series:
        amounts = frame["amount_minor"].astype(object)
        return amounts.groupby(frame["billing_account_id"].map(ids).to_numpy()).sum()

    legacy = accounts.set_index("account_no")["balance_minor"].astype(object)
    for account in ids:
        buckets = per_account(result.balance_bucket).get(account, 0)
        waiting = per_account(result.pending_payment).get(account, 0)
        owed = per_account(result.debt_item).get(account, 0)
        net = buckets + waiting - owed
        explained = waiting + int(result.write_off[account])
        assert net - legacy[account] == explained
    for table in (result.balance_bucket, result.debt_item, result.pending_payment):
        assert (table["amount_minor"].astype(object) >= 0).all()
    assert (result.debt_item["amount_minor"] > 0).all()
    held = set(accounts["account_no"]) - set(ids)
    codes = dict(zip(accounts["account_no"], result.hold_code, strict=True))
    assert all(codes[a] == "CREDIT_LIMIT_INVALID" for a in held)


def _subscriptions(rows: list[tuple[int, str, str, str, str | None, str]]) -> pd.DataFrame:
    """(id, tariff, status, fee_charged_through, cancelled_at, number) rows on account C1."""
    frame = pd.DataFrame(
        rows,
        columns=["subscription_id", "tariff_code", "status", "through", "cancelled_at", "msisdn"],
    )
    return frame.assign(
        started_at=pd.Timestamp("2015-03-10 12:00"),
        ended_at=pd.NaT,
        cancelled_at=pd.to_datetime(frame["cancelled_at"]),
        fee_charged_through=pd.to_datetime(frame["through"]).dt.date,
        account_no="C1",
        iccid="8997" + frame["subscription_id"].astype(str),
        e164="+7701000000" + frame["subscription_id"].astype(str),
        consent_state="given",
        language="kk",
        held_by=pd.Series([None] * len(frame), dtype="string"),
    ).drop(columns=["through"])


TARIFFS = pd.DataFrame(
    {"tariff_code": ["ALGA", "FREE"], "offering_id": ["o-alga", "o-free"],
     "monthly_fee_minor": [199_000, 0], "fee_currency": ["KZT", "KZT"]}
)  # fmt: skip


def test_fee_state_next_charge_and_cancelled_but_billed() -> None:
    subs = _subscriptions(
        [
            (1, "ALGA", "active", "2016-06-30", None, "77010000001"),  # June paid → due 1 July
            (2, "ALGA", "active", "2016-05-31", None, "77010000002"),  # June not taken → payg
            (3, "ALGA", "active", "2016-07-31", None, "77010000003"),  # July paid → 1 August
            (4, "FREE", "active", "2016-06-30", None, "77010000004"),  # no fee → paid
            (5, "ALGA", "ended", "2016-03-31", None, "77010000005"),  # history
            (6, "ALGA", "active", "2016-06-30", "2016-05-10", "77010000006"),  # cancelled
            (7, "GONE", "active", "2016-06-30", None, "77010000007"),  # unmapped: blocked
            (8, "GONE", "ended", "2015-12-31", None, "77010000008"),  # unmapped history: fine
        ]
    )
    fees = pd.DataFrame(
        {
            "account_no": ["C1", "C1", "C1"],
            "msisdn": ["77010000006", "77010000006", "77010000001"],
            "amount_minor": [199_000, 1_000, 199_000],
            "currency": "KZT",
            "occurred_at": pd.to_datetime(["2016-06-01", "2016-05-01", "2016-06-01"]),
        }
    )
    ids = pd.Series({"C1": "acct-1"})
    result = map_products(subs, ids, TARIFFS, fees, POLICY)
    product = result.product.set_index("legacy_subscription_id")
    assert _plain(product["fee_state"]) == {
        "1": "due", "2": "payg", "3": "paid", "4": "paid", "5": None, "6": None, "8": None,
    }  # fmt: skip
    next_charge = _plain(product["next_charge_date"].dt.strftime("%Y-%m-%d"))
    assert next_charge == {
        "1": "2016-07-01", "2": "2016-07-01", "3": "2016-08-01", "4": None, "5": None,
        "6": None, "8": None,
    }  # fmt: skip
    assert product.loc["6", "status"] == "terminated"
    assert product.loc["5", "status"] == "terminated"
    assert pd.isna(product.loc["8", "offering_id"])
    found = result.exceptions.set_index("legacy_key")
    assert found["reason_code"].to_dict() == {
        "7": "TARIFF_UNMAPPED",
        "6": "CHARGED_AFTER_CANCELLATION",
    }
    assert found.loc["6", "amount_minor"] == 199_000  # the June fee; May's was before
    assert result.own_hold.tolist()[6] == "TARIFF_UNMAPPED"


@pytest.mark.parametrize(
    ("cutoff", "started", "mode", "first_charge"),
    [  # SPEC §2 / seed 004, fee 2000 KZT: fee × days left (joining day counted) / days in month
        ("2016-07-10", "2016-07-10", "half_up", 141_900),  # 2000 × 22/31 = 1419.35 → 1419
        ("2016-07-20", "2016-07-15", "half_up", 109_700),  # 2000 × 17/31 = 1096.77 → 1097
        ("2016-07-20", "2016-07-15", "floor", 109_600),  # → 1096
        ("2016-07-31", "2016-07-31", "half_up", 6_500),  # 2000 × 1/31 = 64.52 → 65
        ("2016-07-31", "2016-07-31", "floor", 6_400),  # → 64
        ("2016-02-25", "2016-02-20", "half_up", 69_000),  # 2000 × 10/29 = 689.66 → 690
    ],
)
def test_a_subscription_joining_in_the_cutover_month_carries_its_prorated_first_charge(
    cutoff: str, started: str, mode: str, first_charge: int
) -> None:
    """The seed's vectors on the product, with the next charge on the joining day.

    Before: fee state ``payg`` and next charge on the 1st, before its own start; the prorated
    first charge of seed 004 was carried nowhere.
    """
    subs = _subscriptions([(1, "PLAN", "active", None, None, "77010000001")]).assign(
        started_at=pd.Timestamp(f"{started} 12:00")
    )
    tariffs = pd.DataFrame({"tariff_code": ["PLAN"], "offering_id": ["o-plan"],
                            "monthly_fee_minor": [200_000], "fee_currency": ["KZT"]})  # fmt: skip
    policy = MapPolicy(
        namespace="test",
        cutoff=datetime.fromisoformat(f"{cutoff}T23:00:00"),
        rounding=RoundingPolicy(RoundingMode(mode), RoundingUnit.MAJOR),
    )
    result = map_products(subs, pd.Series({"C1": "acct-1"}), tariffs, _no_fees(), policy)
    (product,) = result.product.to_dict("records")
    assert product["fee_state"] == "prorated_due"
    assert product["first_charge_minor"] == first_charge
    assert product["next_charge_date"] == pd.Timestamp(started)  # its own start, not the 1st


def _no_fees() -> pd.DataFrame:
    return pd.DataFrame(
        {"account_no": pd.Series(dtype=str), "msisdn": pd.Series(dtype=str),
         "amount_minor": pd.Series(dtype=np.int64), "currency": pd.Series(dtype=str),
         "occurred_at": pd.Series(dtype="datetime64[ns]")}
    )  # fmt: skip


def _plain(series: pd.Series) -> dict[str, object]:
    return {str(k): (None if pd.isna(v) else v) for k, v in series.items()}


def _lines(rows: list[tuple[str, str, str, str, str | None]]) -> pd.DataFrame:
    """(iccid, msisdn, status, channel, consent_ref) rows on account L1."""
    frame = pd.DataFrame(rows, columns=["iccid", "msisdn", "status", "channel", "consent_ref"])
    return frame.assign(
        account_no="L1",
        activated_at=pd.Timestamp("2015-01-01"),
        terminated_at=pd.NaT,
        dealer_id="D0013",
        language="ru",
    )


def test_numbers_consent_and_subscription_links() -> None:
    lines = _lines(
        [
            ("1", "77011234567", "active", "shop", "CNS-1"),  # live …
            ("2", "87011234567", "active", "shop", "CNS-2"),  # … the same number again
            ("3", "+7 701 765 43 21", "terminated", "shop", "CNS-3"),  # only one live holder
            ("4", "77017654321", "active", "shop", "CNS-4"),
            ("5", "770112345", "active", "shop", "CNS-5"),  # too short
            ("6", "77770000000", "active", "dealer", None),  # dealer, no consent
            ("7", "77750000000", "active", "shop", None),  # shop, no consent: not flagged
        ]
    )
    checked, found = check_lines(lines, POLICY)
    codes = dict(zip(found["legacy_key"], found["reason_code"], strict=True))
    assert codes == {
        "1": "DUPLICATE_MSISDN",
        "2": "DUPLICATE_MSISDN",
        "5": "INVALID_MSISDN",
        "6": "UNCONSENTED_LINE",
    }
    assert checked["e164"].tolist()[:4] == ["+77011234567"] * 2 + ["+77017654321"] * 2
    assert checked["consent_state"].tolist()[5:] == ["pending", "not_recorded"]
    assert pd.isna(checked["hold_code"].tolist()[5])  # policy flag migrates it
    subs = pd.DataFrame(
        {
            "subscription_id": [10, 11, 12],
            "msisdn": ["+7 701 765 43 21", "77017654321", "77000000000"],
        }
    )
    linked, orphans, trail = attach_subscriptions(subs, checked)
    assert linked["iccid"].tolist() == ["3", "4"]
    assert orphans["legacy_key"].tolist() == ["12"]
    assert trail["outcome"].tolist() == ["exception"]


def test_duplicate_clients_merge_into_the_earliest() -> None:
    clients = pd.DataFrame(
        {
            "client_id": [30, 10, 20, 40],
            "name": ["Қасымов Ерлан", "Қасымов Ерлан", "ÐÑÐ°Ð½", "Ахметова Әсел"],
            "national_id": ["850101300005", "850101300005", "850101300005", "123456789012"],
            "client_type": ["individual", "individual", "individual", "individual"],
        }
    )
    mapped = map_parties(clients, "test")
    assert mapped.party["legacy_client_id"].tolist() == ["10", "40"]
    assert dict(
        zip(mapped.merges["client_id"], mapped.merges["survivor_client_id"], strict=False)
    ) == {
        30: 10,
        20: 10,
    }
    codes = sorted(
        zip(mapped.exceptions["legacy_key"], mapped.exceptions["reason_code"], strict=True)
    )
    assert codes == [
        ("20", "DUPLICATE_CLIENT"),
        ("20", "ENCODING_DAMAGE"),
        ("30", "DUPLICATE_CLIENT"),
        ("40", "INVALID_NATIONAL_ID"),
    ]
    assert pd.isna(mapped.party["national_id"].tolist()[1])
    merged = mapped.lineage[mapped.lineage["outcome"] == "merged"]
    assert set(merged["target_id"]) == set(stable_ids("test", "party", ["10"]))


def test_partitions_are_stable_and_chunk_independent() -> None:
    keys = pa.array([f"40000{i:05d}" for i in range(5_000)] + ["", None, "Қ"])
    whole = partition_of(keys, 7)
    pieces = np.concatenate([partition_of(keys.slice(i, 1_000), 7) for i in range(0, 5_003, 1_000)])
    assert (whole == pieces).all()
    assert np.bincount(whole[:5_000], minlength=7).min() > 600  # roughly even
    assert text_hash(pa.array(["abc"]))[0] == text_hash(pa.chunked_array([["x", "abc"]]))[1]
    assert int(text_hash(pa.array(["4000000001"]))[0]) == 10498726178373348196


def test_member_and_lookup_follow_pandas() -> None:
    values = pd.Series(["a", None, "c", "b"], dtype="str")
    assert member(values, {"a", "b"}).tolist() == [True, False, False, True]
    assert member(values, []).tolist() == [False] * 4
    found = lookup(values, pd.Series([1, 2], index=["a", "c"]))
    assert found.tolist() == [1, None, 2, None] or found.isna().tolist() == [
        False,
        True,
        False,
        True,
    ]
    assert found.iloc[0] == 1 and found.iloc[2] == 2


@pytest.mark.parametrize("namespace", ["kcell-amdocs-2016", "x"])
def test_stable_ids_of_an_empty_key_list(namespace: str) -> None:
    assert stable_ids(namespace, "party", []) == []


def test_an_account_whose_client_is_missing_is_held_with_everything_on_it(
    tmp_path: Path,
) -> None:
    """An account of a client the snapshot lacks is ORPHAN_ROW, held with all on it.

    A2 points at client 2, which is missing: its line, subscription and in-transit payment are
    held with it; A1 (client 1) migrates.
    """
    import numpy as np

    from migrate.mapping.account_partition import BucketContext, map_bucket

    known = tmp_path / "client_ids.npy"
    np.save(known, np.array([1], dtype=np.int64))
    accounts = _accounts(
        [("A1", "advance", 10_000, None, "active"), ("A2", "advance", 5_000, None, "active")]
    ).drop(columns=["hold_code"])
    ts = pd.Timestamp("2016-06-01")
    lines = pd.DataFrame(
        {"iccid": ["L1", "L2"], "msisdn": ["77010000001", "77010000002"],
         "account_no": ["A1", "A2"], "e164": ["+77010000001", "+77010000002"],
         "status": "active", "activated_at": ts,
         "hold_code": pd.Series([None, None], dtype="string"),
         "consent_state": "given", "language": "kk"}
    )  # fmt: skip
    subscriptions = _subscriptions(
        [
            (1, "ALGA", "active", "2016-06-30", None, "77010000001"),
            (2, "ALGA", "active", "2016-06-30", None, "77010000002"),
        ]
    ).assign(account_no=["A1", "A2"], line_hold=pd.Series([None, None], dtype="string"))
    subscriptions = subscriptions.drop(columns=["held_by"])
    payments = pd.DataFrame(
        {"payment_id": [7], "account_no": ["A2"], "amount_minor": [30_000], "currency": "KZT",
         "channel": "settlement_centre", "received_at": ts, "posted_at": pd.NaT}
    )  # fmt: skip
    charge_columns = [
        "charge_id", "account_no", "msisdn", "kind", "amount_minor", "currency", "occurred_at",
    ]  # fmt: skip
    empty = {
        "charges": pd.DataFrame(columns=charge_columns),
        "orders": pd.DataFrame(columns=["order_id", "account_no"]),
        "bonuses": pd.DataFrame(
            columns=["bonus_id", "account_no", "kind", "amount_units", "expires_at"]
        ),
    }
    empty["charges"]["occurred_at"] = pd.to_datetime(empty["charges"]["occurred_at"])
    empty["bonuses"]["expires_at"] = pd.to_datetime(empty["bonuses"]["expires_at"])
    context = BucketContext(POLICY, TARIFFS, {}, known)
    result = map_bucket(
        {"accounts": accounts, "lines": lines, "subscriptions": subscriptions,
         "payments": payments, **empty},
        context,
    )  # fmt: skip
    assert result["billing_account"]["legacy_account_no"].tolist() == ["A1"]
    found = result["exceptions"]
    assert found[["entity", "legacy_key", "reason_code"]].values.tolist() == [
        ["accounts", "A2", "ORPHAN_ROW"]
    ]
    lineage = result["lineage"]
    trail = {
        (e, k): (o, r)
        for e, k, o, r in zip(
            lineage["entity"],
            lineage["legacy_key"],
            lineage["outcome"],
            lineage["rule"],
            strict=True,
        )
    }
    assert trail[("accounts", "A2")] == ("exception", "ORPHAN_ROW")
    for key in (("lines", "L2"), ("subscriptions", "2"), ("payments", "7")):
        assert trail[key] == ("held", "account ORPHAN_ROW")
    assert result["pending_payment"].empty
    assert result["product"]["legacy_subscription_id"].tolist() == ["1"]
