"""What the target should hold per account, re-derived from the snapshot (SPEC §1, §5, §7).

Independent of the mapper: nothing here imports ``migrate.mapping``. From the legacy rows alone
it works out which accounts must be in the target and, per account, the money and attributes
they must carry:

* an account stays out only for a reason that blocks it: a value the extractor withheld, a
  credit limit on a prepaid account or a missing/negative one on a postpaid account, a closing
  date before the opening date, a client that does not exist or that extract held (a blocking
  exception on the client), or an ``excluded`` disposition;
* main bucket = the positive part of the legacy balance; debt = the negative part (the target's
  debt plus what a ``write_off`` action wrote off must equal it);
* pending = received-but-unposted payments; bonus money = unexpired money bonuses;
* rating type, state, currency and (postpaid) credit limit as in legacy;
* products = what the mapped output holds for the account (load fidelity).

The result is DuckDB table ``expected``: one row per snapshot account, computed by DuckDB over
the snapshot's Parquet files where they lie.
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from migrate.core.runs import RunDir, SnapshotFolder
from validate.workbench import parquet, rows, store

FIELDS = (
    "copies", "currency", "rating_type", "state", "credit_limit_minor", "main_minor",
    "main_buckets", "bonus_money_minor", "pending_minor", "debt_minor", "net_minor",
    "negative_amounts", "products",
)  # fmt: skip
"""The per-account fingerprint both sides are compared on, field by field."""
SPLIT_BY_DELTA = ("main_minor", "debt_minor")
"""Fields a replayed delta redistributes (a charge empties main, then makes debt): for an
account with delta events only their net is predicted, snapshot net + Σ delta."""


def derive_expected(
    duck: duckdb.DuckDBPyConnection,
    run: RunDir,
    cutoff: pd.Timestamp,
    dispositions: Path,
) -> None:
    """Create table ``expected`` from the snapshot, the mapped product counts and decisions.

    A replayed delta (``<run>/delta/events.parquet``: the post-snapshot events as legacy has
    them) moves each account's expected net by the sum of its events.
    """
    snapshot, mapped = run.snapshot, run.mapped
    store(duck, "blocked", _blocked(duck, snapshot, dispositions))
    events = run.delta.events
    delta = (
        f"SELECT account_no, sum(CASE WHEN entity = 'payments' THEN amount_minor "
        f"ELSE -amount_minor END) AS amount FROM {parquet(events)} GROUP BY account_no"
        if events.is_file()
        else "SELECT NULL::VARCHAR AS account_no, NULL::BIGINT AS amount WHERE false"
    )
    duck.execute(
        _EXPECTED.format(
            delta=delta,
            accounts=parquet(snapshot.entity("accounts")),
            payments=parquet(snapshot.entity("payments")),
            bonuses=parquet(snapshot.entity("bonuses")),
            clients=parquet(snapshot.entity("clients")),
            exceptions=parquet(snapshot.exceptions),
            products=parquet(mapped.table("product")),
            mapped_accounts=parquet(mapped.table("billing_account")),
        ),
        [cutoff.to_pydatetime()],
    )


def _blocked(
    duck: duckdb.DuckDBPyConnection, snapshot: SnapshotFolder, dispositions: Path
) -> pa.Table:
    """Accounts the extractor withheld or a disposition excluded, and why."""
    withheld = rows(
        duck,
        "SELECT legacy_key AS account_no, min(reason_code) AS why "
        f"FROM {parquet(snapshot.exceptions)} "
        "WHERE entity = 'accounts' AND severity = 'block' GROUP BY legacy_key",
    )
    accounts, reasons = withheld["account_no"].to_pylist(), withheld["why"].to_pylist()
    seen = set(accounts)
    if dispositions.exists():
        with dispositions.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                key = row.get("legacy_key") or ""
                excluded = row.get("entity") == "accounts" and row.get("disposition") == "excluded"
                if excluded and key not in ("", "*") and key not in seen:
                    accounts.append(key)
                    reasons.append("excluded by disposition")
                    seen.add(key)
    return pa.table(
        {"account_no": pa.array(accounts, pa.string()), "why": pa.array(reasons, pa.string())}
    )


_EXPECTED = """
CREATE OR REPLACE TABLE expected AS
WITH pending AS (
    SELECT account_no, sum(amount_minor) AS amount FROM {payments}
    WHERE posted_at IS NULL AND amount_minor IS NOT NULL GROUP BY account_no
), bonus AS (
    SELECT account_no, sum(amount_units) AS amount FROM {bonuses}
    WHERE kind = 'money' AND amount_units IS NOT NULL AND coalesce(expires_at >= $1, true)
    GROUP BY account_no
), clients AS (
    SELECT DISTINCT client_id FROM {clients}
    WHERE CAST(client_id AS VARCHAR) NOT IN (
        SELECT legacy_key FROM {exceptions}
        WHERE entity = 'clients' AND severity = 'block' AND legacy_key IS NOT NULL)
), delta AS (
    {delta}
), products AS (
    SELECT b.legacy_account_no AS account_no, count(*) AS products
    FROM {products} p JOIN {mapped_accounts} b ON b.billing_account_id = p.billing_account_id
    GROUP BY b.legacy_account_no
), judged AS (
    SELECT a.*, coalesce(a.payment_type = 'advance', false) AS prepaid,
        CASE
            WHEN k.why IS NOT NULL THEN k.why
            WHEN (coalesce(a.payment_type = 'advance', false) AND a.credit_limit_minor IS NOT NULL)
                OR (NOT coalesce(a.payment_type = 'advance', false)
                    AND (a.credit_limit_minor IS NULL OR a.credit_limit_minor < 0))
                THEN 'credit limit invalid'
            WHEN a.closed_at < a.opened_at THEN 'closed before opened'
            WHEN c.client_id IS NULL THEN 'client missing or held'
        END AS left_out_because
    FROM {accounts} a
    LEFT JOIN blocked k ON k.account_no = a.account_no
    LEFT JOIN clients c ON c.client_id = a.client_id
)
SELECT
    j.account_no AS legacy_account_no,
    j.currency AS legacy_currency,
    j.balance_minor AS legacy_balance_minor,
    j.left_out_because,
    CASE WHEN j.left_out_because IS NULL THEN 1 ELSE 0 END AS copies,
    CASE WHEN j.left_out_because IS NULL THEN j.currency END AS currency,
    CASE WHEN j.left_out_because IS NULL THEN
        CASE WHEN j.prepaid THEN 'prepaid' ELSE 'postpaid' END END AS rating_type,
    CASE WHEN j.left_out_because IS NULL THEN j.status END AS state,
    CASE WHEN j.left_out_because IS NULL AND NOT j.prepaid THEN j.credit_limit_minor
        END AS credit_limit_minor,
    CASE WHEN j.left_out_because IS NULL THEN
        CASE WHEN j.balance_minor > 0 THEN j.balance_minor WHEN j.balance_minor <= 0 THEN 0 END
        END AS main_minor,
    CASE WHEN j.left_out_because IS NULL THEN 1 END AS main_buckets,
    CASE WHEN j.left_out_because IS NULL THEN coalesce(b.amount, 0) END AS bonus_money_minor,
    CASE WHEN j.left_out_because IS NULL THEN coalesce(p.amount, 0) END AS pending_minor,
    CASE WHEN j.left_out_because IS NULL THEN
        CASE WHEN j.balance_minor < 0 THEN -j.balance_minor WHEN j.balance_minor >= 0 THEN 0 END
        END AS debt_minor,
    CASE WHEN j.left_out_because IS NULL THEN j.balance_minor + coalesce(d.amount, 0)
        END AS net_minor,
    CASE WHEN j.left_out_because IS NULL THEN coalesce(d.amount, 0) END AS delta_minor,
    d.account_no IS NOT NULL AS has_delta,
    CASE WHEN j.left_out_because IS NULL THEN 0 END AS negative_amounts,
    CASE WHEN j.left_out_because IS NULL THEN coalesce(m.products, 0) END AS products
FROM judged j
LEFT JOIN pending p ON p.account_no = j.account_no
LEFT JOIN bonus b ON b.account_no = j.account_no
LEFT JOIN products m ON m.account_no = j.account_no
LEFT JOIN delta d ON d.account_no = j.account_no
"""


def legacy_money(duck: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """Per currency: the legacy balances and what explains a difference to the target.

    Explained = in-transit payments, live money bonuses and the replayed delta of migrating
    accounts, less the balances of accounts left out (write-offs are added from the target by
    the caller).
    """
    found = duck.execute(
        "SELECT legacy_currency, sum(legacy_balance_minor), "
        "sum(CASE WHEN left_out_because IS NULL "
        "THEN pending_minor + bonus_money_minor + delta_minor "
        "ELSE -coalesce(legacy_balance_minor, 0) END) "
        "FROM expected WHERE legacy_currency IS NOT NULL GROUP BY legacy_currency"
    ).fetchall()
    return {
        str(currency): {"legacy_minor": int(legacy or 0), "explained_minor": int(explained or 0)}
        for currency, legacy, explained in found
    }
