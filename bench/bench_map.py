"""Benchmark of ``billmig map`` (issue 3 budget), run by hand, never in CI.

Synthesises ``--accounts`` accounts into SQLite, extracts them (not timed here: see
bench_extract.py), then runs ``billmig map`` as its own process and measures wall time and peak
RSS of the whole process tree (``wait4`` reports the largest of the parent and its workers).
Writes ``bench/results/map-<accounts>.json``.

    .venv/bin/python bench/bench_map.py --accounts 1000000
    .venv/bin/python bench/bench_map.py --accounts 5000000

Budget (issue 3, 2 cores): map 1M accounts with their lines, subscriptions, payments and
bonuses ≤ 30 s; peak RSS ≤ 1.5 GiB, flat from 1M to 5M accounts. Both memory figures are
reported: the largest single process and the sum over the parent and its workers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from measure import measure

ROOT = Path(__file__).resolve().parents[1]
BILLMIG = ROOT / ".venv" / "bin" / "billmig"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="Reuse/keep this work directory.")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="billmig-bench-map-"))
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'legacy.sqlite'}"
    env = {
        **os.environ,
        "CI": "1",
        "BILLMIG_SOURCE_URL": url,
        "BILLMIG_WORKSPACE__RUNS_DIR": str(work / "runs"),
    }
    try:
        snapshot = work / "runs" / "bench" / "snapshot" / "manifest.json"
        if not (work / "legacy.sqlite").exists():
            subprocess.run(
                [str(BILLMIG), "--quiet", "synth", "--url", url, "--accounts", str(args.accounts),
                 "--manifest", str(work / "planted.json"), "--replace"],
                env=env, cwd=ROOT, check=True,
            )  # fmt: skip
        if not snapshot.exists() or not (work / "runs" / "ledger.jsonl").exists():
            # a work directory from before the run ledger: extract again so map may follow it
            shutil.rmtree(work / "runs", ignore_errors=True)
            subprocess.run(
                [str(BILLMIG), "--quiet", "extract", "--run", "bench"],
                env=env,
                cwd=ROOT,
                check=True,
            )
        result = measure([str(BILLMIG), "--quiet", "map", "--run", "bench"], env)
        manifest = json.loads((work / "runs" / "bench" / "mapped" / "manifest.json").read_text())
        snap = json.loads(snapshot.read_text())
        rows = sum(e["rows"] for e in snap["entities"].values())
        result |= {
            "legacy_rows": rows,
            "rows_per_second": round(rows / result["seconds"]),
            "partitions": manifest["partitions"],
            "outputs": {k: v.get("rows") for k, v in manifest["outputs"].items()},
        }
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    report = {"accounts": args.accounts, "cores": os.cpu_count(), "map": result}
    print(json.dumps(report, indent=2))
    out = ROOT / "bench" / "results" / f"map-{args.accounts}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
