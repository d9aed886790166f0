"""Rehearsals and their comparison, with the window forecast (SPEC §9).

``billmig rehearse --label mock-3`` runs extract → map → load → validate → report into the
rehearsal target (``[rehearsal]``, URL from BILLMIG_REHEARSAL_URL), after rolling back the
rehearsal run that target still holds, and compares with the previous rehearsal.

``billmig compare RUN_A RUN_B`` sets two validated runs side by side:

* control-total drift: every number of ``validation/totals.json`` that differs;
* exceptions by reason code: new in B, resolved since A, still open in B (no disposition);
* mapped outputs: equal or not, by content (the ``run_id`` column set aside, since it names
  the run by design);
* timings per phase, from the run ledger;
* the window forecast: at B's measured throughput (accounts per hour over extract → report),
  how long ``production_accounts`` take against ``window_hours``, assuming linear scaling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from migrate.core.config import Config
from migrate.core.db import create_engine, translate_errors
from migrate.core.errors import EXIT_OK, ConfigError, InputError, TargetError
from migrate.core.ledger import PHASES, latest, read_ledger
from migrate.core.progress import SILENT, Progress
from migrate.core.rendering import TableData
from migrate.core.runs import MappedFolder, RunDir
from migrate.core.target_schema import LOAD_RUN
from migrate.extract.run import new_run_id, run_extract
from migrate.load.run import RollbackResult, run_load, run_rollback
from migrate.mapping.run import run_map
from validate.artifacts import Totals, Verdict
from validate.report import run_report
from validate.run import run_validate

TIMED = PHASES[:5]
"""The phases a rehearsal runs (cutover is never rehearsed against production)."""


@dataclass(frozen=True)
class Forecast:
    """How long production takes at a run's measured pace."""

    accounts: int
    seconds: float
    production_accounts: int
    window_hours: float

    @property
    def accounts_per_hour(self) -> float:
        """Measured pace over extract → report."""
        return self.accounts / self.seconds * 3600 if self.seconds else 0.0

    @property
    def hours_needed(self) -> float:
        """Production volume at that pace, assuming linear scaling."""
        pace = self.accounts_per_hour
        return self.production_accounts / pace if pace else float("inf")

    @property
    def fits(self) -> bool:
        """Whether it fits the window."""
        return self.hours_needed <= self.window_hours

    def sentence(self) -> str:
        """The forecast in one line."""
        verdict = (
            f"fits, {self.window_hours - self.hours_needed:,.1f} h to spare"
            if self.fits
            else f"does NOT fit: {self.hours_needed - self.window_hours:,.1f} h over"
        )
        return (
            f"at {self.accounts_per_hour:,.0f} accounts/h ({self.accounts:,} accounts in "
            f"{self.seconds:,.1f} s), {self.production_accounts:,} accounts need "
            f"{self.hours_needed:,.1f} h against a {self.window_hours:,.0f} h window: {verdict}"
        )


@dataclass(frozen=True)
class Comparison:
    """Two runs side by side."""

    run_a: str
    run_b: str
    drift: tuple[tuple[str, int | None, int | None], ...]
    """Control totals that differ: metric, A, B."""
    exceptions: tuple[tuple[str, int, int, int], ...]
    """Per reason code: new in B, resolved since A, still open in B."""
    outputs: tuple[tuple[str, bool], ...]
    """Mapped output file, equal content in both runs."""
    timings: tuple[tuple[str, float | None, float | None], ...]
    forecast: Forecast | None

    @property
    def exit_code(self) -> int:
        """Always 0: a comparison reports, it does not judge."""
        return EXIT_OK

    @property
    def identical_outputs(self) -> bool:
        """Every mapped output has the same content in both runs."""
        return all(same for _, same in self.outputs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "drift": [{"metric": m, "a": a, "b": b} for m, a, b in self.drift],
            "exceptions": [
                {"reason_code": c, "new": n, "resolved": r, "still_open": o}
                for c, n, r, o in self.exceptions
            ],
            "outputs": dict(self.outputs),
            "identical_outputs": self.identical_outputs,
            "timings": [{"phase": p, "a_seconds": a, "b_seconds": b} for p, a, b in self.timings],
            "forecast": None
            if self.forecast is None
            else {
                **asdict(self.forecast),
                "accounts_per_hour": round(self.forecast.accounts_per_hour),
                "hours_needed": round(self.forecast.hours_needed, 2),
                "fits": self.forecast.fits,
            },
        }

    def tables(self) -> list[TableData]:
        """Drift, exceptions, outputs, timings and the forecast."""
        pair = f"{self.run_a} → {self.run_b}"
        return [
            TableData(
                title=f"control-total drift {pair}",
                headers=("metric", "A", "B", "B − A"),
                rows=[(m, a, b, _minus(b, a)) for m, a, b in self.drift]
                or [("no drift", "", "", "")],
            ),
            TableData(
                title="exceptions by reason code",
                headers=("reason code", "new #", "resolved #", "still open #"),
                rows=list(self.exceptions),
            ),
            TableData(
                title="mapped outputs (content, run id set aside)",
                headers=("file", "same in both"),
                rows=list(self.outputs),
                footer="identical" if self.identical_outputs else "outputs differ",
            ),
            TableData(
                title="timings (s)",
                headers=("phase", "A", "B"),
                rows=list(self.timings),
                footer=self.forecast.sentence() if self.forecast else "no forecast: B not timed",
            ),
        ]


