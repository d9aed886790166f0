"""The restricted-services window (SPEC §8; seed 001): policy, state, notices, freeze breaches.

* Policy: ``mappings/window.toml`` — operation → allowed / limited / blocked, with what
  subscribers are told in each language.
* State: ``runs/window.json`` (closed, planned or open, dates, who, the policy and its hash),
  rewritten on every change so front-ends (CRM, USSD, dealer portal) can poll it; every change
  is also a ledger entry (run ``window``).
* ``window open`` writes the subscriber notices as files (never sends): the restrictions and
  dates per language and, from a mapped run's top-up forecast, one reminder per subscriber
  whose balance will not cover the fees falling due.
* Freeze breaches: orders of a blocked kind created in legacy inside the window are
  ``FREEZE_BREACH`` (block) exceptions; the cutover gate refuses them until each has a
  disposition.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from migrate.core.config import Config, read_toml_file
from migrate.core.db import create_engine, translate_errors
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError, SourceError
from migrate.core.ledger import PhaseContext, run_phase
from migrate.core.legacy_schema import CURRENCY_EXPONENTS
from migrate.core.manifest import write_json
from migrate.core.provenance import operator
from migrate.core.reasons import ReasonCode
from migrate.core.rendering import TableData
from migrate.core.runs import PhaseFiles, RunDir, RunsFolder
from migrate.core.window_state import WindowState, window_state
from migrate.extract.profiles import load_profile
from migrate.money.arithmetic import format_major

POLICY_FILE = "mappings/window.toml"
STATE_FORMAT = "billmig.window/1"
WINDOW = PhaseFiles(
    "window",
    inputs=lambda run: (),
    output=lambda run: run.runs_folder.window_state,
    config_inputs=lambda config: (POLICY_FILE,),
)
"""What the window reads (its policy) and leaves (its state file), for the ledger; its run id
in the ledger is ``window``."""
STATUSES = ("allowed", "limited", "blocked")


@dataclass(frozen=True)
class Operation:
    """One operation of the policy."""

    name: str
    status: str
    texts: dict[str, str]


@dataclass(frozen=True)
class Policy:
    """The window policy file."""

    path: Path
    sha256: str
    title: str
    languages: tuple[str, ...]
    operations: dict[str, Operation]
    topup_reminder: dict[str, str]
    """Per language, with {start}, {amount} and {currency}."""


def load_policy(config: Config) -> Policy:
    """Read and check ``mappings/window.toml``.

    Raises:
        InputError: missing or malformed, an unknown status, or a text missing a language.
    """
    path = config.resolve(POLICY_FILE)
    raw, sha256 = read_toml_file(path, "window policy", f"create {POLICY_FILE}")
    languages = tuple(raw.get("languages", ["ru"]))
    operations = {}
    for name, item in raw.get("operations", {}).items():
        status = item.get("status")
        missing = [lang for lang in languages if lang not in item]
        if status not in STATUSES or missing:
            raise InputError(
                f"{path.name}: operation {name} needs a status ({', '.join(STATUSES)}) and a "
                f"text in {', '.join(languages)}" + (f" (missing {missing})" if missing else ""),
                hint="fix the policy file",
            )
        operations[name] = Operation(name, status, {lang: str(item[lang]) for lang in languages})
    reminder = {str(k): str(v) for k, v in raw.get("topup_reminder", {}).items()}
    if reminder and languages[0] not in reminder:
        raise InputError(
            f"{path.name}: [topup_reminder] has no text in {languages[0]}", hint="add it"
        )
    return Policy(path, sha256, str(raw.get("title", "")), languages, operations, reminder)


def window_status(config: Config) -> WindowState:
    """The window's state as ``runs/window.json`` records it (``none`` before any)."""
    return window_state(RunsFolder.of(config))


