"""``billmig compensate``: outage compensation, incident refunds and bonus grants (SPEC §11).

Reads the live products and their offerings from the target (scope: all, a region, or a list
of accounts), the charges and the subscribers' languages through the source profile's
``charges`` and ``lines`` entities (the reference shape, so the same rules run on the new
platform's usage data), checks that every in-scope plan falls into exactly one band of each
``daily_fee_percent`` rule, computes the credits, and writes
``runs/compensation-<incident>/``:

* ``compensation/actions.csv`` (every credit: rule, band, account, line, amount or units,
  idempotency key), ``sms.csv`` (each subscriber's text in their language, never sent),
  ``gaps.csv`` (``RULE_GAP``: plans in no band or in two), ``totals.json`` (by rule and band);
* ``signoff/manifest.json``: the hashes of all of it and of the rule file, so
  ``billmig verify compensation-<incident>`` checks the pack.

With no gap, the credits become ``balance_action`` rows in the target, inserted only where
their idempotency key is absent: a second run credits nothing and says so. With a gap nothing
is applied (exit 1) until the rule file decides those plans.
"""

from __future__ import annotations

import csv
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from migrate.core.config import Config
from migrate.core.db import create_engine, translate_errors
from migrate.core.errors import EXIT_CHECKS_FAILED, EXIT_OK, InputError, SourceError, TargetError
from migrate.core.ledger import run_phase
from migrate.core.legacy_schema import CURRENCY_EXPONENTS
from migrate.core.manifest import write_json
from migrate.core.progress import SILENT, Progress
from migrate.core.rendering import TableData
from migrate.core.runs import PhaseFiles, RunDir, RunsFolder
from migrate.core.target_lock import target_lock, workspace_of

if TYPE_CHECKING:
    from validate.signing import SigningKey
from migrate.core.target_schema import METADATA
from migrate.extract.profiles import load_profile
from migrate.money.amounts import to_minor
from migrate.ops.compensation.compute import (
    Charge,
    Credit,
    Gap,
    Subscriber,
    bonus_credits,
    daily_fee_credits,
    refund_credits,
)
from migrate.ops.compensation.rules import Offering, RuleFile, load_rules

ACTION = METADATA.tables["balance_action"]
BA = METADATA.tables["billing_account"]
PRODUCT = METADATA.tables["product"]
OFFERING = METADATA.tables["product_offering"]


@dataclass(frozen=True)
class Scope:
    """Which subscribers an incident touched."""

    region: str | None = None
    accounts: frozenset[str] | None = None

    def describe(self) -> str:
        """For the report."""
        if self.accounts is not None:
            return f"{len(self.accounts)} listed account(s)"
        return f"region {self.region}" if self.region else "all subscribers"


@dataclass(frozen=True)
class CompensationResult:
    """What ``compensate`` computed and applied."""

    incident: str
    title: str
    directory: Path
    credits: tuple[Credit, ...]
    gaps: tuple[Gap, ...]
    applied: int
    already: int
    manifest_sha256: str

    @property
    def exit_code(self) -> int:
        """1 when a plan fell into no band or two (nothing applied), else 0."""
        return EXIT_CHECKS_FAILED if self.gaps else EXIT_OK

    def totals(self) -> list[dict[str, Any]]:
        """Credits per rule, band and currency/unit."""
        return totals(self.credits)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "incident": self.incident,
            "title": self.title,
            "directory": str(self.directory),
            "credits": len(self.credits),
            "applied_now": self.applied,
            "already_applied": self.already,
            "totals": self.totals(),
            "rule_gaps": [g.__dict__ for g in self.gaps],
            "manifest_sha256": self.manifest_sha256,
        }

    def tables(self) -> list[TableData]:
        """Totals by rule and band, gaps, and what was applied."""
        if self.gaps:
            footer = "RULE_GAP: nothing applied; decide these plans in the rule file and rerun"
        elif self.applied == 0 and self.already:
            footer = f"no new action: all {self.already} credit(s) were applied by an earlier run"
        else:
            footer = f"{self.applied} balance action(s) applied, {self.already} already there"
        out = [
            TableData(
                title=f"compensate {self.incident}: {self.title}",
                headers=("rule", "band", "currency/unit", "credits #", "minor #", "units #"),
                rows=[tuple(t.values()) for t in self.totals()] or [("no credit", "", "", 0, 0, 0)],
                footer=f"{footer}; pack in {self.directory}",
            )
        ]
        if self.gaps:
            out.append(
                TableData(
                    title="RULE_GAP: plans in scope that fall into no band or into several",
                    headers=(
                        "rule",
                        "offering",
                        "kind",
                        "data MB",
                        "video",
                        "bands",
                        "subscribers #",
                    ),
                    rows=[
                        (
                            g.rule,
                            g.offering,
                            g.kind,
                            g.data_mb,
                            g.has_video,
                            ", ".join(g.bands) or "none",
                            g.subscribers,
                        )
                        for g in self.gaps
                    ],
                )
            )
        return out


