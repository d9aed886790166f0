"""Fuzz on the servers (issue 15): damaged PostgreSQL and MariaDB legacy databases.

The SQLite suite (``test_fuzz_legacy.py``) damages values SQLite's loose typing lets in. A
server's columns are typed, so a real legacy system's damage looks different there: ids and
dates kept in ``varchar`` columns, ``DOUBLE`` balances holding ±Infinity and NaN, NUMERIC
``NaN``, MariaDB's zero dates ``0000-00-00`` and names in ``BLOB`` columns with invalid UTF-8.
Each damage below names the column type legacy would have to hold it (None: the reference
type holds it) — the column is altered to that type before the value is written.

One clean legacy database per engine (40 accounts, seed 9, no planted anomalies) is extracted
and mapped once; each example copies it (PostgreSQL: ``CREATE DATABASE … TEMPLATE``;
MariaDB: ``CREATE TABLE … LIKE`` + ``INSERT … SELECT``), damages 1–4 cells and checks the
property of the SQLite suite: extract and map end 0 or 1, every damaged cell is named in the
exceptions by entity and key, and every untouched account maps to the identical billing
account. ``make test`` runs 4 examples per engine; ``BILLMIG_FUZZ_EXAMPLES=500`` a campaign.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.core.config import Config, load_config
from migrate.core.legacy_schema import BY_NAME
from migrate.extract.run import run_extract
from migrate.mapping.run import run_map
from migrate.synth import SynthOptions, run_synth
from tests.conftest import MARIADB_ADMIN_URL, PG_ADMIN_URL, _admin
from tests.migrate.helpers import ACCOUNTS_OF_ROW, new_workspace

EXAMPLES = int(os.environ.get("BILLMIG_FUZZ_EXAMPLES", "4"))
ACCOUNTS = 40

Damage = tuple[str | None, str]
"""The column type legacy needs to hold the value (None: as is), and the SQL literal."""

COMMON: dict[tuple[str, str], tuple[Damage, ...]] = {
    ("accounts", "balance"): ((None, "NULL"), ("text", "'abc'"), ("text", "'1 550,00'"),
                              ("text", "'12.345'")),
    ("accounts", "status"): ((None, "NULL"), (None, "'zombie'"), (None, "'ACTIVE'")),
    ("accounts", "payment_type"): ((None, "'PREPAID'"),),
    ("accounts", "currency"): ((None, "'kzt'"), (None, "'XXX'")),
    ("accounts", "client_id"): (("text", "'one'"), (None, "NULL"),
                                ("numeric(30)", "99999999999999999999")),
    ("accounts", "opened_at"): (("text", "'not a date'"), ("text", "'2016-02-30 10:00:00'")),
    ("clients", "client_type"): ((None, "'Corporate'"), (None, "NULL")),
    ("payments", "amount"): ((None, "NULL"), ("text", "'1e400'"), ("text", "'--5'")),
    ("payments", "channel"): ((None, "'telepathy'"),),
    ("bonuses", "kind"): ((None, "'zzz'"),),
    ("subscriptions", "status"): ((None, "'paused'"),),
    ("subscriptions", "fee_charged_through"): (("text", "'31.02.2016'"),),
    ("charges", "kind"): ((None, "'teleport'"),),
    ("lines", "status"): ((None, "'zombie'"),),
    ("tariffs", "data_mb"): (("text", "'lots'"),),
}  # fmt: skip
ENGINE_DAMAGE: dict[str, dict[tuple[str, str], tuple[Damage, ...]]] = {
    "postgresql": {
        **COMMON,
        ("accounts", "balance"): (*COMMON[("accounts", "balance")],
                                  ("double precision", "'Infinity'"),
                                  ("double precision", "'-Infinity'"),
                                  ("double precision", "'NaN'"), ("numeric", "'NaN'")),
        ("payments", "amount"): (*COMMON[("payments", "amount")],
                                 ("double precision", "'Infinity'")),
        ("clients", "name"): ((None, "'a' || chr(27) || 'b'"), (None, "'x' || chr(7)")),
    },
    "mariadb": {
        **COMMON,
        ("accounts", "opened_at"): (*COMMON[("accounts", "opened_at")],
                                    ("datetime", "'0000-00-00 00:00:00'")),
        ("clients", "name"): (("blob", "X'C328'"), (None, "CONCAT('a', CHAR(27), 'b')")),
        ("payments", "received_at"): (("datetime", "'0000-00-00 00:00:00'"),),
    },
}  # fmt: skip
"""Per engine, per column: values its real legacy databases hold that the reference forbids."""

TYPES = {  # the type names each engine knows for the loose column types above
    "mariadb": {"text": "TEXT", "numeric(30)": "DECIMAL(30, 0)", "datetime": "DATETIME",
                "blob": "BLOB"},
}  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One damaged cell: which row (by position in key order), which column, what value."""

    entity: str
    column: str
    row: int
    damage: Damage


