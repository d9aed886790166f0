"""``billmig delta --run ID``: replay what reached legacy after the snapshot (SPEC §8).

Charges rated and payments received after the snapshot's cutoff, for the run's accounts in
the target, are read through the source profile (amounts converted exactly) and replayed onto
the target in event order (arrival time, then key):

* a charge takes from the main bucket down to zero; the rest becomes a debt item, ``roaming``
  for a roaming charge, else ``delayed_charge``;
* a payment settles debts first (oldest first; a settled debt item is removed), then funds
  the main bucket.

Each event is one ``balance_action`` (``delta_charge`` / ``delta_payment``) with the
idempotency key ``delta:<run>:<entity>:<legacy key>``, written in the same transaction as its
effect, so a replay skips what was applied and changes nothing the second time.

Writes ``runs/<run>/delta/events.parquet`` (every event as legacy has it: the legacy side
``validate`` reconciles against), ``delta/not_replayed.parquet`` (events of accounts the run
did not load: another wave's, or accounts left out with a reason) and
``runs/<run>/delta-run.json`` (counts, rows created and removed per table, and whether every
event has its action and every account's net moved by exactly its events), which the cutover
gate reads.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from migrate.core.artifacts import DeltaRecord, LoadRecord, SnapshotManifest
from migrate.core.config import Config, mask_url
from migrate.core.db import create_engine, translate_errors
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError, SourceError, TargetError
from migrate.core.ledger import latest, read_ledger, run_phase
from migrate.core.legacy_schema import CURRENCY_EXPONENTS
from migrate.core.manifest import replacing
from migrate.core.rendering import TableData
from migrate.core.runs import PhaseFiles, RunDir
from migrate.core.target_lock import HeldTarget, target_lock, workspace_of
from migrate.core.target_schema import METADATA
from migrate.extract.profiles import load_profile
from migrate.money.amounts import to_minor

BA = METADATA.tables["billing_account"]
BUCKET = METADATA.tables["balance_bucket"]
DEBT = METADATA.tables["debt_item"]
ACTION = METADATA.tables["balance_action"]
EVENTS_SCHEMA = pa.schema(
    [
        ("entity", pa.string()), ("legacy_key", pa.string()), ("account_no", pa.string()),
        ("kind", pa.string()), ("amount_minor", pa.int64()), ("currency", pa.string()),
        ("arrived_at", pa.timestamp("us")), ("idempotency_key", pa.string()),
    ]
)  # fmt: skip


DELTA = PhaseFiles(
    "delta",
    inputs=lambda run: (run.snapshot.manifest, run.load_record),
    output=lambda run: run.delta_record,
)
"""What delta reads (the snapshot's cutoff, the load) and leaves (its record), for the ledger."""


@dataclass(frozen=True)
class Event:
    """A charge or a payment that reached legacy after the snapshot."""

    entity: str
    legacy_key: str
    account_no: str
    kind: str
    amount_minor: int
    currency: str
    arrived_at: datetime
    idempotency_key: str

    @property
    def signed(self) -> int:
        """What it does to the account's net: a payment adds, a charge takes."""
        return self.amount_minor if self.entity == "payments" else -self.amount_minor


@dataclass
class AccountState:
    """One account's main bucket and open debts in the target."""

    billing_account_id: str
    currency: str
    bucket_id: str | None
    main_minor: int
    debts: list[tuple[str, int]] = field(default_factory=list)
    """(debt id, amount) oldest first."""

    @property
    def net(self) -> int:
        """Main bucket less debts."""
        return self.main_minor - sum(amount for _, amount in self.debts)


@dataclass(frozen=True)
class DeltaResult:
    """What a replay did."""

    run_id: str
    target: str
    events: int
    applied: int
    already: int
    rows_created: dict[str, int]
    """By this replay (the delta record counts over every replay of the run)."""
    rows_removed: dict[str, int]
    reconciled: bool
    problems: tuple[str, ...]
    money_by_currency: dict[str, dict[str, int]] = field(default_factory=dict)
    """Every event of the run (applied now or before), minor units: charges and payments."""
    not_in_run: int = 0
    """Events of accounts this run did not load (another wave, or left out with a reason):
    listed in ``delta/not_replayed.parquet``, never dropped silently."""

    @property
    def exit_code(self) -> int:
        """1 when the replay does not reconcile."""
        return EXIT_OK if self.reconciled else EXIT_CHECKS_FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also ``runs/<run>/delta-run.json``)."""
        return {**self.__dict__, "problems": list(self.problems)}

    def tables(self) -> list[TableData]:
        """Counts and the reconciliation."""
        footer = (
            "reconciled: every event has its action; each account's net moved by its events"
            if self.reconciled
            else "NOT reconciled: " + "; ".join(self.problems[:5])
        )
        if self.events and not self.applied:
            footer = f"nothing new: all {self.already} event(s) were replayed before; " + footer
        return [
            TableData(
                title=f"delta {self.run_id} onto {self.target}",
                headers=("events #", "applied now #", "already applied #", "not in this run #",
                         "rows created", "rows removed"),
                rows=[(self.events, self.applied, self.already, self.not_in_run,
                       ", ".join(f"{k} {v}" for k, v in self.rows_created.items()) or "none",
                       ", ".join(f"{k} {v}" for k, v in self.rows_removed.items()) or "none")],
                footer=footer,
            )
        ]  # fmt: skip


def run_delta(config: Config, *, run_id: str) -> DeltaResult:
    """Replay the run's post-snapshot charges and payments onto the target, once.

    Raises:
        InputError: the run was not loaded, or its snapshot is missing.
    """
    load = latest(read_ledger(config.runs_path)).get(run_id, {}).get("load")
    if load is None or load.outcome != "ok":
        raise InputError(
            f"delta of run {run_id} needs the run loaded first",
            hint=f"run billmig load --run {run_id}",
        )
    return run_phase(config, DELTA, run_id, lambda: _delta(config, run_id))


def _delta(config: Config, run_id: str) -> DeltaResult:
    run = RunDir.of(config, run_id)
    cutoff = SnapshotManifest.read(run.snapshot.manifest).cutoff_at
    url = config.target_url()
    engine = create_engine(url)
    try:
        with target_lock(engine, DELTA.name, run_id, workspace_of(config)) as target:
            _same_target(run, target)
            accounts = _run_accounts(url, run_id)
            found = sorted(_events(config, run_id, cutoff), key=lambda e: (e.arrived_at,
                           e.entity, e.legacy_key))  # fmt: skip
            events = [e for e in found if e.account_no in accounts]
            outside = [e for e in found if e.account_no not in accounts]
            _write_events(run.delta.events, events)
            _write_events(run.delta.not_replayed, outside)
            result = replace(
                _replay(config, url, run_id, accounts, events), not_in_run=len(outside)
            )
            _record(run.delta_record, result, target.target_id)
    finally:
        engine.dispose()
    return result


def _same_target(run: RunDir, target: HeldTarget) -> None:
    """Delta replays into the target the run was loaded into, never into another."""
    loaded = LoadRecord.read(run.load_record)
    if loaded.target_id is not None and loaded.target_id != target.target_id:
        raise InputError(
            f"run {run.run_id} was loaded into {loaded.target} (target id {loaded.target_id}); "
            f"{target.url} is another target",
            hint="point BILLMIG_TARGET_URL at the target the run was loaded into",
        )


def _record(path: Path, result: DeltaResult, target_id: str) -> None:
    """The delta record: this replay, with rows created and removed counted over every replay."""
    previous = DeltaRecord.read_if_present(path)
    DeltaRecord(
        run_id=result.run_id,
        target=result.target,
        events=result.events,
        applied=result.applied,
        already=result.already,
        not_in_run=result.not_in_run,
        reconciled=result.reconciled,
        problems=result.problems,
        rows_created=_summed(previous.rows_created if previous else {}, result.rows_created),
        rows_removed=_summed(previous.rows_removed if previous else {}, result.rows_removed),
        money_by_currency=result.money_by_currency,
        target_id=target_id,
    ).write(path)


def _summed(before: Mapping[str, int], now: Mapping[str, int]) -> dict[str, int]:
    """Rows per table over every replay: what earlier replays counted plus this one."""
    return {table: before.get(table, 0) + now.get(table, 0) for table in sorted({*before, *now})}


def _run_accounts(url: str, run_id: str) -> dict[str, str]:
    """Legacy account number → billing account id, for the run's accounts in the target."""
    engine = create_engine(url, read_only=True)
    try:
        with translate_errors(url, "reading accounts", TargetError), engine.connect() as conn:
            rows = conn.execute(
                sa.select(BA.c.legacy_account_no, BA.c.billing_account_id).where(
                    BA.c.run_id == run_id
                )
            ).all()
    finally:
        engine.dispose()
    return {str(r[0]): str(r[1]) for r in rows}