def _minus(b: int | None, a: int | None) -> int | None:
    return None if a is None or b is None else b - a


@dataclass(frozen=True)
class RehearsalResult:
    """One rehearsal: its phases' times and the comparison with the previous one."""

    run_id: str
    label: str
    verdict: str
    phases: tuple[tuple[str, float, int | None], ...]
    """phase, seconds, rows."""
    rolled_back: tuple[str, ...]
    comparison: Comparison | None

    @property
    def exit_code(self) -> int:
        """0 when every phase ran (the verdict is in the pack and the comparison)."""
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "run_id": self.run_id,
            "label": self.label,
            "verdict": self.verdict,
            "phases": [{"phase": p, "seconds": s, "rows": r} for p, s, r in self.phases],
            "rolled_back_first": list(self.rolled_back),
            "comparison": self.comparison.to_dict() if self.comparison else None,
        }

    def tables(self) -> list[TableData]:
        """Per-phase durations and throughput, then the comparison."""
        rows = [
            (phase, f"{seconds:.1f}", rows, int(rows / seconds) if rows and seconds else None)
            for phase, seconds, rows in self.phases
        ]
        own = TableData(
            title=f"rehearsal {self.label}: run {self.run_id}, verdict {self.verdict}",
            headers=("phase", "s", "rows #", "rows/s #"),
            rows=rows,
            footer=(
                f"rolled back first from the rehearsal target: {', '.join(self.rolled_back)}"
                if self.rolled_back
                else "the rehearsal target held no earlier rehearsal"
            ),
        )
        return [own, *(self.comparison.tables() if self.comparison else [])]


def run_rehearsal(
    config: Config, *, label: str, wave: str | None = None, progress: Progress = SILENT
) -> RehearsalResult:
    """Run every phase into the rehearsal target and compare with the previous rehearsal.

    Raises:
        ConfigError: no rehearsal target configured.
    """
    if not config.rehearsal.url:
        raise ConfigError(
            "no rehearsal target database",
            hint="set BILLMIG_REHEARSAL_URL or [rehearsal] url in .secrets.toml",
        )
    rehearsal = replace(config, target=replace(config.target, url=config.rehearsal.url))
    previous = _previous_rehearsal(config)
    rolled_back = tuple(r.run_id for r in _free_target(rehearsal))
    run_id = f"{label}-{new_run_id()}"
    run_extract(
        rehearsal, wave=wave, run_id=run_id, label=label, kind="rehearsal", progress=progress
    )
    run_map(rehearsal, run_id=run_id, progress=progress)
    run_load(rehearsal, run_id=run_id, progress=progress)
    verdict = run_validate(rehearsal, run_id=run_id, progress=progress)
    run_report(rehearsal, run_id=run_id, progress=progress)
    done = latest(read_ledger(config.runs_path))[run_id]
    phases = tuple((p, done[p].seconds or 0.0, done[p].rows) for p in TIMED if p in done)
    comparison = compare_runs(config, previous, run_id) if previous else None
    return RehearsalResult(
        run_id, label, "PASS" if verdict.passed else "FAIL", phases, rolled_back, comparison
    )


def _previous_rehearsal(config: Config) -> str | None:
    """The latest labelled run whose report completed."""
    found = None
    for entry in read_ledger(config.runs_path):
        if entry.label and entry.phase == "report" and entry.outcome == "ok":
            found = entry.run_id
    return found


def _free_target(config: Config) -> list[RollbackResult]:
    """Roll back every run the rehearsal target still holds (it holds one rehearsal)."""
    url = config.target_url()
    engine = create_engine(url)
    try:
        with translate_errors(url, "reading the rehearsal target", TargetError):
            present = sa.inspect(engine).has_table(LOAD_RUN.name)
            held = []
            if present:
                with engine.connect() as conn:
                    held = list(
                        conn.execute(
                            sa.select(LOAD_RUN.c.run_id).where(
                                LOAD_RUN.c.status.in_(("loading", "loaded", "rolling_back"))
                            )
                        ).scalars()
                    )
    finally:
        engine.dispose()
    return [run_rollback(config, run_id=run_id) for run_id in held]


# -- compare -------------------------------------------------------------------------------


