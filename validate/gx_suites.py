"""Great Expectations suites on the snapshot and on the target (SPEC §7).

The only module that imports Great Expectations (1.x, an ephemeral context, progress bars off).
The target suites run as SQL in the target database through GX's SQL datasource; the snapshot
suites run on the snapshot's columns in batches of row groups, so memory stays flat however
large the snapshot. Results are converted into this toolkit's own :class:`Finding` rows: the
target's decide a criterion of the verdict; the snapshot's are data quality findings before
mapping, which the exceptions already account for row by row.

Left to cheaper checks on purpose (measured at 1M accounts): uniqueness of surrogate primary
keys (6 s of COUNT(DISTINCT)) is what the target's declared primary keys enforce, and
``validate`` checks those are in place; one main bucket per account is a field of the
per-account reconciliation; uniqueness of snapshot keys is in the lineage check (every legacy
key exactly once), which a duplicated key would break.
"""

from __future__ import annotations

import warnings
from typing import Any

import great_expectations as gx
import pyarrow.parquet as pq
from great_expectations.data_context.types.base import ProgressBarsConfig

from migrate.core.legacy_schema import CURRENCY_EXPONENTS
from migrate.core.runs import SnapshotFolder
from validate.findings import Finding

CURRENCIES = sorted(CURRENCY_EXPONENTS)


def _unique(e: Any, column: str) -> Any:
    """Uniqueness as COUNT(DISTINCT) = COUNT.

    One aggregate, where GX's row-wise uniqueness check took 6 s per million rows on
    PostgreSQL.
    """
    return e.ExpectColumnProportionOfUniqueValuesToBeBetween(column=column, min_value=1.0)


def _target_expectations() -> dict[str, list[Any]]:
    e = gx.expectations
    closed_with_live_product = (
        "SELECT p.product_id FROM {batch} b JOIN product p "
        "ON p.billing_account_id = b.billing_account_id "
        "WHERE b.state = 'closed' AND p.status = 'active'"
    )
    limit_on_prepaid = (
        "SELECT * FROM {batch} WHERE rating_type = 'prepaid' AND credit_limit_minor IS NOT NULL"
    )
    return {
        "party": [
            e.ExpectColumnValuesToBeInSet(
                column="party_type", value_set=["individual", "organization"]
            ),
        ],
        "billing_account": [
            _unique(e, "legacy_account_no"),
            e.ExpectColumnValuesToBeInSet(column="rating_type", value_set=["prepaid", "postpaid"]),
            e.ExpectColumnValuesToBeInSet(
                column="state", value_set=["active", "suspended", "closed"]
            ),
            e.ExpectColumnValuesToBeInSet(column="currency", value_set=CURRENCIES),
            e.ExpectColumnValuesToBeBetween(column="credit_limit_minor", min_value=0),
            e.UnexpectedRowsExpectation(
                unexpected_rows_query=limit_on_prepaid, description="no credit limit on prepaid"
            ),
            e.UnexpectedRowsExpectation(
                unexpected_rows_query=closed_with_live_product,
                description="no active product on a closed account",
            ),
        ],
        "balance_bucket": [
            e.ExpectColumnValuesToBeBetween(column="amount_minor", min_value=0),
            e.ExpectColumnValuesToBeInSet(column="bucket_type", value_set=["main", "bonus"]),
        ],
        "debt_item": [
            e.ExpectColumnValuesToBeBetween(column="amount_minor", min_value=1),
            e.ExpectColumnValuesToBeInSet(
                column="origin",
                value_set=["legacy_negative", "roaming", "postpaid_receivable", "delayed_charge"],
            ),
        ],
        "pending_payment": [
            e.ExpectColumnValuesToBeBetween(column="amount_minor", min_value=1),
        ],
        "product": [
            e.ExpectColumnValuesToBeInSet(
                column="status", value_set=["active", "suspended", "terminated"]
            ),
            e.ExpectColumnValuesToBeInSet(
                column="fee_state", value_set=["paid", "due", "payg", "prorated_due"]
            ),
            e.ExpectColumnValuesToBeInSet(
                column="consent_state", value_set=["given", "not_recorded", "pending"]
            ),
        ],
        "balance_action": [
            _unique(e, "idempotency_key"),
            e.ExpectColumnValuesToBeBetween(column="amount_minor", min_value=0),
        ],
    }


