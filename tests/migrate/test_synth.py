"""``synth``: deterministic, realistic, and honest about what it planted."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from migrate.core.reasons import ReasonCode
from migrate.synth import PLANTED_CODES, SynthOptions, run_synth
from migrate.synth.generate import check_digit

ACCOUNTS = 3_000


def _query(url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text(sql))]
    engine.dispose()
    return rows


def _dump(url: str) -> str:
    """A hash of every legacy table's rows in key order."""
    digest = hashlib.sha256()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        for table in (
            "clients",
            "accounts",
            "lines",
            "tariffs",
            "subscriptions",
            "payments",
            "charges",
            "orders",
            "bonuses",
        ):
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}" ORDER BY 1')):
                digest.update(repr(tuple(row)).encode())
    engine.dispose()
    return digest.hexdigest()


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("synth")
    url = f"sqlite:///{root / 'legacy.sqlite'}"
    run_synth(url, SynthOptions(accounts=ACCOUNTS, seed=7), root / "planted.json")
    return url, json.loads((root / "planted.json").read_text(encoding="utf-8"))


def test_same_seed_same_database_other_seed_other_database(
    tmp_path: Path, legacy: tuple[str, dict]
) -> None:  # type: ignore[type-arg]
    url, planted = legacy
    again = f"sqlite:///{tmp_path / 'again.sqlite'}"
    run_synth(again, SynthOptions(accounts=ACCOUNTS, seed=7), tmp_path / "again.json")
    assert _dump(again) == _dump(url)
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == planted
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    run_synth(other, SynthOptions(accounts=ACCOUNTS, seed=8), tmp_path / "other.json")
    assert _dump(other) != _dump(url)


def test_every_planted_code_is_listed_with_its_keys(legacy: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    _, planted = legacy
    assert set(planted["planted"]) == {code.value for code in PLANTED_CODES}
    for code, by_entity in planted["planted"].items():
        keys = [k for ks in by_entity.values() for k in ks]
        assert len(keys) == planted["planted_counts"][code] > 0
        assert len(set(keys)) == len(keys), code
    assert set(planted["planted"]["ORPHAN_ROW"]) == {"lines", "subscriptions", "payments"}


def test_national_ids_are_unique_and_valid_unless_planted(legacy: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    url, planted = legacy
    rows = _query(url, "SELECT client_id, national_id FROM clients")
    invalid = set(planted["planted"]["INVALID_NATIONAL_ID"]["clients"])
    duplicates = set(planted["planted"]["DUPLICATE_CLIENT"]["clients"])
    for client_id, national_id in rows:
        digits = np.array([[int(c) for c in national_id]])
        valid = len(national_id) == 12 and check_digit(digits[:, :11])[0] == digits[0, 11]
        assert valid == (str(client_id) not in invalid), (client_id, national_id)
    clean_ids = [nid for cid, nid in rows if str(cid) not in duplicates]
    assert len(set(clean_ids)) == len(clean_ids)


def test_valid_msisdns_are_unique_except_planted_duplicates(legacy: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    url, planted = legacy
    rows = _query(url, 'SELECT iccid, msisdn FROM "lines"')
    planted_dupes = set(planted["planted"]["DUPLICATE_MSISDN"]["lines"])
    invalid = set(planted["planted"]["INVALID_MSISDN"]["lines"])
    seen: dict[str, list[str]] = {}
    for iccid, msisdn in rows:
        if iccid in invalid:
            continue
        seen.setdefault("".join(ch for ch in msisdn if ch.isdigit())[-10:], []).append(iccid)
    shared = {i for iccids in seen.values() if len(iccids) > 1 for i in iccids}
    assert shared == planted_dupes
    # As written, every number is unique, garbage and duplicates included: legacy joins a
    # subscription to its line by that text, and a wave extract filters by it.
    written = [msisdn for _, msisdn in rows]
    assert len(set(written)) == len(written)


def test_names_are_cyrillic_with_every_kazakh_letter(legacy: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    url, _ = legacy
    names = "".join(r[0] for r in _query(url, "SELECT name FROM clients"))
    assert set("ӘҒҚҢӨҰҮҺІәғқңөұүһі") & set(names) >= set("ӘҒҚӨҰҮІ")
    assert all(letter in names for letter in "ңһ")


def test_tariff_catalogue_has_the_seed_plans(legacy: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    url, _ = legacy
    names = {r[0] for r in _query(url, "SELECT name FROM tariffs")}
    assert {"Алга", "Престиж", "Престиж+", "Мобильный Круг"} <= names


def test_refuses_to_overwrite_without_replace(legacy: tuple[str, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    from migrate.core.errors import InputError

    url, _ = legacy
    with pytest.raises(InputError, match="--replace"):
        run_synth(url, SynthOptions(accounts=10), tmp_path / "p.json")


def test_planted_codes_cover_the_snapshot_catalogue() -> None:
    # FREEZE_BREACH needs window activity (post-snapshot orders); the parse failures need a
    # text-typed legacy and are covered by the LedgerPro fixture.
    not_planted = {
        ReasonCode.FREEZE_BREACH,
        ReasonCode.AMOUNT_UNPARSEABLE,
        ReasonCode.DATE_UNPARSEABLE,
        ReasonCode.VALUE_UNPARSEABLE,
        ReasonCode.CURRENCY_UNKNOWN,
        ReasonCode.VALUE_MISSING,  # value domains: damaged databases in test_hostile.py
        ReasonCode.CODE_UNKNOWN,
        ReasonCode.DUPLICATE_KEY,
        ReasonCode.TEXT_CONTROL_CHARS,
    }
    assert set(PLANTED_CODES) == set(ReasonCode) - not_planted
