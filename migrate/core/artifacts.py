"""The artifacts one phase writes and another reads: typed, versioned, read and written once.

Each artifact is a frozen dataclass with a format tag ``billmig.<artifact>/<version>`` and
``read()`` / ``write()``; no phase passes a ``dict`` of another phase's JSON around or re-reads
it by key (dbt's versioned artifact schemas are the model). The artifacts here are the ones
``validate`` reads too, which is why they live in the core rather than beside their phase:
the four-eyes rule lets validate import ``migrate.core`` and nothing else. Artifacts read only
by phases above ``validate`` live beside the phase that writes them (the verdict and totals in
:mod:`validate.artifacts`, the pack manifest in :mod:`validate.pack`, the cutover record in
:mod:`migrate.ops.cutover`).

Reading checks the format tag and every field's type (pydantic, over these stdlib dataclasses),
so a torn, hand-edited or foreign file is an :class:`~migrate.core.errors.InputError` naming the
file and what to rerun, never a ``KeyError`` three modules later. JSON is written canonically
(:func:`migrate.core.manifest.canonical_json`), so the same content gives the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from migrate.core.errors import InputError
from migrate.core.manifest import GitState, canonical_json, sha256_file, write_atomic
from migrate.core.runs import MappedFolder, SnapshotFolder

if TYPE_CHECKING:
    from pydantic import TypeAdapter

A = TypeVar("A", bound="Artifact")

Scalar = str | int | None
"""A value in a control-total group: a group column's value, a row count or a micro-unit sum."""


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    """One pydantic adapter per artifact class, built on first use (`--help` stays fast)."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    if name not in _ADAPTERS:
        from pydantic import TypeAdapter

        _ADAPTERS[name] = TypeAdapter(cls)
    return _ADAPTERS[name]


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """Base of every artifact: its format tag, and reading and writing it as canonical JSON."""

    NAME: ClassVar[str] = ""
    """The artifact's name in its format tag (``snapshot`` → ``billmig.snapshot/1``)."""
    VERSION: ClassVar[int] = 1
    WRITER: ClassVar[str] = ""
    """The command that writes it, for the hint when it is missing or damaged."""

    format: str = ""

    def __post_init__(self) -> None:
        if not self.format:
            object.__setattr__(self, "format", self.tag())

    @classmethod
    def tag(cls) -> str:
        """``billmig.<name>/<version>``."""
        return f"billmig.{cls.NAME}/{cls.VERSION}"

    @classmethod
    def read(cls, path: Path) -> Self:
        """Read and check the artifact at ``path``.

        Raises:
            InputError: the file is missing, not JSON, of another format or version, or a
                field is missing or of the wrong type; the hint names the command to rerun.
        """
        from pydantic import ValidationError

        hint = f"rerun {cls.WRITER}" if cls.WRITER else "rerun the phase that writes it"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path} is missing", hint=hint) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{path} is not readable JSON ({exc})", hint=hint) from None
        found = document.get("format") if isinstance(document, dict) else None
        if found != cls.tag():
            raise InputError(
                f"{path} is {found or 'of no known format'}, not {cls.tag()}",
                hint=f"{hint}: it was written by another billmig version or edited by hand",
            )
        try:
            artifact: Self = _adapter(cls).validate_python(document)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InputError(f"{path} is damaged: {where}: {first['msg']}", hint=hint) from None
        return artifact

    @classmethod
    def read_if_present(cls, path: Path) -> Self | None:
        """The artifact at ``path``, or None when there is no file."""
        return cls.read(path) if path.is_file() else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (tuples as lists, mappings as objects)."""
        document: dict[str, Any] = _adapter(type(self)).dump_python(self, mode="json")
        return document

    def write(self, path: Path) -> None:
        """Write the artifact as canonical JSON (sorted keys: same content, same bytes).

        Written to a temporary file and renamed: a kill never leaves half an artifact.
        """
        write_atomic(path, canonical_json(self.to_dict()))


def _changed(folder: Path, listed: list[tuple[str, str]]) -> list[str]:
    """Names (relative to ``folder``) whose file is missing or has another SHA-256."""
    return [
        name
        for name, sha256 in listed
        if not (folder / name).is_file() or sha256_file(folder / name) != sha256
    ]


# -- extract -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotEntity:
    """One entity of the snapshot: its file, rows and control totals against the source."""

    file: str
    sha256: str
    bytes: int
    rows: int
    rows_after_cutoff: int
    exceptions: int
    reconciled: bool
    arrival_column: str | None
    """The column that says when a row reached legacy (events only)."""
    watermark: str | None
    """The latest arrival kept in the snapshot."""
    source_totals: tuple[Mapping[str, Scalar], ...]
    """Per group (the entity's group columns): rows and ``<amount>_micro`` sums, as the legacy
    database computed them."""
    snapshot_totals: tuple[Mapping[str, Scalar], ...]
    after_cutoff_totals: tuple[Mapping[str, Scalar], ...]
    withheld_totals: tuple[Mapping[str, Scalar], ...]
    differences: tuple[Mapping[str, Scalar | tuple[Scalar, ...]], ...]
    """Groups whose source and snapshot totals differ: ``group`` and the differences."""


@dataclass(frozen=True)
class ExceptionsFile:
    """The snapshot's exception rows: file, hash, count and count per reason code."""

    file: str
    sha256: str
    rows: int
    by_reason: Mapping[str, int]


@dataclass(frozen=True)
class ProfileRef:
    """The source profile the snapshot was read through."""

    name: str
    sha256: str


@dataclass(frozen=True)
class SourceRef:
    """The legacy database (URL with any password masked) and its dialect."""

    url: str
    dialect: str


@dataclass(frozen=True)
class WaveRef:
    """The wave the snapshot was filtered to, with its predicates."""

    name: str
    predicates: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, kw_only=True)
