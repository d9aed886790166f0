"""One writing phase at a time per target database, whichever workspace it comes from.

Load, rollback, delta and compensate hold the target lock while they write. It is the
database's own lock, so it dies with its holder's connection, however the holder dies:

* PostgreSQL: a session advisory lock (``pg_try_advisory_lock``), scoped to the database;
* MariaDB / MySQL: ``GET_LOCK`` on ``billmig:<database>`` (named per database, since the lock
  is server-wide);
* SQLite: an ``flock`` on ``<database file>.billmig-lock`` beside the file (an in-memory
  database has one user and needs none).

A second comer waits up to :data:`WAIT_SECONDS`, then is told who holds it (phase, run,
workspace, operator, host, process, since when), read from ``billmig_target_lock``, which the
holder writes when it takes the lock and removes when it lets go. A row found there by the
next holder names a holder that died: the lock is taken over with a line saying so.

The target also carries its identity (``billmig_target``, a random id made once): workspaces
record the id a run was loaded into, so a second target for the same run, or a delta replayed
into another target than the load, is noticed (:mod:`migrate.load.run`, :mod:`migrate.ops.delta`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import sqlalchemy as sa

from migrate.core.config import Config, mask_url
from migrate.core.db import MYSQL, POSTGRESQL, SQLITE, translate_errors
from migrate.core.errors import InputError, TargetError
from migrate.core.lock import hold_descriptor, release_descriptor
from migrate.core.manifest import write_atomic
from migrate.core.provenance import host, operator
from migrate.core.runs import RunsFolder
from migrate.core.target_schema import JOURNAL_METADATA, LOAD_RUN, TARGET_IDENTITY, TARGET_LOCK

LOG = logging.getLogger("billmig")
_LOCK_NAME = "target"
_PG_KEY = 0x62696C6C6D6967  # "billmig": one advisory lock key per database
WAIT_SECONDS = 10.0
"""How long a second comer waits for the lock before it is told who holds it: a killed
holder's database session may take a moment to end (a statement it was running finishes and
rolls back first)."""


@dataclass(frozen=True)
class Workspace:
    """The workspace a phase runs in: its id (``runs/.workspace-id``) and where it is."""

    workspace_id: str
    where: str
    """``host:folder``, for people."""


def workspace_of(config: Config) -> Workspace:
    """This workspace's identity, made once in ``runs/.workspace-id``.

    A copy of the folder is the same workspace; a fresh ``runs/`` is a new one.
    """
    path = RunsFolder.of(config).workspace_id
    if not path.is_file():
        write_atomic(path, f"{uuid.uuid4()}\n")
    found = path.read_text(encoding="utf-8").strip()
    try:
        uuid.UUID(found)
    except ValueError:
        raise InputError(
            f"{path} does not hold a workspace id ({found[:40]!r})",
            hint="restore it from a backup of runs/; it ties this workspace to its loads",
        ) from None
    return Workspace(found, f"{host()}:{config.root}")


@dataclass(frozen=True)
class HeldTarget:
    """What a holder of the target lock knows about the target."""

    target_id: str
    url: str
    """Masked."""


@contextmanager
def target_lock(
    engine: sa.Engine, phase: str, run_id: str, workspace: Workspace
) -> Iterator[HeldTarget]:
    """Hold the target's lock for ``phase`` of ``run_id``; if held, wait, then refuse naming it.

    Inside, the journal tables exist (created under the lock, so two first loads never race
    to create them) and the target has its identity.

    Raises:
        InputError: another phase holds the target lock.
        TargetError: the target cannot be reached or refuses the journal tables.
    """
    url = str(engine.url)
    deadline = time.monotonic() + WAIT_SECONDS
    with translate_errors(url, "taking the target lock", TargetError):
        while (guard := _acquire(engine)) is None and time.monotonic() < deadline:
            time.sleep(0.25)
    try:
        if guard is None:
            raise InputError(
                f"the target {mask_url(url)} is busy: {_holder(engine)}",
                hint="wait for that phase to finish, or stop it; its lock dies with its process",
            )
        with translate_errors(url, "recording the target lock", TargetError):
            ensure_journal(engine)
            _take(engine, phase, run_id, workspace)
            target_id = _identity(engine)
        try:
            yield HeldTarget(target_id, mask_url(url))
        finally:
            _let_go(engine)
    finally:
        if guard is not None:
            guard.close()


def _let_go(engine: sa.Engine) -> None:
    """Remove the holder's row (if the database is gone, the lock still ends with the session)."""
    mine = sa.delete(TARGET_LOCK).where(TARGET_LOCK.c.lock_name == _LOCK_NAME)
    with contextlib.suppress(sa.exc.SQLAlchemyError), engine.begin() as conn:
        conn.execute(mine)


def ensure_journal(engine: sa.Engine) -> None:
    """Create the journal tables a target lacks, and the columns older versions did not have."""
    JOURNAL_METADATA.create_all(engine)
    with engine.begin() as conn:
        # the columns the table has, as the database answers a query (MariaDB's reflection
        # cannot parse ANSI_QUOTES, which billmig's MariaDB sessions use)
        quote = conn.dialect.identifier_preparer.quote
        present = set(
            conn.exec_driver_sql(f"SELECT * FROM {quote(LOAD_RUN.name)} WHERE 1 = 0").keys()
        )
        for column in LOAD_RUN.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(
                    f"ALTER TABLE {quote(LOAD_RUN.name)} ADD COLUMN {quote(column.name)} {kind}"
                )


