"""Per-account reconciliation: expected (from the snapshot) against actual (from the target).

For every legacy account one row, compared field by field as exact integers or text:

* present exactly once (``copies``) when it should migrate, absent when it should not;
* currency, rating type, state, credit limit;
* main bucket, one main bucket only, bonus money, pending payments;
* debt = the legacy shortfall less what a ``write_off`` action wrote off; no negative amount;
* products = the number the mapped output holds for the account (load fidelity).

The result lists every account that breaks an invariant and the fields that differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FIELDS = (
    "copies", "currency", "rating_type", "state", "credit_limit_minor", "main_minor",
    "main_buckets", "bonus_money_minor", "pending_minor", "debt_minor", "negative_amounts",
    "products",
)  # fmt: skip
DIFFERENCE_COLUMNS = ("legacy_account_no", "field", "expected", "actual")


def compare(
    expected: pd.DataFrame,
    left_out: pd.Series,
    actual: pd.DataFrame,
    products: pd.Series,
) -> pd.DataFrame:
    """Differences of one key range: one row per (account, field) that does not hold."""
    want = _wanted(expected, left_out, products).rename_axis("legacy_account_no").reset_index()
    have = _actual(actual).rename_axis("legacy_account_no").reset_index()
    both = want.merge(have, on="legacy_account_no", how="outer", suffixes=("_want", "_have"))
    both["copies_have"] = both["copies_have"].fillna(0)
    parts = []
    for field in FIELDS:
        a, b = both[f"{field}_want"], both[f"{field}_have"]
        same = (a == b).fillna(False).to_numpy(dtype=bool) | (a.isna() & b.isna()).to_numpy()
        if same.all():
            continue
        rows = both[~same]
        parts.append(
            pd.DataFrame(
                {
                    "legacy_account_no": rows["legacy_account_no"].to_numpy(),
                    "field": field,
                    "expected": [_text(v) for v in rows[f"{field}_want"]],
                    "actual": [_text(v) for v in rows[f"{field}_have"]],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(DIFFERENCE_COLUMNS))
    return pd.concat(parts, ignore_index=True).sort_values(
        ["legacy_account_no", "field"], kind="stable", ignore_index=True
    )


def _wanted(expected: pd.DataFrame, left_out: pd.Series, products: pd.Series) -> pd.DataFrame:
    present = pd.DataFrame(
        {
            "copies": 1,
            "currency": expected["currency"],
            "rating_type": expected["rating_type"],
            "state": expected["state"],
            "credit_limit_minor": expected["credit_limit_minor"],
            "main_minor": expected["main_minor"],
            "main_buckets": 1,
            "bonus_money_minor": expected["bonus_money_minor"],
            "pending_minor": expected["pending_minor"],
            "debt_minor": expected["owed_minor"],  # less write-offs, applied in _actual
            "negative_amounts": 0,
            "products": products.reindex(expected.index).fillna(0).astype(np.int64),
        },
        index=expected.index,
    ).astype(object)
    absent = pd.DataFrame({field: [None] * len(left_out) for field in FIELDS}, index=left_out.index)
    absent["copies"] = 0
    return pd.concat([present, absent]).astype(object)


def _actual(actual: pd.DataFrame) -> pd.DataFrame:
    negatives = (actual["lowest_bucket_minor"].fillna(0) < 0).astype(int) + (
        actual["lowest_debt_minor"].fillna(1) <= 0
    ).astype(int)
    return pd.DataFrame(
        {
            "copies": actual["copies"],
            "currency": actual["currency"],
            "rating_type": actual["rating_type"],
            "state": actual["state"],
            "credit_limit_minor": actual["credit_limit_minor"],
            "main_minor": actual["main_minor"],
            "main_buckets": actual["main_buckets"],
            "bonus_money_minor": actual["bonus_money_minor"],
            "pending_minor": actual["pending_minor"],
            # What legacy owed = debt carried + debt written off.
            "debt_minor": actual["debt_minor"] + actual["write_off_minor"],
            "negative_amounts": negatives,
            "products": actual["products"],
        },
        index=actual.index,
    ).astype(object)


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return str(value)