class SnapshotManifest(Artifact):
    """``snapshot/manifest.json``: what extract read, from where, and whether it reconciles."""

    NAME: ClassVar[str] = "snapshot"
    WRITER: ClassVar[str] = "billmig extract into a new run"

    tool_version: str
    workspace: GitState
    config_sha256: str
    profile: ProfileRef
    source: SourceRef
    cutoff: str
    """The snapshot moment, naive local time (ISO 8601)."""
    timezone: str
    wave: WaveRef | None
    chunk_rows: int
    entities: Mapping[str, SnapshotEntity]
    exceptions: ExceptionsFile
    reconciled: bool
    libraries: Mapping[str, str] = field(default_factory=dict)
    """Installed versions of the libraries that shape the snapshot's bytes (pyarrow, pandas,
    SQLAlchemy, the drivers …): a rehearsal that differs can be told apart from one that ran
    on other versions."""

    @property
    def cutoff_at(self) -> datetime:
        """The snapshot moment as a naive local datetime."""
        return datetime.fromisoformat(self.cutoff)

    @property
    def wave_name(self) -> str | None:
        """The wave's name, None for a snapshot of all accounts."""
        return self.wave.name if self.wave else None

    @property
    def rows(self) -> int:
        """Rows kept over every entity."""
        return sum(entity.rows for entity in self.entities.values())

    def changed_files(self, folder: SnapshotFolder) -> list[str]:
        """Files of the snapshot that are missing or no longer have their recorded hash."""
        listed = [(e.file, e.sha256) for e in self.entities.values()]
        listed.append((self.exceptions.file, self.exceptions.sha256))
        return _changed(folder.path, listed)

    def check(self, folder: SnapshotFolder, run_id: str) -> None:
        """Refuse a snapshot a byte of which changed since extract.

        Raises:
            InputError: naming the first changed or missing file.
        """
        changed = self.changed_files(folder)
        if changed:
            raise InputError(
                f"snapshot/{changed[0]} of run {run_id} is missing or changed since extract",
                hint="a snapshot is never edited by hand: extract again into a new --run",
            )


@dataclass(frozen=True)
class EntityTiming:
    """Rows and seconds of one entity's extract."""

    rows: int
    seconds: float


@dataclass(frozen=True, kw_only=True)
class ExtractRecord(Artifact):
    """``extract-run.json``: who extracted, when, and how fast."""

    NAME: ClassVar[str] = "extract-run"
    WRITER: ClassVar[str] = "billmig extract into a new run"

    run_id: str
    operator: str
    started_at: str
    finished_at: str
    seconds: float
    rows_per_second: int | None
    entities: Mapping[str, EntityTiming]


# -- map -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedOutput:
    """One output file of map: its hash and, for a table, its rows."""

    sha256: str
    rows: int | None = None


@dataclass(frozen=True)
class MapPolicyRecord:
    """The mapping policy the run was mapped with (from ``[map]`` and ``[workspace]``)."""

    cutoff: str
    namespace: str
    debt_threshold_minor: int
    write_off_below_minor: int
    small_debt: str
    unconsented: str
    roaming_lookback_days: int


