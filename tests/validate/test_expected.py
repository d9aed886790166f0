"""validate's re-derivation of the expected side, checked against a second derivation.

Hypothesis generates small snapshots (accounts, clients, payments, bonuses, withheld values,
dispositions, mapped products); :func:`derive_expected` and :func:`legacy_money` compute the
expected per-account fingerprint in DuckDB SQL, and :func:`_oracle` computes the same thing a
second way, in plain Python, straight from the rules in SPEC §5 / §7:

* an account stays out when the extractor withheld one of its values (block), when a
  disposition excludes it, when its credit limit is wrong for its payment type, when it closed
  before it opened, or when its client is missing — the first of these is its reason;
* main = positive part of the balance, debt = negative part, pending = unposted payments,
  bonus money = unexpired money bonuses (expiry at or after the cutoff), products = the mapped
  product count; left-out accounts carry none of it;
* legacy money per currency = sum of balances; explained = pending + bonus money of migrating
  accounts less the balances of left-out ones.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.core.legacy_schema import BY_NAME, EXCEPTIONS_SCHEMA
from migrate.core.runs import RunDir
from validate.expected import derive_expected, legacy_money
from validate.workbench import rows, workbench

CUTOFF = datetime(2016, 7, 1)
CLIENTS = (1, 2, 3)
"""Clients that exist; accounts may also name client 4, which does not."""


@dataclass(frozen=True)
class Account:
    account_no: str
    client_id: int
    prepaid: bool
    currency: str
    balance_minor: int | None
    credit_limit_minor: int | None
    status: str
    closed_before_opened: bool
    withheld: bool
    excluded: bool
    products: int


@dataclass(frozen=True)
class Payment:
    account_no: str
    amount_minor: int
    posted: bool


@dataclass(frozen=True)
class Bonus:
    account_no: str
    money: bool
    amount_units: int
    expires: int | None
    """Days from the cutoff (negative: already expired); None: never expires."""


_rarely = st.sampled_from((False,) * 5 + (True,))
"""An anomaly on one account in six: most accounts migrate, so their money is compared."""


def _accounts() -> st.SearchStrategy[list[Account]]:
    one = st.builds(
        Account,
        account_no=st.just(""),
        client_id=st.sampled_from((*CLIENTS, *CLIENTS, 4)),
        prepaid=st.booleans(),
        currency=st.sampled_from(("KZT", "USD")),
        balance_minor=st.one_of(st.none(), st.integers(-(10**12), 10**12)),
        credit_limit_minor=st.one_of(st.none(), st.integers(-500, 10**9)),
        status=st.sampled_from(("active", "suspended", "closed")),
        closed_before_opened=_rarely,
        withheld=_rarely,
        excluded=_rarely,
        products=st.integers(0, 3),
    )
    return st.lists(one, min_size=1, max_size=12).map(
        lambda found: [_numbered(a, n) for n, a in enumerate(found)]
    )


def _numbered(account: Account, n: int) -> Account:
    return Account(**{**account.__dict__, "account_no": f"A{n:03d}"})


@st.composite
def _snapshots(draw: st.DrawFn) -> tuple[list[Account], list[Payment], list[Bonus]]:
    accounts = draw(_accounts())
    numbers = st.sampled_from([a.account_no for a in accounts])
    payments = draw(st.lists(st.builds(Payment, numbers, st.integers(1, 10**7), st.booleans())))
    bonuses = draw(
        st.lists(
            st.builds(
                Bonus,
                numbers,
                st.booleans(),
                st.integers(1, 10**6),
                st.one_of(st.none(), st.integers(-3, 3)),
            )
        )
    )
    return accounts, payments, bonuses


def _write_snapshot(
    run: RunDir, accounts: list[Account], payments: list[Payment], bonuses: list[Bonus]
) -> Path:
    run.snapshot.path.mkdir(parents=True)
    run.mapped.path.mkdir(parents=True)
    opened = datetime(2010, 1, 1)
    _parquet(run.snapshot.entity("accounts"), "accounts", [
        {"account_no": a.account_no, "client_id": a.client_id,
         "payment_type": "advance" if a.prepaid else "credit", "currency": a.currency,
         "balance_minor": a.balance_minor, "credit_limit_minor": a.credit_limit_minor,
         "status": a.status, "opened_at": opened,
         "closed_at": opened - timedelta(days=1) if a.closed_before_opened else None}
        for a in accounts
    ])  # fmt: skip
    _parquet(run.snapshot.entity("clients"), "clients", [{"client_id": c} for c in CLIENTS])
    _parquet(run.snapshot.entity("payments"), "payments", [
        {"payment_id": n, "account_no": p.account_no, "amount_minor": p.amount_minor,
         "received_at": CUTOFF - timedelta(hours=1), "posted_at": CUTOFF if p.posted else None}
        for n, p in enumerate(payments)
    ])  # fmt: skip
    _parquet(run.snapshot.entity("bonuses"), "bonuses", [
        {"bonus_id": n, "account_no": b.account_no, "kind": "money" if b.money else "minutes",
         "amount_units": b.amount_units,
         "expires_at": None if b.expires is None else CUTOFF + timedelta(days=b.expires)}
        for n, b in enumerate(bonuses)
    ])  # fmt: skip
    withheld = [
        {"entity": "accounts", "legacy_key": a.account_no, "column": "balance",
         "reason_code": "AMOUNT_UNPARSEABLE", "severity": "block", "detail": "x"}
        for a in accounts if a.withheld
    ]  # fmt: skip
    pq.write_table(
        pa.Table.from_pylist(withheld, schema=EXCEPTIONS_SCHEMA), run.snapshot.exceptions
    )
    ids = {a.account_no: f"ba-{a.account_no}" for a in accounts}
    pq.write_table(
        pa.table({"billing_account_id": list(ids.values()), "legacy_account_no": list(ids)}),
        run.mapped.table("billing_account"),
    )
    owners = [ids[a.account_no] for a in accounts for _ in range(a.products)]
    pq.write_table(
        pa.table({"billing_account_id": pa.array(owners, pa.string())}),
        run.mapped.table("product"),
    )
    dispositions = run.path / "dispositions.csv"
    with dispositions.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["entity", "legacy_key", "reason_code", "disposition", "why"])
        for a in accounts:
            if a.excluded:
                writer.writerow(["accounts", a.account_no, "ANY", "excluded", "test"])
    return dispositions


def _parquet(path: Path, entity: str, rows: list[dict[str, object]]) -> None:
    schema = BY_NAME[entity].arrow_schema()
    full = [{name: row.get(name) for name in schema.names} for row in rows]
    pq.write_table(pa.Table.from_pylist(full, schema=schema), path)


def _left_out_because(account: Account) -> str | None:
    if account.withheld:
        return "AMOUNT_UNPARSEABLE"
    if account.excluded:
        return "excluded by disposition"
    limit = account.credit_limit_minor
    if (account.prepaid and limit is not None) or (
        not account.prepaid and (limit is None or limit < 0)
    ):
        return "credit limit invalid"
    if account.closed_before_opened:
        return "closed before opened"
    if account.client_id not in CLIENTS:
        return "client missing or held"
    return None


def _oracle(
    accounts: list[Account], payments: list[Payment], bonuses: list[Bonus]
) -> dict[str, dict[str, object]]:
    expected: dict[str, dict[str, object]] = {}
    for a in accounts:
        why = _left_out_because(a)
        if why is not None:
            expected[a.account_no] = {"left_out_because": why, "copies": 0, "main_minor": None,
                                      "debt_minor": None, "pending_minor": None,
                                      "bonus_money_minor": None, "products": None,
                                      "credit_limit_minor": None, "rating_type": None}  # fmt: skip
            continue
        balance = a.balance_minor
        expected[a.account_no] = {
            "left_out_because": None,
            "copies": 1,
            "main_minor": None if balance is None else max(balance, 0),
            "debt_minor": None if balance is None else max(-balance, 0),
            "pending_minor": sum(
                p.amount_minor for p in payments if p.account_no == a.account_no and not p.posted
            ),
            "bonus_money_minor": sum(
                b.amount_units
                for b in bonuses
                if b.account_no == a.account_no
                and b.money
                and (b.expires is None or b.expires >= 0)
            ),
            "products": a.products,
            "credit_limit_minor": None if a.prepaid else a.credit_limit_minor,
            "rating_type": "prepaid" if a.prepaid else "postpaid",
        }
    return expected


def _money_oracle(
    accounts: list[Account], per_account: dict[str, dict[str, object]]
) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for a in accounts:
        money = found.setdefault(a.currency, {"legacy_minor": 0, "explained_minor": 0})
        money["legacy_minor"] += a.balance_minor or 0
        row = per_account[a.account_no]
        if row["left_out_because"] is None:
            money["explained_minor"] += int(str(row["pending_minor"])) + int(
                str(row["bonus_money_minor"])
            )
        else:
            money["explained_minor"] -= a.balance_minor or 0
    return found


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_snapshots())
def test_the_expected_side_matches_a_second_derivation(
    snapshot: tuple[list[Account], list[Payment], list[Bonus]],
) -> None:
    accounts, payments, bonuses = snapshot
    with tempfile.TemporaryDirectory() as folder:
        run = RunDir.at(Path(folder) / "run")
        dispositions = _write_snapshot(run, accounts, payments, bonuses)
        with workbench(run.validate_work) as duck:
            derive_expected(duck, run, pd.Timestamp(CUTOFF), dispositions)
            derived = rows(duck, "SELECT * FROM expected").to_pylist()
            money = legacy_money(duck)
    want = _oracle(accounts, payments, bonuses)
    assert {row["legacy_account_no"] for row in derived} == set(want)
    for row in derived:
        expected = want[row["legacy_account_no"]]
        got = {field: row[field] for field in expected}
        assert got == expected, row["legacy_account_no"]
    assert money == _money_oracle(accounts, want)
