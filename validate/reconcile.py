"""Per-account reconciliation: expected (from the snapshot) against actual (from the target).

Both sides are one row per legacy account holding the same fingerprint fields
(:data:`validate.expected.FIELDS`), joined on the account number by DuckDB (a hash join, out
of core beyond its memory limit) and compared field by field with ``IS DISTINCT FROM``, as
exact integers or text:

* present exactly once (``copies``) when it should migrate, absent when it should not;
* currency, rating type, state, credit limit;
* main bucket, one main bucket only, bonus money, pending payments;
* debt carried + debt written off = the legacy shortfall; no negative amount;
* products = the number the mapped output holds for the account (load fidelity).

The result lists every account that breaks an invariant and the fields that differ.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb

from validate.artifacts import Reconciliation
from validate.expected import FIELDS, SPLIT_BY_DELTA


def reconcile(duck: duckdb.DuckDBPyConnection, differences_csv: Path) -> Reconciliation:
    """Compare tables ``expected`` and ``actual``; write every difference to a CSV file."""
    duck.execute(_differences_sql())
    path = str(differences_csv).replace("'", "''")
    duck.execute(
        f"COPY (SELECT * FROM differences ORDER BY legacy_account_no, field) "
        f"TO '{path}' (FORMAT csv, HEADER true)"
    )
    accounts, differing, pairs, left_out = duck.execute(
        "SELECT (SELECT count(*) FROM expected FULL JOIN actual USING (legacy_account_no)), "
        "(SELECT count(DISTINCT legacy_account_no) FROM differences), "
        "(SELECT count(*) FROM differences), "
        "(SELECT count(*) FROM expected WHERE left_out_because IS NOT NULL)"
    ).fetchone() or (0, 0, 0, 0)
    return Reconciliation(
        accounts=int(accounts),
        differing_accounts=int(differing),
        differences=int(pairs),
        left_out=int(left_out),
    )


def _differences_sql() -> str:
    """One ``SELECT`` per field over the full join, each keeping the accounts that differ.

    Columns: legacy account, field, expected, actual (as text), and the account's currency
    (either side's), so money fields (``*_minor``) can be shown in major units.
    """

    def side(prefix: str, field: str) -> str:
        column = f"{prefix}_{field}"
        return f"coalesce({column}, 0)" if field == "copies" else column

    def unless_delta(field: str) -> str:
        return " AND NOT coalesce(has_delta, false)" if field in SPLIT_BY_DELTA else ""

    joined = ", ".join(f"w.{f} AS want_{f}, h.{f} AS have_{f}" for f in FIELDS)
    checks = "\nUNION ALL\n".join(
        f"SELECT legacy_account_no, '{field}' AS field, "
        f"CAST({side('want', field)} AS VARCHAR) AS expected, "
        f"CAST({side('have', field)} AS VARCHAR) AS actual, "
        "coalesce(want_currency, have_currency) AS currency "
        f"FROM joined WHERE {side('want', field)} IS DISTINCT FROM {side('have', field)}"
        f"{unless_delta(field)}"
        for field in FIELDS
    )
    return (
        "CREATE OR REPLACE TABLE differences AS\n"
        f"WITH joined AS MATERIALIZED (SELECT legacy_account_no, w.has_delta, {joined} "
        "FROM expected w FULL JOIN actual h USING (legacy_account_no))\n"
        f"{checks}"
    )


BANDS_MAJOR = (0, 1_000, 5_000, 20_000)
"""Upper bounds (major units) of the positive balance bands of :func:`balance_distribution`."""


def balance_distribution(
    duck: duckdb.DuckDBPyConnection, exponent: int = 2
) -> list[dict[str, str | int | None]]:
    """Accounts per balance band: the legacy balance against the target's main − carried debt.

    Per currency; bands in major units assuming ``exponent`` decimals (2 for every currency
    the reference schema knows). Left-out accounts count on the legacy side only.
    """
    scale = 10**exponent
    bounds = [b * scale for b in BANDS_MAJOR]
    between = [f"{lo:,}–{hi:,}" for lo, hi in itertools.pairwise(BANDS_MAJOR)]
    labels = ["below 0", "0", *between, f"{BANDS_MAJOR[-1]:,} and more"]
    cases = (
        "CASE WHEN b < 0 THEN 0 WHEN b = 0 THEN 1 "
        + " ".join(f"WHEN b < {hi} THEN {n + 2}" for n, hi in enumerate(bounds[1:]))
        + f" ELSE {len(bounds) + 1} END"
    )
    found = duck.execute(
        f"SELECT side, currency, {cases} AS band, count(*) FROM ("
        "SELECT 'legacy' AS side, legacy_currency AS currency, legacy_balance_minor AS b "
        "FROM expected WHERE legacy_balance_minor IS NOT NULL "
        "UNION ALL SELECT 'target', currency, main_minor - (debt_minor - write_off_minor) "
        "FROM actual) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    rows: dict[tuple[str, int], dict[str, str | int | None]] = {}
    for side, currency, band, count in found:
        entry = rows.setdefault(
            (str(currency), int(band)),
            {"currency": str(currency), "band": labels[int(band)], "legacy": 0, "target": 0},
        )
        entry[str(side)] = int(count)
    return [rows[key] for key in sorted(rows)]