def open_window(
    config: Config, *, start: date, end: date, forecast_run: str | None = None
) -> WindowState:
    """Open the window: state file, ledger entry, notices.

    Raises:
        InputError: already open, dates reversed, or the forecast run has no forecast.
    """
    if end < start:
        raise InputError(f"the window ends ({end}) before it starts ({start})")
    if window_status(config).state == "open":
        raise InputError("the window is already open", hint="billmig window status")
    policy = load_policy(config)
    return run_phase(
        config, WINDOW, "window", lambda: _open(config, policy, start, end, forecast_run),
        PhaseContext(label="open"),
    )  # fmt: skip


def _open(
    config: Config, policy: Policy, start: date, end: date, forecast_run: str | None
) -> WindowState:
    notices = _write_notices(config, policy, start, end, forecast_run)
    state = WindowState(
        "open", str(start), str(end), datetime.now(UTC).isoformat(timespec="seconds"),
        operator(), None, policy.sha256, tuple(str(n) for n in notices),
    )  # fmt: skip
    _save(config, state, policy)
    return state


def close_window(config: Config) -> WindowState:
    """Close the window (state file and ledger).

    Raises:
        InputError: no window is open.
    """
    current = window_status(config)
    if current.state != "open":
        raise InputError("no window is open", hint="billmig window status")
    policy = load_policy(config)

    def close() -> WindowState:
        closed = WindowState(
            "closed", current.planned_from, current.planned_to, current.opened_at,
            current.opened_by, datetime.now(UTC).isoformat(timespec="seconds"), policy.sha256,
        )  # fmt: skip
        _save(config, closed, policy)
        return closed

    return run_phase(config, WINDOW, "window", close, PhaseContext(label="close"))


def _save(config: Config, state: WindowState, policy: Policy) -> None:
    write_json(
        RunsFolder.of(config).window_state,
        {
            "format": STATE_FORMAT,
            **state.to_dict(),
            "operations": {
                name: {"status": op.status, **op.texts} for name, op in policy.operations.items()
            },
        },
    )


@dataclass(frozen=True)
class Check:
    """Whether an operation may run now."""

    operation: str
    status: str
    window: str
    reason: str

    @property
    def allowed(self) -> bool:
        """Blocked only while the window is open."""
        return not (self.window == "open" and self.status == "blocked")

    @property
    def exit_code(self) -> int:
        """0 allowed (or limited), 1 blocked."""
        return EXIT_OK if self.allowed else EXIT_CHECKS_FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**self.__dict__, "allowed": self.allowed}

    def tables(self) -> list[TableData]:
        """One line: the answer and why."""
        answer = "allowed" if self.allowed else "BLOCKED"
        if self.allowed and self.window == "open" and self.status == "limited":
            answer = "allowed (limited)"
        return [TableData(title=f"{self.operation}: {answer}", headers=("window", "policy", "why"),
                          rows=[(self.window, self.status, self.reason)])]  # fmt: skip


def check_operation(config: Config, operation: str) -> Check:
    """Whether ``operation`` may run now, with the subscriber-facing reason.

    Raises:
        InputError: the operation is not in the policy.
    """
    policy = load_policy(config)
    op = policy.operations.get(operation)
    if op is None:
        raise InputError(
            f"operation {operation!r} is not in {POLICY_FILE}",
            hint=f"one of: {', '.join(sorted(policy.operations))}",
        )
    window = window_status(config).state
    reason = op.texts[policy.languages[0]] if window == "open" else "no window is open"
    return Check(operation, op.status, window, reason)


def _write_notices(
    config: Config, policy: Policy, start: date, end: date, forecast_run: str | None
) -> list[Path]:
    folder = RunsFolder.of(config).window_notices
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for language in policy.languages:
        lines = [f"{policy.title}: {start:%d.%m.%Y} – {end:%d.%m.%Y}", ""]
        for status in ("blocked", "limited", "allowed"):
            lines += [f"[{status}] {op.texts[language]}"
                      for op in policy.operations.values() if op.status == status]  # fmt: skip
        path = folder / f"restrictions.{language}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)
    if forecast_run:
        written.append(_topup_reminders(config, policy, start, forecast_run, folder))
    return written


