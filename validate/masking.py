"""Personal data out of every artifact auditors receive (SPEC §10).

Masked by default, in stable pseudonyms so two mentions of one subscriber still match:

* MSISDNs keep the calling code, the next three digits and the last two: ``+7 701 *** ** 67``,
  ``+375 291 *** ** 67`` (the countries of ``[numbering]``);
* national IDs (12-digit IIN/BIN, and every raw value the snapshot holds for the clients the
  exceptions mention, however malformed: ``400406 355305``, ``IIN-4004…``) become ``IIN#`` and
  ten hex digits of an HMAC-SHA-256 keyed with the workspace's masking secret (the same ID
  gives the same pseudonym in every pack of the workspace; without the secret the pseudonyms
  can be neither read back nor enumerated from the repository);
* names known to the snapshot become ``name#`` and ten hex digits likewise; numbers known to
  the snapshot (however malformed) keep only their last two digits.

The secret is ``[masking] key`` in the workspace's git-ignored ``.secrets.toml``, made on first
use (:func:`masking_secret`); it never enters ``billmig.toml`` or a pack.

CSV cells that a spreadsheet would run as a formula (beginning with ``= + - @``, or a tab or
carriage return) are prefixed with an apostrophe.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache, partial

from migrate.core.config import SECRETS_FILE, Config
from migrate.core.errors import ConfigError
from migrate.core.numbering import NumberingPlan, default_plan

NATIONAL_ID = re.compile(r"(?<!\d)\d{12}(?!\d)")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Masker:
    """Replaces personal data in text with stable pseudonyms (or leaves it, when disabled)."""

    key: str
    """The workspace's masking secret: keys the pseudonyms."""
    names: frozenset[str] = field(default_factory=frozenset)
    """Names the text may contain (clients that exceptions mention)."""
    numbers: frozenset[str] = field(default_factory=frozenset)
    """Numbers as legacy wrote them, however malformed (lines that exceptions mention)."""
    national_ids: frozenset[str] = field(default_factory=frozenset)
    """National IDs as legacy wrote them, however malformed (clients exceptions mention)."""
    enabled: bool = True
    plan: NumberingPlan = field(default_factory=default_plan)
    """Whose numbers these are (``[numbering]``): their calling codes and trunk prefixes."""

    def text(self, value: str) -> str:
        """``value`` with every MSISDN, national ID and known name masked."""
        if not self.enabled or not value:
            return value
        for name in sorted(self.names, key=len, reverse=True):
            if name in value:
                value = value.replace(name, self.pseudonym("name", name))
        for raw in sorted(self.national_ids, key=len, reverse=True):
            if raw in value:
                value = value.replace(raw, self.pseudonym("IIN", re.sub(r"\s", "", raw)))
        for number in sorted(self.numbers, key=len, reverse=True):
            if number in value:  # a '+' written before it goes too: never "++7 …"
                masked = _masked_number(number, self.plan)
                value = re.sub(r"\+*" + re.escape(number), masked, value)
        for code, pattern in _msisdn_patterns(self.plan):
            value = pattern.sub(partial(_masked_msisdn, code), value)
        return NATIONAL_ID.sub(lambda m: self.pseudonym("IIN", m.group(0)), value)

    def pseudonym(self, kind: str, value: str) -> str:
        """``kind#`` and ten hex digits of an HMAC-SHA-256 of ``value``."""
        digest = hmac.new(self.key.encode(), value.encode(), hashlib.sha256).hexdigest()
        return f"{kind}#{digest[:10]}"

    def with_names(self, names: Iterable[str | None]) -> Masker:
        """The same masker knowing these names too."""
        known = {n.strip() for n in names if n and len(n.strip()) >= 3}
        return replace(self, names=self.names | frozenset(known))

    def with_national_ids(self, ids: Iterable[str | None]) -> Masker:
        """The same masker knowing these raw national IDs too (any shape)."""
        known = {i.strip() for i in ids if i and sum(c.isdigit() for c in i) >= 5}
        return replace(self, national_ids=self.national_ids | frozenset(known))

    def with_numbers(self, numbers: Iterable[str | None]) -> Masker:
        """The same masker knowing these raw numbers too."""
        known = {n for n in numbers if n and sum(c.isdigit() for c in n) >= 5}
        return replace(self, numbers=self.numbers | frozenset(known))


@cache
def _msisdn_patterns(plan: NumberingPlan) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Per country of the plan: its numbers written any of the ways legacy systems write them.

    ``+7 701 123 45 67``, ``87011234567``, ``7(701)123-45-67``, ``0077011234567``; ``+375 29
    123 45 67``, ``80291234567``. The national part is any digits of a mobile number's length
    (a malformed number is masked too).
    """
    found = []
    for country in plan.countries:
        lengths = "|".join(
            rf"(?:[\s\-()]*\d){{{n}}}" for n in sorted(country.national_lengths, reverse=True)
        )
        trunk = f"|{country.trunk}" if country.trunk else ""
        written = rf"(?<![\d+])(?:(?:\+|00)?{country.calling_code}{trunk})((?:{lengths}))(?!\d)"
        found.append((country.calling_code, re.compile(written)))
    return tuple(found)


def _masked_msisdn(code: str, found: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", found.group(1))
    return f"+{code} {digits[:3]} *** ** {digits[-2:]}"


def _masked_number(raw: str, plan: NumberingPlan) -> str:
    """A known number: its international form masked when the plan reads it, else stars."""
    digits = re.sub(r"\D", "", raw)
    for country in plan.countries:
        national = None
        if digits.startswith(country.calling_code):
            national = digits[len(country.calling_code) :]
        if national is None or not re.fullmatch(country.mobile, national):
            trunk = re.match(f"(?:{country.trunk})", digits) if country.trunk else None
            national = digits[trunk.end() :] if trunk else digits
        if re.fullmatch(country.mobile, national):
            return f"+{country.calling_code} {national[:3]} *** ** {national[-2:]}"
    return f"*** ** {digits[-2:]}"


def masking_secret(config: Config) -> str:
    """The workspace's masking secret from ``.secrets.toml``; made (and saved) on first use.

    Raises:
        ConfigError: ``.secrets.toml`` is not valid TOML or its ``[masking] key`` is empty.
    """
    path = config.root / SECRETS_FILE
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix the file") from None
        if "masking" in raw:  # never a second [masking] table appended below
            key = raw["masking"].get("key") if isinstance(raw["masking"], dict) else None
            if not isinstance(key, str) or len(key) < 32:
                raise ConfigError(
                    f"{path}: [masking] key must be a secret of 32 characters or more",
                    hint="remove the [masking] section: a new secret is made on the next report",
                )
            return key
    key = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write(
            "\n# Keys the pseudonyms of masked packs; made by billmig on first use. Keep it:\n"
            "# a new one gives the same subscriber a new pseudonym. Never commit it.\n"
            f'[masking]\nkey = "{key}"\n'
        )
    return key


def neutralise(cell: object) -> object:
    """A CSV cell a spreadsheet will show as text, never run as a formula."""
    if isinstance(cell, str) and cell.startswith(FORMULA_START):
        return "'" + cell
    return cell
