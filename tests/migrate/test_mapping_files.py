"""Mapping data files: tariffs.csv, dispositions.csv and the [map] settings (issue 3)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from migrate.core.config import load_config
from migrate.core.errors import ConfigError, InputError
from migrate.mapping.dispositions import load_dispositions
from migrate.mapping.tariffs import load_tariff_map
from migrate.synth import catalogue

REPO = Path(__file__).resolve().parents[2]
HEADER = (
    "legacy_tariff_code,offering_code,offering_name,monthly_fee,currency,data_mb,kind,"
    "has_video,note\n"
)
DECISIONS = "entity,legacy_key,reason_code,disposition,decided_by,decided_at,why\n"


def test_the_shipped_tariff_map_covers_the_synth_catalogue_but_the_planted_promo() -> None:
    tariffs = load_tariff_map(REPO / "mappings" / "tariffs.csv")
    codes = {t.code for t in catalogue.TARIFFS}
    assert tariffs.coverage(codes) == {
        "unmapped_legacy_codes": [catalogue.UNMAPPED_TARIFF],
        "unused_mapping_rows": [],
    }
    alga = tariffs.offerings[tariffs.offering_of["ALGA"]]
    assert (alga.monthly_fee_minor, alga.currency, alga.data_mb) == (199_000, "KZT", 3072)
    assert tariffs.offerings[tariffs.offering_of["KCELLSOILE"]].data_mb is None
    assert tariffs.offerings[tariffs.offering_of["HOMETV"]].has_video
    lookup = tariffs.legacy_lookup("ns")
    assert len(lookup) == len(codes) - 1 and lookup["offering_id"].str.len().eq(36).all()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("ALGA,KC-ALGA,Алга,19.999,KZT,,bundle,false,", "finer than a minor unit"),
        ("ALGA,KC-ALGA,Алга,abc,KZT,,bundle,false,", "not a number"),
        ("ALGA,KC-ALGA,Алга,1990,XXX,,bundle,false,", "unknown currency"),
        ("ALGA,KC-ALGA,Алга,1990,KZT,,combo,false,", "kind 'combo' unknown"),
        ("ALGA,KC-ALGA,Алга,1990,KZT,3 GB,bundle,false,", "not whole MB"),
        ("ALGA,,Алга,1990,KZT,,bundle,false,", "empty tariff or offering code"),
    ],
)
def test_a_bad_tariff_row_is_refused_with_its_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "tariffs.csv"
    path.write_text(HEADER + row + "\n", "utf-8")
    with pytest.raises(InputError, match=message) as error:
        load_tariff_map(path)
    assert "tariffs.csv:2" in str(error.value)


def test_tariff_rows_must_agree_and_not_repeat(tmp_path: Path) -> None:
    path = tmp_path / "tariffs.csv"
    path.write_text(
        HEADER
        + "A,OFF,Один,100,KZT,,bundle,false,\nB,OFF,Один,100,KZT,,bundle,false,\n"
        + "C,OFF,Один,200,KZT,,bundle,false,\n",
        "utf-8",
    )
    with pytest.raises(InputError, match=r"tariffs\.csv:4: offering OFF differs"):
        load_tariff_map(path)
    path.write_text(HEADER + "A,X,x,1,KZT,,bundle,false,\nA,Y,y,1,KZT,,bundle,false,\n", "utf-8")
    with pytest.raises(InputError, match="mapped twice"):
        load_tariff_map(path)
    with pytest.raises(InputError, match="does not exist"):
        load_tariff_map(tmp_path / "missing.csv")


def test_dispositions_apply_exact_over_wildcard(tmp_path: Path) -> None:
    path = tmp_path / "dispositions.csv"
    path.write_text(
        DECISIONS
        + "accounts,*,REFUND_LIABILITY,accepted,Finance,2016-06-28,refunds by bank transfer\n"
        + "accounts,A2,REFUND_LIABILITY,excluded,Finance,2016-06-29,customer disputes it\n",
        "utf-8",
    )
    decisions = load_dispositions(path)
    found = pd.DataFrame(
        {
            "entity": ["accounts", "accounts", "lines"],
            "legacy_key": ["A1", "A2", "A1"],
            "reason_code": ["REFUND_LIABILITY", "REFUND_LIABILITY", "UNCONSENTED_LINE"],
        }
    )
    applied = decisions.apply(found)
    assert applied["disposition"].tolist()[:2] == ["accepted", "excluded"]
    assert pd.isna(applied["disposition"].tolist()[2])
    assert applied["disposition_why"].tolist()[1] == "customer disputes it"
    assert decisions.excluded("accounts") == {"A2"}
    assert len(decisions.sha256) == 64


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("lines,1,DUPLICATE_MSISDN,accepted,QA,2016-06-28,fine", "blocks migration"),
        ("lines,1,NOT_A_CODE,accepted,QA,2016-06-28,fine", "unknown reason code"),
        ("lines,1,UNCONSENTED_LINE,ignored,QA,2016-06-28,fine", "disposition 'ignored'"),
        ("lines,1,UNCONSENTED_LINE,accepted,,2016-06-28,fine", "decided_by empty"),
    ],
)
def test_a_bad_decision_is_refused(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "dispositions.csv"
    path.write_text(DECISIONS + row + "\n", "utf-8")
    with pytest.raises(InputError, match=message):
        load_dispositions(path)


def test_no_dispositions_file_means_no_decisions(tmp_path: Path) -> None:
    decisions = load_dispositions(tmp_path / "none.csv")
    assert decisions.decisions.empty and decisions.sha256 == ""


def test_map_settings_have_defaults_and_are_checked(tmp_path: Path) -> None:
    config = load_config(REPO / "billmig.toml", environ={})
    assert (config.map.unconsented, config.map.small_debt) == ("flag", "flag")
    assert (config.money.rounding_mode, config.money.rounding_unit) == ("half_up", "major")
    with pytest.raises(ConfigError, match=r"map\.unconsented = 'drop' is not one of flag, hold"):
        load_config(REPO / "billmig.toml", environ={"BILLMIG_MAP__UNCONSENTED": "drop"})
    with pytest.raises(ConfigError, match=r"money\.rounding_mode"):
        load_config(REPO / "billmig.toml", environ={"BILLMIG_MONEY__ROUNDING_MODE": "up"})
    with pytest.raises(ConfigError, match="must not be negative"):
        load_config(REPO / "billmig.toml", environ={"BILLMIG_MAP__DEBT_THRESHOLD_MINOR": "-1"})
