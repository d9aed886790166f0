"""``extract``: read-only, exact, streamed, and identical on every engine (issue 2)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from migrate.core.db import create_engine
from migrate.core.errors import ConfigError, InputError, SourceError
from migrate.extract.reader import open_reader
from migrate.extract.run import run_extract
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import config_for, file_hashes, manifest, widen_balance

OPTIONS = SynthOptions(accounts=1_500, seed=11, anomaly_rate=0.01)
KAZAKH = "ӘҒҚҢӨҰҮҺІәғқңөұүһі"


def _synth(url: str, tmp_path: Path) -> dict:  # type: ignore[type-arg]
    planted = tmp_path / f"planted-{sa.make_url(url).get_backend_name()}.json"
    run_synth(url, OPTIONS, planted)
    return json.loads(planted.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.postgres
@pytest.mark.mariadb
def test_three_engines_give_byte_identical_snapshots(
    sqlite_url: str, postgres_url: str, mariadb_url: str, workspace: Path, tmp_path: Path
) -> None:
    snapshots = {}
    for url in (sqlite_url, postgres_url, mariadb_url):
        _synth(url, tmp_path)
        _corporate_and_mixed(url)
        name = sa.make_url(url).get_backend_name()
        result = run_extract(
            config_for(workspace, url, BILLMIG_EXTRACT__CHUNK_ROWS="700"), run_id=name
        )
        assert result.reconciled, name
        snapshots[name] = result.snapshot_dir
    hashes = {name: file_hashes(path) for name, path in snapshots.items()}
    assert hashes["sqlite"] == hashes["postgresql"] == hashes["mysql"]
    manifests = {name: manifest(path) for name, path in snapshots.items()}
    for doc in manifests.values():
        doc.pop("source")
    assert manifests["sqlite"] == manifests["postgresql"] == manifests["mysql"]


def _corporate_and_mixed(url: str) -> None:
    """The same logical data on every engine, at the edges of money.

    A corporate balance beyond 2^53 tiyn (one a double holds exactly, so SQLite's REAL holds
    it too) and, on SQLite, an INTEGER-stored balance beside the REAL ones.
    """
    engine = create_engine(url)
    with engine.begin() as conn:
        widen_balance(conn)
        first, second = conn.execute(
            sa.text("SELECT account_no FROM accounts ORDER BY account_no LIMIT 2")
        ).scalars()
        for account, balance in ((first, "90071992547410.25"), (second, "-1500")):
            value = float(balance) if url.startswith("sqlite") else Decimal(balance)
            conn.execute(
                sa.text("UPDATE accounts SET balance = :b WHERE account_no = :a"),
                {"b": value, "a": account},
            )
    engine.dispose()


def test_two_extracts_of_one_database_are_identical(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    _synth(sqlite_url, tmp_path)
    config = config_for(workspace, sqlite_url)
    first = run_extract(config, run_id="one")
    second = run_extract(config, run_id="two")
    assert file_hashes(first.snapshot_dir) == file_hashes(second.snapshot_dir)
    assert (first.snapshot_dir / "manifest.json").read_bytes() == (
        second.snapshot_dir / "manifest.json"
    ).read_bytes()


def test_kazakh_letters_survive_on_every_engine(any_url: str, workspace: Path) -> None:
    engine = create_engine(any_url)
    run_synth(any_url, SynthOptions(accounts=200, seed=3), workspace / "planted.json")
    name = f"Әбдіғаппар Қуаныш Ңұрлы Өмірұлы Үмбет Һәдия Іңкәр {KAZAKH}"
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE clients SET name = :n WHERE client_id = 1"), {"n": name})
    engine.dispose()
    result = run_extract(config_for(workspace, any_url), run_id="kk")
    clients = pq.read_table(result.snapshot_dir / "clients.parquet").to_pylist()
    assert clients[0]["name"] == name


def test_extract_connection_cannot_write(any_url: str, workspace: Path) -> None:
    run_synth(any_url, SynthOptions(accounts=20, seed=3), workspace / "planted.json")
    with pytest.raises(SourceError, match=r"(?i)read[- ]?only"), open_reader(any_url) as reader:
        reader.execute("UPDATE accounts SET balance = 0")
    writable = create_engine(any_url)
    with writable.connect() as conn:
        nonzero = conn.execute(sa.text("SELECT COUNT(*) FROM accounts WHERE balance <> 0")).scalar()
    writable.dispose()
    assert nonzero and nonzero > 0


def test_planted_amount_anomalies_are_found_exactly(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    planted = _synth(sqlite_url, tmp_path)
    result = run_extract(config_for(workspace, sqlite_url), run_id="exact")
    rows = pq.read_table(result.snapshot_dir / "exceptions.parquet").to_pylist()
    for code in ("AMOUNT_FLOAT_ARTEFACT", "AMOUNT_PRECISION"):
        found = sorted(r["legacy_key"] for r in rows if r["reason_code"] == code)
        assert found == sorted(planted["planted"][code]["accounts"]), code
    assert {r["reason_code"] for r in rows} == {"AMOUNT_FLOAT_ARTEFACT", "AMOUNT_PRECISION"}
    accounts = pq.read_table(result.snapshot_dir / "accounts.parquet").to_pylist()
    withheld = {a["account_no"] for a in accounts if a["balance_minor"] is None}
    assert withheld == set(planted["planted"]["AMOUNT_PRECISION"]["accounts"])
    assert len(accounts) == OPTIONS.accounts  # withheld values, never dropped rows


def test_events_after_the_cutoff_are_held_out_and_counted(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    _synth(sqlite_url, tmp_path)
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE payments SET received_at = '2016-07-02 09:00:00' "
                "WHERE payment_id IN (1, 2, 3)"
            )
        )
    engine.dispose()
    result = run_extract(config_for(workspace, sqlite_url), run_id="cut")
    payments = next(e for e in result.entities if e.name == "payments")
    assert payments.rows_after_cutoff == 3
    ids = pq.read_table(result.snapshot_dir / "payments.parquet", columns=["payment_id"])
    assert not {1, 2, 3} & set(ids.column(0).to_pylist())
    doc = manifest(result.snapshot_dir)["entities"]["payments"]
    assert doc["reconciled"] and doc["watermark"] <= "2016-07-01T00:00:00"


def test_a_snapshot_that_loses_a_tiyn_does_not_reconcile(
    sqlite_url: str, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshot totals are checked against totals the database computed, not against themselves."""
    import pyarrow as pa

    import migrate.extract.run as extract_module

    _synth(sqlite_url, tmp_path)
    honest = extract_module.normalise_column

    def lose_a_tiyn(column, values, ctx):  # type: ignore[no-untyped-def]
        array, issues = honest(column, values, ctx)
        if column.name == "amount" and len(array) and array[0].is_valid:
            array = pa.concat_arrays([pa.array([array[0].as_py() - 1], pa.int64()), array[1:]])
        return array, issues

    monkeypatch.setattr(extract_module, "normalise_column", lose_a_tiyn)
    result = run_extract(config_for(workspace, sqlite_url), run_id="bug")
    assert not result.reconciled and result.exit_code == 1
    broken = {e.name for e in result.entities if not e.reconciled}
    assert broken == {"payments", "charges", "bonuses"}  # every entity with an amount
    differences = manifest(result.snapshot_dir)["entities"]["payments"]["differences"]
    assert sum(d["amount_micro"] for d in differences) == -10_000  # one tiyn per chunk


