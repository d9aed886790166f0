"""``billmig demo``: the main job end to end on embedded SQLite databases.

Generates a legacy database with planted anomalies (fixed seed), extracts it, maps it, loads it
into a SQLite target, validates the target and writes the sign-off pack, then says where the
report is. Everything lives under ``runs/``: ``runs/demo/`` holds both databases.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from migrate.core.config import Config
from migrate.core.errors import EXIT_OK
from migrate.core.progress import SILENT, Progress
from migrate.core.rendering import TableData
from migrate.core.runs import RunsFolder
from migrate.extract.run import ExtractResult, new_run_id, run_extract
from migrate.load.run import LoadResult, run_load
from migrate.mapping.run import MapResult, run_map
from migrate.synth import SynthOptions, SynthResult, run_synth
from validate.report import ReportResult, run_report
from validate.run import ValidationResult, run_validate
from validate.signing import DEMO_SIGNER, demo_registry

DEMO_SEED = 42


@dataclass(frozen=True)
class DemoResult:
    """The demo's phases and where their outputs are."""

    legacy_db: Path
    target_db: Path
    synth: SynthResult
    extract: ExtractResult
    mapped: MapResult
    loaded: LoadResult
    validation: ValidationResult
    report: ReportResult
    config: Config
    """The configuration the demo ran with (its own databases and signer registry)."""

    @property
    def exit_code(self) -> int:
        """0 when every phase ran; the verdict itself is in the report (a FAIL explains itself)."""
        return max(self.synth.exit_code, self.extract.exit_code, self.mapped.exit_code, EXIT_OK)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "legacy_db": str(self.legacy_db),
            "target_db": str(self.target_db),
            "synth": self.synth.to_dict(),
            "extract": self.extract.to_dict(),
            "map": self.mapped.to_dict(),
            "load": self.loaded.to_dict(),
            "validate": self.validation.to_dict(),
            "report": self.report.to_dict(),
        }

    def tables(self) -> list[TableData]:
        """A summary of every phase and where to look next."""
        verdict = "PASS" if self.validation.passed else "FAIL"
        summary = TableData(
            title=f"demo run {self.extract.run_id}",
            headers=("phase", "result", "s"),
            rows=[
                ("synth", f"{self.synth.rows.get('accounts', 0)} accounts, seed {DEMO_SEED}", ""),
                (
                    "extract",
                    f"{sum(e.rows for e in self.extract.entities)} legacy rows",
                    f"{self.extract.seconds:.1f}",
                ),
                (
                    "map",
                    f"{sum(self.mapped.exceptions_by_reason.values())} exception(s)",
                    f"{self.mapped.seconds:.1f}",
                ),
                ("load", self.loaded.outcome, f"{self.loaded.seconds:.1f}"),
                ("validate", verdict, f"{self.validation.seconds:.1f}"),
                ("report", f"manifest {self.report.manifest_sha256[:16]}", ""),
            ],
        )
        where = TableData(
            title="demo outputs",
            headers=("what", "where"),
            rows=[
                ("legacy database (SQLite)", self.legacy_db),
                ("target database (SQLite)", self.target_db),
                ("planted anomalies", self.synth.manifest_path),
                ("snapshot", self.extract.snapshot_dir),
                ("mapped tables and exceptions", self.mapped.mapped_dir),
                ("validation evidence", self.validation.directory),
                ("sign-off report (open in a browser)", self.report.html),
                ("verify the pack",
                 f"BILLMIG_SIGNOFF__SIGNERS={self.config.signoff.signers} "
                 f"billmig verify {self.extract.run_id}"),
            ],
        )  # fmt: skip
        return [*self.validation.tables(), summary, where]


def run_demo(config: Config, *, accounts: int = 20_000, progress: Progress = SILENT) -> DemoResult:
    """Generate the demo databases under ``runs/demo/`` and run every phase on them."""
    demo = RunsFolder.of(config).demo
    demo.path.mkdir(parents=True, exist_ok=True)
    legacy_db, target_db = demo.legacy_db, demo.target_db
    target_db.unlink(missing_ok=True)  # a fresh target: the demo loads one run into it
    synth = run_synth(
        f"sqlite:///{legacy_db}",
        SynthOptions(accounts=accounts, seed=DEMO_SEED),
        demo.planted,
        replace=True,
        progress=progress,
    )
    demo_config = replace(
        config,
        source=replace(config.source, url=f"sqlite:///{legacy_db}"),
        target=replace(config.target, url=f"sqlite:///{target_db}"),
        signoff=replace(config.signoff, signers=demo_registry(config, demo.path / "signers")),
    )
    extract = run_extract(
        demo_config, run_id=f"demo-{new_run_id()}", kind="demo", progress=progress
    )
    run_id = extract.run_id
    mapped = run_map(demo_config, run_id=run_id, progress=progress)
    loaded = run_load(demo_config, run_id=run_id, progress=progress)
    validation = run_validate(demo_config, run_id=run_id, progress=progress)
    report = run_report(demo_config, run_id=run_id, signer=DEMO_SIGNER, progress=progress)
    return DemoResult(
        legacy_db, target_db, synth, extract, mapped, loaded, validation, report, demo_config
    )
