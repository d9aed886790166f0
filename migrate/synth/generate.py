"""Vectorised generation of synthetic legacy billing data, one chunk of accounts at a time.

Clean data is clean by construction (unique IINs with valid check digits, unique MSISDNs,
balances on the right side of every threshold), and each anomaly is planted on its own accounts,
so that a detector's findings can be compared with :attr:`Chunk.planted` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from migrate.core.reasons import ReasonCode
from migrate.synth import catalogue as cat

Array = npt.NDArray[Any]
SECOND = np.timedelta64(1, "s")
DAY = np.timedelta64(86400, "s")

DEBT_THRESHOLD_MINOR = 500
"""Map's default small-debt threshold (5 KZT): clean debts are at least this, planted ones below."""
"""Map's default roaming look-back: planted roaming debts are covered by charges inside it."""

PLANTED_CODES: tuple[ReasonCode, ...] = (
    ReasonCode.AMOUNT_FLOAT_ARTEFACT,
    ReasonCode.AMOUNT_PRECISION,
    ReasonCode.PREPAID_NEGATIVE_BALANCE,
    ReasonCode.ROAMING_DEBT,
    ReasonCode.CREDIT_LIMIT_EXCEEDED,
    ReasonCode.CREDIT_LIMIT_INVALID,
    ReasonCode.TARIFF_UNMAPPED,
    ReasonCode.CHARGED_AFTER_CANCELLATION,
    ReasonCode.UNCONSENTED_LINE,
    ReasonCode.INVALID_NATIONAL_ID,
    ReasonCode.DUPLICATE_CLIENT,
    ReasonCode.INVALID_MSISDN,
    ReasonCode.DUPLICATE_MSISDN,
    ReasonCode.ORPHAN_ROW,
    ReasonCode.PAYMENT_IN_TRANSIT,
    ReasonCode.DEBT_BELOW_THRESHOLD,
    ReasonCode.REFUND_LIABILITY,
    ReasonCode.BONUS_EXPIRED,
    ReasonCode.DATE_INCONSISTENT,
    ReasonCode.ENCODING_DAMAGE,
)
"""Every reason code ``synth`` plants in the snapshot (FREEZE_BREACH needs window activity)."""

_PREPAID_CODES = {
    ReasonCode.AMOUNT_FLOAT_ARTEFACT,
    ReasonCode.AMOUNT_PRECISION,
    ReasonCode.PREPAID_NEGATIVE_BALANCE,
    ReasonCode.ROAMING_DEBT,
}
_POSTPAID_CODES = {ReasonCode.CREDIT_LIMIT_EXCEEDED, ReasonCode.DEBT_BELOW_THRESHOLD}


@dataclass(frozen=True)
class SynthOptions:
    """What to generate."""

    accounts: int
    seed: int = 42
    anomaly_rate: float = 0.002
    """Share of accounts carrying each planted anomaly (each code at least once when > 0)."""
    as_of: datetime = datetime(2016, 7, 1)
    """The snapshot moment (operator local time): everything generated reached legacy before it."""
    chunk_accounts: int = 50_000
    """Accounts per generated chunk; fixed so a seed always gives the same data."""
    window_activity: bool = False
    """Also generate what reaches legacy after ``as_of`` (:mod:`migrate.synth.window`)."""


@dataclass
class Chunk:
    """One chunk of generated legacy rows and what was planted in it."""

    tables: dict[str, dict[str, Array]]
    planted: dict[ReasonCode, list[tuple[str, str]]] = field(default_factory=dict)

    def plant(self, code: ReasonCode, entity: str, keys: Array) -> None:
        """Record ``keys`` of ``entity`` as carrying ``code``."""
        self.planted.setdefault(code, []).extend((entity, str(k)) for k in keys.tolist())