def totals(credits: tuple[Credit, ...] | list[Credit]) -> list[dict[str, Any]]:
    """Credits per rule, band and currency (or ``units`` for grants)."""
    grouped: dict[tuple[str, str, str], list[Credit]] = defaultdict(list)
    for credit in credits:
        grouped[(credit.rule, credit.band, credit.currency or "units")].append(credit)
    return [
        {"rule": rule, "band": band, "currency_or_unit": unit, "credits": len(items),
         "amount_minor": sum(c.amount_minor or 0 for c in items),
         "amount_units": sum(c.amount_units or 0 for c in items)}
        for (rule, band, unit), items in sorted(grouped.items())
    ]  # fmt: skip


def run_compensate(
    config: Config,
    *,
    rules: Path,
    incident: str,
    start: date,
    end: date,
    scope: Scope = Scope(),
    signer: str | None = None,
    progress: Progress = SILENT,
) -> CompensationResult:
    """Compute an incident's credits, apply them once, and write the signed pack.

    ``signer`` is the builder who signs the pack (see :func:`validate.signing.signing_key`);
    the key is found before anything is credited.

    Raises:
        InputError: a bad rule file, an empty period, no builder key to sign with.
        TargetError / SourceError: a database cannot be read or written.
    """
    from validate.signing import BUILDER, load_registry, signing_key

    if end < start:
        raise InputError(f"the period ends ({end}) before it starts ({start})")
    out = RunsFolder.of(config).compensation(incident)  # a bad incident id stops here
    rule_file = load_rules(rules)
    signing = signing_key(config, load_registry(config), BUILDER, signer)
    return run_phase(
        config,
        COMPENSATE,
        out.run_id,
        lambda: _compensate(config, out, rule_file, signing, incident, start, end, scope, progress),
    )


COMPENSATE = PhaseFiles(
    "compensate",
    inputs=lambda run: (),
    output=lambda run: run.signoff.manifest,
)
"""Compensate holds the workspace lock and leaves its signed pack as evidence in the ledger;
its run id is ``compensation-<incident>``."""


COMPENSATE_STEPS = ("subscribers read", "credits computed", "credits applied", "pack signed")
"""The steps of compensate, as its progress bar counts them."""


def _compensate(
    config: Config, out: RunDir, rule_file: RuleFile, signing: SigningKey, incident: str,
    start: date, end: date, scope: Scope, progress: Progress,
) -> CompensationResult:  # fmt: skip
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    url = config.target_url()
    with progress.task("compensate: steps", len(COMPENSATE_STEPS), unit="steps") as steps:
        subscribers = _subscribers(config, url, scope, rule_file.languages[0])
        steps.advance(1)
        credits, gaps = _credits(config, rule_file, incident, subscribers, days)
        steps.advance(1)
        applied, already = (0, 0) if gaps else _apply(config, url, incident, credits)
        steps.advance(1)
        digest = _write_pack(config, out, signing, rule_file, credits, gaps, start, end, scope)
        steps.advance(1)
    return CompensationResult(
        incident, rule_file.title, out.path, tuple(credits), tuple(gaps), applied, already, digest
    )


def _credits(
    config: Config, rule_file: RuleFile, incident: str, subscribers: list[Subscriber],
    days: list[date],
) -> tuple[list[Credit], list[Gap]]:  # fmt: skip
    default = rule_file.languages[0]
    credits: list[Credit] = []
    gaps: list[Gap] = []
    charges: list[Charge] | None = None
    for rule in rule_file.rules:
        if rule.kind == "daily_fee_percent":
            found, missing = daily_fee_credits(rule, incident, subscribers, days, default)
            credits.extend(found)
            gaps.extend(missing)
        elif rule.kind == "refund_charges":
            accounts = {s.account_no: s for s in subscribers if s.fee_minor > 0}
            if charges is None:
                charges = _charges(config, days, set(accounts))
            credits.extend(refund_credits(rule, incident, accounts, charges, days, default))
        else:
            credits.extend(bonus_credits(rule, incident, subscribers, default))
    return credits, gaps


