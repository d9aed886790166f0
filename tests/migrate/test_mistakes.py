"""Ordinary mistakes get a one-line, reason-coded answer, never "unexpected …" (issue 17).

* ``postgres://`` (libpq's spelling, which SQLAlchemy 2 dropped) works; an unknown scheme or a
  string that is no URL is a ConfigError naming the URL without its password.
* A password given as a URL query parameter is masked like one in the user part.
* ``tariffs.csv`` with a short row, an unbalanced quote, only a header or bytes that are not
  UTF-8, and ``dispositions.csv`` with ``decided_at=yesterday``: each an InputError naming the
  file and the line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.core.config import mask_url, scrub
from migrate.core.db import normalise_url
from migrate.core.errors import ConfigError, InputError
from migrate.mapping.dispositions import load_dispositions
from migrate.mapping.tariffs import load_tariff_map

REPO = Path(__file__).resolve().parents[2]
HEADER = (
    "legacy_tariff_code,offering_code,offering_name,monthly_fee,currency,data_mb,kind,"
    "has_video,note\n"
)


def test_postgres_scheme_works_and_an_unknown_one_is_named() -> None:
    assert normalise_url("postgres://u@h:5432/db").drivername == "postgresql+psycopg"
    with pytest.raises(ConfigError, match="unknown database URL scheme 'oracle2'") as unknown:
        normalise_url("oracle2://scott:tiger@h/db")
    assert "tiger" not in str(unknown.value)
    with pytest.raises(ConfigError, match="is not a database URL"):
        normalise_url("127.0.0.1:5432/billing")


def test_a_password_in_the_query_is_masked() -> None:
    url = "postgresql://loader@db/billing?sslmode=require&password=hunter2"
    assert "hunter2" not in mask_url(url) and "password=***" in mask_url(url)
    assert scrub("auth failed for hunter2", url) == "auth failed for ***"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "ALGA,KC-ALGA,Алга,1990.00,KZT\n",
            r"tariffs\.csv:2: the row has 5 field\(s\), the header 9",
        ),
        ('ALGA,KC-ALGA,"Алга,1990.00,KZT,3072,bundle,false,\n', r"tariffs\.csv:\d+: "),
        ("", r"tariffs\.csv has a header and no rows"),
        ("ALGA,KC-ALGA,\xff\xfe,1990.00,KZT,3072,bundle,false,\n", r"tariffs\.csv:2: not UTF-8"),
    ],
    ids=["short row", "unbalanced quote", "header only", "not UTF-8"],
)
def test_a_damaged_tariff_file_names_its_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "tariffs.csv"
    data = (HEADER + body).encode("utf-8")
    if "\xff" in body:
        data = (
            (HEADER + body.replace("\xff\xfe", ""))
            .encode("utf-8")
            .replace(b"KC-ALGA,,", b"KC-ALGA,\xff\xfe,")
        )
    path.write_bytes(data)
    with pytest.raises(InputError, match=message):
        load_tariff_map(path)


def test_a_decision_date_must_be_a_date(tmp_path: Path) -> None:
    path = tmp_path / "dispositions.csv"
    header = "entity,legacy_key,reason_code,disposition,decided_by,decided_at,why\n"
    path.write_text(header + "accounts,100,ORPHAN_ROW,excluded,A. Lead,yesterday,test\n")
    with pytest.raises(
        InputError, match=r"dispositions\.csv:2: decided_at 'yesterday' is not a date"
    ):
        load_dispositions(path)
    path.write_text(header + "accounts,100,ORPHAN_ROW,excluded,A. Lead,2999-01-01,test\n")
    with pytest.raises(InputError, match="in the future"):
        load_dispositions(path)
    path.write_text(header + "accounts,100,ORPHAN_ROW,excluded,A. Lead,2016-06-28,test\n")
    assert load_dispositions(path).sha256
    assert load_tariff_map(REPO / "mappings" / "tariffs.csv").offerings  # the real file parses


def test_rolling_back_a_run_a_fresh_target_never_held(workspace: Path) -> None:
    from migrate.core.config import load_config
    from migrate.load.run import run_rollback

    target = f"sqlite:///{workspace / 'fresh.sqlite'}"
    config = load_config(workspace / "billmig.toml", environ={"BILLMIG_TARGET_URL": target})
    with pytest.raises(InputError, match="run nosuch was never loaded into this target"):
        run_rollback(config, run_id="nosuch")


def test_a_run_rolled_back_then_loaded_again_counts_as_loaded(workspace: Path) -> None:
    import json
    from dataclasses import asdict

    from migrate.core.config import load_config
    from migrate.core.ledger import LedgerEntry
    from migrate.core.runs import RunDir, RunsFolder
    from migrate.ops.overview import runs_overview
    from validate.artifacts import ControlTotals, CurrencyMoney, RowAccounting, Totals

    config = load_config(workspace / "billmig.toml", environ={})
    steps = [("extract", "00:01"), ("map", "00:02"), ("load", "00:03"), ("validate", "00:04"),
             ("rollback", "00:05"), ("load", "00:06"), ("validate", "00:07")]  # fmt: skip
    ledger = RunsFolder.of(config).ledger
    ledger.parent.mkdir(parents=True)
    with ledger.open("w", encoding="utf-8") as handle:
        for phase, at in steps:
            entry = LedgerEntry("r1", phase, "ok", "op", "host", 1, f"2026-12-01T{at}:00+00:00")
            handle.write(json.dumps(asdict(entry)) + "\n")
    Totals(
        money_by_currency={"KZT": CurrencyMoney(10, 100, 0, 100, 0)},
        control_totals=ControlTotals((), (), (), ()),
        rows=RowAccounting({}, {}),
    ).write(RunDir.of(config, "r1").validation.totals)
    waves = runs_overview(config).waves
    assert [(w[1], w[2]) for w in waves] == [("r1", 10)]
