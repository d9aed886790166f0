"""Every row accounted for, and control totals computed where the data lives (SPEC §7).

* Per legacy entity: the snapshot's rows = rows mapped + merged + left in legacy + held +
  withheld by an exception, from the run's lineage, and every legacy key exactly once.
* Per target table: the rows the target holds for the run (a SQL count) = the rows the mapped
  output has for it, plus those a replayed delta created, less those it removed.
* Control totals: the legacy database's own aggregates (recorded by ``extract`` as SQL run on
  legacy) against the target's (SQL run on the target), with what explains the gap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import sqlalchemy as sa

from migrate.core.artifacts import DeltaRecord, MappedManifest, SnapshotManifest
from migrate.core.legacy_schema import BY_NAME
from migrate.core.runs import RunDir
from migrate.core.target_schema import METADATA, TARGET_TABLES
from validate.artifacts import ControlTotals
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


def account_rows(conn: sa.Connection, duck: duckdb.DuckDBPyConnection, run: RunDir) -> Accounting:
    """Count legacy rows through lineage (by DuckDB, out of core) and target rows per table."""
    snapshot = SnapshotManifest.read(run.snapshot.manifest)
    lineage = parquet(run.mapped.lineage)
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
    for name in [n for n in twice if run.snapshot.entity(n).is_file()]:  # rare: a key repeats
        twice[name] = _beyond_snapshot_copies(duck, lineage, run, name)
    entities: dict[str, dict[str, int]] = {}
    for name, entity in snapshot.entities.items():
        counted = outcomes.get(name, {})
        entities[name] = {
            "snapshot": entity.rows,
            "lineage": sum(counted.values()),
            "duplicate_keys": int(twice.get(name, 0)),
            **counted,
        }
    mapped = MappedManifest.read(run.mapped.manifest)
    delta = DeltaRecord.read_if_present(run.delta_record)
    tables = {}
    for table in TARGET_TABLES:
        held = sa.select(sa.func.count()).select_from(table).where(table.c.run_id == run.run_id)
        replayed = delta.replayed_rows(table.name) if delta else 0
        tables[table.name] = {
            "mapped": mapped.table_rows(table.name) + replayed,
            "target": int(conn.execute(held).scalar_one()),
        }
    return Accounting(entities, tables)


def _beyond_snapshot_copies(
    duck: duckdb.DuckDBPyConnection, lineage: str, run: RunDir, entity: str
) -> int:
    """Lineage rows of ``entity`` beyond one per snapshot row of their key.

    A legacy table without a primary key can hold one key twice (``DUPLICATE_KEY``): both
    copies are in the snapshot and each has its lineage row, which is accounted for, not twice.
    Counted from the snapshot itself, not from the exceptions map wrote.
    """
    key = BY_NAME[entity].key
    snapshot = parquet(run.snapshot.entity(entity))
    found = duck.execute(
        f"WITH l AS (SELECT legacy_key, count(*) AS n FROM {lineage} WHERE entity = ? "
        f"GROUP BY ALL HAVING count(*) > 1), "
        f's AS (SELECT CAST("{key}" AS VARCHAR) AS legacy_key, count(*) AS m FROM {snapshot} '
        f"GROUP BY ALL HAVING count(*) > 1) "
        f"SELECT coalesce(sum(l.n - coalesce(s.m, 1)), 0) FROM l LEFT JOIN s "
        f"ON l.legacy_key IS NOT DISTINCT FROM s.legacy_key WHERE l.n > coalesce(s.m, 1)",
        [entity],
    ).fetchone()
    return int(found[0]) if found else 0


def control_totals(conn: sa.Connection, run: RunDir) -> ControlTotals:
    """Legacy (as the legacy database summed it at extract) against target (summed now).

    Both sides are the run's own: the snapshot's accounts (its wave) and the target rows the
    run loaded, so a second wave's totals never count the first wave's accounts. The balance
    distribution is the reconciliation's (validate fills it in afterwards).
    """
    snapshot = SnapshotManifest.read(run.snapshot.manifest)
    legacy: dict[tuple[str | None, str, str | None], int] = {}
    for group in snapshot.entities["accounts"].source_totals:
        rating = "prepaid" if group["payment_type"] == "advance" else "postpaid"
        brand, status = group["brand"], group["status"]
        key = (
            None if brand is None else str(brand),
            rating,
            None if status is None else str(status),
        )
        legacy[key] = legacy.get(key, 0) + int(group["rows"] or 0)
    target = {
        (brand, rating, state): int(count)
        for brand, rating, state, count in conn.execute(
            sa.select(BA.c.brand, BA.c.rating_type, BA.c.state, sa.func.count())
            .where(BA.c.run_id == run.run_id)
            .group_by(BA.c.brand, BA.c.rating_type, BA.c.state)
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
        for brand, rating, state in sorted(set(legacy) | set(target), key=_nulls_first)
    ]
    debts = conn.execute(
        sa.select(DEBT.c.currency, DEBT.c.origin, sa.func.count(), sa.func.sum(DEBT.c.amount_minor))
        .where(DEBT.c.run_id == run.run_id)
        .group_by(DEBT.c.currency, DEBT.c.origin)
    ).all()  # fmt: skip
    live = PRODUCT.c.status.in_(("active", "suspended")) & (PRODUCT.c.run_id == run.run_id)
    fees = conn.execute(
        sa.select(OFFERING.c.currency, OFFERING.c.name, sa.func.count(),
                  sa.func.sum(OFFERING.c.monthly_fee_minor))
        .select_from(PRODUCT.join(OFFERING, PRODUCT.c.offering_id == OFFERING.c.offering_id))
        .where(live)
        .group_by(OFFERING.c.currency, OFFERING.c.name)
    ).all()  # fmt: skip
    return ControlTotals(
        accounts_by_brand_rating_state=tuple(accounts),
        debts_by_origin=tuple(
            {"currency": c, "origin": o, "items": int(n), "amount_minor": int(s or 0)}
            for c, o, n, s in sorted(debts, key=_nulls_first)
        ),
        live_products_by_offering=tuple(
            {"currency": c, "offering": name, "products": int(n), "monthly_fees_minor": int(s or 0)}
            for c, name, n, s in sorted(fees, key=_nulls_first)
        ),
        balance_distribution=(),
    )


def _nulls_first(row: Sequence[object]) -> tuple[tuple[bool, str], ...]:
    """Sort key for grouped rows whose labels may be NULL (a legacy brand left empty)."""
    return tuple((value is not None, "" if value is None else str(value)) for value in row)
