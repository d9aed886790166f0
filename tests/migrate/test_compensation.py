"""``billmig compensate``: the seeds' rules on hand-built targets and charge records.

A1 (seed 002), August, 3 outage days, every plan 31.00 BYN a month (1.00 BYN a day):
3 GB → 30 % × 3 = 0.90; 15 GB → 50 % × 3 = 1.50; data-only → 3.00; home internet without
video → 3.00, with video → 1.50; no data and 300 MB → nothing; 9.5 GB → RULE_GAP.

Kcell (seed 000), 1–2 December 2017: k1's fee was not taken on 1 December and it was charged
150.00 (voice, 1 Dec) + 50.50 (data, 2 Dec) → 200.50 back; k2's fee was taken → nothing;
k3 was charged only on 3 December → nothing; k4 is pay-as-you-go (no fee to take) → nothing.
Алга, Престиж, Престиж+, Мобильный Круг lines get 5 GB once; Kcell Сөйле gets none.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from migrate.cli.main import main
from migrate.core.config import Config, load_config
from migrate.core.db import create_engine
from migrate.core.errors import InputError
from migrate.core.ledger import read_ledger
from migrate.core.legacy_schema import CHARGES, LINES
from migrate.core.lock import workspace_lock
from migrate.core.runs import RunsFolder
from migrate.core.target_schema import METADATA
from migrate.ops.compensation import Scope, run_compensate
from tests.migrate.helpers import register_signers
from validate.pack import verify_pack
from validate.signing import load_registry

REPO = Path(__file__).resolve().parents[2]
A1 = REPO / "mappings" / "compensation" / "a1-2020-08-internet.toml"
KCELL = REPO / "mappings" / "compensation" / "kcell-2017-12-billing.toml"


def _target(path: Path, plans: list[tuple[str, str, int, str, int | None, bool]]) -> str:
    """One account and one live line per plan: (account, name, fee minor, kind, MB, video)."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    METADATA.create_all(engine)
    t = METADATA.tables
    with engine.begin() as conn:
        for n, (account, name, fee, kind, data_mb, video) in enumerate(plans):
            currency = "BYN" if account.startswith("a") else "KZT"
            conn.execute(
                t["product_offering"]
                .insert()
                .values(
                    offering_id=f"o{n}",
                    name=name,
                    monthly_fee_minor=fee,
                    currency=currency,
                    data_mb=data_mb,
                    kind=kind,
                    has_video=video,
                    run_id="r",
                )
            )
            conn.execute(
                t["billing_account"]
                .insert()
                .values(
                    billing_account_id=f"ba-{account}",
                    legacy_account_no=account,
                    rating_type="prepaid",
                    state="active",
                    currency=currency,
                    dunning_suppressed=False,
                    region="Minsk",
                    run_id="r",
                )
            )
            conn.execute(t["product"].insert().values(
                product_id=f"p{n}", billing_account_id=f"ba-{account}", offering_id=f"o{n}",
                msisdn=f"+7701000{n:04d}", legacy_subscription_id=f"s{n}", status="active",
                run_id="r"))  # fmt: skip
    engine.dispose()
    return url


def _source(path: Path, languages: dict[int, str], charges: list[tuple[Any, ...]]) -> str:
    """A reference-schema source with the lines' languages and the charges."""
    url = f"sqlite:///{path}"
    metadata = sa.MetaData()
    lines, charge_table = LINES.table(metadata), CHARGES.table(metadata)
    engine = create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for n, language in languages.items():
            conn.execute(lines.insert().values(
                iccid=f"8997{n:016d}", msisdn=f"8701000{n:04d}", account_no="x",
                status="active", language=language))  # fmt: skip
        for n, (account, kind, amount, occurred) in enumerate(charges):
            conn.execute(charge_table.insert().values(
                charge_id=n, account_no=account, kind=kind, amount=amount, currency="KZT",
                occurred_at=occurred, rated_at=occurred))  # fmt: skip
    engine.dispose()
    return url


def _config(root: Path, target: str, source: str) -> Config:
    (root / "billmig.toml").write_text((REPO / "billmig.toml").read_text("utf-8"), "utf-8")
    if not (root / "mappings").exists():
        (root / "mappings").symlink_to(REPO / "mappings")
    if not (root / "signers.toml").exists():
        register_signers(load_config(root / "billmig.toml", environ={}))
    return load_config(
        root / "billmig.toml", environ={"BILLMIG_TARGET_URL": target, "BILLMIG_SOURCE_URL": source}
    )