def _topup_reminders(
    config: Config, policy: Policy, start: date, run_id: str, folder: Path
) -> Path:
    forecast = RunDir.of(config, run_id).mapped.topup_forecast
    if not policy.topup_reminder:
        raise InputError(
            f"{POLICY_FILE} has no [topup_reminder] texts", hint="add them, or open without --run"
        )
    if not forecast.is_file():
        raise InputError(
            f"run {run_id} has no top-up forecast", hint=f"run billmig map --run {run_id}"
        )
    path = folder / "topup_reminders.csv"
    with (
        forecast.open(encoding="utf-8", newline="") as source,
        path.open("w", encoding="utf-8", newline="") as target,
    ):
        writer = csv.writer(target)
        writer.writerow(["msisdn", "legacy_account_no", "language", "needed_minor", "text"])
        for row in csv.DictReader(source):
            texts = policy.topup_reminder
            language = row["language"] if row["language"] in texts else policy.languages[0]
            needed = int(row["needed_minor"])
            amount = format_major(needed, CURRENCY_EXPONENTS.get(row["currency"], 2))
            text = texts[language].format(
                start=f"{start:%d.%m.%Y}", amount=amount, currency=row["currency"]
            )
            writer.writerow([row["msisdn"], row["legacy_account_no"], language, needed, text])
    return path


# -- freeze breaches -------------------------------------------------------------------------


@dataclass(frozen=True)
class Breaches:
    """Orders of a blocked kind created in legacy inside the window."""

    run_id: str
    rows: tuple[tuple[str, str, str, str], ...]
    """order id, account, kind, created at."""
    path: Path

    @property
    def exit_code(self) -> int:
        """1 when there is any breach."""
        return EXIT_CHECKS_FAILED if self.rows else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"run_id": self.run_id, "breaches": len(self.rows), "file": str(self.path)}

    def tables(self) -> list[TableData]:
        """Each breach."""
        return [TableData(title=f"FREEZE_BREACH for run {self.run_id}: {len(self.rows)}",
                          headers=("order", "account", "kind", "created at"),
                          rows=list(self.rows), footer=str(self.path))]  # fmt: skip


def find_breaches(config: Config, *, run_id: str) -> Breaches:
    """Read legacy orders created inside the window; blocked kinds are FREEZE_BREACH.

    Writes ``runs/<run>/freeze_breaches.csv`` in the exceptions' shape.

    Raises:
        InputError: no window was ever opened.
    """
    window = window_status(config)
    if window.state == "none" or not window.planned_from:
        raise InputError("no window has been opened", hint="billmig window open --from … --to …")
    policy = load_policy(config)
    blocked = sorted(n for n, op in policy.operations.items() if op.status == "blocked")
    start = datetime.combine(date.fromisoformat(window.planned_from), time())
    end = datetime.combine(date.fromisoformat(str(window.planned_to)) + timedelta(days=1), time())
    profile = load_profile(config.resolve(config.source.profile))
    sql = (
        f"SELECT order_id, account_no, kind, created_at FROM ({profile.query('orders').sql}) AS o "
        "WHERE o.created_at >= :start AND o.created_at < :end ORDER BY o.created_at, o.order_id"
    )
    url = config.source_url()
    engine = create_engine(url, read_only=True)
    try:
        with translate_errors(url, "reading orders", SourceError), engine.connect() as conn:
            orders = conn.execute(sa.text(sql), {"start": start, "end": end}).all()
    finally:
        engine.dispose()
    rows = tuple((str(o[0]), str(o[1]), str(o[2]), str(o[3])) for o in orders if o[2] in blocked)
    path = RunDir.of(config, run_id).freeze_breaches
    path.parent.mkdir(parents=True, exist_ok=True)
    code = ReasonCode.FREEZE_BREACH
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["entity", "legacy_key", "reason_code", "severity", "detail"])
        for order_id, account, kind, created in rows:
            writer.writerow(["orders", order_id, code.value, code.severity.value,
                             f"{kind} order for account {account} created {created}, "
                             "inside the window"])  # fmt: skip
    return Breaches(run_id, rows, path)
