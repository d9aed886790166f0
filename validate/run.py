"""``billmig validate``: the verdict auditors rely on (SPEC §7).

Re-derives from the snapshot what the target must hold and checks it against the target, which
does its own counting and summing in SQL. Writes ``runs/<run_id>/validation/``:

* ``verdict.json``: PASS or FAIL and every criterion with its evidence and threshold;
* ``totals.json``: per currency, legacy / target / explained / difference;
* ``differences.csv``: every account that breaks an invariant, with the fields that differ.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from migrate.core.artifacts import MappedManifest, SnapshotManifest
from migrate.core.bridge import Bridge, bridge_table
from migrate.core.config import Config, mask_url
from migrate.core.db import check_drivers, create_engine, translate_errors
from migrate.core.display import count, money
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError, TargetError
from migrate.core.ledger import run_phase
from migrate.core.manifest import sha256_file
from migrate.core.progress import SILENT, Progress, Task
from migrate.core.provenance import operator
from migrate.core.rendering import TableData
from migrate.core.runs import MappedFolder, PhaseFiles, RunDir, ValidationFolder, publish_folder
from validate import gx_process
from validate.accounting import Accounting, account_rows, control_totals
from validate.artifacts import (
    ControlTotals,
    Criterion,
    CurrencyMoney,
    Reconciliation,
    RowAccounting,
    Totals,
    ValidationManifest,
    Verdict,
)
from validate.bridges import bridges
from validate.expected import derive_expected
from validate.findings import Finding
from validate.reconcile import balance_distribution, reconcile
from validate.target import (
    TARGET_ROWS,
    copy_target,
    currency_totals,
    missing_primary_keys,
    orphans,
)
from validate.workbench import workbench


def _reconciled_accounts(run: RunDir) -> int | None:
    verdict = Verdict.read_if_present(run.validation.verdict)
    return verdict.reconciliation.accounts if verdict else None


VALIDATE = PhaseFiles(
    "validate",
    inputs=lambda run: (
        run.snapshot.manifest,
        run.mapped.manifest,
        run.load_record,
        run.delta_record,
    ),
    output=lambda run: run.validation.manifest,
    config_inputs=lambda config: (config.map.dispositions,),
    rows=_reconciled_accounts,
)
"""What validate reads (snapshot, mapped output, load, delta, dispositions) and leaves."""


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
    bridges: tuple[Bridge, ...] = ()
    locale: str = "en"

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
            *(bridge_table(b, self.locale) for b in self.bridges),
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
            "bridges": [asdict(b) for b in self.bridges],
        }


STAGES = ("target read", "expected side", "reconciliation", "totals and accounting",
          "great expectations", "evidence written")  # fmt: skip
"""The stages of validate, as its progress bar counts them."""


def run_validate(config: Config, *, run_id: str, progress: Progress = SILENT) -> ValidationResult:
    """Validate run ``run_id``'s target against its snapshot.

    Raises:
        InputError: no snapshot or mapped output for the run; load has not run for it or its
            inputs changed since (the run ledger).
        TargetError: the target cannot be read.
    """
    return run_phase(config, VALIDATE, run_id, lambda: _run(config, run_id, progress))


def _run(config: Config, run_id: str, progress: Progress) -> ValidationResult:
    started = time.perf_counter()
    run = RunDir.of(config, run_id)
    for needed, phase in ((run.snapshot.manifest, "extract"), (run.mapped.manifest, "map")):
        if not needed.exists():
            raise InputError(f"run {run_id} has no {needed.parent.name}", hint=f"run {phase} first")
    snapshot = SnapshotManifest.read(run.snapshot.manifest)
    snapshot.check(run.snapshot, run_id)  # every byte validate reads, as extract wrote it
    MappedManifest.read(run.mapped.manifest).check(run.mapped, run_id)
    cutoff = pd.Timestamp(snapshot.cutoff_at)
    url = config.target_url()
    check_drivers(url)  # before the target is streamed through its Arrow driver
    suites = gx_process.Suites(url, run.snapshot)
    mapped_rows = MappedManifest.read(run.mapped.manifest).outputs
    target_rows = sum(
        mapped_rows[MappedFolder.file_name(name.removeprefix("target_"))].rows or 0
        for name in TARGET_ROWS
    )
    try:
        with (
            progress.task("validate: target rows", target_rows) as rows,
            progress.task("validate: stages", len(STAGES), unit="stages") as stages,
        ):
            return _validate(config, run, cutoff, suites, started, _Watch(rows, stages))
    finally:
        suites.stop()


@dataclass(frozen=True)
class _Watch:
    """validate's two progress bars: target rows streamed, and stages done."""

    rows: Task
    stages: Task


