"""The reconciliation bridge per currency, re-derived (:mod:`migrate.core.bridge` defines it).

Legacy balances, payments in transit, money bonuses, the delta and the accounts left out come
from the snapshot side (table ``expected`` and the delta's events); debt written off and the
target's net from the target. Each line carries the accounts it concerns, so an auditor can
follow every minor unit from the legacy total to the target's.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from migrate.core.bridge import LEGACY, Bridge, BridgeLine, bridge
from migrate.core.runs import RunDir
from validate.workbench import parquet


def bridges(
    duck: duckdb.DuckDBPyConnection,
    run: RunDir,
    target_totals: Mapping[str, Mapping[str, int]],
) -> tuple[Bridge, ...]:
    """One bridge per currency of the legacy or the target, in currency order.

    ``target_totals`` is the target's own SQL totals per currency (accounts, main, bonus
    money, pending, debt, write-offs).
    """
    legacy = _legacy(duck)
    movements = _movements(duck, run)
    write_offs = _write_off_accounts(duck)
    out = []
    for currency in sorted(set(legacy) | set(target_totals)):
        have = target_totals.get(currency, {})
        lines = dict(movements.get(currency, {}))
        lines["write_off"] = BridgeLine(
            "write_off", have.get("write_off_minor", 0), write_offs.get(currency, 0)
        )
        net = (
            have.get("main_minor", 0) + have.get("bonus_money_minor", 0)
            + have.get("pending_minor", 0) - have.get("debt_minor", 0)
        )  # fmt: skip
        out.append(
            bridge(
                currency,
                legacy.get(currency, BridgeLine(LEGACY, 0, 0)),
                lines,
                BridgeLine("target_net", net, have.get("accounts", 0)),
            )
        )
    return tuple(out)


def _legacy(duck: duckdb.DuckDBPyConnection) -> dict[str, BridgeLine]:
    found = duck.execute(
        "SELECT legacy_currency, count(legacy_balance_minor), sum(legacy_balance_minor) "
        "FROM expected WHERE legacy_currency IS NOT NULL GROUP BY legacy_currency"
    ).fetchall()
    return {str(cur): BridgeLine(LEGACY, int(amount or 0), int(n)) for cur, n, amount in found}


def _movements(duck: duckdb.DuckDBPyConnection, run: RunDir) -> dict[str, dict[str, BridgeLine]]:
    out: dict[str, dict[str, BridgeLine]] = {}
    migrating = duck.execute(
        "SELECT legacy_currency, count(*) FILTER (WHERE pending_minor <> 0), sum(pending_minor), "
        "count(*) FILTER (WHERE bonus_money_minor <> 0), sum(bonus_money_minor) "
        "FROM expected WHERE left_out_because IS NULL AND legacy_currency IS NOT NULL "
        "GROUP BY legacy_currency"
    ).fetchall()
    for currency, pending_n, pending, bonus_n, bonus in migrating:
        out.setdefault(str(currency), {}).update(
            pending=BridgeLine("pending", int(pending or 0), int(pending_n)),
            bonus_money=BridgeLine("bonus_money", int(bonus or 0), int(bonus_n)),
        )
    for currency, line in _left_out(duck).items():
        out.setdefault(currency, {})["left_out"] = line
    for currency, lines in _delta(duck, run).items():
        out.setdefault(currency, {}).update(lines)
    return out


def _left_out(duck: duckdb.DuckDBPyConnection) -> dict[str, BridgeLine]:
    found = duck.execute(
        "SELECT legacy_currency, left_out_because, count(*), "
        "-sum(coalesce(legacy_balance_minor, 0)) FROM expected "
        "WHERE left_out_because IS NOT NULL AND legacy_currency IS NOT NULL "
        "GROUP BY ALL ORDER BY 1, 3 DESC, 2"
    ).fetchall()
    reasons: dict[str, dict[str, tuple[int, int]]] = {}
    for currency, why, n, amount in found:
        reasons.setdefault(str(currency), {})[str(why)] = (int(n), int(amount or 0))
    return {
        currency: BridgeLine(
            "left_out",
            sum(amount for _, amount in by_reason.values()),
            sum(n for n, _ in by_reason.values()),
            by_reason,
        )
        for currency, by_reason in reasons.items()
    }


def _delta(duck: duckdb.DuckDBPyConnection, run: RunDir) -> dict[str, dict[str, BridgeLine]]:
    """Replayed payments (+) and charges (−) of migrating accounts, as ``expected`` counts them."""
    events = run.delta.events
    if not events.is_file():
        return {}
    found = duck.execute(
        "SELECT x.legacy_currency, e.entity, count(DISTINCT e.account_no), "
        "sum(CASE WHEN e.entity = 'payments' THEN e.amount_minor ELSE -e.amount_minor END) "
        f"FROM {parquet(events)} e JOIN expected x ON x.legacy_account_no = e.account_no "
        "WHERE x.left_out_because IS NULL AND x.legacy_currency IS NOT NULL GROUP BY ALL"
    ).fetchall()
    out: dict[str, dict[str, BridgeLine]] = {}
    for currency, entity, n, amount in found:
        key = "delta_payments" if entity == "payments" else "delta_charges"
        out.setdefault(str(currency), {})[key] = BridgeLine(key, int(amount or 0), int(n))
    return out


def _write_off_accounts(duck: duckdb.DuckDBPyConnection) -> dict[str, int]:
    found = duck.execute(
        "SELECT currency, count(*) FROM actual WHERE write_off_minor <> 0 GROUP BY currency"
    ).fetchall()
    return {str(currency): int(n) for currency, n in found}
