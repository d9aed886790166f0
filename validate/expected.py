"""What the target should hold per account, re-derived from the snapshot (SPEC §1, §5, §7).

Independent of the mapper: nothing here imports ``migrate.mapping``. From the legacy rows alone
it works out which accounts must be in the target and, per account, the money and attributes
they must carry:

* an account stays out only for a reason that blocks it: a value the extractor withheld, a
  credit limit on a prepaid account or a missing/negative one on a postpaid account, a closing
  date before the opening date, a client that does not exist, or an ``excluded`` disposition;
* main bucket = the positive part of the legacy balance; debt = the negative part, less what a
  ``write_off`` action in the target wrote off (checked against the policy separately);
* pending = received-but-unposted payments; bonus money = unexpired money bonuses;
* rating type, state, currency and (postpaid) credit limit as in legacy.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ACCOUNT_COLUMNS = (
    "account_no", "client_id", "payment_type", "currency", "balance_minor",
    "credit_limit_minor", "status", "opened_at", "closed_at",
)  # fmt: skip


@dataclass(frozen=True)
class SideSums:
    """Per-account sums from the snapshot's payments and bonuses (only accounts that have any)."""

    pending: pd.Series
    bonus_money: pd.Series


def side_sums(snapshot: Path, cutoff: pd.Timestamp) -> SideSums:
    """In-transit payments and live money bonuses per account, streamed file by file."""
    pending = _grouped_sum(
        snapshot / "payments.parquet",
        ["account_no", "amount_minor", "posted_at"],
        lambda t: pc.and_(pc.is_null(t["posted_at"]), pc.is_valid(t["amount_minor"])),
        "amount_minor",
    )
    bonus_money = _grouped_sum(
        snapshot / "bonuses.parquet",
        ["account_no", "kind", "amount_units", "expires_at"],
        lambda t: pc.and_(
            pc.and_(pc.equal(t["kind"], "money"), pc.is_valid(t["amount_units"])),
            pc.fill_null(
                pc.greater_equal(t["expires_at"], pa.scalar(cutoff, pa.timestamp("us"))), True
            ),
        ),
        "amount_units",
    )
    return SideSums(pending, bonus_money)


def _grouped_sum(
    path: Path, columns: list[str], keep: Callable[[pa.Table], pa.Array], amount: str
) -> pd.Series:
    parts: list[pd.Series] = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=500_000, columns=columns):
        table = pa.Table.from_batches([batch])
        table = table.filter(keep(table))
        if table.num_rows:
            summed = table.group_by("account_no").aggregate([(amount, "sum")])
            parts.append(
                pd.Series(
                    summed[f"{amount}_sum"].to_numpy(), index=summed["account_no"].to_pylist()
                )
            )
    if not parts:
        return pd.Series(dtype=np.int64)
    joined: pd.Series = pd.concat(parts).groupby(level=0).sum().astype(np.int64)
    return joined


def blocked_accounts(snapshot: Path, dispositions: Path) -> dict[str, str]:
    """Accounts the extractor withheld or a disposition excluded: account_no → why."""
    found = pq.read_table(snapshot / "exceptions.parquet").to_pandas()
    withheld = found[(found["entity"] == "accounts") & (found["severity"] == "block")]
    blocked = dict(zip(withheld["legacy_key"], withheld["reason_code"], strict=True))
    if dispositions.exists():
        with dispositions.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get("entity") == "accounts" and row.get("disposition") == "excluded":
                    blocked.setdefault(row["legacy_key"], "excluded by disposition")
    return blocked


def client_ids(snapshot: Path) -> np.ndarray:
    """Every client id of the snapshot, sorted."""
    ids = pq.read_table(snapshot / "clients.parquet", columns=["client_id"]).column("client_id")
    return np.sort(ids.to_numpy())


def account_ranges(snapshot: Path, range_accounts: int = 250_000) -> Iterator[pd.DataFrame]:
    """The snapshot's accounts in sorted key ranges of whole row groups.

    Up to ``range_accounts`` accounts each: the unit both sides are compared in.
    """
    parquet = pq.ParquetFile(snapshot / "accounts.parquet")
    groups: list[int] = []
    rows = 0
    for group in range(parquet.num_row_groups):
        groups.append(group)
        rows += parquet.metadata.row_group(group).num_rows
        if rows >= range_accounts:
            yield parquet.read_row_groups(groups, columns=list(ACCOUNT_COLUMNS)).to_pandas()
            groups, rows = [], 0
    if groups:
        yield parquet.read_row_groups(groups, columns=list(ACCOUNT_COLUMNS)).to_pandas()


def expected_accounts(
    accounts: pd.DataFrame, sums: SideSums, blocked: dict[str, str], clients: np.ndarray
) -> tuple[pd.DataFrame, pd.Series]:
    """Per migrating account its expected values, and per account left out, why."""
    prepaid = (accounts["payment_type"] == "advance").to_numpy()
    limit = accounts["credit_limit_minor"]
    why = pd.Series(
        accounts["account_no"].map(blocked).to_numpy(), index=accounts.index, dtype=object
    )
    bad_limit = (prepaid & limit.notna().to_numpy()) | (
        ~prepaid & (limit.isna() | (limit < 0)).to_numpy()
    )
    why[why.isna() & bad_limit] = "credit limit invalid"
    inverted = (accounts["closed_at"] < accounts["opened_at"]).fillna(False).to_numpy(dtype=bool)
    why[why.isna() & inverted] = "closed before opened"
    ids = accounts["client_id"].to_numpy(dtype=np.int64)
    at = np.minimum(np.searchsorted(clients, ids), max(len(clients) - 1, 0))
    missing = clients[at] != ids if len(clients) else np.ones(len(ids), bool)
    why[why.isna() & missing] = "client missing"
    migrating = accounts[why.isna().to_numpy()]
    balance = migrating["balance_minor"].astype("Int64")
    keys = migrating["account_no"]
    expected = pd.DataFrame(
        {
            "currency": migrating["currency"].to_numpy(),
            "rating_type": np.where(migrating["payment_type"] == "advance", "prepaid", "postpaid"),
            "state": migrating["status"].to_numpy(),
            "credit_limit_minor": migrating["credit_limit_minor"]
            .where(migrating["payment_type"] != "advance")
            .astype("Int64")
            .to_numpy(),
            "main_minor": balance.clip(lower=0).to_numpy(),
            "owed_minor": (-balance).clip(lower=0).to_numpy(),
            "pending_minor": _per_key(sums.pending, keys),
            "bonus_money_minor": _per_key(sums.bonus_money, keys),
        },
        index=pd.Index(keys.to_numpy(), name="legacy_account_no"),
    )
    left_out = why[why.notna()]
    left_out.index = accounts["account_no"][why.notna().to_numpy()].to_numpy()
    return expected, left_out


def _per_key(sums: pd.Series, keys: pd.Series) -> np.ndarray:
    """``sums`` for each key, 0 where it has none, without passing through float."""
    exact = sums.astype("Int64").reindex(keys.to_numpy())
    return np.asarray(exact.fillna(0).to_numpy(dtype=np.int64))
