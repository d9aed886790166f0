"""``billmig validate``: the verdict auditors rely on (SPEC §7).

Re-derives from the snapshot what the target must hold and checks it against the target, which
does its own counting and summing in SQL. Writes ``runs/<run_id>/validation/``:

* ``verdict.json``: PASS or FAIL and every criterion with its evidence and threshold;
* ``totals.json``: per currency, legacy / target / explained / difference;
* ``differences.csv``: every account that breaks an invariant, with the fields that differ.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from migrate.core.config import Config, mask_url
from migrate.core.db import create_engine, translate_errors
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError, TargetError
from migrate.core.ledger import run_phase
from migrate.core.manifest import sha256_file, write_json
from migrate.core.rendering import TableData
from validate import gx_process
from validate.accounting import Accounting, account_rows, control_totals
from validate.expected import derive_expected, legacy_money
from validate.findings import Finding
from validate.reconcile import Reconciliation, balance_distribution, reconcile
from validate.target import copy_target, currency_totals, missing_primary_keys, orphans
from validate.workbench import workbench

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
    reconciliation: Reconciliation
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """PASS when every criterion holds."""
        return all(c.passed for c in self.criteria)

    @property
    def differing_accounts(self) -> int:
        """Accounts with at least one field that differs."""
        return self.reconciliation.differing_accounts

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
            "reconciliation": asdict(self.reconciliation),
            "directory": str(self.directory),
            "seconds": round(self.seconds, 3),
            "stage_seconds": self.stage_seconds,
        }


def run_validate(config: Config, *, run_id: str) -> ValidationResult:
    """Validate run ``run_id``'s target against its snapshot.

    Raises:
        InputError: no snapshot or mapped output for the run; load has not run for it or its
            inputs changed since (the run ledger).
        TargetError: the target cannot be read.
    """
    return run_phase(config, "validate", run_id, lambda: _run(config, run_id))


def _run(config: Config, run_id: str) -> ValidationResult:
    started = time.perf_counter()
    run_dir = config.runs_path / run_id
    snapshot, mapped = run_dir / "snapshot", run_dir / "mapped"
    for needed, phase in ((snapshot, "extract"), (mapped, "map")):
        if not (needed / "manifest.json").exists():
            raise InputError(f"run {run_id} has no {needed.name}", hint=f"run {phase} first")
    manifest = json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))
    url = config.target_url()
    suites = gx_process.Suites(url, snapshot)
    try:
        return _validate(config, run_id, pd.Timestamp(manifest["cutoff"]), suites, started)
    finally:
        suites.stop()


def _validate(
    config: Config,
    run_id: str,
    cutoff: pd.Timestamp,
    suites: gx_process.Suites,
    started: float,
) -> ValidationResult:
    run_dir = config.runs_path / run_id
    url = config.target_url()
    out = run_dir / "validation"
    out.mkdir(parents=True, exist_ok=True)
    dispositions = config.resolve(config.map.dispositions)
    stages: dict[str, float] = {}
    with workbench(run_dir / ".validate-work") as duck:
        with _stage(stages, "reconciliation"):
            per_account_sides(duck, run_dir, url, cutoff, dispositions)
            found = reconcile(duck, out / "differences.csv")
            legacy = legacy_money(duck)
            distribution = balance_distribution(duck)
        with _stage(stages, "totals and accounting"):
            checks = _target_checks(url, duck, run_dir)
    with _stage(stages, "great expectations (waiting)"):
        gx_findings = suites.finish(out)
    totals = _money_totals(legacy, checks.currency_totals)
    criteria = (
        *_criteria(found, totals, checks.orphans),
        _accounted(checks.accounting),
        _keys(checks.missing_keys),
        _expectations(gx_findings),
        _review_threshold(
            run_dir / "mapped" / "exceptions.parquet",
            checks.accounting.entities["accounts"]["snapshot"],
            config.validate.review_per_10000_accounts,
        ),
    )
    result = ValidationResult(
        run_id,
        mask_url(url),
        out,
        criteria,
        totals,
        found,
        time.perf_counter() - started,
        stages,
    )
    _write(out, result, {**checks.control, "balance_distribution": distribution}, checks.accounting)
    return result


def per_account_sides(
    duck: duckdb.DuckDBPyConnection,
    run_dir: Path,
    url: str,
    cutoff: pd.Timestamp,
    dispositions: Path,
) -> None:
    """Tables ``expected`` (from the snapshot) and ``actual`` (from the target) in ``duck``.

    Both at once: DuckDB derives the expected side on a second connection to the workbench
    while this thread streams the target (each waits on other work than the other: Parquet
    scans and hash joins against the target database's COPY).
    """
    second = duck.cursor()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            expected = pool.submit(
                derive_expected, second, run_dir / "snapshot", run_dir / "mapped", cutoff,
                dispositions,
            )  # fmt: skip
            try:
                with translate_errors(url, "reading the target", TargetError):
                    copy_target(url, duck)
            except BaseException:
                wait([expected])  # the target's failure is the one to report
                raise
            expected.result()
    finally:
        second.close()


@dataclass(frozen=True)
class _TargetChecks:
    """What the target's own SQL and the workbench's row counts say beyond the comparison."""

    orphans: dict[str, int]
    currency_totals: dict[str, dict[str, int]]
    missing_keys: list[str]
    accounting: Accounting
    control: dict[str, Any]


def _target_checks(url: str, duck: duckdb.DuckDBPyConnection, run_dir: Path) -> _TargetChecks:
    engine = create_engine(url, read_only=True)
    try:
        with translate_errors(url, "reading the target", TargetError), engine.connect() as conn:
            return _TargetChecks(
                orphans=orphans(duck),
                currency_totals=currency_totals(conn),
                missing_keys=missing_primary_keys(conn),
                accounting=account_rows(conn, duck, run_dir, run_dir.name),
                control=control_totals(conn, run_dir),
            )
    finally:
        engine.dispose()


@contextmanager
def _stage(stages: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = round(time.perf_counter() - started, 3)


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
    found: Reconciliation,
    totals: dict[str, dict[str, int]],
    dangling: dict[str, int],
) -> tuple[Criterion, ...]:
    worst = max((abs(t["difference_minor"]) for t in totals.values()), default=0)
    lost = sum(dangling.values())
    return (
        Criterion(
            "every account reconciles",
            found.differing_accounts == 0,
            f"{found.differing_accounts} account(s) differ (differences.csv), "
            f"{found.differences} field(s) in all; {found.accounts} accounts compared, "
            f"{found.left_out} left out with a reason",
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


def _keys(missing: list[str]) -> Criterion:
    return Criterion(
        "the target enforces its primary keys",
        not missing,
        "missing: " + "; ".join(missing) if missing else "every table declares its primary key",
        "a primary key on every target table (what makes a surrogate id unique)",
    )


def _expectations(findings: list[Finding]) -> Criterion:
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
        "reconciliation": asdict(result.reconciliation),
        "stage_seconds": result.stage_seconds,
        "seconds": round(result.seconds, 3),
        "finished_at": datetime.now(UTC).isoformat(),
        "operator": getpass.getuser(),
    }
    totals = {
        "money_by_currency": result.totals,
        "control_totals": control,
        "rows": {"legacy_entities": accounting.entities, "target_tables": accounting.tables},
    }
    for name, document in (("verdict.json", verdict), ("totals.json", totals)):
        write_json(out / name, document)
    run_dir = out.parent
    outputs = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    write_json(
        out / "manifest.json",
        {
            "format": "billmig-validation/1",
            "run_id": result.run_id,
            "phase": "validate",
            "inputs": {
                name: sha256_file(run_dir / name)
                for name in ("snapshot/manifest.json", "mapped/manifest.json")
            },
            "outputs": {str(p.relative_to(out)): sha256_file(p) for p in outputs},
        },
    )