# -- reading ---------------------------------------------------------------------------------


def read_accounts(path: Path) -> frozenset[str]:
    """Account numbers listed one per line (blank lines and # comments ignored).

    Raises:
        InputError: the file cannot be read.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", hint="check the path") from exc
    return frozenset(s for line in lines if (s := line.split("#")[0].strip()))


def _subscribers(config: Config, url: str, scope: Scope, default: str) -> list[Subscriber]:
    """Live products of the target in scope, with their offering and the line's language."""
    query = (
        sa.select(
            BA.c.legacy_account_no, BA.c.billing_account_id, BA.c.region,
            PRODUCT.c.legacy_subscription_id, PRODUCT.c.msisdn, OFFERING.c.name, OFFERING.c.kind,
            OFFERING.c.data_mb, OFFERING.c.has_video, OFFERING.c.monthly_fee_minor,
            OFFERING.c.currency,
        )
        .select_from(
            PRODUCT.join(BA, BA.c.billing_account_id == PRODUCT.c.billing_account_id)
            .join(OFFERING, OFFERING.c.offering_id == PRODUCT.c.offering_id)
        )
        .where(PRODUCT.c.status.in_(("active", "suspended")), BA.c.state != "closed")
        .order_by(BA.c.legacy_account_no, PRODUCT.c.legacy_subscription_id)
    )  # fmt: skip
    if scope.region:
        query = query.where(BA.c.region == scope.region)
    engine = create_engine(url, read_only=True)
    try:
        with translate_errors(url, "reading products", TargetError), engine.connect() as conn:
            rows = conn.execute(query).all()
    finally:
        engine.dispose()
    in_scope = [r for r in rows if scope.accounts is None or r[0] in scope.accounts]
    languages = _languages(config, {_digits(r[4]) for r in in_scope})
    return [
        Subscriber(
            account_no=r[0], billing_account_id=r[1], region=r[2], product_key=r[3], msisdn=r[4],
            offering=Offering(r[5], r[6], r[7], bool(r[8])), fee_minor=int(r[9] or 0),
            currency=r[10], language=languages.get(_digits(r[4]), default),
        )
        for r in in_scope
    ]  # fmt: skip


def _digits(msisdn: str | None) -> str:
    return "".join(ch for ch in msisdn or "" if ch.isdigit())[-10:]


BATCH_ROWS = 100_000


def _source_batches(
    config: Config, entity: str, where: str, params: dict[str, Any]
) -> Iterator[Sequence[sa.RowMapping]]:
    """Rows of a profile entity from the configured source, streamed in batches."""
    if not config.source.url:
        return
    profile = load_profile(config.resolve(config.source.profile))
    sql = sa.text(f"SELECT * FROM ({profile.query(entity).sql}) AS e {where}")
    url = config.source.url
    engine = create_engine(url, read_only=True)
    try:
        with translate_errors(url, f"reading {entity}", SourceError), engine.connect() as conn:
            streamed = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS)
            yield from streamed.execute(sql, params).mappings().partitions()
    finally:
        engine.dispose()


def _languages(config: Config, numbers: set[str]) -> dict[str, str]:
    """Last ten digits of each wanted line's number → the subscriber's language."""
    found = {}
    for batch in _source_batches(config, "lines", "", {}):
        for row in batch:
            digits = _digits(row["msisdn"])
            if digits in numbers and row["language"]:
                found[digits] = str(row["language"])
    return found