class Server:
    """One engine's clean legacy database and the copies the examples damage."""

    def __init__(self, engine: str, admin_url: str) -> None:
        self.engine = engine
        self.admin = _admin(admin_url, engine)
        self.admin_url = admin_url
        self.clean = self._create(f"fuzz_clean_{uuid.uuid4().hex[:8]}")
        self.copies: list[str] = []

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server."""
        url = sa.make_url(self.admin_url).set(database=database)
        return url.render_as_string(hide_password=False)

    def _create(self, name: str, template: str | None = None) -> str:
        with self.admin.connect() as conn:
            if self.engine == "postgresql":
                like = f' TEMPLATE "{template}"' if template else " TEMPLATE template0"
                conn.execute(sa.text(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8'{like}"))
            else:
                conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
                for table in sa.inspect(conn).get_table_names(schema=template) if template else []:
                    conn.execute(sa.text(f"CREATE TABLE `{name}`.`{table}` LIKE "
                                         f"`{template}`.`{table}`"))  # fmt: skip
                    conn.execute(sa.text(f"INSERT INTO `{name}`.`{table}` "
                                         f"SELECT * FROM `{template}`.`{table}`"))  # fmt: skip
            conn.commit()
        return name

    def copy(self) -> str:
        """A new database holding the clean legacy's tables and rows."""
        name = self._create(f"fuzz_{uuid.uuid4().hex[:10]}", self.clean)
        self.copies.append(name)
        return name

    def drop(self, name: str) -> None:
        """Drop one database."""
        force = " WITH (FORCE)" if self.engine == "postgresql" else ""
        quote = '"' if self.engine == "postgresql" else "`"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{force}"))
            conn.commit()

    def close(self) -> None:
        """Drop every database made here."""
        for name in [*self.copies, self.clean]:
            self.drop(name)
        self.admin.dispose()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def clean(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    engine = request.param
    admin = PG_ADMIN_URL if engine == "postgresql" else MARIADB_ADMIN_URL
    server = Server(engine, admin)
    try:
        root = tmp_path_factory.mktemp(f"fuzz-{engine}")
        new_workspace(root, signers=False)
        run_synth(server.url(server.clean), SynthOptions(accounts=ACCOUNTS, seed=9,
                  anomaly_rate=0.0), root / "planted.json")  # fmt: skip
        config = _config(root, server.url(server.clean))
        run_extract(config, run_id="clean")
        run_map(config, run_id="clean")
        yield {"root": root, "server": server, "accounts": _billing(root, "clean")}
    finally:
        server.close()


def _config(root: Path, url: str) -> Config:
    return load_config(root / "billmig.toml", environ={"BILLMIG_SOURCE_URL": url})


def _billing(root: Path, run: str) -> dict[str, dict[str, Any]]:
    rows = pq.read_table(root / "runs" / run / "mapped" / "billing_account.parquet").to_pylist()
    return {r["legacy_account_no"]: {k: v for k, v in r.items() if k != "run_id"} for r in rows}


def _cells(engine: str) -> st.SearchStrategy[list[Cell]]:
    catalogue = ENGINE_DAMAGE[engine]
    return st.lists(
        st.builds(
            lambda pick, row, choice: Cell(
                pick[0], pick[1], row, catalogue[pick][choice % len(catalogue[pick])]
            ),
            st.sampled_from(sorted(catalogue)),
            st.integers(min_value=0, max_value=ACCOUNTS - 1),
            st.integers(min_value=0, max_value=7),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda c: (c.entity, c.column, c.row),
    )


def _loosen(conn: sa.Connection, engine: str, damage: list[Cell]) -> None:
    """Give each damaged column the type legacy holds its damage in; drop NOT NULL for a NULL.

    One type per column: the one its cells need, or ``text`` when they need different ones.
    """
    needs: dict[tuple[str, str], set[str]] = {}
    for cell in damage:
        wanted = needs.setdefault((cell.entity, cell.column), set())
        if cell.damage[0]:
            wanted.add(cell.damage[0])
    nullable = {(c.entity, c.column) for c in damage if c.damage[1] == "NULL"}
    for (table, column), types in needs.items():
        column_type = None if not types else types.pop() if len(types) == 1 else "text"
        if engine == "postgresql":
            if column_type:
                cast = f'"{column}"::text::{column_type}'
                conn.execute(sa.text(
                    f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE {column_type} USING {cast}'
                ))  # fmt: skip
            if (table, column) in nullable:
                conn.execute(
                    sa.text(f'ALTER TABLE "{table}" ALTER COLUMN "{column}" DROP NOT NULL')
                )
        elif column_type or (table, column) in nullable:
            kept = conn.execute(
                sa.text("SELECT column_type FROM information_schema.columns WHERE "
                        "table_schema = DATABASE() AND table_name = :t AND column_name = :c"),
                {"t": table, "c": column},
            ).scalar_one()  # fmt: skip
            loose = TYPES["mariadb"].get(column_type or "", kept)
            conn.execute(sa.text(f'ALTER TABLE "{table}" MODIFY "{column}" {loose} NULL'))


def _damage(
    server: Server, database: str, damage: list[Cell]
) -> tuple[list[tuple[str, str]], set[str]]:
    """Apply ``damage``: (entity, row key) per cell, and the accounts the cells touch.

    MariaDB writes in strict mode, so a value its column cannot hold is an error here rather
    than a silent 0 (zero dates stay allowed, as old MariaDB legacy databases have them).
    """
    engine = sa.create_engine(server.url(database))
    named, touched = [], set()
    try:
        with engine.begin() as conn:
            if server.engine == "mariadb":
                conn.execute(sa.text("SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES'"))
            keyed = []
            for cell in damage:
                key_column = BY_NAME[cell.entity].key
                ordered = f'SELECT "{key_column}" FROM "{cell.entity}" ORDER BY "{key_column}"'
                keys = [r[0] for r in conn.execute(sa.text(ordered))]
                key = keys[cell.row % len(keys)]
                touched |= _accounts_touched(conn, cell.entity, key)
                keyed.append((cell, key_column, key))
            _loosen(conn, server.engine, damage)
            for cell, key_column, key in keyed:
                change = f'"{cell.column}" = {cell.damage[1]}'
                conn.execute(
                    sa.text(f'UPDATE "{cell.entity}" SET {change} WHERE "{key_column}" = :k'),
                    {"k": key},
                )
                named.append((cell.entity, str(key)))
    finally:
        engine.dispose()
    return named, touched


def _accounts_touched(conn: sa.Connection, entity: str, key: object) -> set[str]:
    return {str(r[0]) for r in conn.execute(sa.text(ACCOUNTS_OF_ROW[entity]), {"k": key})}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_a_damaged_server_database_never_crashes_and_names_every_damage(
    clean: dict[str, Any], data: st.DataObject
) -> None:
    server: Server = clean["server"]
    damage = data.draw(_cells(server.engine))
    database = server.copy()
    try:
        named, touched = _damage(server, database, damage)
        root, run = clean["root"], f"fuzz-{uuid.uuid4().hex[:8]}"
        config = _config(root, server.url(database))
        assert run_extract(config, run_id=run).exit_code in (0, 1)
        assert run_map(config, run_id=run).exit_code in (0, 1)
        found = pq.read_table(root / "runs" / run / "mapped" / "exceptions.parquet").to_pylist()
        listed = {(e["entity"], e["legacy_key"]) for e in found}
        missing = [n for n in named if n not in listed]
        assert missing == [], f"damage not named in the exceptions: {missing} ({damage})"
        mapped = _billing(root, run)
        others = {a: row for a, row in clean["accounts"].items() if a not in touched}
        changed = [a for a, row in others.items() if a in mapped and mapped[a] != row]
        vanished = [a for a in others if a not in mapped]
        assert (changed, vanished) == ([], []), f"an undamaged account changed ({damage})"
    finally:
        server.drop(database)
        server.copies.remove(database)
