"""What validate writes and the report, the gate and ``compare`` read: typed and versioned.

``validation/verdict.json``, ``validation/totals.json`` and ``validation/manifest.json``, each
a :class:`~migrate.core.artifacts.Artifact` with its format tag and ``read()`` / ``write()``.
They live beside the phase that writes them; the phases that read them (report, cutover,
compare, the run overview) are above validate in the layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from migrate.core.artifacts import Artifact
from migrate.core.bridge import Bridge

Cell = str | int | None
"""A value in a control-total row: a label (brand, currency, band) or a count or sum."""


@dataclass(frozen=True)
class Criterion:
    """One check of the verdict, with what it saw and what it allows."""

    name: str
    passed: bool
    evidence: str
    threshold: str


@dataclass(frozen=True)
class Reconciliation:
    """The row-level comparison: accounts compared, left out, differing."""

    accounts: int
    """Accounts compared: every snapshot account and every account number the target holds."""
    differing_accounts: int
    differences: int
    """(account, field) pairs that differ."""
    left_out: int
    """Snapshot accounts that stay out of the target with a reason."""


@dataclass(frozen=True, kw_only=True)
class Verdict(Artifact):
    """``validation/verdict.json``: PASS or FAIL and every criterion with its evidence."""

    NAME: ClassVar[str] = "verdict"
    WRITER: ClassVar[str] = "billmig validate --run RUN"

    run_id: str
    target: str
    verdict: str
    """PASS or FAIL."""
    criteria: tuple[Criterion, ...]
    reconciliation: Reconciliation
    stage_seconds: Mapping[str, float]
    seconds: float
    operator: str
    finished_at: str

    @property
    def passed(self) -> bool:
        """True on PASS."""
        return self.verdict == "PASS"

    @property
    def failed_criteria(self) -> tuple[str, ...]:
        """Names of the criteria that did not hold."""
        return tuple(c.name for c in self.criteria if not c.passed)


@dataclass(frozen=True)
class CurrencyMoney:
    """One currency's money: legacy balances, what explains the gap, the target's net."""

    accounts: int
    legacy_minor: int
    explained_minor: int
    target_net_minor: int
    difference_minor: int


@dataclass(frozen=True)
class ControlTotals:
    """Legacy against target, per group, as tables of labelled counts and sums."""

    accounts_by_brand_rating_state: tuple[Mapping[str, Cell], ...]
    debts_by_origin: tuple[Mapping[str, Cell], ...]
    live_products_by_offering: tuple[Mapping[str, Cell], ...]
    balance_distribution: tuple[Mapping[str, Cell], ...]


@dataclass(frozen=True)
class RowAccounting:
    """Per legacy entity and per target table: where every row went."""

    legacy_entities: Mapping[str, Mapping[str, int]]
    """entity → snapshot rows, lineage rows, duplicate keys, and rows per outcome."""
    target_tables: Mapping[str, Mapping[str, int]]
    """target table → mapped rows and rows the target holds for the run."""


@dataclass(frozen=True, kw_only=True)
class Totals(Artifact):
    """``validation/totals.json``: money per currency, control totals, row accounting."""

    NAME: ClassVar[str] = "totals"
    WRITER: ClassVar[str] = "billmig validate --run RUN"

    money_by_currency: Mapping[str, CurrencyMoney]
    control_totals: ControlTotals
    rows: RowAccounting
    bridges: tuple[Bridge, ...] = ()
    """Per currency, legacy balances → each explained movement → target net
    (:mod:`migrate.core.bridge`); empty in totals written before the bridge existed."""


@dataclass(frozen=True, kw_only=True)
class ValidationManifest(Artifact):
    """``validation/manifest.json``: the hashes of what validate read and wrote."""

    NAME: ClassVar[str] = "validation"
    WRITER: ClassVar[str] = "billmig validate --run RUN"

    run_id: str
    inputs: Mapping[str, str]
    """Run-relative path (``snapshot/manifest.json``) → SHA-256."""
    outputs: Mapping[str, str]
    """Path relative to ``validation/`` → SHA-256."""