def _actions(target: str) -> list[tuple[Any, ...]]:
    engine = create_engine(target)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT b.legacy_account_no, a.kind, a.amount_minor, a.amount_units, a.currency "
            "FROM balance_action a JOIN billing_account b USING (billing_account_id) "
            "ORDER BY 1, 2")).all()  # fmt: skip
    engine.dispose()
    return [tuple(r) for r in rows]


A1_PLANS = [
    ("a1", "Камфорт 3 ГБ", 3100, "bundle", 3072, False),
    ("a2", "Макс 15 ГБ", 3100, "bundle", 15360, False),
    ("a3", "Інтэрнэт-пакет", 3100, "data_only", 5120, False),
    ("a4", "Дом", 3100, "home_internet", None, False),
    ("a5", "Дом + VOKA", 3100, "home_internet", None, True),
    ("a6", "Толькі галас", 3100, "bundle", None, False),
    ("a7", "Міні 300", 3100, "bundle", 300, False),
    ("a8", "Бізнес 9,5 ГБ", 3100, "bundle", 9728, False),
]


@pytest.fixture
def a1(tmp_path: Path) -> Config:
    target = _target(tmp_path / "target.sqlite", A1_PLANS)
    source = _source(tmp_path / "source.sqlite", {0: "be", 1: "ru", 2: "en"}, [])
    return _config(tmp_path, target, source)


def test_a1_bands_and_the_9_to_10_gb_gap(a1: Config) -> None:
    result = run_compensate(
        a1, rules=A1, incident="a1-aug", start=date(2020, 8, 9), end=date(2020, 8, 11)
    )
    amounts = {c.account_no: c.amount_minor for c in result.credits}
    assert amounts == {"a1": 90, "a2": 150, "a3": 300, "a4": 300, "a5": 150}
    assert [(g.offering, g.data_mb, g.bands) for g in result.gaps] == [("Бізнес 9,5 ГБ", 9728, ())]
    assert result.exit_code == 1 and result.applied == 0
    assert _actions(a1.target_url()) == []  # a gap: nothing applied until the file decides it
    gaps = (result.directory / "compensation" / "gaps.csv").read_text(encoding="utf-8")
    assert "RULE_GAP" in gaps and "Бізнес 9,5 ГБ" in gaps


def test_a1_credits_once_with_texts_in_the_subscribers_language(a1: Config) -> None:
    scope = Scope(accounts=frozenset(f"a{n}" for n in range(1, 8)))
    first = run_compensate(
        a1, rules=A1, incident="a1-aug", start=date(2020, 8, 9), end=date(2020, 8, 11), scope=scope
    )
    assert first.exit_code == 0 and first.applied == 5 and not first.gaps
    assert _actions(a1.target_url()) == [
        ("a1", "compensation", 90, None, "BYN"), ("a2", "compensation", 150, None, "BYN"),
        ("a3", "compensation", 300, None, "BYN"), ("a4", "compensation", 300, None, "BYN"),
        ("a5", "compensation", 150, None, "BYN"),
    ]  # fmt: skip
    texts = {c.account_no: (c.language, c.text) for c in first.credits}
    assert texts["a1"][0] == "be" and "0.90 BYN" in texts["a1"][1]
    assert texts["a2"][0] == "ru" and "1.50 BYN" in texts["a2"][1]
    assert texts["a3"][0] == "en" and "3.00 BYN" in texts["a3"][1]
    assert texts["a4"][0] == "be"  # no line in the source: the rule file's default language
    second = run_compensate(
        a1, rules=A1, incident="a1-aug", start=date(2020, 8, 9), end=date(2020, 8, 11), scope=scope
    )
    assert second.applied == 0 and second.already == 5
    assert "no new action" in second.tables()[0].footer
    assert len(_actions(a1.target_url())) == 5
    assert verify_pack(second.directory, load_registry(a1)).intact
    totals = json.loads((second.directory / "compensation" / "totals.json").read_text())
    assert sum(t["amount_minor"] for t in totals["totals"]) == 990
    recorded = [(e.run_id, e.phase, e.outcome) for e in read_ledger(a1.runs_path)]
    assert recorded[-4:] == [("compensation-a1-aug", "compensate", outcome)
                             for outcome in ("started", "ok", "started", "ok")]  # fmt: skip
    lock = RunsFolder.of(a1).lock
    with workspace_lock(lock, "map", "other"), pytest.raises(InputError, match="busy"):
        run_compensate(a1, rules=A1, incident="a1-aug", start=date(2020, 8, 9),
                       end=date(2020, 8, 11), scope=scope)  # fmt: skip
    with pytest.raises(InputError, match="incident id"):
        run_compensate(a1, rules=A1, incident="a/../../x", start=date(2020, 8, 9),
                       end=date(2020, 8, 11), scope=scope)  # fmt: skip


