"""The workspace configuration: ``billmig.toml``, environment overrides and credentials.

Layers, later wins: the TOML file, then ``BILLMIG_<SECTION>__<KEY>`` environment variables.
Database URLs never live in ``billmig.toml``: they come from ``BILLMIG_SOURCE_URL`` /
``BILLMIG_TARGET_URL`` or from the git-ignored ``.secrets.toml`` beside it, and are masked
wherever they are printed or stored (:func:`mask_url`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from migrate.core.errors import ConfigError, InputError
from migrate.core.numbering import KZ_MOBILE_PREFIXES, NumberingPlan, build_plan

CONFIG_FILE = "billmig.toml"
SECRETS_FILE = ".secrets.toml"
ENV_PREFIX = "BILLMIG_"

_Section = TypeVar("_Section")


@dataclass(frozen=True)
class WorkspaceConfig:
    """``[workspace]``: identity and calendar of this migration."""

    namespace: str = "billmig"
    """Seed of deterministic IDs: the same legacy key in the same namespace gets the same ID."""
    timezone: str = "Asia/Almaty"
    """Operator's legal local time; proration days and the 1st-of-month fee run in it."""
    default_currency: str = "KZT"
    """Currency of amounts whose row has none (money bonuses)."""
    runs_dir: str = "runs"
    """Where run outputs go, relative to the workspace (git-ignored)."""
    locale: str = "en"
    """How reports write numbers and money (Babel's locale: ``en``, ``ru_KZ``, ``kk_KZ`` …):
    thousands separator, decimal mark and the currency's symbol."""


@dataclass(frozen=True)
class SourceConfig:
    """``[source]``: the legacy database and how to read it."""

    profile: str = "mappings/profiles/reference.toml"
    """Source profile: one SQL SELECT per entity aliasing legacy columns to the reference schema."""
    url: str | None = None
    """Filled from BILLMIG_SOURCE_URL or .secrets.toml; never from billmig.toml."""


@dataclass(frozen=True)
class TargetConfig:
    """``[target]``: the new platform's database."""

    url: str | None = None
    """Filled from BILLMIG_TARGET_URL or .secrets.toml; never from billmig.toml."""


@dataclass(frozen=True)
class ExtractConfig:
    """``[extract]``: the snapshot."""

    cutoff: datetime | None = None
    """Local time the snapshot stands for; events that reached legacy later are delta."""
    chunk_rows: int = 100_000
    """Rows per streamed chunk and per Parquet row group; part of the snapshot's byte identity."""


@dataclass(frozen=True)
class MapConfig:
    """``[map]``: mapping policies (SPEC §5) and where the mapping tables live."""

    tariffs: str = "mappings/tariffs.csv"
    """Legacy tariff code → new offering (SPEC §5.4)."""
    dispositions: str = "mappings/dispositions.csv"
    """Recorded decisions on exceptions (SPEC §6), versioned with the workspace."""
    write_off_below_minor: int = 0
    """Prepaid negative balances below this many minor units are written off; 0 = carry all."""
    debt_threshold_minor: int = 500
    """Debts below this (5 KZT) are DEBT_BELOW_THRESHOLD (seed 003's calls over 1 tenge)."""
    small_debt: str = "flag"
    """``flag`` (carry it, raise DEBT_BELOW_THRESHOLD) or ``write_off`` (also write it off)."""
    unconsented: str = "flag"
    """``flag`` (migrate with consent_state pending) or ``hold`` (leave the line out)."""
    roaming_lookback_days: int = 30
    """Roaming charges this many days before the cutoff can explain a negative balance."""
    bucket_accounts: int = 25_000
    """Accounts per partition: bounds memory; more accounts mean more partitions, not more RAM."""
    workers: int = 2
    """Processes mapping partitions in parallel."""


@dataclass(frozen=True)
class LoadConfig:
    """``[load]``: writing a mapped run into the target."""

    batch_rows: int = 50_000
    """Rows per committed batch: a killed load resumes after the last whole batch."""


@dataclass(frozen=True)
class ValidateConfig:
    """``[validate]``: thresholds the verdict applies (each is recorded in verdict.json)."""

    review_per_10000_accounts: int = 200
    """Review-level exceptions without a disposition allowed per 10 000 legacy accounts."""


