"""Small helpers shared by the migrate tests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from migrate.core.config import Config, load_config


def config_for(workspace: Path, url: str, **overrides: str) -> Config:
    """The workspace's configuration pointed at ``url``, with BILLMIG_* style overrides."""
    environ = {"BILLMIG_SOURCE_URL": url, **overrides}
    return load_config(workspace / "billmig.toml", environ=environ)


def manifest(snapshot_dir: Path) -> dict[str, Any]:
    """The snapshot's manifest as a dict."""
    loaded: dict[str, Any] = json.loads((snapshot_dir / "manifest.json").read_text("utf-8"))
    return loaded


def file_hashes(snapshot_dir: Path) -> dict[str, str]:
    """SHA-256 of every Parquet file of a snapshot, by file name."""
    import hashlib

    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(snapshot_dir.glob("*.parquet"))
    }


def new_workspace(root: Path, *, signers: bool = True) -> str:
    """Make ``root`` a workspace like the repository; returns its legacy SQLite URL.

    With ``signers``, one signer per role (and a builder) is registered, its private key in the
    session's key folder (``BILLMIG_KEY_DIR``), so packs can be built and signed.
    """
    repo = Path(__file__).resolve().parents[2]
    (root / "billmig.toml").write_text((repo / "billmig.toml").read_text("utf-8"), "utf-8")
    (root / "mappings").symlink_to(repo / "mappings")
    if signers:
        register_signers(load_config(root / "billmig.toml", environ={}))
    return f"sqlite:///{root / 'legacy.sqlite'}"


def register_signers(config: Config) -> dict[str, str]:
    """A signer for ``builder`` and one for each sign-off role; role → signer id."""
    from validate.signing import BUILDER, new_key

    tag = uuid.uuid4().hex[:8]
    found = {}
    for role in (BUILDER, *config.signoff.roles):
        signer = f"{role.replace('_', '-')}-{tag}"
        new_key(config, signer, f"{role} person", [role])
        found[role] = signer
    return found


def widen_balance(conn: sa.Connection) -> None:
    """Let ``accounts.balance`` hold corporate-size amounts (beyond the reference NUMERIC(22, 10)).

    SQLite's NUMERIC has no precision to widen; PostgreSQL and MariaDB get 30 digits.
    """
    statement = {
        "postgresql": "ALTER TABLE accounts ALTER COLUMN balance TYPE NUMERIC(30, 10)",
        "mysql": "ALTER TABLE accounts MODIFY balance DECIMAL(30, 10)",
    }.get(conn.dialect.name)
    if statement:
        conn.execute(sa.text(statement))


ACCOUNTS_OF_ROW = {
    "accounts": "SELECT account_no FROM accounts WHERE account_no = :k",
    "clients": "SELECT account_no FROM accounts WHERE client_id = :k",
    "payments": "SELECT account_no FROM payments WHERE payment_id = :k",
    "lines": 'SELECT account_no FROM "lines" WHERE iccid = :k',
    "bonuses": "SELECT account_no FROM bonuses WHERE bonus_id = :k",
    "charges": "SELECT account_no FROM charges WHERE charge_id = :k",
    "subscriptions": 'SELECT l.account_no FROM subscriptions s JOIN "lines" l '
    "ON l.msisdn = s.msisdn WHERE s.subscription_id = :k",
    "tariffs": 'SELECT l.account_no FROM subscriptions s JOIN "lines" l '
    "ON l.msisdn = s.msisdn WHERE s.tariff_code = :k",
}
"""Per legacy entity, the accounts one of its rows (key ``:k``) hangs off: the fuzz suites do
not compare those accounts' billing accounts (SQLite's sqlite3 and SQLAlchemy both bind ``:k``)."""
