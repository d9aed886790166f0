"""The reconciliation bridge: legacy balances at the cutoff to the target's net, per currency.

One definition, used by ``map`` (from its output), ``validate`` (re-derived from the snapshot and
read from the target) and the report, so the three show the same figures (SPEC-facing docs:
docs/SPEC.md, "The reconciliation bridge")::

    legacy balances at the cutoff      every snapshot account whose balance could be read,
                                       credit positive, debt negative (the legacy's own sign)
  + payments in transit                received by legacy, not yet posted: pending in the target
  + live money bonuses                 unexpired money bonuses: bonus buckets in the target
  + debt written off                   debt below the threshold, written off at migration
  + payments after the cutoff          replayed by ``billmig delta``
  − charges after the cutoff           replayed by ``billmig delta``
  − balances of accounts left out      accounts held back, by reason (validate and the report)
  = target net                         main + bonus money + pending − debt, over the target

"Explained" is every line between the first and the last; the difference
``target net − legacy − explained`` is zero to the minor unit when the run reconciles. Amounts
are integers in minor units; :func:`migrate.money.arithmetic.format_major` and the report
show them in major units with the currency's symbol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from migrate.core.display import count, money
from migrate.core.rendering import TableData

LEGACY = "legacy"
LINES: tuple[tuple[str, str], ...] = (
    ("pending", "+ payments in transit"),
    ("bonus_money", "+ live money bonuses"),
    ("write_off", "+ debt written off"),
    ("delta_payments", "+ payments after the cutoff (delta)"),
    ("delta_charges", "− charges after the cutoff (delta)"),
    ("left_out", "− balances of accounts left out"),
)
"""The explained movements in order: key and label (the sign is in the amount)."""
LABELS = {LEGACY: "legacy balances at the cutoff", **dict(LINES), "target_net": "= target net"}


@dataclass(frozen=True)
class BridgeLine:
    """One line: its key, the accounts it concerns (None: not counted) and its amount."""

    key: str
    amount_minor: int
    accounts: int | None = None
    by_reason: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """For ``left_out``: reason → (accounts, amount in minor units)."""

    @property
    def label(self) -> str:
        """The line's label in every rendering."""
        return LABELS[self.key]


@dataclass(frozen=True)
class Bridge:
    """One currency's bridge from the legacy balances to the target's net."""

    currency: str
    legacy: BridgeLine
    movements: tuple[BridgeLine, ...]
    target_net: BridgeLine

    @property
    def explained_minor(self) -> int:
        """Every movement between the legacy balances and the target's net."""
        return sum(line.amount_minor for line in self.movements)

    @property
    def difference_minor(self) -> int:
        """``target net − legacy − explained``: zero when every minor unit is accounted for."""
        return self.target_net.amount_minor - self.legacy.amount_minor - self.explained_minor

    @property
    def lines(self) -> tuple[BridgeLine, ...]:
        """Legacy, each movement, target net: the bridge in reading order."""
        return (self.legacy, *self.movements, self.target_net)


def bridge(
    currency: str,
    legacy: BridgeLine,
    amounts: Mapping[str, BridgeLine],
    target_net: BridgeLine,
) -> Bridge:
    """A bridge with every movement of :data:`LINES` in order (a line not given is zero)."""
    movements = tuple(amounts.get(key, BridgeLine(key, 0, 0)) for key, _ in LINES)
    return Bridge(currency, legacy, movements, target_net)


def bridge_table(found: Bridge, locale: str) -> TableData:
    """One currency's bridge for the terminal: label, accounts, amount in major units."""
    rows: list[tuple[str, str, str]] = []
    for line in found.lines:
        accounts = "" if line.accounts is None else count(line.accounts, locale)
        rows.append((line.label, accounts, money(line.amount_minor, found.currency, locale)))
        for why, (n, amount) in line.by_reason.items():
            rows.append((f"    {why}", count(n, locale), money(amount, found.currency, locale)))
    difference = money(found.difference_minor, found.currency, locale)
    return TableData(
        title=f"reconciliation bridge, {found.currency}",
        headers=("", "accounts #", "amount #"),
        rows=rows,
        footer=f"difference (target net − legacy − explained): {difference}",
    )