def _events(config: Config, run_id: str, cutoff: datetime) -> list[Event]:
    profile = load_profile(config.resolve(config.source.profile))
    url = config.source_url()
    queries = {
        "charges": ("charge_id", "rated_at", "kind"),
        "payments": ("payment_id", "received_at", "channel"),
    }
    found = []
    engine = create_engine(url, read_only=True)
    try:
        with translate_errors(url, "reading the delta", SourceError), engine.connect() as conn:
            for entity, (key, arrival, kind) in queries.items():
                sql = (
                    f"SELECT {key} AS k, account_no, {kind} AS kind, amount, currency, "
                    f"{arrival} AS arrived FROM ({profile.query(entity).sql}) AS e "
                    f"WHERE e.{arrival} > :cutoff"
                )
                for row in conn.execute(sa.text(sql), {"cutoff": cutoff}).all():
                    found.append(_event(run_id, entity, row))
    finally:
        engine.dispose()
    return found


def _event(run_id: str, entity: str, row: Any) -> Event:
    currency = str(row.currency)
    converted = to_minor([row.amount], CURRENCY_EXPONENTS.get(currency, 2))
    if not converted.valid[0]:
        raise InputError(
            f"{entity} {row.k}: amount {row.amount!r} is not exact in {currency}",
            hint="correct it in legacy; the delta never rounds an amount",
        )
    arrived = row.arrived
    if not isinstance(arrived, datetime):
        arrived = datetime.fromisoformat(str(arrived))
    key = f"delta:{run_id}:{entity}:{row.k}"
    return Event(entity, str(row.k), str(row.account_no), str(row.kind or ""),
                 int(converted.minor[0]), currency, arrived, key)  # fmt: skip


