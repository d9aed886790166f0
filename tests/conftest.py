"""Shared fixtures: a fresh database per test on SQLite, PostgreSQL and MariaDB.

Server tests skip with the reason when a server is down, except under
``BILLMIG_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where a missing server fails the test.
Each test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get(
    "BILLMIG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL = os.environ.get(
    "BILLMIG_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)
REQUIRE_SERVICES = os.environ.get("BILLMIG_REQUIRE_SERVICES") == "1"


def _unavailable(what: str, exc: Exception) -> None:
    reason = f"{what} is not reachable ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason}; BILLMIG_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(reason)


def _admin(url: str, what: str) -> sa.Engine:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        _unavailable(what, exc)
    return engine


@pytest.fixture(scope="session", autouse=True)
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Private signing keys of the test session: never the real ~/.config/billmig/keys."""
    folder = tmp_path_factory.mktemp("keys")
    before = os.environ.get("BILLMIG_KEY_DIR")
    os.environ["BILLMIG_KEY_DIR"] = str(folder)
    os.environ.pop("BILLMIG_SIGNER", None)
    yield folder
    if before is None:
        os.environ.pop("BILLMIG_KEY_DIR", None)
    else:
        os.environ["BILLMIG_KEY_DIR"] = before


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'legacy.sqlite'}"


def _fresh_database(admin_url: str, what: str, create: str, drop: str) -> Iterator[str]:
    """A new database on a server, yielded as a URL and dropped afterwards."""
    admin = _admin(admin_url, what)
    name = f"billmig_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(create.format(name=name)))
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(drop.format(name=name)))
    admin.dispose()


def _fresh_postgres() -> Iterator[str]:
    yield from _fresh_database(
        PG_ADMIN_URL,
        "PostgreSQL on 127.0.0.1:5432",
        "CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0",
        'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _fresh_postgres()


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    yield from _fresh_database(
        MARIADB_ADMIN_URL,
        "MariaDB on 127.0.0.1:3306",
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4",
        "DROP DATABASE IF EXISTS `{name}`",
    )


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def any_url(request: pytest.FixtureRequest) -> str:
    """The same test on each engine."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mariadb": "mariadb_url"}
    return str(request.getfixturevalue(fixture[request.param]))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A throwaway workspace: the repository's billmig.toml and mappings, runs under tmp."""
    root = tmp_path / "ws"
    root.mkdir()
    repo = Path(__file__).resolve().parents[1]
    config = (repo / "billmig.toml").read_text(encoding="utf-8")
    (root / "billmig.toml").write_text(config, encoding="utf-8")
    (root / "mappings").symlink_to(repo / "mappings")
    from migrate.core.config import load_config
    from tests.migrate.helpers import register_signers

    register_signers(load_config(root / "billmig.toml", environ={}))
    return root


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """Another fresh PostgreSQL database, for comparing two targets in one test."""
    yield from _fresh_postgres()