def _charges(config: Config, days: list[date], accounts: set[str]) -> list[Charge]:
    """The period's charges of the accounts in scope, summed per account, kind, day, currency.

    Streamed in batches; each amount is converted exactly to minor units before it is added.
    """
    if not config.source.url:
        raise InputError(
            "refund_charges needs the charges: no source database configured",
            hint="set BILLMIG_SOURCE_URL to the platform whose charges the profile reads",
        )
    start = datetime.combine(days[0], time())
    end = datetime.combine(days[-1] + timedelta(days=1), time())
    sums: dict[tuple[str, str, date, str], int] = defaultdict(int)
    for batch in _source_batches(
        config, "charges", "WHERE e.occurred_at >= :start AND e.occurred_at < :end",
        {"start": start, "end": end},
    ):  # fmt: skip
        rows = [row for row in batch if str(row["account_no"]) in accounts]
        currencies = [str(row["currency"]) for row in rows]
        exponents = np.array([CURRENCY_EXPONENTS.get(c, 2) for c in currencies], dtype=np.int64)
        converted = to_minor([row["amount"] for row in rows], exponents)
        for row, currency, minor, valid in zip(
            rows, currencies, converted.minor.tolist(), converted.valid.tolist(), strict=True
        ):
            if not valid:
                raise InputError(
                    f"charge {row['charge_id']}: amount {row['amount']!r} is not exact in "
                    f"{currency}",
                    hint="correct the charge at the source; compensation never rounds an input",
                )
            occurred = row["occurred_at"]
            day = (
                occurred.date()
                if isinstance(occurred, datetime)
                else datetime.fromisoformat(str(occurred)).date()
            )
            sums[(str(row["account_no"]), str(row["kind"]), day, currency)] += int(minor)
    return [Charge(a, k, d, c, amount) for (a, k, d, c), amount in sorted(sums.items())]


# -- applying and writing --------------------------------------------------------------------


def _apply(config: Config, url: str, incident: str, credits: list[Credit]) -> tuple[int, int]:
    """Insert the balance actions whose idempotency key is absent; returns (new, present)."""
    if not credits:
        return 0, 0
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"billmig:{config.workspace.namespace}")
    engine = create_engine(url)
    holder = f"compensation-{incident}"
    try:
        with (
            target_lock(engine, COMPENSATE.name, holder, workspace_of(config)),
            translate_errors(url, "applying credits", TargetError),
            engine.begin() as conn,
        ):
            present = set(
                conn.execute(
                    sa.select(ACTION.c.idempotency_key).where(
                        ACTION.c.idempotency_key.like(f"compensation:{incident}:%")
                    )
                ).scalars()
            )
            new = [
                {"action_id": str(uuid.uuid5(namespace, c.idempotency_key)),
                 "billing_account_id": c.billing_account_id, "kind": c.kind,
                 "amount_minor": c.amount_minor, "amount_units": c.amount_units,
                 "currency": c.currency, "reason_code": c.rule[:64],
                 "idempotency_key": c.idempotency_key, "run_id": holder}
                for c in credits if c.idempotency_key not in present
            ]  # fmt: skip
            if new:
                conn.execute(ACTION.insert(), new)
    finally:
        engine.dispose()
    return len(new), len(credits) - len(new)


def _write_pack(
    config: Config, out: RunDir, signing: SigningKey, rule_file: RuleFile, credits: list[Credit],
    gaps: list[Gap], start: date, end: date, scope: Scope,
) -> str:  # fmt: skip
    from validate.masking import neutralise
    from validate.pack import write_manifest

    folder = out.compensation
    folder.path.mkdir(parents=True, exist_ok=True)

    def table(path: Path, header: list[str], rows: list[list[object]]) -> None:
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows([["" if v is None else neutralise(v) for v in row] for row in rows])

    table(folder.actions,
          ["idempotency_key", "rule", "band", "kind", "account_no", "line", "amount_minor",
           "amount_units", "currency"],
          [[c.idempotency_key, c.rule, c.band, c.kind, c.account_no, c.product_key,
            c.amount_minor, c.amount_units, c.currency] for c in credits])  # fmt: skip
    table(folder.sms, ["account_no", "line", "language", "text"],
          [[c.account_no, c.product_key, c.language, c.text] for c in credits])  # fmt: skip
    table(folder.gaps, ["reason_code", "rule", "offering", "kind", "data_mb", "has_video",
                       "bands_matched", "subscribers"],
          [["RULE_GAP", g.rule, g.offering, g.kind, g.data_mb, g.has_video,
            "; ".join(g.bands), g.subscribers] for g in gaps])  # fmt: skip
    incident = out.run_id.removeprefix("compensation-")
    write_json(
        folder.totals,
        {"incident": incident, "title": rule_file.title, "period": [str(start), str(end)],
         "scope": scope.describe(), "rule_file_sha256": rule_file.sha256,
         "totals": totals(credits), "rule_gaps": len(gaps), "credits": len(credits)},
    )  # fmt: skip
    _, digest = write_manifest(
        config, out, masked=True, signing=signing, previous=None, rules=rule_file.path
    )
    return digest


__all__ = ["CompensationResult", "Scope", "read_accounts", "run_compensate"]