def test_a_wave_extracts_only_its_accounts_and_their_rows(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    planted = _synth(sqlite_url, tmp_path)
    config = config_for(workspace, sqlite_url)
    whole = run_extract(config, run_id="all")
    kcell = run_extract(config, wave="kcell", run_id="kcell")
    activ = run_extract(config, wave="activ", run_id="activ")
    assert kcell.reconciled and activ.reconciled
    accounts = pq.read_table(kcell.snapshot_dir / "accounts.parquet").to_pylist()
    assert accounts and {a["brand"] for a in accounts} == {"kcell"}
    numbers = {a["account_no"] for a in accounts}
    lines = pq.read_table(kcell.snapshot_dir / "lines.parquet").to_pylist()
    assert {ln["account_no"] for ln in lines} <= numbers
    rows = {run.run_id: {e.name: e.rows for e in run.entities} for run in (whole, kcell, activ)}
    for name in ("accounts", "clients", "bonuses", "orders", "charges"):
        assert rows["kcell"][name] + rows["activ"][name] == rows["all"][name], name
    # Orphan payments hang off no account, so they belong to no wave.
    orphans = len(planted["planted"]["ORPHAN_ROW"]["payments"])
    assert (
        rows["kcell"]["payments"] + rows["activ"]["payments"] + orphans == rows["all"]["payments"]
    )


def test_unreachable_database_is_a_source_error_without_password(workspace: Path) -> None:
    url = "postgresql://migrator:topsecret@127.0.0.1:1/legacy"
    with pytest.raises(SourceError) as caught:
        run_extract(config_for(workspace, url), run_id="down")
    assert "topsecret" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.postgres
def test_wrong_password_is_a_source_error_without_password(
    postgres_url: str, workspace: Path
) -> None:
    with create_engine(postgres_url).begin() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS billmig_pw_test"))
        conn.execute(sa.text("CREATE ROLE billmig_pw_test LOGIN PASSWORD 'right-one'"))
    url = sa.make_url(postgres_url).set(username="billmig_pw_test", password="wrong-one")
    try:
        with pytest.raises(SourceError) as caught:
            run_extract(
                config_for(workspace, url.render_as_string(hide_password=False)), run_id="pw"
            )
        message = str(caught.value)
        assert "wrong-one" not in message and "***" in message
    finally:
        with create_engine(postgres_url).begin() as conn:
            conn.execute(sa.text("DROP ROLE IF EXISTS billmig_pw_test"))


def test_broken_profile_query_names_the_problem(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    _synth(sqlite_url, tmp_path)
    profile = (workspace / "mappings/profiles/reference.toml").read_text(encoding="utf-8")
    broken = tmp_path / "broken.toml"
    broken.write_text(profile.replace("FROM bonuses", "FROM bonus_typo"), encoding="utf-8")
    config = config_for(workspace, sqlite_url, BILLMIG_SOURCE__PROFILE=str(broken))
    with pytest.raises(SourceError, match="bonus_typo"):
        run_extract(config, run_id="broken")
    assert not (config.runs_path / "broken").exists()  # no half-written snapshot left behind
    assert run_extract(config_for(workspace, sqlite_url), run_id="broken").reconciled


def test_a_killed_extract_leaves_nothing_that_stops_a_rerun(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    """A SIGKILL's leftovers are removed by the next extract of the same run id.

    kill -9 cannot be caught: it leaves staging, or (before staging) a snapshot/ without its
    manifest; the rerun removes either and succeeds.
    """
    _synth(sqlite_url, tmp_path)
    config = config_for(workspace, sqlite_url)
    staging = config.runs_path / "killed" / "snapshot.partial"
    staging.mkdir(parents=True)
    (staging / "accounts.parquet").write_bytes(b"half a file")
    old_style = config.runs_path / "killed" / "snapshot"
    old_style.mkdir()
    (old_style / "clients.parquet").write_bytes(b"no manifest beside me")
    done = run_extract(config, run_id="killed")
    assert done.reconciled and not staging.exists()
    assert (old_style / "manifest.json").is_file()
    assert (old_style / "clients.parquet").read_bytes() != b"no manifest beside me"


def test_missing_cutoff_and_reused_run_id_are_refused(
    sqlite_url: str, workspace: Path, tmp_path: Path
) -> None:
    _synth(sqlite_url, tmp_path)
    config = config_for(workspace, sqlite_url)
    run_extract(config, run_id="taken")
    recorded = (config.runs_path / "ledger.jsonl").read_bytes()
    with pytest.raises(InputError, match="already has a snapshot"):
        run_extract(config, run_id="taken")
    assert (config.runs_path / "ledger.jsonl").read_bytes() == recorded  # refused, not recorded
    toml = workspace / "billmig.toml"
    toml.write_text(toml.read_text().replace("cutoff = 2016-07-01T00:00:00", ""))
    with pytest.raises(ConfigError, match="cutoff"):
        run_extract(config_for(workspace, sqlite_url), run_id="nocut")


def test_sqlite_type_wobble_resumes_on_the_cursor_with_identical_bytes(
    sqlite_url: str, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADBC infers INT64 from the first rows and stops at a REAL; the stream must not notice."""
    import migrate.extract.reader as legacy_reader

    _synth(sqlite_url, tmp_path)
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        first = conn.execute(sa.text("SELECT MIN(account_no) FROM accounts")).scalar()
        conn.execute(
            sa.text("UPDATE accounts SET balance = ROUND(balance) WHERE account_no < :edge"),
            {"edge": str(int(first) + 1200)},
        )
        conn.execute(
            sa.text("UPDATE accounts SET balance = 10.5 WHERE account_no = :late"),
            {"late": str(int(first) + 1300)},
        )
    engine.dispose()
    config = config_for(workspace, sqlite_url, BILLMIG_EXTRACT__CHUNK_ROWS="500")
    resumed = run_extract(config, run_id="adbc")
    original = legacy_reader._available
    monkeypatch.setattr(
        legacy_reader, "_available", lambda m: m != "adbc_driver_sqlite.dbapi" and original(m)
    )
    cursor_only = run_extract(config, run_id="cursor")
    assert resumed.reconciled and cursor_only.reconciled
    assert file_hashes(resumed.snapshot_dir) == file_hashes(cursor_only.snapshot_dir)
    balances = pq.read_table(resumed.snapshot_dir / "accounts.parquet", columns=["balance_minor"])
    assert 1050 in balances.column(0).to_pylist()