def _validate(
    config: Config,
    run: RunDir,
    cutoff: pd.Timestamp,
    suites: gx_process.Suites,
    started: float,
    watch: _Watch,
) -> ValidationResult:
    url = config.target_url()
    out = run.validation_staging  # published as validation/ when complete
    shutil.rmtree(out.path, ignore_errors=True)  # what a killed validate left
    out.path.mkdir(parents=True)
    dispositions = config.resolve(config.map.dispositions)
    stages: dict[str, float] = {}
    with workbench(run.validate_work) as duck:
        with _stage(stages, "reconciliation"):
            per_account_sides(duck, run, url, cutoff, dispositions, watch)
            found = reconcile(duck, out.differences)
            distribution = balance_distribution(duck)
            watch.stages.advance(1)
        with _stage(stages, "totals and accounting"):
            checks = _target_checks(url, duck, run)
            money_bridges = bridges(duck, run, checks.currency_totals)
            watch.stages.advance(1)
    with _stage(stages, "great expectations (waiting)"):
        gx_findings = suites.finish(out)
        watch.stages.advance(1)
    totals = _money_totals(money_bridges)
    n = partial(count, locale=config.workspace.locale)
    criteria = (
        *_criteria(found, totals, checks.orphans, config.workspace.locale),
        _accounted(checks.accounting, n),
        _keys(checks.missing_keys),
        _expectations(gx_findings, n),
        _review_threshold(
            run.mapped.exceptions,
            checks.accounting.entities["accounts"]["snapshot"],
            config.validate.review_per_10000_accounts,
            n,
        ),
    )
    result = ValidationResult(
        run.run_id,
        mask_url(url),
        run.validation.path,
        criteria,
        totals,
        found,
        time.perf_counter() - started,
        stages,
        money_bridges,
        config.workspace.locale,
    )
    _write(
        run,
        out,
        result,
        replace(checks.control, balance_distribution=tuple(distribution)),
        checks.accounting,
    )
    publish_folder(out.path, run.validation.path)
    watch.stages.advance(1)
    return result


def per_account_sides(
    duck: duckdb.DuckDBPyConnection,
    run: RunDir,
    url: str,
    cutoff: pd.Timestamp,
    dispositions: Path,
    watch: _Watch | None = None,
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
                derive_expected, second, run, cutoff, dispositions,
            )  # fmt: skip
            try:
                with translate_errors(url, "reading the target", TargetError):
                    copy_target(url, duck, watch.rows if watch else None)
                if watch:
                    watch.stages.advance(1)
            except BaseException:
                wait([expected])  # the target's failure is the one to report
                raise
            expected.result()
            if watch:
                watch.stages.advance(1)
    finally:
        second.close()


@dataclass(frozen=True)
class _TargetChecks:
    """What the target's own SQL and the workbench's row counts say beyond the comparison."""

    orphans: dict[str, int]
    currency_totals: dict[str, dict[str, int]]
    missing_keys: list[str]
    accounting: Accounting
    control: ControlTotals


