"""Database access shared by the phases: engines, read-only legacy connections, bulk writes.

Every engine is made here so that URL normalisation (drivers, MariaDB's utf8mb4), read-only
enforcement and the translation of driver failures into one-line, password-free errors happen
in one place.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from migrate.core.config import mask_url, scrub
from migrate.core.errors import BillmigError, ConfigError, SourceError

SQLITE, POSTGRESQL, MYSQL = "sqlite", "postgresql", "mysql"

DRIVER_MODULES: dict[str, tuple[str, ...]] = {
    POSTGRESQL: ("psycopg", "adbc_driver_postgresql"),
    MYSQL: ("pymysql",),
    SQLITE: ("adbc_driver_sqlite",),
}
"""The modules billmig drives each backend with (SQLAlchemy's dialect and the Arrow fast path)."""
DRIVER_EXTRA = {POSTGRESQL: "postgresql", MYSQL: "mariadb"}
"""The ``pip install 'billmig[…]'`` extra that brings a backend's drivers."""


def missing_drivers(backend: str) -> list[str]:
    """The driver modules of ``backend`` that are not installed."""
    import importlib.util

    return [m for m in DRIVER_MODULES.get(backend, ()) if importlib.util.find_spec(m) is None]


def check_drivers(url: str) -> None:
    """Refuse a URL whose drivers are not installed, naming the extra that brings them.

    Raises:
        ConfigError: e.g. a postgresql:// URL without ``billmig[postgresql]``.
    """
    backend = normalise_url(url).get_backend_name()
    missing = missing_drivers(backend)
    if missing:
        extra = DRIVER_EXTRA.get(backend, "all")
        raise ConfigError(
            f"{mask_url(url)} needs the {backend} drivers, which are not installed "
            f"({', '.join(missing)})",
            hint=f"pip install 'billmig[{extra}]' (or billmig[all])",
        )


def normalise_url(url: str) -> URL:
    """The URL with this toolkit's drivers: psycopg 3 for PostgreSQL, PyMySQL for MariaDB."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{mask_url(url)} is not a database URL",
            hint="e.g. postgresql://user@host:5432/db, mysql://root@host/db, sqlite:///file.db",
        ) from None
    if parsed.drivername.split("+")[0] == "postgres":  # the libpq spelling SQLAlchemy dropped
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(
            f"unknown database URL scheme {parsed.drivername!r} in {mask_url(url)}",
            hint="use sqlite:///FILE, postgresql:// (or postgres://), mysql:// or mariadb://, "
            "or install the SQLAlchemy dialect of that database",
        ) from None
    if backend == POSTGRESQL and parsed.get_driver_name() in ("psycopg2", "psycopg", ""):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend in (MYSQL, "mariadb"):
        parsed = parsed.set(drivername="mysql+pymysql")
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def create_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url``; with ``read_only`` every connection refuses writes.

    Read-only is enforced by the database, not by convention: SQLite opens the file with
    ``mode=ro``, PostgreSQL sets ``default_transaction_read_only``, MariaDB sets the session's
    transactions READ ONLY.
    """
    check_drivers(url)
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == SQLITE and read_only and parsed.database and parsed.database != ":memory:":
        parsed = parsed.set(database=f"file:{parsed.database}").update_query_dict(
            {"mode": "ro", "uri": "true"}
        )
    if backend == POSTGRESQL and read_only:
        kwargs["connect_args"] = {"options": "-c default_transaction_read_only=on"}
    if backend == MYSQL:
        # Profiles quote identifiers the standard way ("lines" is reserved in MariaDB), so one
        # profile serves SQLite, PostgreSQL and MariaDB alike. Set as the connection's first
        # command, before SQLAlchemy reads the sql_mode: its reflection then parses ANSI quotes.
        kwargs["connect_args"] = {
            "init_command": "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')"
        }
    engine = sa.create_engine(parsed, **kwargs)
    if read_only and backend == MYSQL:
        event.listen(engine, "connect", _mysql_read_only)
    if read_only and backend == SQLITE:
        event.listen(engine, "connect", _sqlite_query_only)
    return engine


def _mysql_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET SESSION TRANSACTION READ ONLY")
    cursor.close()


def _sqlite_query_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA query_only = ON")


@contextmanager
def translate_errors(
    url: str, what: str, error: type[BillmigError] = SourceError
) -> Iterator[None]:
    """Turn driver failures into one password-free line naming ``what`` failed and on which DB."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        raise error(
            scrub(f"{what} failed on {mask_url(url)}: {_first_line(exc.orig)}", url),
            hint=_hint_for(exc, error),
        ) from exc
    except sa.exc.ArgumentError as exc:
        raise error(scrub(f"{what}: {exc}", url), hint="check the database URL") from exc


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip() if exc else "unknown error"
    return text.splitlines()[0] if text else type(exc).__name__


def _hint_for(exc: sa.exc.DBAPIError, error: type[BillmigError] = SourceError) -> str:
    message = str(exc.orig).lower()
    if any(w in message for w in ("password", "access denied", "authentication")):
        return "check the user and password in BILLMIG_SOURCE_URL/BILLMIG_TARGET_URL"
    if isinstance(exc, sa.exc.OperationalError) and any(
        w in message for w in ("connect", "unable to open", "unknown database", "does not exist")
    ):
        return "check that the database server is running and the URL names it"
    if error is SourceError:
        return "check the SQL in the source profile against the legacy schema"
    return "check the target database (BILLMIG_TARGET_URL) and the runbook of this phase"


def dialect_of(conn: Connection | Engine) -> str:
    """Backend name: ``sqlite``, ``postgresql`` or ``mysql``."""
    return conn.dialect.name


def bulk_insert(
    conn: Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` into ``table`` by the fastest correct path for the connection's dialect.

    PostgreSQL uses COPY; SQLite and MariaDB use the driver's ``executemany`` (PyMySQL folds it
    into multi-row INSERTs); anything else goes through SQLAlchemy's generic executemany.
    """
    if not rows:
        return
    dialect = dialect_of(conn)
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    name = conn.dialect.identifier_preparer.format_table(table)
    raw = conn.connection.driver_connection
    if dialect == POSTGRESQL and raw is not None:
        with raw.cursor() as cursor, cursor.copy(f"COPY {name} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    if dialect in (SQLITE, MYSQL) and raw is not None:
        marker = "?" if dialect == SQLITE else "%s"
        sql = f"INSERT INTO {name} ({quoted}) VALUES ({', '.join([marker] * len(columns))})"
        cursor = raw.cursor()
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()
        return
    conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])


def libpq_uri(url: str, options: str) -> str:
    """A libpq URI for a SQLAlchemy PostgreSQL URL, with session ``options`` added."""
    parsed = normalise_url(url).set(drivername="postgresql")
    query = dict(parsed.query)
    query["options"] = f"{query['options']} {options}" if "options" in query else options
    base = parsed.set(query={}).render_as_string(hide_password=False)
    return f"{base}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"
