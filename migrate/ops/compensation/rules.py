"""Compensation rule files (SPEC §11): ``mappings/compensation/*.toml``.

One file is one incident's decision, with one or more rules::

    title = "A1: internet services unavailable, 9–11 August"
    languages = ["be", "ru", "en"]          # the first is the default for subscribers without one

    [[rules]]
    name = "outage_daily_fee"
    kind = "daily_fee_percent"             # or refund_charges, bonus_grant
    rounding_mode = "half_up"              # one rounding step, at the end (SPEC §2)
    rounding_unit = "minor"
    [[rules.bands]]
    name = "bundle 500 MB – 9 GB"
    kinds = ["bundle"]
    data_mb_min = 500
    data_mb_max = 9216
    percent = 30
    [rules.sms]
    ru = "Вам начислено {amount} {currency} ..."

Bands match offerings on kind, included data (inclusive bounds, no data counts as 0) and
video; an offering in scope must match exactly one band, or it is a ``RULE_GAP``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from migrate.core.config import read_toml_file
from migrate.core.errors import InputError
from migrate.money.arithmetic import RoundingMode, RoundingPolicy, RoundingUnit

KINDS = ("daily_fee_percent", "refund_charges", "bonus_grant")
USAGE_KINDS = ("voice", "sms", "data", "roaming", "vas")


@dataclass(frozen=True)
class Offering:
    """What a band looks at."""

    name: str
    kind: str
    data_mb: int | None
    has_video: bool


@dataclass(frozen=True)
class Band:
    """A plan band of a ``daily_fee_percent`` rule."""

    name: str
    percent: int
    kinds: tuple[str, ...] = ()
    data_mb_min: int | None = None
    data_mb_max: int | None = None
    has_video: bool | None = None

    def matches(self, offering: Offering) -> bool:
        """Whether the offering falls in this band."""
        data = offering.data_mb or 0
        return (
            (not self.kinds or offering.kind in self.kinds)
            and (self.data_mb_min is None or data >= self.data_mb_min)
            and (self.data_mb_max is None or data <= self.data_mb_max)
            and (self.has_video is None or offering.has_video == self.has_video)
        )


@dataclass(frozen=True)
class Rule:
    """One rule of an incident."""

    name: str
    kind: str
    sms: dict[str, str]
    rounding: RoundingPolicy = field(
        default_factory=lambda: RoundingPolicy(RoundingMode.HALF_UP, RoundingUnit.MINOR)
    )
    bands: tuple[Band, ...] = ()
    fee_day: date | None = None
    """refund_charges: the day the monthly fee should have been taken."""
    charged_kinds: tuple[str, ...] = USAGE_KINDS
    plans: tuple[str, ...] = ()
    """bonus_grant: offering names whose subscribers get the grant."""
    units: int = 0
    unit: str = "MB"

    def bands_of(self, offering: Offering) -> list[Band]:
        """Every band the offering matches (exactly one, or it is a gap)."""
        return [band for band in self.bands if band.matches(offering)]


@dataclass(frozen=True)
class RuleFile:
    """An incident's rules."""

    path: Path
    sha256: str
    title: str
    languages: tuple[str, ...]
    rules: tuple[Rule, ...] = field(default_factory=tuple)


def load_rules(path: Path) -> RuleFile:
    """Read and check a rule file.

    Raises:
        InputError: missing file, bad TOML, unknown kind or a band without a percent.
    """
    raw, sha256 = read_toml_file(path, "rule file", "pass a file from mappings/compensation/")
    languages = tuple(raw.get("languages", ["ru"]))
    rules = tuple(_rule(path, item, languages) for item in raw.get("rules", []))
    if not rules:
        raise InputError(f"{path} has no [[rules]]", hint="add at least one rule")
    return RuleFile(path, sha256, str(raw.get("title", path.stem)), languages, rules)


def _rule(path: Path, raw: dict[str, Any], languages: tuple[str, ...]) -> Rule:
    name = str(raw.get("name", ""))
    kind = str(raw.get("kind", ""))
    where = f"{path.name}, rule {name or '?'}"
    if not name or kind not in KINDS:
        raise InputError(
            f"{where}: each rule needs a name and a kind ({', '.join(KINDS)})",
            hint="fix the rule file",
        )
    sms = {str(k): str(v) for k, v in raw.get("sms", {}).items()}
    if languages[0] not in sms:
        raise InputError(
            f"{where}: no SMS text in the default language {languages[0]}",
            hint="add it under [rules.sms]",
        )
    bands = tuple(_band(where, b) for b in raw.get("bands", []))
    if kind == "daily_fee_percent" and not bands:
        raise InputError(f"{where}: a daily_fee_percent rule needs bands", hint="add them")
    try:
        rounding = RoundingPolicy(
            RoundingMode(raw.get("rounding_mode", "half_up")),
            RoundingUnit(raw.get("rounding_unit", "minor")),
        )
    except ValueError as exc:
        raise InputError(
            f"{where}: {exc}", hint="use half_up/half_even/floor, major/minor"
        ) from exc
    return Rule(
        name=name,
        kind=kind,
        sms=sms,
        rounding=rounding,
        bands=bands,
        fee_day=raw.get("fee_day"),
        charged_kinds=tuple(raw.get("charged_kinds", USAGE_KINDS)),
        plans=tuple(raw.get("plans", ())),
        units=int(raw.get("units", 0)),
        unit=str(raw.get("unit", "MB")),
    )


def _band(where: str, raw: dict[str, Any]) -> Band:
    if "percent" not in raw or not 0 <= int(raw["percent"]) <= 100:
        raise InputError(f"{where}: band {raw.get('name')!r} needs a percent from 0 to 100")
    return Band(
        name=str(raw.get("name", "")),
        percent=int(raw["percent"]),
        kinds=tuple(raw.get("kinds", ())),
        data_mb_min=raw.get("data_mb_min"),
        data_mb_max=raw.get("data_mb_max"),
        has_video=raw.get("has_video"),
    )
