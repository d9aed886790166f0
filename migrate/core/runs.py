"""The one owner of the run folder: every path and artifact name under ``runs/``.

Phases hand data to each other through files, and every one of those files is named here and
nowhere else (dlt's ``LoadStorage`` is the model). :class:`RunsFolder` holds what belongs to all
runs (the ledger, the lock, the window state); :class:`RunDir` holds one run's folder:

=================================  ==============================  ==========================
path                               written by                      read by
=================================  ==============================  ==========================
``extract-run.json``               extract (its run record)        the report
``snapshot/``                      extract                         map, delta, validate
``map-run.json``                   map (its run record)            the ledger, the report
``mapped/``                        map                             load, validate, compare
``load-run.json``                  load (its load record)          delta, validate, report
``delta-run.json``, ``delta/``     delta                           validate, report, cutover
``validation/``                    validate                        report, cutover, compare
``signoff/``                       report, signoff                 verify, cutover
``freeze_breaches.csv``            window breaches                 cutover
``compensation/``                  compensate                      runbook 08
``cutover/cutover-run.json``       cutover (after the pack: not    the go/no-go minutes, a
                                   in it)                          second gate run, runs
=================================  ==============================  ==========================

A compensation is a run of its own, ``runs/compensation-<incident>/``.

Run records share one naming scheme, ``<phase>-run.json``; every artifact's format tag is
``billmig.<artifact>/<version>`` (see :mod:`migrate.core.artifacts`).

Each phase declares what it reads and writes once, as a :class:`PhaseFiles`; the ledger hashes
those declarations instead of knowing any phase's file names.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from migrate.core.config import Config
from migrate.core.errors import InputError

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
"""Run, label and incident ids: a letter or digit, then letters, digits, ``.``, ``_`` or ``-``;
at most 96 characters. An id becomes a folder name, so nothing else is accepted."""


def check_id(value: str, what: str = "run id") -> str:
    """``value`` when it is a valid id; refused otherwise, before anything is written.

    Raises:
        InputError: an empty id, a path (``../x``, ``/tmp/x``, ``.``), spaces or other
            characters outside the pattern.
    """
    if not ID_PATTERN.fullmatch(value) or ".." in value:
        raise InputError(
            f"{what} {value!r} is not valid: an id becomes a file or folder name",
            hint="use letters, digits, '.', '_' and '-' (e.g. mock-3 or wave1-20260701), "
            "starting with a letter or digit",
        )
    return value


@dataclass(frozen=True)
class RunsFolder:
    """The ``runs/`` folder of a workspace: the ledger, the lock and the window live here."""

    path: Path

    @classmethod
    def of(cls, config: Config) -> RunsFolder:
        """The runs folder ``config`` names."""
        return cls(config.runs_path)

    @property
    def ledger(self) -> Path:
        """The append-only run ledger."""
        return self.path / "ledger.jsonl"

    @property
    def lock(self) -> Path:
        """The workspace lock file: one phase at a time."""
        return self.path / ".billmig.lock"

    @property
    def workspace_id(self) -> Path:
        """This workspace's identity, recorded by every target it loads into."""
        return self.path / ".workspace-id"

    @property
    def window_state(self) -> Path:
        """The restricted-services window's state, polled by CRM, USSD and dealer portals."""
        return self.path / "window.json"

    @property
    def window_notices(self) -> Path:
        """Notices the window writes (never sends): restrictions and top-up reminders."""
        return self.path / "window" / "notices"

    @property
    def synth_manifest(self) -> Path:
        """Default list of the anomalies ``billmig synth`` planted."""
        return self.path / "synth" / "planted.json"

    @property
    def demo(self) -> DemoFolder:
        """The demo's own legacy and target databases."""
        return DemoFolder(self.path / "demo")

    def run(self, run_id: str) -> RunDir:
        """The folder of run ``run_id``.

        Raises:
            InputError: ``run_id`` is not a valid id (it would name a path elsewhere).
        """
        return RunDir(self.path / check_id(run_id), run_id)

    def compensation(self, incident: str) -> RunDir:
        """An incident's compensation: a run of its own, ``compensation-<incident>``.

        Raises:
            InputError: ``incident`` is not a valid id.
        """
        return self.run(f"compensation-{check_id(incident, 'incident id')}")


