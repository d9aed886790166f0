"""Benchmark of synth and extract (issue 2 budgets), run by hand, never in CI.

Each phase runs as its own ``billmig`` process; wall time and peak RSS (``wait4``) are measured
per phase and written to ``bench/results/extract-<accounts>.json``.

    .venv/bin/python bench/bench_extract.py --accounts 1000000
    .venv/bin/python bench/bench_extract.py --accounts 5000000 --engines sqlite

Budgets (issue 2, 2 cores): synth 1M into SQLite ≤ 90 s; extract 1M ≤ 45 s from SQLite and
≤ 30 s from PostgreSQL; peak RSS ≤ 1 GiB, flat from 1M to 5M accounts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
BILLMIG = ROOT / ".venv" / "bin" / "billmig"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def measure(args: list[str], env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed with {os.waitstatus_to_exitcode(status)}")
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def run_engine(engine: str, accounts: int, work: Path) -> dict[str, object]:
    env = {**os.environ, "CI": "1", "BILLMIG_RUNS": str(work)}
    cleanup = None
    if engine == "sqlite":
        url = f"sqlite:///{work / 'legacy.sqlite'}"
    else:
        name = f"billmig_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)

        def cleanup() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    env["BILLMIG_SOURCE_URL"] = url
    env["BILLMIG_WORKSPACE__RUNS_DIR"] = str(work / "runs")
    try:
        synth = measure(
            [str(BILLMIG), "--quiet", "synth", "--url", url, "--accounts", str(accounts),
             "--manifest", str(work / "planted.json"), "--replace"],
            env,
        )  # fmt: skip
        extract = measure([str(BILLMIG), "--quiet", "extract", "--run", engine], env)
        manifest = json.loads((work / "runs" / engine / "snapshot" / "manifest.json").read_text())
        rows = sum(e["rows"] + e["rows_after_cutoff"] for e in manifest["entities"].values())
        extract["rows"] = rows
        extract["rows_per_second"] = round(rows / extract["seconds"])
        return {"synth": synth, "extract": extract}
    finally:
        if cleanup:
            cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    results: dict[str, object] = {"accounts": args.accounts, "cores": os.cpu_count()}
    for engine in args.engines.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"billmig-bench-{engine}-"))
        try:
            results[engine] = run_engine(engine, args.accounts, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(engine, json.dumps(results[engine]))
    out = ROOT / "bench" / "results" / f"extract-{args.accounts}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