@dataclass(frozen=True)
class RehearsalConfig:
    """``[rehearsal]``: where rehearsals load, and what the window forecast measures against."""

    url: str | None = None
    """Rehearsal target: from BILLMIG_REHEARSAL_URL or .secrets.toml, never billmig.toml."""
    production_accounts: int = 10_000_000
    """Accounts the production migration will move (the forecast's volume)."""
    window_hours: float = 120.0
    """Length of the restricted-services window (Kcell's ran 1–5 July 2016: 120 h)."""


@dataclass(frozen=True)
class SignoffConfig:
    """``[signoff]``: who must approve a run's sign-off pack (SPEC §10; the cutover gate)."""

    roles: tuple[str, ...] = ("migration_lead", "finance_controller", "internal_audit")
    """Each role must record an approval bound to the pack's current manifest hash."""
    signers: str = "signers.toml"
    """Who may sign, as what, with which public key (committed; private keys never are)."""


@dataclass(frozen=True)
class MoneyConfig:
    """``[money]``: the one rounding step of every computed amount (SPEC §2)."""

    rounding_mode: str = "half_up"
    """half_up, half_even or floor."""
    rounding_unit: str = "major"
    """major (whole currency units, as in the seeds' 1419 KZT) or minor (tiyn)."""


@dataclass(frozen=True)
class NumberingConfig:
    """``[numbering]``: the operator's countries and mobile ranges (phonenumbers metadata)."""

    countries: tuple[str, ...] = ("KZ",)
    """ISO 3166 regions whose mobile numbers are the operator's lines; the first is home (a
    number written without a calling code is read in it)."""
    mobile_prefixes: tuple[tuple[str, tuple[str, ...]], ...] = (("KZ", KZ_MOBILE_PREFIXES),)
    """Per country, the national prefixes of its mobile ranges; a country without them takes
    every mobile range phonenumbers knows for it."""

    def plan(self) -> NumberingPlan:
        """The numbering plan these settings describe."""
        return build_plan(self.countries, self.mobile_prefixes)


_CHOICES = {
    "small_debt": ("flag", "write_off"),
    "unconsented": ("flag", "hold"),
    "rounding_mode": ("half_up", "half_even", "floor"),
    "rounding_unit": ("major", "minor"),
}


