"""Benchmark of ``billmig validate`` (issue 5 budget), with datacompy beside it. By hand only.

Needs a mapped run (``bench_map.py --keep DIR``). Loads it into a fresh PostgreSQL database,
runs ``billmig validate`` as its own process (wall time, peak memory), then times datacompy on
the same per-account comparison (expected from the snapshot vs aggregated from the target)
and checks both find the same differing accounts. Writes ``bench/results/validate-<n>.json``.

    .venv/bin/python bench/bench_validate.py --work /tmp/bench1m --accounts 1000000

Budget (issue 5, 2 cores): ≤ 30 s in total, row-level reconciliation ≤ 15 s, peak RSS ≤ 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from measure import ROOT, measure

BILLMIG = ROOT / ".venv" / "bin" / "billmig"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def datacompy_seconds(work: Path, target: str) -> dict[str, object]:
    """Build validate's per-account sides, then time datacompy comparing them on every field."""
    import datacompy

    from validate.expected import FIELDS
    from validate.run import per_account_sides
    from validate.workbench import workbench

    text = {"currency", "rating_type", "state"}
    columns = ", ".join(f if f in text else f"CAST({f} AS BIGINT) AS {f}" for f in FIELDS)
    run_dir = work / "runs" / "bench"
    dispositions = ROOT / "mappings" / "dispositions.csv"
    with workbench(work / "datacompy-work") as duck:
        per_account_sides(duck, run_dir, target, pd.Timestamp("2016-07-01"), dispositions)
        left, right = (
            duck.sql(f"SELECT legacy_account_no, {columns} FROM {side}")
            .to_arrow_table()
            .to_pandas(types_mapper=pd.ArrowDtype)
            for side in ("expected WHERE left_out_because IS NULL", "actual")
        )
    started = time.perf_counter()
    compare = datacompy.PandasCompare(left, right, join_columns=["legacy_account_no"])
    differing = len(compare.all_mismatch()) + len(compare.df1_unq_rows) + len(compare.df2_unq_rows)
    return {"seconds": round(time.perf_counter() - started, 1), "differing_accounts": differing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_map.py's --keep dir")
    parser.add_argument("--accounts", type=int, required=True, help="for the result file name")
    args = parser.parse_args()
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"billmig_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    target = sa.make_url(PG_ADMIN).set(database=name).render_as_string(False)
    env = {
        **os.environ,
        "CI": "1",
        "BILLMIG_WORKSPACE__RUNS_DIR": str(args.work / "runs"),
        "BILLMIG_TARGET_URL": target,
    }
    results: dict[str, object] = {"accounts": args.accounts, "cores": os.cpu_count()}
    try:
        results["load"] = measure([str(BILLMIG), "--quiet", "load", "--run", "bench"], env)
        results["validate"] = measure([str(BILLMIG), "--quiet", "validate", "--run", "bench"], env)
        verdict = json.loads(
            (args.work / "runs" / "bench" / "validation" / "verdict.json").read_text()
        )
        results["verdict"] = verdict["verdict"]
        results["differing_accounts"] = verdict["reconciliation"]["differing_accounts"]
        results["stage_seconds"] = verdict["stage_seconds"]
        results["datacompy"] = datacompy_seconds(args.work, target)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(json.dumps(results, indent=2))
    out = ROOT / "bench" / "results" / f"validate-{args.accounts}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