@dataclass(frozen=True)
class DemoFolder:
    """``runs/demo/``: the demo's synthetic legacy database, its target and what was planted."""

    path: Path

    @property
    def legacy_db(self) -> Path:
        """The synthetic legacy database (SQLite)."""
        return self.path / "legacy.sqlite"

    @property
    def target_db(self) -> Path:
        """The demo's target database (SQLite), new for every demo."""
        return self.path / "target.sqlite"

    @property
    def planted(self) -> Path:
        """The anomalies synth planted."""
        return self.path / "planted.json"


@dataclass(frozen=True)
class SnapshotFolder:
    """``snapshot/``: one Parquet file per reference entity, its manifest and exceptions."""

    path: Path

    @property
    def manifest(self) -> Path:
        """The snapshot manifest: hashes, control totals, cutoff, profile."""
        return self.path / "manifest.json"

    @property
    def exceptions(self) -> Path:
        """Values extract could not read exactly, one row each."""
        return self.path / "exceptions.parquet"

    def entity(self, entity: str) -> Path:
        """The Parquet file of one reference entity (``accounts``, ``payments`` …)."""
        return self.path / f"{entity}.parquet"


@dataclass(frozen=True)
class MappedFolder:
    """``mapped/``: one Parquet file per target table, lineage, exceptions, the forecast."""

    path: Path

    @property
    def manifest(self) -> Path:
        """The mapped manifest: outputs with rows and hashes, outcomes, money conservation."""
        return self.path / "manifest.json"

    @property
    def exceptions(self) -> Path:
        """Every exception of the run (extract's and map's), with its disposition."""
        return self.path / "exceptions.parquet"

    @property
    def lineage(self) -> Path:
        """One row per legacy row: what became of it."""
        return self.path / "lineage.parquet"

    @property
    def topup_forecast(self) -> Path:
        """The top-up forecast for the window (what each subscriber should top up)."""
        return self.path / "topup_forecast.csv"

    def table(self, table: str) -> Path:
        """The Parquet file of one target table (``billing_account`` …) or of lineage."""
        return self.path / self.file_name(table)

    @staticmethod
    def file_name(table: str) -> str:
        """The file name of a table's output, as the mapped manifest lists it."""
        return f"{table}.parquet"

    def tables(self) -> set[str]:
        """Names of the tables with an output file here (target tables, lineage, exceptions)."""
        return {path.stem for path in self.path.glob(self.file_name("*"))}


@dataclass(frozen=True)
class DeltaFolder:
    """``delta/``: the post-snapshot events replayed, and those that could not be."""

    path: Path

    @property
    def events(self) -> Path:
        """Post-snapshot events of the run's accounts, as legacy has them."""
        return self.path / "events.parquet"

    @property
    def not_replayed(self) -> Path:
        """Post-snapshot events of accounts the run did not load."""
        return self.path / "not_replayed.parquet"


@dataclass(frozen=True)
class ValidationFolder:
    """``validation/``: validate's evidence."""

    path: Path

    @property
    def manifest(self) -> Path:
        """Validate's manifest: its inputs' and outputs' hashes."""
        return self.path / "manifest.json"

    @property
    def verdict(self) -> Path:
        """PASS or FAIL with every criterion."""
        return self.path / "verdict.json"

    @property
    def totals(self) -> Path:
        """Control totals and money per currency, legacy against target."""
        return self.path / "totals.json"

    @property
    def differences(self) -> Path:
        """Every differing account field, expected against actual."""
        return self.path / "differences.csv"

    @property
    def gx(self) -> Path:
        """Great Expectations results, one JSON file per suite."""
        return self.path / "gx"

    def gx_suite(self, suite: str) -> Path:
        """One suite's results (``target``, ``snapshot``)."""
        return self.gx / f"{suite}.json"


