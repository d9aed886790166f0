"""Benchmark of ``billmig load`` (issue 4 budget), run by hand, never in CI.

Needs a mapped run: by default the one ``bench_map.py --keep DIR`` leaves in ``DIR``
(run id ``bench``). Loads it into a fresh PostgreSQL database and a fresh SQLite file, each as
its own ``billmig`` process, and writes ``bench/results/load-<accounts>.json``.

    .venv/bin/python bench/bench_map.py --accounts 1000000 --keep /tmp/bench1m
    .venv/bin/python bench/bench_load.py --work /tmp/bench1m --accounts 1000000

Budget (issue 4, 2 cores): 1M mapped accounts, all tables, ≤ 45 s into PostgreSQL and ≤ 90 s
into SQLite; peak RSS ≤ 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from pathlib import Path

import sqlalchemy as sa
from measure import ROOT, measure

BILLMIG = ROOT / ".venv" / "bin" / "billmig"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_map.py's --keep dir")
    parser.add_argument("--accounts", type=int, required=True, help="for the result file name")
    args = parser.parse_args()
    env = {**os.environ, "CI": "1", "BILLMIG_WORKSPACE__RUNS_DIR": str(args.work / "runs")}
    results: dict[str, object] = {"accounts": args.accounts, "cores": os.cpu_count()}
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"billmig_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    sqlite_file = args.work / "target.sqlite"
    sqlite_file.unlink(missing_ok=True)
    targets = {
        "postgresql": sa.make_url(PG_ADMIN).set(database=name).render_as_string(False),
        "sqlite": f"sqlite:///{sqlite_file}",
    }
    try:
        for engine, url in targets.items():
            command = [str(BILLMIG), "--quiet", "load", "--run", "bench"]
            results[engine] = measure(command, {**env, "BILLMIG_TARGET_URL": url})
            print(engine, json.dumps(results[engine]))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        sqlite_file.unlink(missing_ok=True)
    mapped = json.loads((args.work / "runs" / "bench" / "mapped" / "manifest.json").read_text())
    results["rows"] = sum(
        doc.get("rows", 0)
        for file, doc in mapped["outputs"].items()
        if file.removesuffix(".parquet") not in ("exceptions", "lineage")
    )
    out = ROOT / "bench" / "results" / f"load-{args.accounts}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