class Generator:
    """Generates consecutive chunks; counters for lines and events carry across chunks."""

    def __init__(self, options: SynthOptions) -> None:
        self.options = options
        self.as_of = np.datetime64(options.as_of, "s")
        self.next_line = 0
        self.next_msisdn = {"kcell": 0, "activ": 0}
        self.next_id = {"subscriptions": 1, "payments": 1, "charges": 1, "orders": 1, "bonuses": 1}
        self.tariff_fee = {t.code: t.monthly_fee for t in cat.TARIFFS}
        # The billing month the snapshot closes: as_of 2016-07-01 00:00 → June 2016.
        period_end = options.as_of.date() - timedelta(days=1)
        self.period_end = np.datetime64(period_end, "D")
        self.period_start = np.datetime64(period_end.replace(day=1), "D")
        self.previous_period_end = self.period_start - np.timedelta64(1, "D")
        self.days_in_period = period_end.day

    def chunk(self, index: int, start: int, count: int) -> Chunk:
        """Generate accounts ``start`` .. ``start + count - 1`` and everything hanging off them."""
        rng = np.random.default_rng([self.options.seed, index])
        codes = self._assign_codes(rng, index, count)
        accounts = self._accounts(rng, start, count, codes)
        chunk = Chunk(tables={"accounts": accounts})
        chunk.tables["clients"] = self._clients(rng, start, accounts, codes, chunk)
        lines, first_line = self._lines(rng, accounts, codes, chunk)
        subscriptions = self._subscriptions(rng, lines, first_line, codes, chunk)
        chunk.tables["subscriptions"] = subscriptions
        chunk.tables["lines"] = _append(lines, self._orphan_lines(accounts, codes, chunk))
        chunk.tables["payments"] = self._payments(rng, accounts, codes, chunk)
        chunk.tables["charges"] = self._charges(
            rng, accounts, lines, first_line, codes, subscriptions
        )
        chunk.tables["orders"] = self._orders(rng, accounts, lines, first_line)
        chunk.tables["bonuses"] = self._bonuses(rng, accounts, codes, chunk)
        self._plant_account_codes(accounts, codes, chunk)
        return chunk

    # -- anomaly assignment ------------------------------------------------------------------

    def _assign_codes(self, rng: np.random.Generator, index: int, count: int) -> Array:
        """Per account: index into PLANTED_CODES, or -1 for a clean account (disjoint sets)."""
        rate = self.options.anomaly_rate
        k = len(PLANTED_CODES)
        draws = rng.random(count)
        codes = np.full(count, -1, dtype=np.int64)
        if rate > 0:
            slot = np.floor(draws / rate).astype(np.int64)
            planted = slot < k
            codes[planted] = slot[planted]
            if index == 0:
                # Guarantee every code at least once, even in a tiny demo.
                forced = np.arange(k) * 3 + 1
                forced = forced[forced < count]
                codes[forced] = np.arange(len(forced))
                # Orphans come in three variants (by account position mod 3): plant each once.
                orphan = PLANTED_CODES.index(ReasonCode.ORPHAN_ROW)
                extra = np.array([k * 3 + 3, k * 3 + 5])
                codes[extra[extra < count]] = orphan
        return codes

    def _is(self, codes: Array, code: ReasonCode) -> npt.NDArray[np.bool_]:
        return np.asarray(codes == PLANTED_CODES.index(code))

    def _plant_account_codes(self, accounts: dict[str, Array], codes: Array, chunk: Chunk) -> None:
        for code in (
            ReasonCode.AMOUNT_FLOAT_ARTEFACT,
            ReasonCode.AMOUNT_PRECISION,
            ReasonCode.PREPAID_NEGATIVE_BALANCE,
            ReasonCode.ROAMING_DEBT,
            ReasonCode.CREDIT_LIMIT_EXCEEDED,
            ReasonCode.CREDIT_LIMIT_INVALID,
            ReasonCode.DEBT_BELOW_THRESHOLD,
            ReasonCode.REFUND_LIABILITY,
        ):
            chunk.plant(code, "accounts", accounts["account_no"][self._is(codes, code)])

    # -- accounts and clients ----------------------------------------------------------------

    def _accounts(
        self, rng: np.random.Generator, start: int, n: int, codes: Array
    ) -> dict[str, Array]:
        idx = start + np.arange(n, dtype=np.int64)
        planted = codes >= 0
        corporate = (rng.random(n) < 0.03) & ~planted
        brand = np.where(rng.random(n) < 0.58, "kcell", "activ")
        postpaid = corporate | (rng.random(n) < 0.05)
        status = _choice(rng, ("active", "suspended", "closed"), (0.9, 0.04, 0.06), n)
        status[planted] = "active"
        prepaid_codes = np.isin(codes, [PLANTED_CODES.index(c) for c in _PREPAID_CODES])
        postpaid_codes = np.isin(codes, [PLANTED_CODES.index(c) for c in _POSTPAID_CODES])
        postpaid[prepaid_codes] = False
        postpaid[postpaid_codes] = True
        limit_tenge = _choice(rng, (10_000, 20_000, 30_000, 50_000, 100_000), None, n)
        limit_tenge = np.where(corporate, limit_tenge * 4, limit_tenge)
        limit = np.where(postpaid, limit_tenge * 100, -1)
        balance = self._clean_balances(rng, n, postpaid, limit, status)

        def is_(code: ReasonCode) -> npt.NDArray[np.bool_]:
            return self._is(codes, code)

        neg = is_(ReasonCode.PREPAID_NEGATIVE_BALANCE) | is_(ReasonCode.ROAMING_DEBT)
        balance[neg] = -rng.integers(500, 3000, n)[neg] * 100 - rng.integers(0, 100, n)[neg]
        exceeded = is_(ReasonCode.CREDIT_LIMIT_EXCEEDED)
        balance[exceeded] = -(limit[exceeded] + rng.integers(100, 5000, n)[exceeded] * 100)
        small = is_(ReasonCode.DEBT_BELOW_THRESHOLD)
        balance[small] = -rng.integers(1, DEBT_THRESHOLD_MINOR, n)[small]
        refund = is_(ReasonCode.REFUND_LIABILITY)
        status[refund] = "closed"
        balance[refund] = rng.integers(100, 5000, n)[refund] * 100
        invalid_limit = is_(ReasonCode.CREDIT_LIMIT_INVALID)
        on_prepaid = invalid_limit & (idx % 2 == 0)
        on_postpaid = invalid_limit & (idx % 2 == 1)
        postpaid[on_prepaid] = False
        limit[on_prepaid] = 2_000_000
        postpaid[on_postpaid] = True
        limit[on_postpaid] = np.where(idx[on_postpaid] % 4 == 1, -1, -500_000)
        balance[invalid_limit] = rng.integers(0, 5000, n)[invalid_limit] * 100

        artefact = is_(ReasonCode.AMOUNT_FLOAT_ARTEFACT)
        # Keep artefacts within 15 significant digits and 10 decimals, so a REAL (SQLite)
        # and a NUMERIC(22,10) (PostgreSQL, MariaDB) hold the very same value.
        balance[artefact] %= 10_000_000
        text = _format_minor(balance)
        text[artefact] = np.char.add(text[artefact].astype(str), "00000004")
        precise = is_(ReasonCode.AMOUNT_PRECISION)
        text[precise] = np.char.add(text[precise].astype(str), "5")

        opened = self.as_of - rng.integers(30, 3650, n) * DAY - rng.integers(0, 86400, n) * SECOND
        opened[planted] = np.minimum(opened[planted], self.as_of - 400 * DAY)
        closed_at = np.where(
            status == "closed",
            opened + _fraction_of(self.as_of - opened, rng.random(n)),
            np.datetime64("NaT", "s"),
        )
        limit_text = _format_minor(limit)
        limit_text[limit == -1] = None
        return {
            "account_no": (4_000_000_001 + idx).astype(str),
            "client_id": idx + 1,
            "brand": brand,
            "payment_type": np.where(postpaid, "credit", "advance"),
            "currency": np.full(n, "KZT"),
            "balance": text,
            "credit_limit": limit_text,
            "status": status,
            "opened_at": opened,
            "closed_at": closed_at,
            "region": _choice(rng, cat.REGIONS, cat.REGION_WEIGHTS, n),
            "_corporate": corporate,
            "_balance_minor": balance,
        }

    def _clean_balances(
        self,
        rng: np.random.Generator,
        n: int,
        postpaid: npt.NDArray[np.bool_],
        limit: Array,
        status: Array,
    ) -> npt.NDArray[np.int64]:
        """Balances that raise nothing: prepaid ≥ 0, postpaid debts between threshold and limit."""
        tenge = np.minimum(np.round(np.exp(rng.normal(7.0, 1.2, n))), 500_000).astype(np.int64)
        tiyn = np.where(rng.random(n) < 0.3, rng.integers(0, 100, n), 0)
        prepaid_balance = np.where(rng.random(n) < 0.1, 0, tenge * 100 + tiyn)
        owed = rng.random(n) < 0.6
        debt = DEBT_THRESHOLD_MINOR + (
            (np.maximum(limit, 0) * 0.9 - DEBT_THRESHOLD_MINOR) * rng.random(n)
        ).astype(np.int64)
        postpaid_balance = np.where(owed, -debt, rng.integers(0, 5000, n) * 100)
        balance = np.where(postpaid, postpaid_balance, prepaid_balance).astype(np.int64)
        balance[status == "closed"] = 0
        return balance

    def _clients(
        self,
        rng: np.random.Generator,
        start: int,
        accounts: dict[str, Array],
        codes: Array,
        chunk: Chunk,
    ) -> dict[str, Array]:
        n = len(accounts["account_no"])
        idx = start + np.arange(n, dtype=np.int64)
        corporate = accounts["_corporate"]
        male = rng.random(n) < 0.5
        names = _person_names(rng, male)
        names[corporate] = np.array(cat.COMPANY_NAMES)[rng.integers(0, len(cat.COMPANY_NAMES), n)][
            corporate
        ]
        national_id = np.where(corporate, _bins(idx), _iins(idx, male))
        invalid = self._is(codes, ReasonCode.INVALID_NATIONAL_ID)
        national_id[invalid] = _break_check_digit(national_id[invalid])
        damaged = self._is(codes, ReasonCode.ENCODING_DAMAGE)
        names[damaged] = [s.encode("utf-8").decode("latin-1") for s in names[damaged].tolist()]
        duplicate = self._is(codes, ReasonCode.DUPLICATE_CLIENT)
        # The earliest client survives a merge, so the partner must have a lower client id.
        partners = _earlier_partners(rng, (codes == -1) & ~corporate, duplicate)
        national_id[duplicate] = national_id[partners]
        names[duplicate] = names[partners]
        client_id = accounts["client_id"]
        chunk.plant(ReasonCode.INVALID_NATIONAL_ID, "clients", client_id[invalid])
        chunk.plant(ReasonCode.ENCODING_DAMAGE, "clients", client_id[damaged])
        chunk.plant(ReasonCode.DUPLICATE_CLIENT, "clients", client_id[duplicate])
        return {
            "client_id": client_id,
            "name": names,
            "national_id": national_id,
            "client_type": np.where(corporate, "corporate", "individual"),
            "created_at": accounts["opened_at"] - rng.integers(0, 30 * 86400, n) * SECOND,
        }

    # -- lines and subscriptions -------------------------------------------------------------

    def _lines(
        self, rng: np.random.Generator, accounts: dict[str, Array], codes: Array, chunk: Chunk
    ) -> tuple[dict[str, Array], npt.NDArray[np.int64]]:
        n = len(accounts["account_no"])
        corporate = accounts["_corporate"]
        postpaid = accounts["payment_type"] == "credit"
        extra = np.where(
            corporate, rng.integers(0, 5, n), np.where(postpaid, rng.integers(0, 2, n), 0)
        )
        per_account = 1 + extra
        owner = np.repeat(np.arange(n), per_account)
        first_line = np.concatenate(([0], np.cumsum(per_account)[:-1])).astype(np.int64)
        m = len(owner)
        brand = accounts["brand"][owner]
        serial = self.next_line + np.arange(m, dtype=np.int64)
        self.next_line += m
        account_status = accounts["status"][owner]
        status = np.where(
            account_status == "closed",
            "terminated",
            np.where(account_status == "suspended", "suspended", "active"),
        )
        status[(status == "active") & (rng.random(m) < 0.03)] = "terminated"
        refund = self._is(codes, ReasonCode.REFUND_LIABILITY)
        status[first_line[(codes >= 0) & ~refund]] = "active"
        activated = accounts["opened_at"][owner] + rng.integers(0, 30 * 86400, m) * SECOND
        activated = np.minimum(activated, self.as_of - DAY)
        terminated = np.where(
            status == "terminated",
            activated + _fraction_of(self.as_of - activated, rng.random(m)),
            np.datetime64("NaT", "s"),
        )
        closed = accounts["closed_at"][owner]
        terminated = np.where(account_status == "closed", closed, terminated)
        terminated = np.maximum(terminated, activated)
        channel = _choice(rng, ("shop", "dealer", "online"), (0.55, 0.3, 0.15), m)
        consent = _consent_refs(rng, channel, serial)
        lines: dict[str, Array] = {
            "iccid": np.char.add("8997010", _padded(serial, 13)),
            "msisdn": self._msisdns(rng, brand),
            "account_no": accounts["account_no"][owner],
            "status": status,
            "activated_at": activated,
            "terminated_at": terminated,
            "port_status": np.where(rng.random(m) < 0.03, "ported_in", "none").astype(object),
            "channel": channel,
            "dealer_id": _where_or_none(
                channel == "dealer", np.array(cat.DEALERS)[rng.integers(0, len(cat.DEALERS), m)]
            ),
            "consent_ref": consent,
            "language": _choice(rng, ("kk", "ru", "en"), (0.4, 0.55, 0.05), m),
            "_owner": owner,
            "_corporate": corporate[owner],
        }
        active_clean = (codes == -1) & (accounts["status"] == "active")
        self._plant_line_codes(rng, lines, first_line, codes, active_clean, chunk)
        return lines, first_line

    def _msisdns(self, rng: np.random.Generator, brand: Array) -> Array:
        """Unique numbers in each brand's ranges, written the ways legacy writes them."""
        return _msisdn_styles(rng, self._national_numbers(brand))

    def _msisdns_plain(self, brand: Array) -> Array:
        return np.char.add("7", self._national_numbers(brand).astype(str)).astype(object)

    def _national_numbers(self, brand: Array) -> Array:
        """10-digit national numbers: a bijection of a per-brand counter, so never repeated."""
        out = np.empty(len(brand), dtype=object)
        for name, prefixes in (("kcell", cat.KCELL_PREFIXES), ("activ", cat.ACTIV_PREFIXES)):
            mask = brand == name
            k = int(mask.sum())
            counter = self.next_msisdn[name] + np.arange(k, dtype=np.int64)
            self.next_msisdn[name] += k
            prefix = np.array(prefixes)[counter % len(prefixes)]
            number = (counter // len(prefixes) * 7_654_321 + 1_234_567) % 10_000_000
            out[mask] = np.char.add(prefix, _padded(number, 7))
        return out

    def _plant_line_codes(
        self,
        rng: np.random.Generator,
        lines: dict[str, Array],
        first_line: Array,
        codes: Array,
        active_clean: npt.NDArray[np.bool_],
        chunk: Chunk,
    ) -> None:
        def first(code: ReasonCode) -> Array:
            return first_line[self._is(codes, code)]

        unconsented = first(ReasonCode.UNCONSENTED_LINE)
        lines["channel"][unconsented] = "dealer"
        lines["dealer_id"][unconsented] = "D0013"
        lines["consent_ref"][unconsented] = None
        invalid = first(ReasonCode.INVALID_MSISDN)
        lines["msisdn"][invalid] = _invalid_msisdns(lines["iccid"][invalid])
        inconsistent = first(ReasonCode.DATE_INCONSISTENT)
        lines["status"][inconsistent] = "terminated"
        lines["terminated_at"][inconsistent] = lines["activated_at"][inconsistent] - 3 * DAY
        duplicate = first(ReasonCode.DUPLICATE_MSISDN)
        needs = self._is(codes, ReasonCode.DUPLICATE_MSISDN)
        partners = first_line[_clean_partners(rng, active_clean, needs)]
        partners_active = lines["status"][partners] == "active"
        lines["status"][partners] = "active"
        lines["terminated_at"][partners[~partners_active]] = np.datetime64("NaT", "s")
        lines["msisdn"][duplicate] = _restyle(lines["msisdn"][partners])
        iccid = lines["iccid"]
        chunk.plant(ReasonCode.UNCONSENTED_LINE, "lines", iccid[unconsented])
        chunk.plant(ReasonCode.INVALID_MSISDN, "lines", iccid[invalid])
        chunk.plant(ReasonCode.DATE_INCONSISTENT, "lines", iccid[inconsistent])
        pair = np.unique(np.r_[duplicate, partners])
        chunk.plant(ReasonCode.DUPLICATE_MSISDN, "lines", iccid[pair])

    def _subscriptions(
        self,
        rng: np.random.Generator,
        lines: dict[str, Array],
        first_line: Array,
        codes: Array,
        chunk: Chunk,
    ) -> dict[str, Array]:
        m = len(lines["iccid"])
        owner = lines["_owner"]
        tariff = self._draw_tariffs(rng, lines, codes)
        status = np.where(
            lines["status"] == "active",
            "active",
            np.where(lines["status"] == "suspended", "suspended", "ended"),
        )
        started = lines["activated_at"] + rng.integers(0, 3600, m) * SECOND
        ended = np.where(status == "ended", lines["terminated_at"], np.datetime64("NaT", "s"))
        ended = np.where(status == "ended", np.maximum(ended, started), ended)
        fee = np.array([self.tariff_fee[t] for t in tariff.tolist()], dtype=np.int64)
        month_end = self.period_end
        charged = np.where(rng.random(m) < 0.92, month_end, self.previous_period_end).astype(
            "datetime64[D]"
        )
        charged = np.where(fee == 0, month_end, charged)
        charged = np.where(status == "ended", ended.astype("datetime64[D]"), charged).astype(
            "datetime64[D]"
        )
        cancelled = np.full(m, np.datetime64("NaT", "s"))
        after_cancel = first_line[self._is(codes, ReasonCode.CHARGED_AFTER_CANCELLATION)]
        tariff[after_cancel] = "ALGA"
        charged[after_cancel] = month_end
        cancelled[after_cancel] = self.as_of - rng.integers(35, 60, len(after_cancel)) * DAY

        # Historic subscriptions: a tariff change some time ago ended the previous one.
        history = (rng.random(m) < 0.15) & (started < self.as_of - 60 * DAY)
        history[first_line[codes >= 0]] = False
        hist_idx = np.flatnonzero(history)
        h = len(hist_idx)
        change_at = started[hist_idx] + _fraction_of(
            self.as_of - 30 * DAY - started[hist_idx], rng.random(h)
        )
        hist_tariff = self._draw_tariffs(rng, lines, codes)[hist_idx]
        hist_tariff[hist_tariff == cat.UNMAPPED_TARIFF] = "KLASSIKA12"
        current_started = started.copy()
        current_started[hist_idx] = np.maximum(change_at, started[hist_idx])
        # A line terminated before its tariff change still ends its current subscription no
        # earlier than that subscription started (else the dates would contradict each other).
        ended = np.where(status == "ended", np.maximum(ended, current_started), ended)

        msisdn = np.concatenate([lines["msisdn"][hist_idx], lines["msisdn"]])
        sub = {
            "msisdn": msisdn,
            "tariff_code": np.concatenate([hist_tariff, tariff]),
            "started_at": np.concatenate([started[hist_idx], current_started]),
            "cancelled_at": np.concatenate([np.full(h, np.datetime64("NaT", "s")), cancelled]),
            "ended_at": np.concatenate([change_at, ended]),
            "fee_charged_through": np.concatenate([change_at.astype("datetime64[D]"), charged]),
            "status": np.concatenate([np.full(h, "ended"), status]),
            "_line": np.concatenate([hist_idx, np.arange(m)]),
        }
        # Orphan subscriptions: a number no line carries.
        orphan_owner = np.flatnonzero(self._orphans(codes, 1))
        sub = _append(
            sub,
            {
                "msisdn": np.char.add("7709", _padded(orphan_owner + 17, 7)),
                "tariff_code": np.full(len(orphan_owner), "ALGA"),
                "started_at": np.full(len(orphan_owner), self.as_of - 200 * DAY),
                "cancelled_at": np.full(len(orphan_owner), np.datetime64("NaT", "s")),
                "ended_at": np.full(len(orphan_owner), np.datetime64("NaT", "s")),
                "fee_charged_through": np.full(len(orphan_owner), month_end),
                "status": np.full(len(orphan_owner), "active"),
                "_line": np.full(len(orphan_owner), -1),
            },
        )
        total = len(sub["msisdn"])
        sub["subscription_id"] = self._ids("subscriptions", total)
        sub["_owner"] = np.where(sub["_line"] >= 0, owner[np.maximum(sub["_line"], 0)], -1)
        sub["_fee"] = np.array([self.tariff_fee[t] for t in sub["tariff_code"].tolist()])
        current = slice(h, h + m)
        sub_ids = sub["subscription_id"][current]
        unmapped = first_line[self._is(codes, ReasonCode.TARIFF_UNMAPPED)]
        chunk.plant(ReasonCode.TARIFF_UNMAPPED, "subscriptions", sub_ids[unmapped])
        chunk.plant(ReasonCode.CHARGED_AFTER_CANCELLATION, "subscriptions", sub_ids[after_cancel])
        chunk.plant(ReasonCode.ORPHAN_ROW, "subscriptions", sub["subscription_id"][h + m :])
        return sub

    def _draw_tariffs(
        self, rng: np.random.Generator, lines: dict[str, Array], codes: Array
    ) -> Array:
        m = len(lines["iccid"])
        prefix = np.array([s[-10:-7] for s in lines["msisdn"].tolist()])
        activ = np.isin(prefix, cat.ACTIV_PREFIXES)
        pools = {
            "kcell": [t for t in cat.TARIFFS if t.brand in ("kcell", "any")],
            "activ": [t for t in cat.TARIFFS if t.brand in ("activ", "any")],
        }
        out = np.empty(m, dtype=object)
        for name, mask in (("kcell", ~activ), ("activ", activ)):
            pool = pools[name]
            weights = np.array([t.weight for t in pool])
            out[mask] = _choice(
                rng, [t.code for t in pool], weights / weights.sum(), int(mask.sum())
            )
        owner = lines["_owner"]
        corporate_codes = [t.code for t in cat.TARIFFS if t.brand == "corp"]
        corp_lines = np.flatnonzero(lines["_corporate"])
        if len(corp_lines):
            out[corp_lines] = _choice(rng, corporate_codes, (0.5, 0.3, 0.2), len(corp_lines))
        unmapped_accounts = np.flatnonzero(self._is(codes, ReasonCode.TARIFF_UNMAPPED))
        first_of = np.searchsorted(owner, unmapped_accounts)
        out[first_of] = cat.UNMAPPED_TARIFF
        return out

    # -- money events ------------------------------------------------------------------------

    def _payments(
        self, rng: np.random.Generator, accounts: dict[str, Array], codes: Array, chunk: Chunk
    ) -> dict[str, Array]:
        n = len(accounts["account_no"])
        count = np.minimum(rng.poisson(1.2, n), 4)
        count[accounts["status"] == "closed"] = 0
        transit = self._is(codes, ReasonCode.PAYMENT_IN_TRANSIT)
        count[transit] = 0
        owner = np.repeat(np.arange(n), count)
        p = len(owner)
        channel = _choice(
            rng, ("card", "cash", "voucher", "settlement_centre"), (0.4, 0.2, 0.15, 0.25), p
        )
        received = self.as_of - rng.integers(5 * 86400, 60 * 86400, p) * SECOND
        delay = np.where(
            channel == "settlement_centre",
            rng.integers(3 * 86400, 4 * 86400, p),
            rng.integers(60, 7200, p),
        )
        amount = rng.integers(5, 100, p) * 100 * 100 + np.where(
            rng.random(p) < 0.2, rng.integers(1, 100, p), 0
        )
        pays = {
            "account_no": accounts["account_no"][owner],
            "amount": _format_minor(amount),
            "currency": np.full(p, "KZT"),
            "channel": channel,
            "received_at": received,
            "posted_at": received + delay * SECOND,
        }
        t_owner = np.flatnonzero(transit)
        t = len(t_owner)
        t_received = self.as_of - rng.integers(3600, 4 * 86400, t) * SECOND
        pays = _append(
            pays,
            {
                "account_no": accounts["account_no"][t_owner],
                "amount": _format_minor(rng.integers(10, 50, t) * 100 * 100),
                "currency": np.full(t, "KZT"),
                "channel": np.full(t, "settlement_centre"),
                "received_at": t_received,
                "posted_at": np.full(t, np.datetime64("NaT", "s")),
            },
        )
        o_owner = np.flatnonzero(self._orphans(codes, 2))
        o = len(o_owner)
        pays = _append(
            pays,
            {
                "account_no": np.char.add("39", _padded(o_owner + 7, 8)),
                "amount": _format_minor(np.full(o, 150_000)),
                "currency": np.full(o, "KZT"),
                "channel": np.full(o, "cash"),
                "received_at": np.full(o, self.as_of - 20 * DAY),
                "posted_at": np.full(o, self.as_of - 20 * DAY + 60 * SECOND),
            },
        )
        ids = self._ids("payments", p + t + o)
        pays["payment_id"] = ids
        chunk.plant(ReasonCode.PAYMENT_IN_TRANSIT, "payments", ids[p : p + t])
        chunk.plant(ReasonCode.ORPHAN_ROW, "payments", ids[p + t :])
        return pays

    def _charges(
        self,
        rng: np.random.Generator,
        accounts: dict[str, Array],
        lines: dict[str, Array],
        first_line: Array,
        codes: Array,
        subscriptions: dict[str, Array],
    ) -> dict[str, Array]:
        n = len(accounts["account_no"])
        line_active = lines["status"] == "active"
        has_active_first = line_active[first_line]
        count = np.where(has_active_first, np.minimum(rng.poisson(1.5, n), 6), 0)
        owner = np.repeat(np.arange(n), count)
        c = len(owner)
        kind = _choice(
            rng, ("voice", "sms", "data", "roaming", "vas"), (0.4, 0.1, 0.35, 0.03, 0.12), c
        )
        no_roaming = self._is(codes, ReasonCode.PREPAID_NEGATIVE_BALANCE)[owner]
        kind[(kind == "roaming") & no_roaming] = "data"
        occurred = self.as_of - rng.integers(3 * 86400, 30 * 86400, c) * SECOND
        lag = np.where(kind == "roaming", rng.integers(3600, 48 * 3600, c), rng.integers(1, 120, c))
        amount = rng.integers(500, 200_000, c)
        usage = {
            "account_no": accounts["account_no"][owner],
            "msisdn": lines["msisdn"][first_line[owner]],
            "kind": kind,
            "amount": amount,
            "occurred_at": occurred,
            "rated_at": occurred + lag * SECOND,
            "roaming_partner": _where_or_none(
                kind == "roaming",
                np.array(cat.ROAMING_PARTNERS)[rng.integers(0, len(cat.ROAMING_PARTNERS), c)],
            ),
        }
        parts = [usage, self._roaming_debt_charges(rng, accounts, lines, first_line, codes)]
        parts.append(self._fee_charges(accounts, subscriptions))
        charges = parts[0]
        for part in parts[1:]:
            charges = _append(charges, part)
        total = len(charges["account_no"])
        charges["amount"] = _format_minor(np.asarray(charges["amount"], dtype=np.int64))
        charges["currency"] = np.full(total, "KZT")
        charges["charge_id"] = self._ids("charges", total)
        return charges

    def _roaming_debt_charges(
        self,
        rng: np.random.Generator,
        accounts: dict[str, Array],
        lines: dict[str, Array],
        first_line: Array,
        codes: Array,
    ) -> dict[str, Array]:
        """Roaming charges inside the look-back window that more than cover each planted debt."""
        debtors = np.flatnonzero(self._is(codes, ReasonCode.ROAMING_DEBT))
        debt = -accounts["_balance_minor"][debtors]
        owner = np.repeat(debtors, 2)
        half = np.repeat(debt // 2 + rng.integers(100, 20_000, len(debtors)), 2)
        k = len(owner)
        occurred = self.as_of - rng.integers(2 * 86400, 10 * 86400, k) * SECOND
        return {
            "account_no": accounts["account_no"][owner],
            "msisdn": lines["msisdn"][first_line[owner]],
            "kind": np.full(k, "roaming"),
            "amount": half,
            "occurred_at": occurred,
            "rated_at": occurred + rng.integers(3600, 36 * 3600, k) * SECOND,
            "roaming_partner": np.full(k, "TUR-TCELL"),
        }

    def _fee_charges(self, accounts: dict[str, Array], sub: dict[str, Array]) -> dict[str, Array]:
        """This period's fee for every live subscription charged through the period's end."""
        take = (sub["fee_charged_through"] == self.period_end) & (sub["_fee"] > 0)
        take &= (sub["_owner"] >= 0) & (sub["status"] != "ended")
        idx = np.flatnonzero(take)
        k = len(idx)
        period_start = self.period_start.astype("datetime64[s]")
        charge_at = np.maximum(period_start, sub["started_at"][idx]) + 300 * SECOND
        join_day = (charge_at.astype("datetime64[D]") - self.period_start).astype(np.int64) + 1
        days_left = self.days_in_period - join_day + 1
        fee_tenge = sub["_fee"][idx].astype(np.int64)
        # Kcell proration: fee × days_left / days_in_month, rounded half-up to whole tenge.
        dim = self.days_in_period
        prorated_tenge = (2 * fee_tenge * days_left + dim) // (2 * dim)
        return {
            "account_no": accounts["account_no"][sub["_owner"][idx]],
            "msisdn": sub["msisdn"][idx],
            "kind": np.full(k, "fee"),
            "amount": prorated_tenge * 100,
            "occurred_at": charge_at,
            "rated_at": charge_at + 60 * SECOND,
            "roaming_partner": np.full(k, None),
        }

    def _orders(
        self,
        rng: np.random.Generator,
        accounts: dict[str, Array],
        lines: dict[str, Array],
        first_line: Array,
    ) -> dict[str, Array]:
        n = len(accounts["account_no"])
        count = np.where(rng.random(n) < 0.15, rng.integers(1, 3, n), 0)
        count[accounts["status"] == "closed"] = 0
        owner = np.repeat(np.arange(n), count)
        k = len(owner)
        kinds = (
            "tariff_change", "new_number", "vas", "sim_swap", "port_in", "conference",
            "reregistration", "roaming_activation", "topup",
        )  # fmt: skip
        return {
            "order_id": self._ids("orders", k),
            "account_no": accounts["account_no"][owner],
            "msisdn": lines["msisdn"][first_line[owner]],
            "kind": _choice(rng, kinds, (0.3, 0.1, 0.2, 0.08, 0.04, 0.03, 0.05, 0.1, 0.1), k),
            "created_at": self.as_of - rng.integers(86400, 90 * 86400, k) * SECOND,
            "status": _choice(rng, ("completed", "cancelled"), (0.9, 0.1), k),
        }

    def _bonuses(
        self, rng: np.random.Generator, accounts: dict[str, Array], codes: Array, chunk: Chunk
    ) -> dict[str, Array]:
        n = len(accounts["account_no"])
        has = (rng.random(n) < 0.12) & (accounts["status"] != "closed")
        expired = self._is(codes, ReasonCode.BONUS_EXPIRED)
        owner = np.r_[np.flatnonzero(has), np.flatnonzero(expired)]
        b = len(owner)
        kind = _choice(rng, ("money", "data_mb", "voice_min"), (0.4, 0.4, 0.2), b)
        amount = np.where(
            kind == "money",
            rng.integers(1, 20, b) * 100,
            np.where(kind == "data_mb", rng.integers(1, 10, b) * 512, rng.integers(5, 30, b) * 10),
        )
        expires = self.as_of + rng.integers(5 * 86400, 90 * 86400, b) * SECOND
        n_clean = int(has.sum())
        expires[n_clean:] = self.as_of - rng.integers(86400, 30 * 86400, b - n_clean) * SECOND
        ids = self._ids("bonuses", b)
        chunk.plant(ReasonCode.BONUS_EXPIRED, "bonuses", ids[n_clean:])
        return {
            "bonus_id": ids,
            "account_no": accounts["account_no"][owner],
            "kind": kind,
            "amount": amount.astype(str),
            "expires_at": expires,
        }

    def _ids(self, entity: str, count: int) -> npt.NDArray[np.int64]:
        first = self.next_id[entity]
        self.next_id[entity] += count
        return np.arange(first, first + count, dtype=np.int64)

    def _orphans(self, codes: Array, variant: int) -> npt.NDArray[np.bool_]:
        """Accounts planting an orphan of one variant: 0 line, 1 subscription, 2 payment."""
        position = np.arange(len(codes)) % 3
        return np.asarray(self._is(codes, ReasonCode.ORPHAN_ROW) & (position == variant))

    def _orphan_lines(
        self, accounts: dict[str, Array], codes: Array, chunk: Chunk
    ) -> dict[str, Array]:
        """Lines attached to account numbers that do not exist."""
        owner = np.flatnonzero(self._orphans(codes, 0))
        k = len(owner)
        serial = self.next_line + np.arange(k, dtype=np.int64)
        self.next_line += k
        iccid = np.char.add("8997010", _padded(serial, 13))
        activated = np.full(k, self.as_of - 100 * DAY)
        chunk.plant(ReasonCode.ORPHAN_ROW, "lines", iccid)
        return {
            "iccid": iccid,
            "msisdn": self._msisdns_plain(np.full(k, "kcell")),
            "account_no": np.char.add("38", _padded(owner + 5, 8)),
            "status": np.full(k, "active"),
            "activated_at": activated,
            "terminated_at": np.full(k, np.datetime64("NaT", "s")),
            "port_status": np.full(k, "none"),
            "channel": np.full(k, "shop"),
            "dealer_id": np.full(k, None),
            "consent_ref": np.char.add("CNS-", _padded(serial, 10)),
            "language": np.full(k, "ru"),
            "_owner": np.full(k, -1),
            "_corporate": np.zeros(k, dtype=np.bool_),
        }


# -- helpers ---------------------------------------------------------------------------------


def _choice(
    rng: np.random.Generator,
    options: tuple[object, ...] | list[object] | list[str],
    weights: tuple[float, ...] | npt.NDArray[np.float64] | None,
    n: int,
) -> Array:
    values = np.array(options, dtype=object)
    picks = rng.choice(len(values), size=n, p=None if weights is None else np.asarray(weights))
    result: Array = values[picks]
    if all(isinstance(o, str) for o in options):
        return result.astype(object)
    return result.astype(np.int64)


def _clean_partners(
    rng: np.random.Generator, eligible: npt.NDArray[np.bool_], needs: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """For each account in ``needs``, a distinct ``eligible`` (clean) account to pair it with."""
    clean = np.flatnonzero(eligible)
    k = int(needs.sum())
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(rng.choice(clean, size=k, replace=False), dtype=np.int64)


def _earlier_partners(
    rng: np.random.Generator, eligible: npt.NDArray[np.bool_], needs: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """For each account in ``needs``, an ``eligible`` account with a lower position."""
    clean = np.flatnonzero(eligible)
    wanting = np.flatnonzero(needs)
    lower = np.searchsorted(clean, wanting)  # how many clean accounts precede each
    if (lower == 0).any():
        raise AssertionError("a planted duplicate client has no earlier clean client")
    return np.asarray(clean[(rng.random(len(wanting)) * lower).astype(np.int64)], dtype=np.int64)


def _format_minor(minor: Array) -> Array:
    """Integer minor units as exact decimal text with two places (``-12.05``)."""
    values = np.asarray(minor, dtype=np.int64)
    sign = np.where(values < 0, "-", "")
    magnitude = np.abs(values)
    whole = (magnitude // 100).astype(str)
    cents = _padded(magnitude % 100, 2)
    text = np.char.add(np.char.add(np.char.add(sign, whole), "."), cents)
    return text.astype(object)


def _fraction_of(span: Array, fraction: npt.NDArray[np.float64]) -> Array:
    """``fraction`` of each time span, in whole seconds."""
    seconds = span.astype("timedelta64[s]").astype(np.int64)
    return (seconds * fraction).astype(np.int64) * SECOND


def _where_or_none(condition: npt.NDArray[np.bool_], values: Array) -> Array:
    """``values`` where ``condition`` holds, None elsewhere (an object column)."""
    out = np.full(len(condition), None, dtype=object)
    out[condition] = values[condition]
    return out


def _padded(values: Array, width: int) -> Array:
    """Integers as zero-padded decimal text of ``width`` digits (empty-safe)."""
    ints = np.asarray(values, dtype=np.int64)
    if len(ints) == 0:
        return np.zeros(0, dtype=f"<U{width}")
    return np.char.zfill(ints.astype(str), width)


def _append(base: dict[str, Array], extra: dict[str, Array]) -> dict[str, Array]:
    return {key: np.concatenate([base[key], extra[key]]) for key in base}


def _person_names(rng: np.random.Generator, male: npt.NDArray[np.bool_]) -> Array:
    n = len(male)
    stems = np.array(cat.SURNAME_STEMS, dtype=object)[rng.integers(0, len(cat.SURNAME_STEMS), n)]
    surname = np.array(
        [_surname(s, m) for s, m in zip(stems.tolist(), male.tolist(), strict=True)], dtype=object
    )
    first = np.where(
        male,
        np.array(cat.MALE_FIRST, dtype=object)[rng.integers(0, len(cat.MALE_FIRST), n)],
        np.array(cat.FEMALE_FIRST, dtype=object)[rng.integers(0, len(cat.FEMALE_FIRST), n)],
    )
    patronymic_stem = np.array(cat.PATRONYMIC_STEMS, dtype=object)[
        rng.integers(0, len(cat.PATRONYMIC_STEMS), n)
    ]
    patronymic = [
        _patronymic(s, m) for s, m in zip(patronymic_stem.tolist(), male.tolist(), strict=True)
    ]
    return np.array(
        [f"{s} {f} {p}" for s, f, p in zip(surname, first.tolist(), patronymic, strict=True)],
        dtype=object,
    )


def _surname(stem: str, male: bool) -> str:
    suffix = "ев" if stem[-1] in "ийь" else ("в" if stem[-1] in "ое" else "ов")
    return stem + suffix + ("" if male else "а")


def _patronymic(stem: str, male: bool) -> str:
    if stem.endswith("ов") or stem.endswith("ев"):
        return stem + ("ич" if male else "на")
    return stem + ("ұлы" if male else "қызы")


_IIN_WEIGHTS_1 = np.arange(1, 12)
_IIN_WEIGHTS_2 = np.array([3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2])


def check_digit(digits: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """IIN/BIN check digit of rows of 11 digits; 10 means no valid check digit exists."""
    first = (digits @ _IIN_WEIGHTS_1) % 11
    second = (digits @ _IIN_WEIGHTS_2) % 11
    return np.where(first != 10, first, second).astype(np.int64)


def _with_check_digit(prefix: npt.NDArray[np.int64]) -> Array:
    """Complete 10-digit prefixes to valid 12-digit IDs by choosing the 11th digit."""
    n = len(prefix)
    result = np.zeros((n, 12), dtype=np.int64)
    result[:, :10] = prefix
    done = np.zeros(n, dtype=np.bool_)
    for digit in range(10):
        trial = np.column_stack([prefix, np.full(n, digit)])
        check = check_digit(trial)
        ok = (check != 10) & ~done
        result[ok, 10] = digit
        result[ok, 11] = check[ok]
        done |= ok
    if not done.all():
        raise AssertionError("no serial digit gives a valid IIN/BIN check digit")
    return np.array(["".join(map(str, row)) for row in result.tolist()], dtype=object)


def _digits(values: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.int64]:
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers) % 10


def _iins(idx: npt.NDArray[np.int64], male: npt.NDArray[np.bool_]) -> Array:
    """Unique individual IINs: birth date + century/sex digit + serial + check digit.

    The account index is spread over (birth date, 3-digit serial) by multiplication modulo the
    space's size, a bijection, so no two clients ever share an IIN by accident.
    """
    days = 21_900  # 1940-01-01 .. 1999-12-17
    space = days * 1000
    mixed = (idx * 48_271 + 11) % space
    day_offset, serial = mixed // 1000, mixed % 1000
    birth = np.datetime64("1940-01-01") + day_offset.astype("timedelta64[D]")
    year = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    month = birth.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (birth - birth.astype("datetime64[M]")).astype(np.int64) + 1
    century = np.where(male, 3, 4)
    prefix = np.column_stack(
        [_digits(year % 100, 2), _digits(month, 2), _digits(day, 2), century, _digits(serial, 3)]
    )
    return _with_check_digit(prefix)


def _bins(idx: npt.NDArray[np.int64]) -> Array:
    """Unique BINs: registration year and month, entity type 4, attribute 0, serial, check."""
    months = 288  # 1992-01 .. 2015-12
    space = months * 1000
    mixed = (idx * 7_919 + 3) % space
    month_index, serial = mixed // 1000, mixed % 1000
    year = 1992 + month_index // 12
    month = month_index % 12 + 1
    n = len(idx)
    prefix = np.column_stack(
        [
            _digits(year % 100, 2),
            _digits(month, 2),
            np.full(n, 4),
            np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.int64),
            _digits(serial, 3),
        ]
    )
    return _with_check_digit(prefix)


def _break_check_digit(ids: Array) -> Array:
    return np.array([s[:11] + str((int(s[11]) + 1) % 10) for s in ids.tolist()], dtype=object)


def _consent_refs(rng: np.random.Generator, channel: Array, serial: npt.NDArray[np.int64]) -> Array:
    """Consent evidence: always for dealer and online lines, missing for some shop lines."""
    refs = np.char.add("CNS-", _padded(serial, 10)).astype(object)
    refs[(channel == "shop") & (rng.random(len(channel)) < 0.05)] = None
    return refs


def _msisdn_styles(rng: np.random.Generator, digits: Array) -> Array:
    """How legacy writes a national number: mostly ``7XXXXXXXXXX``, some ``8…``, some ``+7 …``."""
    style = rng.random(len(digits))
    d = digits.astype(str)
    plain = np.char.add("7", d)
    trunk = np.char.add("8", d)
    spaced = np.array([f"+7 {s[:3]} {s[3:6]} {s[6:8]} {s[8:]}" for s in d.tolist()], dtype=object)
    return np.where(style < 0.85, plain, np.where(style < 0.95, trunk, spaced)).astype(object)


def _restyle(msisdns: Array) -> Array:
    """The same numbers written another way, as duplicates often are.

    ``8…`` becomes ``+7 7xx xxx xx xx``, anything else ``8…``: never the same text, so
    legacy's own join of a subscription to its line (by the text) stays unambiguous.
    """
    national = [s.replace("+", "").replace(" ", "")[-10:] for s in msisdns.tolist()]
    return np.array(
        [
            f"+7 {n[:3]} {n[3:6]} {n[6:8]} {n[8:]}" if text.startswith("8") else f"8{n}"
            for n, text in zip(national, msisdns.tolist(), strict=True)
        ],
        dtype=object,
    )


def _invalid_msisdns(iccids: Array) -> Array:
    """Numbers no normalisation makes Kazakh mobiles, unique by the line's SIM serial."""
    serials = [int(iccid[7:]) for iccid in iccids.tolist()]
    shapes = (
        lambda n: f"7601{n % 10**7:07d}",  # 760 is no mobile range
        lambda n: f"+1 202 {n % 10**7:07d}",  # a US number
        lambda n: f"77O1{n % 10**7:07d}",  # letter O for a zero
        lambda n: f"7{n % 10**8:08d}",  # one digit short
    )
    return np.array(
        [shapes[i % len(shapes)](serial) for i, serial in enumerate(serials)], dtype=object
    )