def target_id(engine: sa.Engine) -> str | None:
    """The target's identity, or None when no phase has written to it yet."""
    if not sa.inspect(engine).has_table(TARGET_IDENTITY.name):
        return None
    with engine.connect() as conn:
        found: str | None = conn.execute(sa.select(TARGET_IDENTITY.c.target_id)).scalar()
        return found


# -- the lock itself, per engine -------------------------------------------------------------


class _Guard:
    """A held lock; :meth:`close` lets it go."""

    def __init__(
        self, connection: sa.Connection | None, release: str | None, handle: IO[str] | None
    ):
        self._connection = connection
        self._release = release
        self._handle = handle

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                if self._release:
                    self._connection.exec_driver_sql(self._release)
            self._connection.close()  # closing the session ends its locks in any case
        if self._handle is not None:
            release_descriptor(self._handle.fileno())
            self._handle.close()


def _acquire(engine: sa.Engine) -> _Guard | None:
    backend = engine.dialect.name
    if backend == POSTGRESQL:
        return _database_lock(
            engine,
            f"SELECT pg_try_advisory_lock({_PG_KEY})",
            f"SELECT pg_advisory_unlock({_PG_KEY})",
        )
    if backend in (MYSQL, "mariadb"):
        name = "CONCAT('billmig:', LEFT(DATABASE(), 50))"
        return _database_lock(engine, f"SELECT GET_LOCK({name}, 0)", f"SELECT RELEASE_LOCK({name})")
    if backend == SQLITE:
        return _file_lock(engine.url.database)
    raise TargetError(
        f"billmig cannot lock a {backend} target",
        hint="use PostgreSQL, MariaDB/MySQL or SQLite as the target",
    )


def _database_lock(engine: sa.Engine, take: str, release: str) -> _Guard | None:
    connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        taken = connection.exec_driver_sql(take).scalar()
    except BaseException:
        connection.close()
        raise
    if not taken:
        connection.close()
        return None
    return _Guard(connection, release, None)


def _file_lock(database: str | None) -> _Guard | None:
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return _Guard(None, None, None)
    path = Path(database.removeprefix("file:").split("?")[0])
    handle = Path(f"{path}.billmig-lock").open("a", encoding="utf-8")  # noqa: SIM115 held
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    hold_descriptor(handle.fileno())
    return _Guard(None, None, handle)


# -- who holds it ----------------------------------------------------------------------------


def _take(engine: sa.Engine, phase: str, run_id: str, workspace: Workspace) -> None:
    holder = {
        "phase": phase,
        "run_id": run_id,
        "workspace": workspace.where,
        "workspace_id": workspace.workspace_id,
        "user": operator(),
        "host": host(),
        "pid": os.getpid(),
    }
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        left = conn.execute(
            sa.select(TARGET_LOCK.c.holder, TARGET_LOCK.c.since).where(
                TARGET_LOCK.c.lock_name == _LOCK_NAME
            )
        ).first()
        if left is not None:
            LOG.warning(
                "took over the target lock: its last holder, %s, ended without letting go",
                _describe(left.holder, left.since),
            )
            conn.execute(sa.delete(TARGET_LOCK).where(TARGET_LOCK.c.lock_name == _LOCK_NAME))
        conn.execute(
            sa.insert(TARGET_LOCK).values(
                lock_name=_LOCK_NAME, holder=json.dumps(holder, sort_keys=True), since=now
            )
        )


def _identity(engine: sa.Engine) -> str:
    with engine.begin() as conn:
        found: str | None = conn.execute(sa.select(TARGET_IDENTITY.c.target_id)).scalar()
        if found is None:
            found = str(uuid.uuid4())
            conn.execute(
                sa.insert(TARGET_IDENTITY).values(
                    target_id=found,
                    created_at=datetime.now(UTC).replace(tzinfo=None),
                    created_by=operator(),
                )
            )
        return found


def _holder(engine: sa.Engine, patience: float = 2.0) -> str:
    """Who holds the lock, as the holder recorded it (it writes that just after taking it)."""
    query = sa.select(TARGET_LOCK.c.holder, TARGET_LOCK.c.since).where(
        TARGET_LOCK.c.lock_name == _LOCK_NAME
    )
    deadline = time.monotonic() + patience
    while True:
        try:
            with engine.connect() as conn:
                row = conn.execute(query).first()
        except sa.exc.SQLAlchemyError:
            row = None
        if row is not None:
            return _describe(row.holder, row.since)
        if time.monotonic() > deadline:
            return "another billmig phase holds its lock (it has not said who)"
        time.sleep(0.1)


def _describe(holder: str, since: datetime | None) -> str:
    try:
        who = json.loads(holder)
        return (
            f"{who['phase']} of run {who['run_id']} from workspace {who['workspace']} "
            f"by {who['user']} (pid {who['pid']} on {who['host']}) since "
            f"{since.isoformat(timespec='seconds') if since else 'unknown'} UTC"
        )
    except (ValueError, KeyError, TypeError):
        return "a billmig phase whose record is unreadable"