@dataclass(frozen=True)
class PackFolder:
    """``signoff/``: the sign-off pack."""

    path: Path

    @property
    def manifest(self) -> Path:
        """The pack's manifest: every artifact's hash."""
        return self.path / "manifest.json"

    @property
    def manifest_signature(self) -> Path:
        """The builder's Ed25519 signature over the manifest's bytes (raw, 64 bytes)."""
        return self.path / "manifest.json.sig"

    @property
    def checksums(self) -> Path:
        """Every artifact's SHA-256 in ``sha256sum -c`` form (run-relative paths)."""
        return self.path / "SHA256SUMS"

    @property
    def signoffs(self) -> Path:
        """Decisions recorded on the pack, one JSON line each (the exact bytes signed), chained."""
        return self.path / "signoffs.jsonl"

    @property
    def signoff_signatures(self) -> Path:
        """Line N: the base64 Ed25519 signature of line N of ``signoffs.jsonl``."""
        return self.path / "signoffs.sig"

    @property
    def signoffs_head(self) -> Path:
        """The chain's length and last line hash (the exact bytes signed)."""
        return self.path / "signoffs.head.json"

    @property
    def signoffs_head_signature(self) -> Path:
        """The raw signature of ``signoffs.head.json`` by whoever appended the last line."""
        return self.path / "signoffs.head.json.sig"

    @property
    def signoffs_pending(self) -> Path:
        """A decision being recorded (all four sign-off files' change), removed once applied."""
        return self.path / "signoffs.pending.json"

    @property
    def signoff_history(self) -> tuple[Path, ...]:
        """The sign-off files: they survive a rebuild of the pack."""
        return (self.signoffs, self.signoff_signatures, self.signoffs_head,
                self.signoffs_head_signature, self.signoffs_pending)  # fmt: skip

    @property
    def not_artifacts(self) -> frozenset[Path]:
        """Files of the pack that are about the artifacts rather than artifacts themselves."""
        return frozenset({self.manifest, self.manifest_signature, self.checksums,
                          *self.signoff_history})  # fmt: skip

    @property
    def report_html(self) -> Path:
        """The report, self-contained HTML."""
        return self.path / "report.html"

    @property
    def report_pdf(self) -> Path:
        """The report as PDF."""
        return self.path / "report.pdf"

    @property
    def exceptions(self) -> Path:
        """Every exception of the run, masked unless the pack is unmasked."""
        return self.path / "exceptions.csv"


@dataclass(frozen=True)
class CompensationFolder:
    """``compensation/``: a compensation's credits, texts, rule gaps and totals."""

    path: Path

    @property
    def actions(self) -> Path:
        """Every credit: rule, band, account, line, amount or units."""
        return self.path / "actions.csv"

    @property
    def sms(self) -> Path:
        """The text each subscriber is sent, in their language."""
        return self.path / "sms.csv"

    @property
    def gaps(self) -> Path:
        """Plans the rules put in no band or in two (``RULE_GAP``)."""
        return self.path / "gaps.csv"

    @property
    def totals(self) -> Path:
        """Totals by rule and band."""
        return self.path / "totals.json"