def test_kcell_refunds_and_the_5_gb_grant(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plans = [
        ("k1", "Алга", 199000, "bundle", 3072, False),
        ("k2", "Престиж", 499000, "bundle", 10240, False),
        ("k3", "Престиж+", 799000, "bundle", 20480, False),
        ("k4", "Kcell Сөйле", 0, "payg", None, False),
        ("k5", "Мобильный Круг", 99000, "bundle", 300, False),
    ]
    day1, day2, day3 = (datetime(2017, 12, d, 12) for d in (1, 2, 3))
    charges = [
        ("k1", "voice", "150.00", day1), ("k1", "data", "50.50", day2),
        ("k2", "fee", "4990.00", datetime(2017, 12, 1, 0, 5)), ("k2", "voice", "30.00", day1),
        ("k3", "sms", "12.00", day3), ("k4", "voice", "10.00", day2),
    ]  # fmt: skip
    target = _target(tmp_path / "target.sqlite", plans)
    source = _source(tmp_path / "source.sqlite", {0: "kk"}, charges)
    config = _config(tmp_path, target, source)
    monkeypatch.setenv("BILLMIG_TARGET_URL", target)
    monkeypatch.setenv("BILLMIG_SOURCE_URL", source)
    args = ["--config", str(tmp_path / "billmig.toml"), "compensate", str(KCELL),
            "--incident", "kcell-dec17", "--from", "2017-12-01", "--to", "2017-12-02"]  # fmt: skip
    assert main(args) == 0
    assert _actions(config.target_url()) == [
        ("k1", "bonus_grant", None, 5120, None), ("k1", "refund", 20050, None, "KZT"),
        ("k2", "bonus_grant", None, 5120, None), ("k3", "bonus_grant", None, 5120, None),
        ("k5", "bonus_grant", None, 5120, None),
    ]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    assert "no new action" in capsys.readouterr().out.replace("\n", " ")
    assert len(_actions(config.target_url())) == 5
    sms = (tmp_path / "runs" / "compensation-kcell-dec17" / "compensation" / "sms.csv").read_text(
        encoding="utf-8"
    )
    assert "200.50 KZT" in sms and "негізгі балансыңызға" in sms  # k1's line speaks Kazakh
    assert main(["--config", str(tmp_path / "billmig.toml"), "verify",
                 "compensation-kcell-dec17"]) == 0  # fmt: skip


@given(
    fee=st.integers(min_value=0, max_value=10**12),
    year=st.integers(min_value=2000, max_value=2030),
    month=st.integers(min_value=1, max_value=12),
    percent=st.integers(min_value=0, max_value=100),
)
def test_a_whole_month_of_outage_credits_the_percent_of_the_fee(
    fee: int, year: int, month: int, percent: int
) -> None:
    """Daily fees are exact fractions until one rounding: a full month is exactly fee × %."""
    import calendar
    from fractions import Fraction

    from migrate.ops.compensation.compute import Subscriber, daily_fee_credits
    from migrate.ops.compensation.rules import Band, Offering, Rule

    rule = Rule("r", "daily_fee_percent", {"ru": "{amount}"}, bands=(Band("all", percent),))
    days = [date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)]
    subscriber = Subscriber("acc", "ba", "s1", None, Offering("p", "bundle", 1024, False),
                            fee, "KZT", None, "ru")  # fmt: skip
    credits, gaps = daily_fee_credits(rule, "i", [subscriber], days, "ru")
    expected = Fraction(fee * percent, 100)
    rounded = int(expected) + (expected - int(expected) >= Fraction(1, 2))
    assert not gaps
    assert sum(c.amount_minor or 0 for c in credits) == rounded