@dataclass(frozen=True)
class Coverage:
    """Legacy codes the tariff file does not map, and mapping rows no legacy code used."""

    unmapped_legacy_codes: tuple[str, ...]
    unused_mapping_rows: tuple[str, ...]


@dataclass(frozen=True)
class MoneyConservation:
    """Per currency: legacy balances against what the mapped output holds and explains."""

    currency: str
    accounts: int
    legacy_balance_minor: int
    explained_minor: int
    held_balance_minor: int
    target_net_minor: int
    difference_minor: int
    withheld_balances: int


@dataclass(frozen=True, kw_only=True)
class MappedManifest(Artifact):
    """``mapped/manifest.json``: outputs, outcomes per entity, money conservation."""

    NAME: ClassVar[str] = "mapped"
    WRITER: ClassVar[str] = "billmig map --run RUN"

    tool_version: str
    workspace: GitState
    config_sha256: str
    snapshot_manifest_sha256: str
    tariffs_sha256: str
    dispositions_sha256: str
    policy: MapPolicyRecord
    partitions: int
    outputs: Mapping[str, MappedOutput]
    """File name (``billing_account.parquet``) → rows and hash."""
    outcomes: Mapping[str, Mapping[str, int]]
    """Entity → outcome (mapped, held, merged …) → legacy rows."""
    exceptions_by_reason: Mapping[str, int]
    coverage: Coverage
    totals: tuple[MoneyConservation, ...]
    libraries: Mapping[str, str] = field(default_factory=dict)
    """Installed versions of the libraries that shape the mapped files' bytes."""

    def output(self, name: str) -> MappedOutput | None:
        """The output file ``name`` (``product.parquet``), None when map wrote none."""
        return self.outputs.get(name)

    def table_rows(self, table: str) -> int:
        """Rows map wrote for target table ``table`` (0 when it wrote no file)."""
        found = self.outputs.get(MappedFolder.file_name(table))
        return found.rows or 0 if found else 0

    def check(self, folder: MappedFolder, run_id: str) -> None:
        """Refuse a mapped output a byte of which changed since map.

        Raises:
            InputError: naming the first changed or missing file.
        """
        changed = _changed(folder.path, [(n, o.sha256) for n, o in self.outputs.items()])
        if changed:
            raise InputError(
                f"mapped/{changed[0]} of run {run_id} is missing or changed since map",
                hint=f"rerun billmig map --run {run_id}; mapped output is never edited by hand",
            )


@dataclass(frozen=True, kw_only=True)
class MapRecord(Artifact):
    """``map-run.json``: who mapped, when, rows per output, partitions and stage seconds."""

    NAME: ClassVar[str] = "map-run"
    WRITER: ClassVar[str] = "billmig map --run RUN"

    run_id: str
    operator: str
    started_at: str
    finished_at: str
    seconds: float
    partitions: int
    workers: int
    rows: Mapping[str, int]
    stage_seconds: Mapping[str, float]


# -- load ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LoadRecord(Artifact):
    """``load-run.json``: which target, who loaded, when, and rows per table."""

    NAME: ClassVar[str] = "load-run"
    WRITER: ClassVar[str] = "billmig load --run RUN"

    run_id: str
    target: str
    outcome: str
    operator: str
    started_at: str
    finished_at: str
    seconds: float
    rows: Mapping[str, int]
    target_id: str | None = None
    """The target's identity (``billmig_target``): delta and a second load check it."""


# -- delta ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DeltaRecord(Artifact):
    """``delta-run.json``: the latest replay, with rows created and removed over every replay."""

    NAME: ClassVar[str] = "delta-run"
    WRITER: ClassVar[str] = "billmig delta --run RUN"

    run_id: str
    target: str
    events: int
    applied: int
    already: int
    not_in_run: int
    reconciled: bool
    problems: tuple[str, ...]
    rows_created: Mapping[str, int]
    """Per target table, over every replay of the run."""
    rows_removed: Mapping[str, int]
    money_by_currency: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """Every event of the run (applied now or before), minor units: charges and payments."""
    target_id: str | None = None
    """The target replayed into: the one the run was loaded into."""

    def replayed_rows(self, table: str) -> int:
        """Rows the replays left in ``table``: created less removed."""
        return self.rows_created.get(table, 0) - self.rows_removed.get(table, 0)