def _target_checks(url: str, duck: duckdb.DuckDBPyConnection, run: RunDir) -> _TargetChecks:
    engine = create_engine(url, read_only=True)
    try:
        with translate_errors(url, "reading the target", TargetError), engine.connect() as conn:
            return _TargetChecks(
                orphans=orphans(duck),
                currency_totals=currency_totals(conn),
                missing_keys=missing_primary_keys(conn),
                accounting=account_rows(conn, duck, run),
                control=control_totals(conn, run),
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


def _money_totals(money_bridges: tuple[Bridge, ...]) -> dict[str, dict[str, int]]:
    """``legacy + explained = target net`` per currency: each bridge's first and last lines."""
    return {
        b.currency: {
            "legacy_minor": b.legacy.amount_minor,
            "explained_minor": b.explained_minor,
            "target_net_minor": b.target_net.amount_minor,
            "difference_minor": b.difference_minor,
            "accounts": b.target_net.accounts or 0,
        }
        for b in money_bridges
    }


def _criteria(
    found: Reconciliation,
    totals: dict[str, dict[str, int]],
    dangling: dict[str, int],
    locale: str,
) -> tuple[Criterion, ...]:
    worst = max((abs(t["difference_minor"]) for t in totals.values()), default=0)
    lost = sum(dangling.values())
    n = partial(count, locale=locale)
    return (
        Criterion(
            "every account reconciles",
            found.differing_accounts == 0,
            f"{n(found.differing_accounts)} account(s) differ (differences.csv), "
            f"{n(found.differences)} field(s) in all; {n(found.accounts)} accounts compared, "
            f"{n(found.left_out)} left out with a reason",
            "0 differing accounts",
        ),
        Criterion(
            "money is conserved per currency",
            worst == 0,
            "; ".join(
                f"{c}: difference {money(t['difference_minor'], c, locale)}"
                for c, t in totals.items()
            ),
            "difference 0 in every currency, to the minor unit",
        ),
        Criterion(
            "no row without its account",
            lost == 0,
            ", ".join(f"{name} {n(rows)}" for name, rows in dangling.items()),
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


def _expectations(findings: list[Finding], n: Callable[[int], str]) -> Criterion:
    failed = [f for f in findings if not f.success]
    return Criterion(
        "target passes its Great Expectations suites",
        not failed,
        "; ".join(f"{f.table}: {f.expectation} {f.column or ''} ({f.unexpected})" for f in failed)
        or f"{n(len(findings))} expectations met (gx/target.json; snapshot: gx/snapshot.json)",
        "every expectation of the target suites",
    )


def _review_threshold(
    exceptions: Path, accounts: int, per_10000: int, n: Callable[[int], str]
) -> Criterion:
    """Review-level exceptions nobody has decided on, against the configured threshold."""
    found = pq.read_table(exceptions, columns=["severity", "disposition"]).to_pandas()
    open_rows = found[found["disposition"].isna()]
    review = int((open_rows["severity"] == "review").sum())
    blocking = int((open_rows["severity"] == "block").sum())
    allowed = accounts * per_10000 // 10_000
    return Criterion(
        "review-level exceptions within threshold",
        review <= allowed,
        f"{n(review)} review-level exception(s) without a disposition for {n(accounts)} "
        f"accounts; {n(blocking)} blocking one(s) without a disposition (the cutover gate "
        "refuses those)",
        f"at most {n(per_10000)} per {n(10_000)} accounts ({n(allowed)}); [validate] in "
        "billmig.toml",
    )


def _accounted(accounting: Accounting, n: Callable[[int], str]) -> Criterion:
    broken = accounting.broken
    rows = sum(e["snapshot"] for e in accounting.entities.values())
    return Criterion(
        "every legacy row accounted for",
        not broken,
        "; ".join(broken)
        if broken
        else f"{n(rows)} legacy rows, each once in lineage; "
        "every target table holds exactly the mapped rows",
        "legacy rows = migrated + merged + left in legacy + held + withheld, per entity",
    )


def _write(
    run: RunDir,
    out: ValidationFolder,
    result: ValidationResult,
    control: ControlTotals,
    accounting: Accounting,
) -> None:
    Verdict(
        run_id=result.run_id,
        target=result.target,
        verdict="PASS" if result.passed else "FAIL",
        criteria=result.criteria,
        reconciliation=result.reconciliation,
        stage_seconds=result.stage_seconds,
        seconds=round(result.seconds, 3),
        finished_at=datetime.now(UTC).isoformat(),
        operator=operator(),
    ).write(out.verdict)
    Totals(
        money_by_currency={cur: CurrencyMoney(**money) for cur, money in result.totals.items()},
        control_totals=control,
        rows=RowAccounting(accounting.entities, accounting.tables),
        bridges=result.bridges,
    ).write(out.totals)
    outputs = sorted(p for p in out.path.rglob("*") if p.is_file() and p != out.manifest)
    ValidationManifest(
        run_id=result.run_id,
        inputs={
            run.relative(path): sha256_file(path)
            for path in (run.snapshot.manifest, run.mapped.manifest)
        },
        outputs={p.relative_to(out.path).as_posix(): sha256_file(p) for p in outputs},
    ).write(out.manifest)