@dataclass(frozen=True)
class RunDir:
    """One run's folder, ``runs/<run_id>/``, and every artifact in it."""

    path: Path
    run_id: str

    @classmethod
    def of(cls, config: Config, run_id: str) -> RunDir:
        """The folder of run ``run_id`` in the workspace ``config`` names."""
        return RunsFolder.of(config).run(run_id)

    @classmethod
    def at(cls, path: Path) -> RunDir:
        """The run folder ``path`` (a run's, or one holding a pack received by email)."""
        return cls(path, path.name)

    @property
    def runs_folder(self) -> RunsFolder:
        """The runs folder this run lives in."""
        return RunsFolder(self.path.parent)

    def exists(self) -> bool:
        """True when the run's folder exists."""
        return self.path.is_dir()

    def relative(self, path: Path) -> str:
        """``path`` relative to the run folder (``snapshot/manifest.json``), as packs list it."""
        return path.relative_to(self.path).as_posix()

    # -- extract -------------------------------------------------------------------------------

    @property
    def extract_record(self) -> Path:
        """Extract's run record: operator, times, rows and seconds per entity."""
        return self.path / "extract-run.json"

    @property
    def snapshot(self) -> SnapshotFolder:
        """The snapshot extract published."""
        return SnapshotFolder(self.path / "snapshot")

    @property
    def snapshot_staging(self) -> SnapshotFolder:
        """Where extract writes before it publishes ``snapshot/`` with one rename."""
        return SnapshotFolder(self.path / "snapshot.partial")

    # -- map -----------------------------------------------------------------------------------

    @property
    def map_record(self) -> Path:
        """Map's run record: operator, times, rows per output, partitions, stage seconds."""
        return self.path / "map-run.json"

    @property
    def mapped(self) -> MappedFolder:
        """The mapped output map published."""
        return MappedFolder(self.path / "mapped")

    @property
    def mapped_staging(self) -> MappedFolder:
        """Where map writes before it publishes ``mapped/`` with one rename."""
        return MappedFolder(self.path / "mapped.partial")

    # -- load ----------------------------------------------------------------------------------

    @property
    def load_record(self) -> Path:
        """Load's record: target, rows per table, outcome."""
        return self.path / "load-run.json"

    # -- delta ---------------------------------------------------------------------------------

    @property
    def delta_record(self) -> Path:
        """Delta's record: events, what was applied, and whether it reconciled."""
        return self.path / "delta-run.json"

    @property
    def delta_record_rolled_back(self) -> Path:
        """The delta record a rollback set aside: the rows it counts are gone."""
        return self.path / "delta-run.rolled-back.json"

    @property
    def delta_rolled_back(self) -> DeltaFolder:
        """The delta events a rollback set aside."""
        return DeltaFolder(self.path / "delta.rolled-back")

    @property
    def delta(self) -> DeltaFolder:
        """The events the delta replayed and those it could not."""
        return DeltaFolder(self.path / "delta")

    # -- validate ------------------------------------------------------------------------------

    @property
    def validation(self) -> ValidationFolder:
        """Validate's evidence."""
        return ValidationFolder(self.path / "validation")

    @property
    def validation_staging(self) -> ValidationFolder:
        """Where validate writes before it publishes ``validation/`` (:func:`publish_folder`)."""
        return ValidationFolder(self.path / "validation.partial")

    @property
    def validate_work(self) -> Path:
        """Validate's DuckDB scratch folder (removed when validate ends)."""
        return self.path / ".validate-work"

    # -- report and sign-off -------------------------------------------------------------------

    @property
    def signoff(self) -> PackFolder:
        """The sign-off pack."""
        return PackFolder(self.path / "signoff")

    # -- window, compensation, cutover ---------------------------------------------------------

    @property
    def freeze_breaches(self) -> Path:
        """Legacy orders of a blocked kind inside the window."""
        return self.path / "freeze_breaches.csv"

    @property
    def compensation(self) -> CompensationFolder:
        """A compensation run's actions, texts, rule gaps and totals."""
        return CompensationFolder(self.path / "compensation")

    @property
    def cutover(self) -> Path:
        """``cutover/``: the gate's own records, outside the signed pack (written after it)."""
        return self.path / "cutover"

    @property
    def cutover_record(self) -> Path:
        """The gate's GO record: the criteria, the manifest hash that went live, who, when."""
        return self.cutover / "cutover-run.json"

    @property
    def cutover_record_at_root(self) -> Path:
        """The GO record where older billmig wrote it (packed files: verify saw it added)."""
        return self.path / "cutover-run.json"

    @property
    def cutover_rolled_back(self) -> Path:
        """The gate's records a forced rollback set aside: the run is no longer live."""
        return self.path / "cutover.rolled-back"


PACKED_FOLDERS = ("snapshot", "mapped", "delta", "validation", "compensation", "signoff")
"""Folders of a run whose every file a sign-off pack's manifest hashes."""


@dataclass(frozen=True)
class PhaseFiles:
    """What one phase reads and leaves as its evidence, declared once beside the phase.

    The ledger hashes these files when the phase starts and ends, and checks them before any
    later phase of the run: a changed input makes every later result stale.
    """

    name: str
    inputs: Callable[[RunDir], tuple[Path, ...]]
    """The run's files the phase reads (configuration and mapping files are added by
    ``config_inputs``)."""
    output: Callable[[RunDir], Path | None]
    """The file the phase leaves as its evidence (None: none)."""
    config_inputs: Callable[[Config], tuple[str, ...]] = lambda config: ()
    """Workspace files the phase reads, named by the configuration (``mappings/tariffs.csv``)."""
    rows: Callable[[RunDir], int | None] = lambda run: None
    """Rows the phase handled, read back from its own evidence."""


def publish_folder(staging: Path, final: Path) -> None:
    """Replace ``final`` by the complete ``staging`` folder.

    The old folder is first renamed aside (``<name>.old``), then ``staging`` renamed into place,
    then the old one removed: at every instant ``final`` is either the old complete folder, the
    new complete one, or absent (killed between the two renames), never a mixture.
    """
    aside = final.with_name(f"{final.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    if final.exists():
        os.rename(final, aside)
    os.rename(staging, final)
    shutil.rmtree(aside, ignore_errors=True)
