"""Every row accounted for, and control totals computed where the data lives (SPEC §7).

* Per legacy entity: the snapshot's rows = rows mapped + merged + left in legacy + held +
  withheld by an exception, from the run's lineage, and every legacy key exactly once.
* Per target table: the rows the target holds for the run (a SQL count) = the rows the mapped
  output has for it, plus those a replayed delta created, less those it removed.
* Control totals: the legacy database's own aggregates (recorded by ``extract`` as SQL run on
  legacy) against the target's (SQL run on the target), with what explains the gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa

from migrate.core.target_schema import METADATA, TARGET_TABLES
from validate.workbench import parquet

BA = METADATA.tables["billing_account"]
DEBT = METADATA.tables["debt_item"]
PRODUCT = METADATA.tables["product"]
OFFERING = METADATA.tables["product_offering"]


@dataclass(frozen=True)
class Accounting:
    """Row accounting of one run."""

    entities: dict[str, dict[str, int]]
    """entity → snapshot rows, lineage rows, duplicate keys, and rows per outcome."""
    tables: dict[str, dict[str, int]]
    """target table → mapped rows and rows the target holds for the run."""

    @property
    def broken(self) -> list[str]:
        """What does not add up, one line each."""
        found = []
        for name, counts in self.entities.items():
            if counts["snapshot"] != counts["lineage"] or counts["duplicate_keys"]:
                found.append(
                    f"{name}: {counts['snapshot']} legacy rows, {counts['lineage']} accounted "
                    f"for, {counts['duplicate_keys']} twice"
                )
        for name, counts in self.tables.items():
            if counts["mapped"] != counts["target"]:
                found.append(f"{name}: {counts['mapped']} mapped, {counts['target']} in target")
        return found


def account_rows(
    conn: sa.Connection, duck: duckdb.DuckDBPyConnection, run_dir: Path, run_id: str
) -> Accounting:
    """Count legacy rows through lineage (by DuckDB, out of core) and target rows per table."""
    snapshot = json.loads((run_dir / "snapshot" / "manifest.json").read_text(encoding="utf-8"))
    lineage = parquet(run_dir / "mapped" / "lineage.parquet")
    outcomes: dict[str, dict[str, int]] = {}
    for entity, outcome, rows in duck.execute(
        f"SELECT entity, outcome, count(*) FROM {lineage} GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        outcomes.setdefault(str(entity), {})[str(outcome)] = int(rows)
    twice = dict(
        duck.execute(
            f"SELECT entity, sum(n - 1) FROM (SELECT entity, legacy_key, count(*) AS n "
            f"FROM {lineage} GROUP BY ALL HAVING count(*) > 1) GROUP BY entity"
        ).fetchall()
    )
    entities: dict[str, dict[str, int]] = {}
    for name, doc in snapshot["entities"].items():
        counted = outcomes.get(name, {})
        entities[name] = {
            "snapshot": int(doc["rows"]),
            "lineage": sum(counted.values()),
            "duplicate_keys": int(twice.get(name, 0)),
            **counted,
        }
    mapped = json.loads((run_dir / "mapped" / "manifest.json").read_text(encoding="utf-8"))
    delta_file = run_dir / "delta.json"
    delta = json.loads(delta_file.read_text(encoding="utf-8")) if delta_file.is_file() else {}
    tables = {}
    for table in TARGET_TABLES:
        held = sa.select(sa.func.count()).select_from(table).where(table.c.run_id == run_id)
        replayed = int(delta.get("rows_created", {}).get(table.name, 0)) - int(
            delta.get("rows_removed", {}).get(table.name, 0)
        )
        tables[table.name] = {
            "mapped": int(mapped["outputs"][f"{table.name}.parquet"]["rows"]) + replayed,
            "target": int(conn.execute(held).scalar_one()),
        }
    return Accounting(entities, tables)


def control_totals(conn: sa.Connection, run_dir: Path) -> dict[str, Any]:
    """Legacy (as the legacy database summed it at extract) against target (summed now)."""
    snapshot = json.loads((run_dir / "snapshot" / "manifest.json").read_text(encoding="utf-8"))
    legacy: dict[tuple[str, str, str], int] = {}
    for group in snapshot["entities"]["accounts"]["source_totals"]:
        rating = "prepaid" if group["payment_type"] == "advance" else "postpaid"
        key = (group["brand"], rating, group["status"])
        legacy[key] = legacy.get(key, 0) + int(group["rows"])
    target = {
        (brand, rating, state): int(count)
        for brand, rating, state, count in conn.execute(
            sa.select(BA.c.brand, BA.c.rating_type, BA.c.state, sa.func.count()).group_by(
                BA.c.brand, BA.c.rating_type, BA.c.state
            )
        ).all()
    }
    accounts = [
        {
            "brand": brand,
            "rating_type": rating,
            "state": state,
            "legacy": legacy.get((brand, rating, state), 0),
            "target": target.get((brand, rating, state), 0),
            "left_out": legacy.get((brand, rating, state), 0)
            - target.get((brand, rating, state), 0),
        }
        for brand, rating, state in sorted(set(legacy) | set(target))
    ]
    debts = conn.execute(
        sa.select(DEBT.c.currency, DEBT.c.origin, sa.func.count(), sa.func.sum(DEBT.c.amount_minor))
        .group_by(DEBT.c.currency, DEBT.c.origin)
    ).all()  # fmt: skip
    live = PRODUCT.c.status.in_(("active", "suspended"))
    fees = conn.execute(
        sa.select(OFFERING.c.currency, OFFERING.c.name, sa.func.count(),
                  sa.func.sum(OFFERING.c.monthly_fee_minor))
        .select_from(PRODUCT.join(OFFERING, PRODUCT.c.offering_id == OFFERING.c.offering_id))
        .where(live)
        .group_by(OFFERING.c.currency, OFFERING.c.name)
    ).all()  # fmt: skip
    return {
        "accounts_by_brand_rating_state": accounts,
        "debts_by_origin": [
            {"currency": c, "origin": o, "items": int(n), "amount_minor": int(s or 0)}
            for c, o, n, s in sorted(debts)
        ],
        "live_products_by_offering": [
            {"currency": c, "offering": name, "products": int(n), "monthly_fees_minor": int(s or 0)}
            for c, name, n, s in sorted(fees)
        ],
    }
