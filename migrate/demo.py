"""``billmig demo``: the main job end to end on an embedded SQLite database.

At this stage of the product it generates a legacy database, extracts and maps it; later
phases (load, validate, report) join the chain as they are built.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from migrate.config import Config
from migrate.extract import ExtractResult, new_run_id, run_extract
from migrate.mapper import MapResult, run_map
from migrate.progress import SILENT, Progress
from migrate.rendering import TableData
from migrate.synth import SynthOptions, SynthResult, run_synth

DEMO_SEED = 42


@dataclass(frozen=True)
class DemoResult:
    """The demo's phases and where their outputs are."""

    legacy_db: Path
    synth: SynthResult
    extract: ExtractResult
    mapped: MapResult

    @property
    def exit_code(self) -> int:
        """The worst exit code of the phases run."""
        return max(self.synth.exit_code, self.extract.exit_code, self.mapped.exit_code)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "legacy_db": str(self.legacy_db),
            "synth": self.synth.to_dict(),
            "extract": self.extract.to_dict(),
            "map": self.mapped.to_dict(),
        }

    def tables(self) -> list[TableData]:
        """The phases' own tables and where to look next."""
        where = TableData(
            title="demo outputs",
            headers=("what", "where"),
            rows=[
                ("legacy database (SQLite)", self.legacy_db),
                ("planted anomalies", self.synth.manifest_path),
                ("snapshot", self.extract.snapshot_dir),
                ("snapshot manifest", self.extract.snapshot_dir / "manifest.json"),
                ("mapped tables and exceptions", self.mapped.mapped_dir),
                ("top-up forecast", self.mapped.mapped_dir / "topup_forecast.csv"),
                ("sign-off report", "not built yet: arrives with `billmig report`"),
            ],
        )
        return [*self.synth.tables(), *self.extract.tables(), *self.mapped.tables(), where]


def run_demo(config: Config, *, accounts: int = 20_000, progress: Progress = SILENT) -> DemoResult:
    """Generate a demo legacy database under ``runs/demo/`` and run the phases on it."""
    demo_dir = config.runs_path / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    legacy_db = demo_dir / "legacy.sqlite"
    url = f"sqlite:///{legacy_db}"
    synth = run_synth(
        url,
        SynthOptions(accounts=accounts, seed=DEMO_SEED),
        demo_dir / "planted.json",
        replace=True,
        progress=progress,
    )
    demo_config = replace(config, source=replace(config.source, url=url))
    extract = run_extract(demo_config, run_id=f"demo-{new_run_id()}", progress=progress)
    mapped = run_map(demo_config, run_id=extract.run_id, progress=progress)
    return DemoResult(legacy_db=legacy_db, synth=synth, extract=extract, mapped=mapped)
