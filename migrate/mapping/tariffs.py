"""``mappings/tariffs.csv``: every legacy tariff code → an offering of the new catalogue (§5.4).

One row per legacy code; several legacy codes may share one offering. The file is the new
catalogue as far as the migration is concerned: the offering's name, monthly fee (decimal text
in major units, parsed exactly), currency, included data, kind and video flag come from it.
Coverage is checked both ways against the snapshot's ``tariffs``: a live subscription on an
unmapped code is ``TARIFF_UNMAPPED`` (block), and mapping rows no snapshot tariff uses are
reported so stale rows do not linger.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pandas as pd

from migrate.core.errors import InputError
from migrate.core.legacy_schema import CURRENCY_EXPONENTS
from migrate.core.target_schema import stable_ids
from migrate.mapping.csvfile import read_rows

COLUMNS = (
    "legacy_tariff_code", "offering_code", "offering_name", "monthly_fee", "currency",
    "data_mb", "kind", "has_video", "note",
)  # fmt: skip
KINDS = ("bundle", "data_only", "payg", "home_internet")


@dataclass(frozen=True)
class Offering:
    """One offering of the new catalogue."""

    code: str
    name: str
    monthly_fee_minor: int
    currency: str
    data_mb: int | None
    kind: str
    has_video: bool


@dataclass(frozen=True)
class TariffMap:
    """The parsed mapping file."""

    offering_of: dict[str, str]
    """Legacy tariff code → offering code."""
    offerings: dict[str, Offering]
    """Offering code → offering."""
    sha256: str

    def offering_ids(self, namespace: str) -> dict[str, str]:
        """Offering code → its stable ``offering_id``."""
        codes = sorted(self.offerings)
        return dict(zip(codes, stable_ids(namespace, "product_offering", codes), strict=True))

    def legacy_lookup(self, namespace: str) -> pd.DataFrame:
        """One row per mapped legacy code: offering id, monthly fee and its currency."""
        ids = self.offering_ids(namespace)
        rows = [
            (
                legacy,
                ids[code],
                self.offerings[code].monthly_fee_minor,
                self.offerings[code].currency,
            )
            for legacy, code in sorted(self.offering_of.items())
        ]
        columns = ["tariff_code", "offering_id", "monthly_fee_minor", "fee_currency"]
        return pd.DataFrame(rows, columns=columns)

    def offering_rows(self, namespace: str) -> pd.DataFrame:
        """The ``product_offering`` table (without ``run_id``)."""
        ids = self.offering_ids(namespace)
        return pd.DataFrame(
            [
                {
                    "offering_id": ids[o.code],
                    "name": o.name,
                    "monthly_fee_minor": o.monthly_fee_minor,
                    "currency": o.currency,
                    "data_mb": o.data_mb,
                    "kind": o.kind,
                    "has_video": o.has_video,
                }
                for o in sorted(self.offerings.values(), key=lambda o: o.code)
            ]
        ).astype({"data_mb": "Int64"})

    def coverage(self, snapshot_codes: set[str]) -> dict[str, list[str]]:
        """Both directions: snapshot codes with no mapping, mapping rows for unknown codes."""
        return {
            "unmapped_legacy_codes": sorted(snapshot_codes - set(self.offering_of)),
            "unused_mapping_rows": sorted(set(self.offering_of) - snapshot_codes),
        }


def load_tariff_map(path: Path) -> TariffMap:
    """Read and check ``tariffs.csv``; any bad row is an InputError naming its line."""
    if not path.exists():
        raise InputError(
            f"tariff mapping {path} does not exist",
            hint="create it (see runbooks/02-map.md) or set [map] tariffs in billmig.toml",
        )
    data, reader = read_rows(path, COLUMNS)
    if not reader:
        raise InputError(
            f"{path.name} has a header and no rows: no legacy tariff would be mapped",
            hint="add one row per legacy tariff code (see runbooks/02-map.md)",
        )
    offering_of: dict[str, str] = {}
    offerings: dict[str, Offering] = {}
    for line, row in enumerate(reader, start=2):
        offering = _offering(row, f"{path.name}:{line}")
        legacy = row["legacy_tariff_code"].strip()
        if legacy in offering_of:
            raise InputError(
                f"{path.name}:{line}: legacy tariff {legacy} is mapped twice",
                hint="keep one row per legacy code",
            )
        known = offerings.get(offering.code)
        if known is not None and known != offering:
            raise InputError(
                f"{path.name}:{line}: offering {offering.code} differs from its earlier row",
                hint="rows sharing an offering_code must agree on name, fee, data and kind",
            )
        offering_of[legacy] = offering.code
        offerings[offering.code] = offering
    return TariffMap(offering_of, offerings, hashlib.sha256(data).hexdigest())


def _offering(row: dict[str, str], where: str) -> Offering:
    currency = row["currency"].strip()
    if currency not in CURRENCY_EXPONENTS:
        raise InputError(f"{where}: unknown currency {currency!r}", hint="use an ISO 4217 code")
    try:
        fee = Decimal(row["monthly_fee"].strip()) * 10 ** CURRENCY_EXPONENTS[currency]
    except InvalidOperation as exc:
        raise InputError(
            f"{where}: monthly_fee {row['monthly_fee']!r} is not a number", hint="write 1990.00"
        ) from exc
    if fee != fee.to_integral_value() or fee < 0:
        raise InputError(
            f"{where}: monthly_fee {row['monthly_fee']} is negative or finer than a minor unit",
            hint="write the fee in major units with at most the currency's decimals",
        )
    kind = row["kind"].strip()
    if kind not in KINDS:
        raise InputError(f"{where}: kind {kind!r} unknown", hint=f"use one of {', '.join(KINDS)}")
    data_mb = row["data_mb"].strip()
    if data_mb and not data_mb.isdigit():
        raise InputError(f"{where}: data_mb {data_mb!r} is not whole MB", hint="e.g. 3072")
    if not row["offering_code"].strip() or not row["legacy_tariff_code"].strip():
        raise InputError(f"{where}: empty tariff or offering code", hint="fill both codes")
    return Offering(
        code=row["offering_code"].strip(),
        name=row["offering_name"].strip(),
        monthly_fee_minor=int(fee),
        currency=currency,
        data_mb=int(data_mb) if data_mb else None,
        kind=kind,
        has_video=row["has_video"].strip().lower() in ("true", "1", "yes"),
    )
