"""``billmig validate``: the verdict auditors rely on (SPEC §7).

Re-derives from the snapshot what the target must hold and checks it against the target, which
does its own counting and summing in SQL. Writes ``runs/<run_id>/validation/``:

* ``verdict.json``: PASS or FAIL and every criterion with its evidence and threshold;
* ``totals.json``: per currency, legacy / target / explained / difference;
* ``differences.csv``: every account that breaks an invariant, with the fields that differ.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from migrate.config import Config, mask_url
from migrate.db import create_engine, normalise_url, translate_errors
from migrate.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError, TargetError
from migrate.rendering import TableData
from validate.accounting import Accounting, account_rows, control_totals
from validate.expected import (
    account_ranges,
    blocked_accounts,
    client_ids,
    expected_accounts,
    side_sums,
)
from validate.reconcile import DIFFERENCE_COLUMNS, compare
from validate.target import currency_totals, orphans, target_accounts

VERDICT_FORMAT = "billmig-verdict/1"


@dataclass(frozen=True)
class Criterion:
    """One check of the verdict, with what it saw and what it allows."""

    name: str
    passed: bool
    evidence: str
    threshold: str


@dataclass(frozen=True)
class ValidationResult:
    """The verdict and where its evidence is."""

    run_id: str
    target: str
    directory: Path
    criteria: tuple[Criterion, ...]
    totals: dict[str, dict[str, int]]
    differing_accounts: int
    seconds: float

    @property
    def passed(self) -> bool:
        """PASS when every criterion holds."""
        return all(c.passed for c in self.criteria)

    @property
    def exit_code(self) -> int:
        """0 on PASS, 1 on FAIL."""
        return EXIT_OK if self.passed else EXIT_CHECKS_FAILED

    def tables(self) -> list[TableData]:
        """The verdict and the money per currency, for the terminal."""
        verdict = "PASS" if self.passed else "FAIL"
        return [
            TableData(
                title=f"validate {self.run_id} against {self.target}: {verdict}",
                headers=("criterion", "result", "evidence", "threshold"),
                rows=[
                    (c.name, "pass" if c.passed else "FAIL", c.evidence, c.threshold)
                    for c in self.criteria
                ],
                footer=f"evidence in {self.directory}; {self.seconds:.1f} s",
            ),
            TableData(
                title="money by currency (minor units)",
                headers=("currency", "legacy #", "explained #", "target net #", "difference #"),
                rows=[
                    (
                        cur,
                        t["legacy_minor"],
                        t["explained_minor"],
                        t["target_net_minor"],
                        t["difference_minor"],
                    )
                    for cur, t in sorted(self.totals.items())
                ],
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "target": self.target,
            "verdict": "PASS" if self.passed else "FAIL",
            "criteria": [asdict(c) for c in self.criteria],
            "totals": self.totals,
            "differing_accounts": self.differing_accounts,
            "directory": str(self.directory),
            "seconds": round(self.seconds, 3),
        }


def run_validate(config: Config, *, run_id: str) -> ValidationResult:
    """Validate run ``run_id``'s target against its snapshot.

    Raises:
        InputError: no snapshot or mapped output for the run.
        TargetError: the target cannot be read.
    """
    started = time.perf_counter()
    run_dir = config.runs_path / run_id
    snapshot, mapped = run_dir / "snapshot", run_dir / "mapped"
    for needed, phase in ((snapshot, "extract"), (mapped, "map")):
        if not (needed / "manifest.json").exists():
            raise InputError(f"run {run_id} has no {needed.name}", hint=f"run {phase} first")
    manifest = json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))
    cutoff = pd.Timestamp(manifest["cutoff"])
    url = config.target_url()
    out = run_dir / "validation"
    out.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, read_only=True)
    try:
        with translate_errors(url, "reading the target", TargetError), engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # Room to hash and sort a million per-account groups in memory.
                conn.exec_driver_sql("SET work_mem = '256MB'")
            differences, left_out, expected_totals = _reconcile(
                conn, snapshot, mapped, cutoff, config.resolve(config.map.dispositions), out
            )
            target_totals = currency_totals(conn)
            dangling = orphans(conn)
            accounting = account_rows(conn, run_dir, run_id)
            control = control_totals(conn, run_dir)
    finally:
        engine.dispose()
    gx_findings = _great_expectations(url, snapshot, out)
    totals = _money_totals(expected_totals, target_totals)
    criteria = (
        *_criteria(differences, left_out, totals, dangling),
        _accounted(accounting),
        _expectations(gx_findings),
        _review_threshold(
            mapped / "exceptions.parquet",
            accounting.entities["accounts"]["snapshot"],
            config.validate.review_per_10000_accounts,
        ),
    )
    result = ValidationResult(
        run_id, mask_url(url), out, criteria, totals, differences, time.perf_counter() - started
    )
    _write(out, result, control, accounting)
    return result


@dataclass(frozen=True)
class RangeSides:
    """Both sides of one sorted key range of accounts."""

    accounts: pd.DataFrame
    """The snapshot's accounts of the range."""
    expected: pd.DataFrame
    left_out: pd.Series
    actual: pd.DataFrame


