"""Source profiles: how one legacy system's tables read as the reference schema (SPEC §3).

A profile is a TOML file with one SQL ``SELECT`` per entity, aliasing the legacy columns to the
reference names. Optional per-entity tables say how to read odd storage:

``formats``
    strptime format of a date or timestamp column stored as text (e.g. ``"%d.%m.%Y"``).
``minor_units``
    money columns already stored as integer minor units (tiyn) rather than major units.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate.core.errors import ConfigError
from migrate.core.legacy_schema import BY_NAME, ENTITIES, Kind


@dataclass(frozen=True)
class EntityQuery:
    """How one entity is read."""

    entity: str
    sql: str
    formats: dict[str, str] = field(default_factory=dict)
    minor_units: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SourceProfile:
    """A validated source profile."""

    name: str
    path: Path
    sha256: str
    queries: dict[str, EntityQuery]

    def query(self, entity: str) -> EntityQuery:
        """The query reading ``entity``."""
        return self.queries[entity]


def load_profile(path: Path) -> SourceProfile:
    """Read and validate a profile; every reference entity must have a SELECT."""
    if not path.exists():
        raise ConfigError(
            f"source profile {path} does not exist",
            hint="set [source] profile in billmig.toml to a file under mappings/profiles/",
        )
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"source profile {path.name} is not valid TOML: {exc}") from exc
    entities = raw.get("entities", {})
    missing = [e.name for e in ENTITIES if e.name not in entities]
    if missing:
        raise ConfigError(
            f"source profile {path.name} has no query for {', '.join(missing)}",
            hint='add an [entities.<name>] table with sql = "SELECT ..." for each',
        )
    unknown = sorted(set(entities) - set(BY_NAME))
    if unknown:
        raise ConfigError(f"source profile {path.name}: unknown entity {unknown[0]!r}")
    queries = {name: _entity_query(path.name, name, entities[name]) for name in BY_NAME}
    return SourceProfile(
        name=str(raw.get("name", path.stem)),
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        queries=queries,
    )


def _entity_query(profile: str, name: str, raw: Any) -> EntityQuery:
    where = f"source profile {profile}, [entities.{name}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("sql"), str) or not raw["sql"].strip():
        raise ConfigError(f'{where} needs sql = "SELECT ..."')
    entity = BY_NAME[name]
    formats = raw.get("formats", {})
    for column, fmt in formats.items():
        kind = _kind(entity.column_names, entity, column, where)
        if kind not in (Kind.DATE, Kind.TIMESTAMP) or not isinstance(fmt, str):
            raise ConfigError(f"{where}: formats.{column} must be a strptime format of a date")
    minor = raw.get("minor_units", [])
    for column in minor:
        if _kind(entity.column_names, entity, column, where) is not Kind.MONEY:
            raise ConfigError(f"{where}: minor_units lists {column}, which is not a money column")
    return EntityQuery(
        entity=name,
        sql=raw["sql"].strip().rstrip(";"),
        formats=dict(formats),
        minor_units=frozenset(minor),
    )


def _kind(names: tuple[str, ...], entity: Any, column: str, where: str) -> Kind:
    if column not in names:
        raise ConfigError(f"{where}: {column!r} is not a column of the reference schema")
    kind: Kind = entity.column(column).kind
    return kind
