"""``billmig doctor``: everything a phase will need, checked up front, one line each.

Configuration, where each database URL comes from, each database reachable (read-only, with a
short timeout) and its version, the drivers the URLs need, WeasyPrint's system libraries, and
free disk for the next snapshot. Every line that is not ``ok`` says what to do. Nothing is
written: a SQLite file that does not exist yet is reported, never created.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from migrate.core.config import CONFIG_FILE, SECRETS_FILE, Config, load_config, mask_url
from migrate.core.db import (
    DRIVER_EXTRA,
    DRIVER_MODULES,
    MYSQL,
    POSTGRESQL,
    SQLITE,
    create_engine,
    missing_drivers,
    normalise_url,
)
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, BillmigError
from migrate.core.rendering import TableData
from migrate.core.runs import RunsFolder

CONNECT_TIMEOUT_S = 5
ASSUMED_BYTES_PER_ACCOUNT = 2_048
"""Snapshot and mapped output per account when no earlier run says (measured at 1M: ~1.3 KiB)."""


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: str
    """ok, warn (works, but read the line) or fail (a phase will stop on it)."""
    detail: str
    todo: str = ""


@dataclass(frozen=True)
class DoctorResult:
    """Every check, in the order a migration meets them."""

    checks: tuple[Check, ...]

    @property
    def exit_code(self) -> int:
        """1 when any check failed, else 0."""
        return EXIT_CHECKS_FAILED if any(c.status == "fail" for c in self.checks) else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": self.exit_code == EXIT_OK,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail, "todo": c.todo}
                for c in self.checks
            ],
        }

    def tables(self) -> list[TableData]:
        """One row per check."""
        failed = sum(c.status == "fail" for c in self.checks)
        return [
            TableData(
                title="billmig doctor",
                headers=("check", "status", "found", "what to do"),
                rows=[(c.name, c.status, c.detail, c.todo) for c in self.checks],
                footer=f"{failed} check(s) failed" if failed else "every check passed",
            )
        ]


def run_doctor(config_path: Path | None) -> DoctorResult:
    """Check the workspace at ``config_path`` (default ./billmig.toml) without writing."""
    try:
        config = load_config(config_path, require=True)
    except BillmigError as exc:
        return DoctorResult((Check("configuration", "fail", exc.message, exc.hint or ""),))
    shown = config_path or config.root / CONFIG_FILE
    checks = [Check("configuration", "ok", f"{shown} (sha256 {config.sha256[:12]})")]
    for role, url, needed in _urls(config):
        checks.append(_origin(role, url, needed))
        if url:
            checks += [_drivers(role, url), _reachable(role, url, source=role == "source")]
    checks += [_weasyprint(), _disk(config)]
    return DoctorResult(tuple(checks))


def _urls(config: Config) -> list[tuple[str, str | None, bool]]:
    return [
        ("source", config.source.url, True),
        ("target", config.target.url, True),
        ("rehearsal", config.rehearsal.url, False),
    ]


def _origin(role: str, url: str | None, needed: bool) -> Check:
    variable = f"BILLMIG_{role.upper()}_URL"
    if url:
        return Check(f"{role} URL", "ok", mask_url(url))
    status = "fail" if needed else "warn"
    todo = f"set {variable} or [{role}] url in {SECRETS_FILE}"
    return Check(f"{role} URL", status, "not set", todo)


def _drivers(role: str, url: str) -> Check:
    backend = normalise_url(url).get_backend_name()
    missing = missing_drivers(backend)
    if not missing:
        modules = ", ".join(DRIVER_MODULES.get(backend, ()))
        return Check(f"{role} drivers", "ok", f"{backend}: {modules}")
    extra = DRIVER_EXTRA.get(backend, "all")
    return Check(
        f"{role} drivers", "fail", f"{backend}: missing {', '.join(missing)}",
        f"pip install 'billmig[{extra}]'",
    )  # fmt: skip


def _reachable(role: str, url: str, *, source: bool) -> Check:
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    if backend == SQLITE:
        path = Path(parsed.database or "")
        if not path.is_file():
            status, todo = ("fail", "check the path in the URL") if source else ("ok", "")
            return Check(f"{role} database", status, f"{path} does not exist yet", todo)
    probe = _with_timeout(url, backend)
    try:
        engine = create_engine(probe, read_only=True)
        try:
            with engine.connect() as conn:
                version = _version(conn, backend)
        finally:
            engine.dispose()
    except Exception as exc:  # a doctor reports every failure; it never stops on one
        reason = " ".join(str(exc).split())[:200]
        return Check(f"{role} database", "fail", reason, f"check the server and {role} URL")
    return Check(f"{role} database", "ok", f"{mask_url(url)}: {version}")


def _with_timeout(url: str, backend: str) -> str:
    if backend in (POSTGRESQL, MYSQL):
        parsed = normalise_url(url).update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT_S)})
        return parsed.render_as_string(hide_password=False)
    return url


def _version(conn: sa.Connection, backend: str) -> str:
    query = "SELECT sqlite_version()" if backend == SQLITE else "SELECT version()"
    prefix = "SQLite " if backend == SQLITE else ""
    return prefix + str(conn.execute(sa.text(query)).scalar_one())


def _weasyprint() -> Check:
    try:
        import weasyprint
    except (ImportError, OSError) as exc:
        return Check(
            "PDF (WeasyPrint)", "fail", " ".join(str(exc).split())[:160],
            "install Pango: apt install libpango-1.0-0 libpangoft2-1.0-0 "
            "(macOS: brew install pango); the HTML report works without it",
        )  # fmt: skip
    return Check("PDF (WeasyPrint)", "ok", f"WeasyPrint {weasyprint.__version__}, Pango found")


def _disk(config: Config) -> Check:
    runs = config.runs_path
    existing = next((p for p in (runs, *runs.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    per_account, basis = _bytes_per_account(config)
    need = per_account * config.rehearsal.production_accounts
    detail = (
        f"{_gib(free)} free for {config.relative(runs)}; a run of "
        f"{config.rehearsal.production_accounts:,} accounts needs about {_gib(need)} ({basis})"
    )
    if free < need:
        return Check("disk", "warn", detail, "free space or set [workspace] runs_dir elsewhere")
    return Check("disk", "ok", detail)


def _bytes_per_account(config: Config) -> tuple[int, str]:
    """Bytes per account of the latest snapshot + mapped output here, else an assumption."""
    from migrate.core.artifacts import SnapshotManifest

    folder = RunsFolder.of(config)
    found = folder.path.glob("*/snapshot/manifest.json") if folder.path.is_dir() else iter(())
    for manifest in sorted(found, key=_mtime, reverse=True):
        try:
            accounts = SnapshotManifest.read(manifest).entities["accounts"].rows
        except (BillmigError, KeyError):
            continue
        run = manifest.parent.parent
        size = sum(_size(run / part) for part in ("snapshot", "mapped"))
        if accounts:
            return size // accounts, f"{size // accounts:,} B/account, as run {run.name}"
    return ASSUMED_BYTES_PER_ACCOUNT, f"assumed {ASSUMED_BYTES_PER_ACCOUNT:,} B/account"


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _gib(size: float) -> str:
    return f"{size / 2**30:,.1f} GiB"