def range_sides(
    conn: sa.Connection, snapshot: Path, cutoff: pd.Timestamp, dispositions: Path
) -> Iterator[RangeSides]:
    """For each key range: what the snapshot says the target must hold, and what it holds."""
    sums = side_sums(snapshot, cutoff)
    blocked = blocked_accounts(snapshot, dispositions)
    clients = client_ids(snapshot)
    for accounts in account_ranges(snapshot):
        if accounts.empty:
            continue
        expected, left_out = expected_accounts(accounts, sums, blocked, clients)
        low, high = str(accounts["account_no"].iloc[0]), str(accounts["account_no"].iloc[-1])
        yield RangeSides(accounts, expected, left_out, target_accounts(conn, low, high))


def _reconcile(
    conn: sa.Connection,
    snapshot: Path,
    mapped: Path,
    cutoff: pd.Timestamp,
    dispositions: Path,
    out: Path,
) -> tuple[int, int, dict[str, dict[str, int]]]:
    """Compare every key range; returns differing accounts, accounts left out, expected sums."""
    products = mapped_products(mapped)
    differing: set[str] = set()
    left_out_total = 0
    totals: dict[str, dict[str, int]] = {}
    path = out / "differences.csv"
    pd.DataFrame(columns=list(DIFFERENCE_COLUMNS)).to_csv(path, index=False)
    for sides in range_sides(conn, snapshot, cutoff, dispositions):
        found = compare(sides.expected, sides.left_out, sides.actual, products)
        found.to_csv(path, mode="a", header=False, index=False)
        differing.update(found["legacy_account_no"].tolist())
        left_out_total += len(sides.left_out)
        _add_expected(totals, sides.accounts, sides.expected, sides.left_out)
    return len(differing), left_out_total, totals


def mapped_products(mapped: Path) -> pd.Series:
    """Products per legacy account in the mapped output (what load was asked to write)."""
    accounts = pq.read_table(
        mapped / "billing_account.parquet", columns=["billing_account_id", "legacy_account_no"]
    ).to_pandas()
    products = pq.read_table(mapped / "product.parquet", columns=["billing_account_id"]).to_pandas()
    counts = products.groupby("billing_account_id").size()
    per_account = accounts.set_index("billing_account_id")["legacy_account_no"]
    return pd.Series(counts.to_numpy(), index=counts.index.map(per_account).to_numpy())


def _add_expected(
    totals: dict[str, dict[str, int]],
    accounts: pd.DataFrame,
    expected: pd.DataFrame,
    left_out: pd.Series,
) -> None:
    for currency, rows in accounts.groupby("currency"):
        entry = totals.setdefault(str(currency), {"legacy_minor": 0, "explained_minor": 0})
        balances = rows["balance_minor"].dropna()
        entry["legacy_minor"] += int(sum(int(v) for v in balances))
        mine = expected[expected["currency"] == currency]
        held = (
            rows.set_index("account_no")["balance_minor"]
            .reindex(left_out.index.intersection(pd.Index(rows["account_no"])))
            .dropna()
        )
        entry["explained_minor"] += (
            int(mine["pending_minor"].sum())
            + int(mine["bonus_money_minor"].sum())
            - int(sum(int(v) for v in held))
        )