def _snapshot_expectations() -> dict[str, tuple[list[str], list[Any]]]:
    e = gx.expectations
    return {
        "accounts": (
            ["account_no", "payment_type", "status", "currency", "balance_minor"],
            [
                e.ExpectColumnValuesToNotBeNull(column="account_no"),
                e.ExpectColumnValuesToBeInSet(
                    column="payment_type", value_set=["advance", "credit"]
                ),
                e.ExpectColumnValuesToBeInSet(
                    column="status", value_set=["active", "suspended", "closed"]
                ),
                e.ExpectColumnValuesToBeInSet(column="currency", value_set=CURRENCIES),
                e.ExpectColumnValuesToNotBeNull(column="balance_minor"),
            ],
        ),
        "lines": (
            ["iccid", "status", "channel"],
            [
                e.ExpectColumnValuesToBeInSet(
                    column="status", value_set=["active", "suspended", "terminated"]
                ),
                e.ExpectColumnValuesToBeInSet(
                    column="channel", value_set=["shop", "dealer", "online"]
                ),
            ],
        ),
        "subscriptions": (
            ["subscription_id", "status"],
            [
                e.ExpectColumnValuesToBeInSet(
                    column="status", value_set=["active", "suspended", "ended"]
                ),
            ],
        ),
    }


def _context() -> Any:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def run_target_suites(url: str) -> list[Finding]:
    """Every target suite, executed as SQL by the target database."""
    context = _context()
    with warnings.catch_warnings():  # "a more specific datasource may be more appropriate"
        warnings.simplefilter("ignore")
        source = context.data_sources.add_sql("target", connection_string=url)
    findings = []
    for table, expectations in _target_expectations().items():
        asset = source.add_table_asset(table, table_name=table)
        batch = asset.add_batch_definition_whole_table("all").get_batch()
        suite = context.suites.add(gx.ExpectationSuite(name=f"target.{table}"))
        for expectation in expectations:
            suite.add_expectation(expectation)
        findings.extend(_findings("target", table, batch.validate(suite, result_format="BASIC")))
    return findings


def run_snapshot_suites(snapshot: SnapshotFolder, batch_rows: int = 250_000) -> list[Finding]:
    """Data-quality suites on the snapshot, before mapping, batch by batch.

    A finding holds for the file when it holds for every batch; unexpected rows add up.
    """
    context = _context()
    source = context.data_sources.add_pandas("snapshot")
    findings: list[Finding] = []
    for entity, (columns, expectations) in _snapshot_expectations().items():
        asset = source.add_dataframe_asset(entity)
        definition = asset.add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"snapshot.{entity}"))
        for expectation in expectations:
            suite.add_expectation(expectation)
        per_batch = []
        parquet = pq.ParquetFile(snapshot.entity(entity))
        for rows in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            batch = definition.get_batch(batch_parameters={"dataframe": rows.to_pandas()})
            per_batch.append(
                _findings("snapshot", entity, batch.validate(suite, result_format="BASIC"))
            )
        findings.extend(_combined(per_batch))
    return findings


def _combined(per_batch: list[list[Finding]]) -> list[Finding]:
    """One finding per expectation over all batches: all must hold; unexpected rows add up."""
    if not per_batch:
        return []
    combined = []
    for same in zip(*per_batch, strict=True):
        counts = [f.unexpected for f in same if f.unexpected is not None]
        combined.append(
            Finding(
                suite=same[0].suite,
                table=same[0].table,
                expectation=same[0].expectation,
                column=same[0].column,
                success=all(f.success for f in same),
                unexpected=sum(counts) if counts else None,
            )
        )
    return combined


def _findings(suite: str, table: str, result: Any) -> list[Finding]:
    out = []
    for item in result.results:
        config = item.expectation_config
        counted = item.result.get("unexpected_count")
        if counted is None and "observed_value" in item.result:
            counted = item.result.get("observed_value")
        out.append(
            Finding(
                suite=suite,
                table=table,
                expectation=config.description or config.type,
                column=config.kwargs.get("column"),
                success=bool(item.success),
                unexpected=None if counted is None else int(counted),
            )
        )
    return out
