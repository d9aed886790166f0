"""The operator's numbering plan: which numbers are its mobile lines (``[numbering]``).

Built from the ``phonenumbers`` library's metadata (Google's libphonenumber): for each of the
operator's countries its calling code, national (trunk) prefix and the pattern of mobile
national numbers, or the national prefixes the workspace names as its mobile ranges. Turned
into regular expressions once, so millions of numbers are checked column-wise (Arrow, RE2)
rather than parsed one by one. Shared by mapping (E.164 normalisation) and validate (masking
numbers wherever they appear): a reference table, like the legacy schema, not a mapping rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from migrate.core.errors import ConfigError


@dataclass(frozen=True)
class CountryPlan:
    """One country's mobile numbers."""

    region: str
    """ISO 3166 alpha-2 (KZ, BY)."""
    calling_code: str
    """Without the plus (7, 375)."""
    trunk: str
    """Regular expression of the trunk prefix written before a national number (KZ ``8``, BY
    ``0|80?``), or ''."""
    mobile: str
    """Regular expression of a mobile national number (no anchors, no groups that capture)."""
    national_lengths: tuple[int, ...]
    """Possible lengths of a mobile national number."""


@dataclass(frozen=True)
class NumberingPlan:
    """The operator's countries, the first being home (bare national numbers are read in it)."""

    countries: tuple[CountryPlan, ...]

    @property
    def home(self) -> CountryPlan:
        """The country whose national numbers need no calling code."""
        return self.countries[0]


def build_plan(
    regions: tuple[str, ...], mobile_prefixes: tuple[tuple[str, tuple[str, ...]], ...] = ()
) -> NumberingPlan:
    """The numbering plan of ``regions``, with ``mobile_prefixes`` narrowing a country's ranges.

    Raises:
        ConfigError: no country, a region ``phonenumbers`` does not know, or a prefix that is
            not digits.
    """
    if not regions:
        raise ConfigError(
            "[numbering] countries is empty", hint='name the operator\'s countries: ["KZ"]'
        )
    prefixes = dict(mobile_prefixes)
    unknown = sorted(set(prefixes) - set(regions))
    if unknown:
        raise ConfigError(
            f"[numbering] mobile_prefixes names {unknown[0]}, which is not in countries",
            hint="add the country to [numbering] countries, or remove its prefixes",
        )
    return NumberingPlan(tuple(_country(r, prefixes.get(r)) for r in regions))


@cache
def _metadata(region: str):  # type: ignore[no-untyped-def]
    import phonenumbers

    return phonenumbers.PhoneMetadata.metadata_for_region(region.upper())


def _country(region: str, prefixes: tuple[str, ...] | None) -> CountryPlan:
    metadata = _metadata(region)
    if metadata is None:
        raise ConfigError(
            f"[numbering] countries: {region!r} is not a region phonenumbers knows",
            hint="use ISO 3166 alpha-2 codes: KZ, BY, RU, UZ …",
        )
    lengths = tuple(
        sorted(metadata.mobile.possible_length or metadata.general_desc.possible_length)
    )
    if prefixes is None:
        mobile = metadata.mobile.national_number_pattern
    else:
        bad = [p for p in prefixes if not p.isdigit()]
        if bad or not prefixes:
            raise ConfigError(
                f"[numbering] mobile_prefixes.{region} must be a list of digit strings",
                hint='e.g. KZ = ["700", "701", "702"]',
            )
        if len({len(p) for p in prefixes}) != 1:
            raise ConfigError(
                f"[numbering] mobile_prefixes.{region}: every prefix needs the same length",
                hint="write them all with as many digits (e.g. three)",
            )
        width = len(prefixes[0])
        ranges = "|".join(sorted(prefixes))
        mobile = "|".join(f"(?:{ranges})\\d{{{n - width}}}" for n in lengths if n > width)
    return CountryPlan(
        region=region.upper(),
        calling_code=str(metadata.country_code),
        trunk=metadata.national_prefix_for_parsing or metadata.national_prefix or "",
        mobile=mobile,
        national_lengths=lengths,
    )


def default_plan() -> NumberingPlan:
    """The reference workspace's plan: Kazakhstan's mobile ranges (``billmig.toml``)."""
    return build_plan(("KZ",), (("KZ", KZ_MOBILE_PREFIXES),))


KZ_MOBILE_PREFIXES = (
    "700", "701", "702", "705", "707", "708", "747", "771", "775", "776", "777", "778",
)  # fmt: skip
"""Kazakh mobile ranges (national prefixes after the calling code 7) of billmig.toml."""
