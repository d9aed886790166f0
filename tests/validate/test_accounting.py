"""validate's row accounting and account control totals, checked against a second count.

Hypothesis generates a run: legacy rows per entity (the snapshot manifest's counts), a lineage
that may lose, duplicate or add rows, the rows map wrote per target table, a replayed delta,
the rows the target holds, and accounts per brand × payment type × status. :func:`account_rows`
and :func:`control_totals` count them through DuckDB and SQL; the test counts them again in
Python from the generated lists, and :attr:`Accounting.broken` must name exactly the entities
and tables whose counts do not add up.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.core.artifacts import (
    Coverage,
    DeltaRecord,
    ExceptionsFile,
    MappedManifest,
    MappedOutput,
    MapPolicyRecord,
    ProfileRef,
    SnapshotEntity,
    SnapshotManifest,
    SourceRef,
)
from migrate.core.db import create_engine
from migrate.core.manifest import GitState
from migrate.core.runs import MappedFolder, RunDir
from migrate.core.target_schema import METADATA, TARGET_TABLES
from validate.accounting import account_rows, control_totals
from validate.target import currency_totals
from validate.workbench import workbench

ENTITIES = ("accounts", "lines", "payments")
TABLES = tuple(t.name for t in TARGET_TABLES)
GROUPS = [(b, p, s) for b in ("kcell", "activ") for p in ("advance", "credit") for s in ("active",)]


@st.composite
def _runs(draw: st.DrawFn) -> dict[str, object]:
    legacy = {e: draw(st.integers(0, 6)) for e in ENTITIES}
    lineage: list[tuple[str, str, str]] = []
    for entity, rows in legacy.items():
        for n in range(rows):
            copies = draw(st.sampled_from((1, 1, 1, 0, 2)))  # lost or twice, sometimes
            outcome = draw(st.sampled_from(("mapped", "held", "exception")))
            lineage += [(entity, f"{entity}-{n}", outcome)] * copies
    mapped = {t: draw(st.integers(0, 3)) for t in TABLES}
    created = {t: draw(st.integers(0, 2)) for t in ("balance_action", "debt_item")}
    removed = {"debt_item": draw(st.integers(0, created["debt_item"]))}
    target = {t: draw(st.sampled_from((0, 1))) for t in TABLES}  # an offset, usually none
    source = {g: draw(st.integers(0, 4)) for g in GROUPS}
    held = {g: draw(st.integers(0, 4)) for g in GROUPS}
    return {"legacy": legacy, "lineage": lineage, "mapped": mapped, "created": created,
            "removed": removed, "offset": target, "source": source, "held": held,
            "delta": draw(st.booleans())}  # fmt: skip


def _write_run(run: RunDir, case: dict[str, object]) -> None:
    legacy, source, mapped, lineage = (
        case["legacy"],
        case["source"],
        case["mapped"],
        case["lineage"],
    )
    assert isinstance(legacy, dict) and isinstance(source, dict)
    assert isinstance(mapped, dict) and isinstance(lineage, list)
    run.snapshot.path.mkdir(parents=True)
    run.mapped.path.mkdir(parents=True)
    _manifest(legacy, source).write(run.snapshot.manifest)
    MappedManifest(
        tool_version="test", workspace=GitState(None, None), config_sha256="",
        snapshot_manifest_sha256="", tariffs_sha256="", dispositions_sha256="",
        policy=MapPolicyRecord("2016-07-01T00:00:00", "ns", 0, 0, "flag", "flag", 30),
        partitions=1,
        outputs={MappedFolder.file_name(t): MappedOutput("", rows) for t, rows in mapped.items()},
        outcomes={}, exceptions_by_reason={}, coverage=Coverage((), ()), totals=(),
    ).write(run.mapped.manifest)  # fmt: skip
    if case["delta"]:
        created, removed = case["created"], case["removed"]
        assert isinstance(created, dict) and isinstance(removed, dict)
        DeltaRecord(
            run_id=run.run_id, target="t", events=0, applied=0, already=0, not_in_run=0,
            reconciled=True, problems=(), rows_created=created, rows_removed=removed,
        ).write(run.delta_record)  # fmt: skip
    pq.write_table(
        pa.table(
            {
                "entity": pa.array([e for e, _, _ in lineage], pa.string()),
                "legacy_key": pa.array([k for _, k, _ in lineage], pa.string()),
                "outcome": pa.array([o for _, _, o in lineage], pa.string()),
            }
        ),
        run.mapped.lineage,
    )


def _manifest(legacy: dict[str, int], source: dict[tuple[str, str, str], int]) -> SnapshotManifest:
    totals = tuple(
        {"brand": b, "payment_type": p, "status": s, "rows": n} for (b, p, s), n in source.items()
    )

    def entity(name: str, rows: int) -> SnapshotEntity:
        mine = totals if name == "accounts" else ()
        return SnapshotEntity(
            file=f"{name}.parquet", sha256="0" * 64, bytes=0, rows=rows, rows_after_cutoff=0,
            exceptions=0, reconciled=True, arrival_column=None, watermark=None,
            source_totals=mine, snapshot_totals=mine, after_cutoff_totals=(),
            withheld_totals=(), differences=(),
        )  # fmt: skip

    return SnapshotManifest(
        tool_version="test", workspace=GitState(None, None), config_sha256="", timezone="UTC",
        profile=ProfileRef("test", ""), source=SourceRef("sqlite://", "sqlite"),
        cutoff="2016-07-01T00:00:00", wave=None, chunk_rows=1,
        entities={e: entity(e, rows) for e, rows in legacy.items()},
        exceptions=ExceptionsFile("exceptions.parquet", "", 0, {}), reconciled=True,
    )  # fmt: skip


def _target(path: Path, run_id: str, case: dict[str, object]) -> sa.Engine:
    """A target holding, per table, the rows the case says (and one row of another run)."""
    engine = sa.create_engine(f"sqlite:///{path}")
    extra = {
        "billing_account": "brand TEXT, rating_type TEXT, state TEXT",
        "debt_item": "currency TEXT, origin TEXT, amount_minor INTEGER",
        "product": "status TEXT, offering_id TEXT",
        "product_offering": "offering_id TEXT, currency TEXT, name TEXT, monthly_fee_minor INTEGER",
    }
    counts = _target_rows(case)
    held = case["held"]
    assert isinstance(held, dict)
    with engine.begin() as conn:
        for table in TABLES:
            columns = ", ".join(["run_id TEXT", *([extra[table]] if table in extra else [])])
            conn.exec_driver_sql(f"CREATE TABLE {table} ({columns})")
            conn.exec_driver_sql(f"INSERT INTO {table} (run_id) VALUES ('another-run')")
            if table == "billing_account":
                for (brand, payment_type, state), n in held.items():
                    rating = "prepaid" if payment_type == "advance" else "postpaid"
                    for _ in range(n):
                        conn.exec_driver_sql(
                            "INSERT INTO billing_account VALUES (?, ?, ?, ?)",
                            (run_id, brand, rating, state),
                        )
            else:
                for _ in range(counts[table]):
                    conn.exec_driver_sql(f"INSERT INTO {table} (run_id) VALUES (?)", (run_id,))
    return engine


def _replayed(case: dict[str, object], table: str) -> int:
    created, removed = case["created"], case["removed"]
    assert isinstance(created, dict) and isinstance(removed, dict)
    return created.get(table, 0) - removed.get(table, 0) if case["delta"] else 0


def _target_rows(case: dict[str, object]) -> dict[str, int]:
    """What the target holds for the run: map's rows and the delta's, plus the case's offset."""
    mapped, offset, held = case["mapped"], case["offset"], case["held"]
    assert isinstance(mapped, dict) and isinstance(offset, dict) and isinstance(held, dict)
    rows = {t: mapped[t] + _replayed(case, t) + offset[t] for t in TABLES}
    rows["billing_account"] = sum(held.values())
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_runs())
def test_row_accounting_and_account_totals_match_a_second_count(case: dict[str, object]) -> None:
    legacy, lineage, mapped = case["legacy"], case["lineage"], case["mapped"]
    source, held = case["source"], case["held"]
    assert isinstance(legacy, dict) and isinstance(lineage, list) and isinstance(mapped, dict)
    assert isinstance(source, dict) and isinstance(held, dict)
    with tempfile.TemporaryDirectory() as folder:
        run = RunDir.at(Path(folder) / "r1")
        _write_run(run, case)
        engine = _target(Path(folder) / "target.sqlite", run.run_id, case)
        with workbench(run.validate_work) as duck, engine.connect() as conn:
            accounting = account_rows(conn, duck, run)
            control = control_totals(conn, run)
        engine.dispose()

    per_key = Counter((entity, key) for entity, key, _ in lineage)
    for entity in ENTITIES:
        outcomes = Counter(o for e, _, o in lineage if e == entity)
        twice = sum(n - 1 for (e, _), n in per_key.items() if e == entity and n > 1)
        assert accounting.entities[entity] == {
            "snapshot": legacy[entity], "lineage": sum(outcomes.values()),
            "duplicate_keys": twice, **outcomes,
        }, entity  # fmt: skip
    target = _target_rows(case)
    for table in TABLES:
        assert accounting.tables[table] == {
            "mapped": mapped[table] + _replayed(case, table), "target": target[table]
        }, table  # fmt: skip
    broken_entities = {
        e for e in ENTITIES
        if accounting.entities[e]["snapshot"] != accounting.entities[e]["lineage"]
        or accounting.entities[e]["duplicate_keys"]
    }  # fmt: skip
    broken_tables = {t for t in TABLES if mapped[t] + _replayed(case, t) != target[t]}
    named = {line.split(":")[0] for line in accounting.broken}
    assert named == broken_entities | broken_tables

    want = sorted(
        (b, "prepaid" if p == "advance" else "postpaid", s, source[(b, p, s)], held[(b, p, s)])
        for b, p, s in GROUPS
    )
    assert [
        (r["brand"], r["rating_type"], r["state"], r["legacy"], r["target"])
        for r in control.accounts_by_brand_rating_state
    ] == want
    assert all(
        r["left_out"] == int(str(r["legacy"])) - int(str(r["target"]))
        for r in control.accounts_by_brand_rating_state
    )


def test_target_money_totals_are_exact_beyond_int64_on_sqlite(tmp_path: Path) -> None:
    """Three debts of 5·10^18 tiyn: 1.5·10^19 is past 2^63, where SQLite's SUM stops."""
    engine = create_engine(f"sqlite:///{tmp_path / 't.sqlite'}")
    METADATA.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(METADATA.tables["debt_item"]),
            [
                {"debt_id": f"d{n}", "billing_account_id": None, "amount_minor": 5 * 10**18 + n,
                 "currency": "KZT", "origin": "legacy_negative", "legacy_key": f"k{n}",
                 "run_id": "r"}
                for n in range(3)
            ],
        )  # fmt: skip
        totals = currency_totals(conn)
    engine.dispose()
    assert totals["KZT"]["debt_minor"] == 15 * 10**18 + 3