@dataclass(frozen=True)
class WaveConfig:
    """``[waves.<name>]``: a filter over accounts (column → allowed values)."""

    name: str
    predicates: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Config:
    """The whole validated configuration of a workspace."""

    root: Path
    """Directory holding billmig.toml; relative paths are resolved against it."""
    workspace: WorkspaceConfig = field(default_factory=WorkspaceConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    map: MapConfig = field(default_factory=MapConfig)
    money: MoneyConfig = field(default_factory=MoneyConfig)
    numbering: NumberingConfig = field(default_factory=NumberingConfig)
    load: LoadConfig = field(default_factory=LoadConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    signoff: SignoffConfig = field(default_factory=SignoffConfig)
    rehearsal: RehearsalConfig = field(default_factory=RehearsalConfig)
    waves: tuple[WaveConfig, ...] = ()
    sha256: str = ""
    """SHA-256 of the billmig.toml bytes (empty when running without a file)."""

    @property
    def runs_path(self) -> Path:
        """Absolute directory of run outputs."""
        return self.root / self.workspace.runs_dir

    @property
    def zone(self) -> ZoneInfo:
        """The operator's time zone."""
        return ZoneInfo(self.workspace.timezone)

    def resolve(self, relative: str) -> Path:
        """A workspace-relative path made absolute."""
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    def relative(self, path: Path) -> str:
        """``path`` as the workspace names it (relative to its root when inside it)."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def wave(self, name: str) -> WaveConfig:
        """The wave called ``name``."""
        for wave in self.waves:
            if wave.name == name:
                return wave
        known = ", ".join(w.name for w in self.waves) or "none configured"
        raise ConfigError(
            f"unknown wave {name!r} (known: {known})",
            hint=f"add [waves.{name}] to {CONFIG_FILE}",
        )

    def source_url(self) -> str:
        """The legacy database URL, or a ConfigError saying where to put it."""
        if not self.source.url:
            raise ConfigError(
                "no legacy database URL",
                hint=f"set BILLMIG_SOURCE_URL or [source] url in {SECRETS_FILE}",
            )
        return self.source.url

    def target_url(self) -> str:
        """The new platform's database URL, or a ConfigError saying where to put it."""
        if not self.target.url:
            raise ConfigError(
                "no target database URL",
                hint=f"set BILLMIG_TARGET_URL or [target] url in {SECRETS_FILE}",
            )
        return self.target.url


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None, *, require: bool = False
) -> Config:
    """Read, override and validate the configuration.

    Args:
        path: billmig.toml to read; default ``$BILLMIG_CONFIG`` or ``./billmig.toml``. A missing
            default file means built-in defaults (library use, tests) unless ``require``; a
            missing explicit file is an error.
        environ: environment to read overrides and credentials from (default ``os.environ``).
        require: refuse to run without a billmig.toml (the CLI: a folder that is no workspace
            must not silently grow a ``runs/``).
    """
    env = os.environ if environ is None else environ
    explicit = path is not None or "BILLMIG_CONFIG" in env
    config_path = Path(path or env.get("BILLMIG_CONFIG", CONFIG_FILE)).absolute()
    raw: dict[str, Any] = {}
    digest = ""
    if config_path.exists():
        data = config_path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        raw = _parse_toml(data, config_path)
    elif explicit:
        raise ConfigError(
            f"configuration file {config_path} does not exist",
            hint="pass --config with an existing billmig.toml",
        )
    elif require:
        raise ConfigError(
            f"{config_path.parent} is not a billmig workspace (no {CONFIG_FILE})",
            hint="create one with `billmig init DIR`, or cd into a workspace or pass --config",
        )
    _refuse_inline_credentials(raw)
    _apply_env_overrides(raw, env)
    secrets = _read_secrets(config_path.parent / SECRETS_FILE)
    raw.setdefault("source", {})["url"] = env.get("BILLMIG_SOURCE_URL") or secrets.get("source")
    raw.setdefault("target", {})["url"] = env.get("BILLMIG_TARGET_URL") or secrets.get("target")
    rehearsal = env.get("BILLMIG_REHEARSAL_URL") or secrets.get("rehearsal")
    if rehearsal:
        raw.setdefault("rehearsal", {})["url"] = rehearsal
    return _build(raw, config_path.parent, digest)


def read_toml_file(path: Path, what: str, missing_hint: str) -> tuple[dict[str, Any], str]:
    """A mapping file's TOML content and the SHA-256 of its bytes (what the audit trail names).

    Raises:
        InputError: the file is missing, or not valid UTF-8 TOML.
    """
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist", hint=missing_hint)
    data = path.read_bytes()
    try:
        return tomllib.loads(data.decode("utf-8")), hashlib.sha256(data).hexdigest()
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML: {exc}", hint=f"fix the {what}") from exc


def _parse_toml(data: bytes, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path.name} is not valid TOML: {exc}", hint="fix the file") from exc


def _refuse_inline_credentials(raw: Mapping[str, Any]) -> None:
    for section in ("source", "target", "rehearsal"):
        if "url" in raw.get(section, {}):
            raise ConfigError(
                f"[{section}] url must not be in {CONFIG_FILE} (it is committed to git)",
                hint=f"move it to BILLMIG_{section.upper()}_URL or {SECRETS_FILE}",
            )


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    pattern = re.compile(rf"^{ENV_PREFIX}([A-Z0-9]+)__([A-Z0-9_]+)$")
    for name, value in env.items():
        match = pattern.match(name)
        if match:
            section, key = match.group(1).lower(), match.group(2).lower()
            raw.setdefault(section, {})[key] = _coerce_env(value)


def _coerce_env(value: str) -> object:
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def _read_secrets(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    raw = _parse_toml(path.read_bytes(), path)
    return {
        section: str(raw[section]["url"])
        for section in ("source", "target", "rehearsal")
        if isinstance(raw.get(section), dict) and "url" in raw[section]
    }


def _build(raw: Mapping[str, Any], root: Path, digest: str) -> Config:
    known = {
        "workspace",
        "source",
        "target",
        "extract",
        "map",
        "money",
        "load",
        "validate",
        "signoff",
        "numbering",
        "rehearsal",
        "waves",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}] in {CONFIG_FILE}", hint="remove it")
    workspace = _section(WorkspaceConfig, raw.get("workspace", {}), "workspace")
    try:
        ZoneInfo(workspace.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"workspace.timezone {workspace.timezone!r} is not a known time zone",
            hint="use an IANA name such as Asia/Almaty",
        ) from exc
    _check_locale(workspace.locale)
    extract_raw = dict(raw.get("extract", {}))
    if "cutoff" in extract_raw:
        extract_raw["cutoff"] = _parse_cutoff(extract_raw["cutoff"], ZoneInfo(workspace.timezone))
    extract = _section(ExtractConfig, extract_raw, "extract")
    if extract.chunk_rows < 1:
        raise ConfigError("extract.chunk_rows must be at least 1", hint="use e.g. 100000")
    for url_key in ("source", "target", "rehearsal"):
        url = raw.get(url_key, {}).get("url")
        if url:
            _check_url(url, url_key)
    return Config(
        root=root,
        workspace=workspace,
        source=_section(SourceConfig, raw.get("source", {}), "source"),
        target=_section(TargetConfig, raw.get("target", {}), "target"),
        extract=extract,
        map=_map_section(raw.get("map", {})),
        money=_choices(_section(MoneyConfig, raw.get("money", {}), "money"), "money"),
        load=_load_section(raw.get("load", {})),
        validate=_section(ValidateConfig, raw.get("validate", {}), "validate"),
        signoff=_signoff_section(raw.get("signoff", {})),
        numbering=_numbering_section(raw.get("numbering", {})),
        rehearsal=_rehearsal_section(raw.get("rehearsal", {})),
        waves=_waves(raw.get("waves", {})),
        sha256=digest,
    )


def _section(cls: type[_Section], values: Mapping[str, Any], name: str) -> _Section:
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    for key in values:
        if key not in fields:
            raise ConfigError(f"unknown key {name}.{key} in {CONFIG_FILE}", hint="remove it")
    for key, value in values.items():
        expected = fields[key].type
        if value is not None and not _type_ok(value, str(expected)):
            raise ConfigError(
                f"{name}.{key} = {value!r} should be {expected}",
                hint=f"fix it in {CONFIG_FILE} or its BILLMIG_{name.upper()}__{key.upper()}",
            )
    return cls(**values)


def _choices(section: _Section, name: str) -> _Section:
    for key, allowed in _CHOICES.items():
        value = getattr(section, key, None)
        if value is not None and value not in allowed:
            raise ConfigError(
                f"{name}.{key} = {value!r} is not one of {', '.join(allowed)}",
                hint=f"fix it in {CONFIG_FILE}",
            )
    return section


def _rehearsal_section(values: Mapping[str, Any]) -> RehearsalConfig:
    section = _section(RehearsalConfig, values, "rehearsal")
    if section.production_accounts < 1 or section.window_hours <= 0:
        raise ConfigError(
            "rehearsal.production_accounts and rehearsal.window_hours must be positive",
            hint=f"fix them in {CONFIG_FILE}",
        )
    return section


def _numbering_section(values: Mapping[str, Any]) -> NumberingConfig:
    unknown = sorted(set(values) - {"countries", "mobile_prefixes"})
    if unknown:
        raise ConfigError(f"unknown key numbering.{unknown[0]} in {CONFIG_FILE}", hint="remove it")
    countries = values.get("countries", NumberingConfig.countries)
    defaults = {k: v for k, v in NumberingConfig.mobile_prefixes if k in countries}
    prefixes = values.get("mobile_prefixes", defaults)  # Kazakhstan's ranges apply to KZ only
    if not isinstance(countries, list | tuple) or not all(isinstance(c, str) for c in countries):
        raise ConfigError(
            f"numbering.countries = {countries!r} should be a list of country codes",
            hint='e.g. countries = ["KZ"] in billmig.toml',
        )
    lists = isinstance(prefixes, dict) and all(
        isinstance(v, list | tuple) and all(isinstance(p, str) for p in v)
        for v in prefixes.values()
    )
    if not lists:
        raise ConfigError(
            "numbering.mobile_prefixes should map a country to a list of prefixes",
            hint='e.g. [numbering.mobile_prefixes] KZ = ["700", "701"]',
        )
    section = NumberingConfig(
        tuple(c.upper() for c in countries),
        tuple((k.upper(), tuple(v)) for k, v in sorted(prefixes.items())),
    )
    section.plan()  # a country phonenumbers does not know, or a bad prefix, stops here
    return section


def _signoff_section(values: Mapping[str, Any]) -> SignoffConfig:
    unknown = sorted(set(values) - {"roles", "signers"})
    if unknown:
        raise ConfigError(f"unknown key signoff.{unknown[0]} in {CONFIG_FILE}", hint="remove it")
    signers = values.get("signers", SignoffConfig.signers)
    if not isinstance(signers, str) or not signers.strip():
        raise ConfigError("signoff.signers must name a file", hint='signers = "signers.toml"')
    roles = values.get("roles", SignoffConfig.roles)
    if (
        isinstance(roles, str)
        or not all(isinstance(r, str) and r.strip() for r in roles)
        or not roles
    ):
        raise ConfigError(
            "signoff.roles must be a non-empty list of role names",
            hint='e.g. roles = ["migration_lead", "finance_controller", "internal_audit"]',
        )
    return SignoffConfig(roles=tuple(r.strip() for r in roles), signers=signers.strip())


def _load_section(values: Mapping[str, Any]) -> LoadConfig:
    section = _section(LoadConfig, values, "load")
    if section.batch_rows < 1:
        raise ConfigError("load.batch_rows must be at least 1", hint="use e.g. 50000")
    return section


def _map_section(values: Mapping[str, Any]) -> MapConfig:
    section = _choices(_section(MapConfig, values, "map"), "map")
    for key in ("write_off_below_minor", "debt_threshold_minor", "roaming_lookback_days"):
        if getattr(section, key) < 0:
            raise ConfigError(f"map.{key} must not be negative", hint=f"fix it in {CONFIG_FILE}")
    if section.bucket_accounts < 1 or section.workers < 1:
        raise ConfigError(
            "map.bucket_accounts and map.workers must be at least 1",
            hint=f"fix them in {CONFIG_FILE}",
        )
    return section


def _type_ok(value: object, expected: str) -> bool:
    if expected.startswith("int"):
        return isinstance(value, int) and not isinstance(value, bool)
    if expected.startswith("str"):
        return isinstance(value, str)
    if expected.startswith("datetime"):
        return isinstance(value, datetime)
    return True


def _parse_cutoff(value: object, zone: ZoneInfo) -> datetime:
    """The cutoff as a naive operator-local time (an offset, if given, is converted)."""
    parsed: datetime | None = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is not None:
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(zone).replace(tzinfo=None)
        return parsed
    raise ConfigError(
        f"extract.cutoff = {value!r} is not a date-time",
        hint="write it as 2016-07-01T00:00:00 (operator local time)",
    )


def _waves(raw: Mapping[str, Any]) -> tuple[WaveConfig, ...]:
    waves = []
    for name, predicates in raw.items():
        if not isinstance(predicates, dict) or not predicates:
            raise ConfigError(
                f"[waves.{name}] needs at least one predicate",
                hint='write e.g. brand = ["kcell"]',
            )
        parsed = []
        for column, values in predicates.items():
            if column not in {"brand", "region", "payment_type", "status", "currency"}:
                raise ConfigError(
                    f"waves.{name}.{column}: waves filter on brand, region, payment_type, "
                    "status or currency",
                    hint="use one of those columns",
                )
            listed = values if isinstance(values, list) else [values]
            parsed.append((column, tuple(str(v) for v in listed)))
        waves.append(WaveConfig(name, tuple(parsed)))
    return tuple(waves)


def _check_locale(name: str) -> None:
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"workspace.locale {name!r} is not a known locale",
            hint="use a name such as en, ru_KZ or kk_KZ",
        ) from exc