def _write_events(path: Path, events: list[Event]) -> None:
    columns = {name: [getattr(e, name) for e in events] for name in EVENTS_SCHEMA.names}
    with replacing(path) as temporary:  # a killed delta never leaves half a file
        pq.write_table(pa.table(columns, schema=EVENTS_SCHEMA), temporary)


def _replay(
    config: Config, url: str, run_id: str, accounts: dict[str, str], events: list[Event]
) -> DeltaResult:
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"billmig:{config.workspace.namespace}")
    created: dict[str, int] = defaultdict(int)
    removed: dict[str, int] = defaultdict(int)
    engine = create_engine(url)
    try:
        with translate_errors(url, "replaying the delta", TargetError), engine.begin() as conn:
            done = set(conn.execute(
                sa.select(ACTION.c.idempotency_key).where(
                    ACTION.c.idempotency_key.like(f"delta:{run_id}:%"))).scalars())  # fmt: skip
            todo = [e for e in events if e.idempotency_key not in done]
            ids = {accounts[e.account_no] for e in todo}
            states = _states(conn, ids)
            before = {i: s.net for i, s in states.items()}
            for event in todo:
                state = states[accounts[event.account_no]]
                _apply(conn, state, event, run_id, namespace, created, removed)
            mains = [{"bucket": s.bucket_id, "amount": s.main_minor}
                     for s in states.values() if s.bucket_id is not None]  # fmt: skip
            if mains:
                conn.execute(
                    sa.update(BUCKET)
                    .where(BUCKET.c.bucket_id == sa.bindparam("bucket"))
                    .values(amount_minor=sa.bindparam("amount")),
                    mains,
                )
            problems = _check(conn, run_id, events, accounts, todo, before)
    finally:
        engine.dispose()
    money: dict[str, dict[str, int]] = {}
    for event in events:
        entry = money.setdefault(event.currency, {"charges_minor": 0, "payments_minor": 0})
        entry[f"{event.entity}_minor"] += event.amount_minor
    return DeltaResult(run_id, mask_url(url), len(events), len(todo), len(events) - len(todo),
                       dict(created), dict(removed), not problems, tuple(problems),
                       money)  # fmt: skip


IN_LIST = 5_000
"""Account ids per IN list (SQLite allows 32 766 parameters a statement)."""


def _states(conn: sa.Connection, ids: set[str]) -> dict[str, AccountState]:
    """Main bucket and open debts of the accounts, read in a few grouped queries."""
    states: dict[str, AccountState] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), IN_LIST):
        _read_states(conn, ordered[start : start + IN_LIST], states)
    return states