def _money_totals(
    expected: dict[str, dict[str, int]], target: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """``legacy + explained = target net`` per currency (write-offs explain debt that went)."""
    out = {}
    for currency in sorted(set(expected) | set(target)):
        want = expected.get(currency, {"legacy_minor": 0, "explained_minor": 0})
        have = target.get(currency, {})
        net = (
            have.get("main_minor", 0)
            + have.get("bonus_money_minor", 0)
            + have.get("pending_minor", 0)
            - have.get("debt_minor", 0)
        )
        explained = want["explained_minor"] + have.get("write_off_minor", 0)
        out[currency] = {
            "legacy_minor": want["legacy_minor"],
            "explained_minor": explained,
            "target_net_minor": net,
            "difference_minor": net - want["legacy_minor"] - explained,
            "accounts": have.get("accounts", 0),
        }
    return out


def _criteria(
    differing: int,
    left_out: int,
    totals: dict[str, dict[str, int]],
    dangling: dict[str, int],
) -> tuple[Criterion, ...]:
    worst = max((abs(t["difference_minor"]) for t in totals.values()), default=0)
    lost = sum(dangling.values())
    return (
        Criterion(
            "every account reconciles",
            differing == 0,
            f"{differing} account(s) differ (differences.csv); {left_out} left out with a reason",
            "0 differing accounts",
        ),
        Criterion(
            "money is conserved per currency",
            worst == 0,
            "; ".join(f"{c}: difference {t['difference_minor']}" for c, t in totals.items()),
            "difference 0 minor units in every currency",
        ),
        Criterion(
            "no row without its account",
            lost == 0,
            ", ".join(f"{name} {count}" for name, count in dangling.items()),
            "0 rows",
        ),
    )


def _great_expectations(url: str, snapshot: Path, out: Path) -> list[Any]:
    """Run the GX suites (imported only now: GX takes seconds to import) and keep the results."""
    from validate.gx_suites import run_snapshot_suites, run_target_suites

    with translate_errors(url, "running the target's Great Expectations suites", TargetError):
        target = run_target_suites(normalise_url(url).render_as_string(hide_password=False))
    before = run_snapshot_suites(snapshot)
    folder = out / "gx"
    folder.mkdir(exist_ok=True)
    for name, findings in (("target.json", target), ("snapshot.json", before)):
        (folder / name).write_text(
            json.dumps([asdict(f) for f in findings], indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    return target


def _expectations(findings: list[Any]) -> Criterion:
    failed = [f for f in findings if not f.success]
    return Criterion(
        "target passes its Great Expectations suites",
        not failed,
        "; ".join(f"{f.table}: {f.expectation} {f.column or ''} ({f.unexpected})" for f in failed)
        or f"{len(findings)} expectations met (gx/target.json; snapshot: gx/snapshot.json)",
        "every expectation of the target suites",
    )


def _review_threshold(exceptions: Path, accounts: int, per_10000: int) -> Criterion:
    """Review-level exceptions nobody has decided on, against the configured threshold."""
    found = pq.read_table(exceptions, columns=["severity", "disposition"]).to_pandas()
    open_rows = found[found["disposition"].isna()]
    review = int((open_rows["severity"] == "review").sum())
    blocking = int((open_rows["severity"] == "block").sum())
    allowed = accounts * per_10000 // 10_000
    return Criterion(
        "review-level exceptions within threshold",
        review <= allowed,
        f"{review} review-level exception(s) without a disposition for {accounts} accounts; "
        f"{blocking} blocking one(s) without a disposition (the cutover gate refuses those)",
        f"at most {per_10000} per 10 000 accounts ({allowed}); [validate] in billmig.toml",
    )


def _accounted(accounting: Accounting) -> Criterion:
    broken = accounting.broken
    rows = sum(e["snapshot"] for e in accounting.entities.values())
    return Criterion(
        "every legacy row accounted for",
        not broken,
        "; ".join(broken)
        if broken
        else f"{rows} legacy rows, each once in lineage; "
        "every target table holds exactly the mapped rows",
        "legacy rows = migrated + merged + left in legacy + held + withheld, per entity",
    )


def _write(
    out: Path, result: ValidationResult, control: dict[str, Any], accounting: Accounting
) -> None:
    verdict = {
        "format": VERDICT_FORMAT,
        "run_id": result.run_id,
        "target": result.target,
        "verdict": "PASS" if result.passed else "FAIL",
        "criteria": [asdict(c) for c in result.criteria],
        "differing_accounts": result.differing_accounts,
    }
    totals = {
        "money_by_currency": result.totals,
        "control_totals": control,
        "rows": {"legacy_entities": accounting.entities, "target_tables": accounting.tables},
    }
    for name, document in (("verdict.json", verdict), ("totals.json", totals)):
        (out / name).write_text(
            json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