def _check_url(url: str, which: str) -> None:
    try:
        make_url(url)
    except ArgumentError as exc:
        raise ConfigError(
            f"the {which} database URL is not a valid SQLAlchemy URL",
            hint=f"check BILLMIG_{which.upper()}_URL (e.g. postgresql+psycopg://user@host/db)",
        ) from exc


SECRET_QUERY_KEYS = frozenset({"password", "passwd", "pwd", "sslpassword", "secret", "token"})
"""Query parameters that carry a password (``?password=…`` is valid libpq and PyMySQL)."""


def mask_url(url: str) -> str:
    """The URL with every password replaced by ``***`` (user part and query), safe to store."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        masked = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
        return re.sub(r"(?i)([?&](?:password|passwd|pwd|sslpassword|secret|token)=)[^&]*",
                      r"\1***", masked)  # fmt: skip
    hidden = {k: "***" for k in parsed.query if k.lower() in SECRET_QUERY_KEYS}
    rendered = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return rendered.replace("%2A%2A%2A", "***")


def scrub(text: str, *urls: str | None) -> str:
    """``text`` with any password from ``urls`` replaced by ``***`` (for driver error messages)."""
    for url in urls:
        if not url:
            continue
        try:
            parsed = make_url(url)
        except ArgumentError:
            continue
        secrets = [parsed.password, *(v for k, v in parsed.query.items()
                                      if k.lower() in SECRET_QUERY_KEYS)]  # fmt: skip
        for secret in secrets:
            if secret and isinstance(secret, str):
                text = text.replace(secret, "***")
        text = text.replace(url, mask_url(url))
    return text