def _read_states(conn: sa.Connection, ids: list[str], states: dict[str, AccountState]) -> None:
    for account_id, currency in conn.execute(
        sa.select(BA.c.billing_account_id, BA.c.currency).where(BA.c.billing_account_id.in_(ids))
    ).all():
        states[account_id] = AccountState(account_id, currency, None, 0)
    for bucket_id, account_id, amount in conn.execute(
        sa.select(BUCKET.c.bucket_id, BUCKET.c.billing_account_id, BUCKET.c.amount_minor).where(
            BUCKET.c.billing_account_id.in_(ids), BUCKET.c.bucket_type == "main"
        )
    ).all():
        states[account_id].bucket_id, states[account_id].main_minor = bucket_id, int(amount)
    for debt_id, account_id, amount in conn.execute(
        sa.select(DEBT.c.debt_id, DEBT.c.billing_account_id, DEBT.c.amount_minor)
        .where(DEBT.c.billing_account_id.in_(ids))
        .order_by(DEBT.c.aged_from, DEBT.c.debt_id)
    ).all():
        states[account_id].debts.append((debt_id, int(amount)))


def _apply(
    conn: sa.Connection,
    state: AccountState,
    event: Event,
    run_id: str,
    namespace: uuid.UUID,
    created: dict[str, int],
    removed: dict[str, int],
) -> None:
    if event.entity == "charges":
        taken = min(max(state.main_minor, 0), event.amount_minor)
        state.main_minor -= taken
        rest = event.amount_minor - taken
        if rest > 0:
            debt_id = str(uuid.uuid5(namespace, f"debt:{event.idempotency_key}"))
            origin = "roaming" if event.kind == "roaming" else "delayed_charge"
            conn.execute(DEBT.insert().values(
                debt_id=debt_id, billing_account_id=state.billing_account_id, origin=origin,
                amount_minor=rest, currency=event.currency, aged_from=event.arrived_at.date(),
                legacy_key=f"charge:{event.legacy_key}", run_id=run_id))  # fmt: skip
            state.debts.append((debt_id, rest))
            created["debt_item"] += 1
        kind = "delta_charge"
    else:
        left = event.amount_minor
        while left and state.debts:
            debt_id, owed = state.debts[0]
            paid = min(owed, left)
            left -= paid
            if paid == owed:
                conn.execute(sa.delete(DEBT).where(DEBT.c.debt_id == debt_id))
                state.debts.pop(0)
                removed["debt_item"] += 1
            else:
                conn.execute(sa.update(DEBT).where(DEBT.c.debt_id == debt_id)
                             .values(amount_minor=owed - paid))  # fmt: skip
                state.debts[0] = (debt_id, owed - paid)
        state.main_minor += left
        kind = "delta_payment"
    conn.execute(ACTION.insert().values(
        action_id=str(uuid.uuid5(namespace, event.idempotency_key)),
        billing_account_id=state.billing_account_id, kind=kind,
        amount_minor=event.amount_minor, currency=event.currency,
        reason_code=f"delta {event.entity[:-1]} {event.kind}"[:64],
        idempotency_key=event.idempotency_key, run_id=run_id))  # fmt: skip
    created["balance_action"] += 1


def _check(
    conn: sa.Connection,
    run_id: str,
    events: list[Event],
    accounts: dict[str, str],
    todo: list[Event],
    before: dict[str, int],
) -> list[str]:
    """Every event has its action; every touched account's net moved by its events."""
    recorded = set(conn.execute(
        sa.select(ACTION.c.idempotency_key).where(
            ACTION.c.idempotency_key.like(f"delta:{run_id}:%"))).scalars())  # fmt: skip
    problems = [f"{e.entity} {e.legacy_key} has no action" for e in events
                if e.idempotency_key not in recorded]  # fmt: skip
    moved: dict[str, int] = defaultdict(int)
    for event in todo:
        moved[accounts[event.account_no]] += event.signed
    now = {i: state.net for i, state in _states(conn, set(moved)).items()}  # re-read, in bulk
    for account_id, change in moved.items():
        if now[account_id] - before[account_id] != change:
            problems.append(
                f"account {account_id}: net moved {now[account_id] - before[account_id]}, "
                f"events {change}"
            )
    return problems