def compare_runs(config: Config, run_a: str, run_b: str) -> Comparison:
    """Set two validated runs side by side.

    Raises:
        InputError: a run is missing or has not been validated.
    """
    dirs = [RunDir.of(config, run) for run in (run_a, run_b)]
    for run in dirs:
        if not run.validation.totals.is_file():
            raise InputError(
                f"run {run.run_id} has no validation totals",
                hint=f"validate run {run.run_id} first (billmig validate --run {run.run_id})",
            )
    totals = [_flatten(Totals.read(d.validation.totals).to_dict()) for d in dirs]
    drift = tuple(
        (metric, totals[0].get(metric), totals[1].get(metric))
        for metric in sorted(set(totals[0]) | set(totals[1]))
        if totals[0].get(metric) != totals[1].get(metric)
    )
    ledger = latest(read_ledger(config.runs_path))
    timed = [ledger.get(run, {}) for run in (run_a, run_b)]
    timings = tuple((p, _seconds(timed[0], p), _seconds(timed[1], p)) for p in TIMED)
    return Comparison(
        run_a,
        run_b,
        drift,
        _exception_changes(dirs[0], dirs[1]),
        _outputs(dirs[0].mapped, dirs[1].mapped),
        timings,
        _forecast(config, dirs[1], timed[1]),
    )


def _seconds(entries: dict[str, Any], phase: str) -> float | None:
    return entries[phase].seconds if phase in entries else None


def _flatten(document: Any, prefix: str = "") -> dict[str, int]:
    """Every number of a totals document under a readable path.

    List items are named by their text fields (brand/rating/state, currency/origin, …).
    """
    found: dict[str, int] = {}
    if isinstance(document, dict):
        for key, value in document.items():
            found.update(_flatten(value, f"{prefix}{key}."))
    elif isinstance(document, list):
        for item in document:
            if isinstance(item, dict):
                name = "/".join(str(v) for v in item.values() if isinstance(v, str))
                numbers = {k: v for k, v in item.items() if not isinstance(v, str)}
                found.update(_flatten(numbers, f"{prefix}{name}."))
    elif isinstance(document, int) and not isinstance(document, bool):
        found[prefix.rstrip(".")] = document
    return found


def _exception_keys(run: RunDir) -> dict[tuple[str, str, str], bool]:
    """(reason code, entity, legacy key) → whether it has a disposition."""
    table = pq.read_table(
        run.mapped.exceptions,
        columns=["reason_code", "entity", "legacy_key", "disposition"],
    )
    return {
        (str(code), str(entity), str(key)): decided is not None
        for code, entity, key, decided in zip(
            *(table[c].to_pylist() for c in table.column_names), strict=True
        )
    }


def _exception_changes(run_a: RunDir, run_b: RunDir) -> tuple[tuple[str, int, int, int], ...]:
    before, after = _exception_keys(run_a), _exception_keys(run_b)
    codes = sorted({k[0] for k in before} | {k[0] for k in after})
    rows = []
    for code in codes:
        new = sum(1 for k in after if k[0] == code and k not in before)
        resolved = sum(1 for k in before if k[0] == code and k not in after)
        still = sum(
            1 for k, decided in after.items() if k[0] == code and k in before and not decided
        )
        rows.append((code, new, resolved, still))
    return tuple(rows)


def _outputs(mapped_a: MappedFolder, mapped_b: MappedFolder) -> tuple[tuple[str, bool], ...]:
    return tuple(
        (MappedFolder.file_name(name), _same_content(mapped_a.table(name), mapped_b.table(name)))
        for name in sorted(mapped_a.tables() | mapped_b.tables())
    )


def _same_content(a: Path, b: Path) -> bool:
    """Both files exist and hold the same rows (the run_id column set aside)."""
    return a.is_file() and b.is_file() and content_sha256(a) == content_sha256(b)


def content_sha256(path: Path) -> str:
    """SHA-256 of a Parquet file's rows with the ``run_id`` column set aside, batch by batch."""
    digest = hashlib.sha256()
    for batch in _batches_without_run_id(path):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        digest.update(sink.getvalue().to_pybytes())
    return digest.hexdigest()


def _batches_without_run_id(path: Path) -> Iterator[pa.RecordBatch]:
    parquet = pq.ParquetFile(path)
    columns = [name for name in parquet.schema_arrow.names if name != "run_id"]
    yield from parquet.iter_batches(batch_size=100_000, columns=columns)


def _forecast(config: Config, run: RunDir, entries: dict[str, Any]) -> Forecast | None:
    seconds = sum(entries[p].seconds or 0.0 for p in TIMED if p in entries)
    accounts = Verdict.read(run.validation.verdict).reconciliation.accounts
    if not seconds or not accounts:
        return None
    return Forecast(
        accounts,
        seconds,
        config.rehearsal.production_accounts,
        float(config.rehearsal.window_hours),
    )
