"""``billmig load`` / ``rollback`` / ``load --export``: idempotent, resumable, exact (issue 4).

One small legacy database (1 500 accounts) is synthesised once per module and extracted three
ways: all accounts ("all"), wave kcell and wave activ; each run is mapped. Targets are fresh
databases per test on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from csv import DictReader, reader
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from migrate.core.config import Config
from migrate.core.db import create_engine
from migrate.core.errors import ConfigError, InputError, TargetError
from migrate.core.lock import workspace_lock
from migrate.core.runs import RunsFolder
from migrate.core.target_schema import LOAD_JOURNAL, LOAD_RUN, METADATA, TARGET_TABLES
from migrate.extract.run import run_extract
from migrate.load.export import run_export
from migrate.load.run import LoadResult, run_load, run_rollback
from migrate.mapping.run import run_map
from migrate.synth import SynthOptions, run_synth
from tests.kill_anywhere import fingerprints
from tests.migrate.helpers import config_for, new_workspace

OPTIONS = SynthOptions(accounts=1_500, seed=7, anomaly_rate=0.01)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace with three mapped runs: all, kcell and activ."""
    root = tmp_path_factory.mktemp("load")
    url = new_workspace(root)
    run_synth(url, OPTIONS, root / "planted.json")
    config = config_for(root, url)
    run_extract(config, run_id="all")
    run_extract(config, run_id="kcell", wave="kcell")
    run_extract(config, run_id="activ", wave="activ")
    for run in ("all", "kcell", "activ"):
        run_map(config, run_id=run)
    return {"root": root, "url": url}


def load_anywhere(config: Config, *, run_id: str, **options: Any) -> LoadResult:
    """Load into a second target on purpose (``--another-target``).

    The module's one workspace loads its runs into a new target per test, which a workspace
    refuses unless told (tested in test_target_lock.py).
    """
    return run_load(config, run_id=run_id, another_target=True, **options)


def _config(runs: dict[str, Any], target: str, **overrides: str) -> Any:
    return config_for(runs["root"], runs["url"], BILLMIG_TARGET_URL=target, **overrides)


def _mapped_rows(runs: dict[str, Any], run: str) -> dict[str, int]:
    mapped = runs["root"] / "runs" / run / "mapped"
    return {
        t.name: pq.ParquetFile(mapped / f"{t.name}.parquet").metadata.num_rows
        for t in TARGET_TABLES
    }


def test_load_is_idempotent_and_rollback_restores_the_prior_target(
    runs: dict[str, Any], any_url: str
) -> None:
    config = _config(runs, any_url, BILLMIG_LOAD__BATCH_ROWS="700")
    first = load_anywhere(config, run_id="kcell")
    assert first.outcome == "loaded"
    prior = fingerprints(any_url)
    assert {name: count for name, (count, _) in prior.items()} == _mapped_rows(runs, "kcell")

    loaded = load_anywhere(config, run_id="activ")
    assert loaded.outcome == "loaded"
    after = fingerprints(any_url)
    offerings = _mapped_rows(runs, "activ")["product_offering"]
    assert after["product_offering"][0] == prior["product_offering"][0]  # shared catalogue
    assert after["billing_account"][0] == prior["billing_account"][0] + sum(
        1 for _ in pq.read_table(runs["root"] / "runs/activ/mapped/billing_account.parquet")
        .column("billing_account_id")
    )  # fmt: skip
    assert offerings > 0

    again = load_anywhere(config, run_id="activ")
    assert again.outcome == "already loaded"
    assert sum(t.loaded_now for t in again.table_loads) == 0
    assert fingerprints(any_url) == after

    undone = run_rollback(config, run_id="activ")
    assert undone.outcome == "rolled back"
    assert fingerprints(any_url) == prior  # exact prior counts and rows
    counts = {t.name: (t.rows_before, t.rows_after) for t in undone.table_rollbacks}
    assert counts["billing_account"] == (after["billing_account"][0], prior["billing_account"][0])
    twice = run_rollback(config, run_id="activ")
    assert twice.outcome == "already rolled back"
    assert fingerprints(any_url) == prior

    assert load_anywhere(config, run_id="activ").outcome == "loaded"  # a rolled-back run reloads
    assert fingerprints(any_url) == after


def test_an_overlapping_run_is_refused_until_the_other_is_rolled_back(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    config = _config(runs, target)
    load_anywhere(config, run_id="kcell")
    with pytest.raises(InputError, match=r"run kcell \(wave kcell, loaded\) .* overlaps run all"):
        load_anywhere(config, run_id="all")
    run_rollback(config, run_id="kcell")
    assert load_anywhere(config, run_id="all").outcome == "loaded"
    with pytest.raises(InputError, match="overlaps run activ"):
        load_anywhere(config, run_id="activ")


def test_rollback_after_cutover_needs_force(runs: dict[str, Any], tmp_path: Path) -> None:
    target = f"sqlite:///{tmp_path / 'target.sqlite'}"
    config = _config(runs, target)
    load_anywhere(config, run_id="kcell")
    engine = create_engine(target)
    with engine.begin() as conn:  # what the cutover gate records (issue 7)
        conn.execute(sa.update(LOAD_RUN).values(status="cut_over"))
    engine.dispose()
    with pytest.raises(InputError, match="was cut over"):
        run_rollback(config, run_id="kcell")
    assert fingerprints(target)["billing_account"][0] > 0
    forced = run_rollback(config, run_id="kcell", force=True)
    assert forced.outcome == "rolled back"
    assert all(count == 0 for count, _ in fingerprints(target).values())


def test_a_refused_batch_names_table_batch_and_key_and_the_load_resumes(
    runs: dict[str, Any], postgres_url: str
) -> None:
    config = _config(runs, postgres_url, BILLMIG_LOAD__BATCH_ROWS="300")
    actions = pq.read_table(runs["root"] / "runs/kcell/mapped/balance_action.parquet")
    clash = actions.column("idempotency_key")[700].as_py()  # in batch 2 (rows 600..899)
    engine = create_engine(postgres_url)
    METADATA.create_all(engine)
    with engine.begin() as conn:  # a row already in the target with the same idempotency key
        conn.execute(
            sa.insert(METADATA.tables["balance_action"]).values(
                action_id="00000000-0000-0000-0000-000000000001",
                kind="compensation",
                amount_minor=1,
                currency="KZT",
                idempotency_key=clash,
                run_id="elsewhere",
            )
        )
    with pytest.raises(TargetError) as refused:
        load_anywhere(config, run_id="kcell")
    message = str(refused.value)
    assert "batch 2 of balance_action" in message
    assert f"idempotency_key = {clash}" in message
    with engine.connect() as conn:
        journal = conn.execute(
            sa.select(LOAD_JOURNAL.c.table_name, sa.func.count()).group_by(
                LOAD_JOURNAL.c.table_name
            )
        ).all()
        in_target = conn.execute(
            sa.select(sa.func.count()).select_from(METADATA.tables["balance_action"])
        ).scalar_one()
    committed = dict(journal)
    assert committed["balance_action"] == 2 and "product" in committed
    assert in_target == 1 + 600  # the stranger plus the two committed batches, nothing more
    with engine.begin() as conn:
        conn.execute(sa.delete(METADATA.tables["balance_action"]).where(
            METADATA.tables["balance_action"].c.run_id == "elsewhere"))  # fmt: skip
    engine.dispose()
    resumed = load_anywhere(config, run_id="kcell")
    assert resumed.outcome == "resumed"
    skipped = {t.name: t.skipped_batches for t in resumed.table_loads}
    assert skipped["balance_action"] == 2
    counts = {name: count for name, (count, _) in fingerprints(postgres_url).items()}
    assert counts == _mapped_rows(runs, "kcell")


def _billmig(root: Path, target: str, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BILLMIG_SOURCE_URL": "sqlite:///unused",
        "BILLMIG_TARGET_URL": target,
        "BILLMIG_LOAD__BATCH_ROWS": "100",
        "CI": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "migrate", "--quiet", *args],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _committed_batches(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(LOAD_JOURNAL.name):
            return 0
        return int(conn.execute(sa.select(sa.func.count()).select_from(LOAD_JOURNAL)).scalar_one())


@pytest.mark.slow
@pytest.mark.postgres
def test_a_load_killed_at_random_moments_resumes_to_the_same_target(
    runs: dict[str, Any], postgres_url: str, second_postgres_url: str
) -> None:
    """SIGKILL a load again and again, at random moments a few batches apart, then resume.

    Each round waits until 1–4 more batches are committed, then kills after a random 0–8 ms:
    sometimes between two commits, mostly while COPY is writing a batch.
    """
    root = runs["root"]
    reference = _billmig(root, second_postgres_url, "load", "--run", "all", "--another-target")
    assert reference.wait(timeout=300) == 0, reference.stderr.read() if reference.stderr else ""
    chooser = random.Random(20160701)
    journal = create_engine(postgres_url)
    kills, seen = 0, 0
    try:
        for _ in range(200):
            process = _billmig(root, postgres_url, "load", "--run", "all", "--another-target")
            goal = seen + chooser.randint(1, 4)
            while process.poll() is None and (seen := _committed_batches(journal)) < goal:
                time.sleep(0.002)
            if process.poll() is not None:
                assert process.returncode == 0, process.stderr.read() if process.stderr else ""
                break
            time.sleep(chooser.uniform(0, 0.008))
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
        else:
            pytest.fail("the load never finished between kills")
        seen = _committed_batches(journal)
    finally:
        journal.dispose()
    assert kills >= 5, "too few interruptions to prove anything: use smaller batches"
    final = _billmig(root, postgres_url, "load", "--run", "all", "--another-target")
    assert final.wait(timeout=300) == 0
    assert fingerprints(postgres_url) == fingerprints(second_postgres_url)
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        status = conn.execute(sa.select(LOAD_RUN.c.status)).scalars().all()
        batches = conn.execute(sa.select(sa.func.count()).select_from(LOAD_JOURNAL)).scalar_one()
    engine.dispose()
    assert status == ["loaded"]
    assert batches == seen  # one journal row per batch, none twice


def test_a_second_phase_is_refused_while_one_holds_the_workspace(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    config = _config(runs, f"sqlite:///{tmp_path / 'target.sqlite'}")
    lock = RunsFolder.of(config).lock
    with workspace_lock(lock, "map", "other-run"), pytest.raises(InputError) as busy:
        load_anywhere(config, run_id="kcell")
    assert "map of run other-run by" in str(busy.value)
    assert "since" in str(busy.value)
    assert load_anywhere(config, run_id="kcell").outcome == "loaded"  # released on exit


def test_export_writes_files_and_control_totals(runs: dict[str, Any], tmp_path: Path) -> None:
    config = _config(runs, "sqlite:///unused")
    result = run_export(config, run_id="kcell", directory=tmp_path / "vendor")
    control = json.loads((tmp_path / "vendor" / "control.json").read_text("utf-8"))
    mapped = runs["root"] / "runs" / "kcell" / "mapped"
    for table in TARGET_TABLES:
        doc = control["files"][f"{table.name}.csv"]
        source = pq.read_table(mapped / f"{table.name}.parquet")
        assert doc["rows"] == source.num_rows
        csv = tmp_path / "vendor" / f"{table.name}.csv"
        assert doc["sha256"] == hashlib.sha256(csv.read_bytes()).hexdigest()
        with csv.open(encoding="utf-8", newline="") as handle:  # mojibake holds U+0085
            assert sum(1 for _ in reader(handle)) == source.num_rows + 1
    debts = pq.read_table(mapped / "debt_item.parquet").column("amount_minor").to_pylist()
    assert control["files"]["debt_item.csv"]["sums"]["amount_minor"] == {"KZT": sum(debts)}
    assert result.control["mapped_manifest_sha256"] == control["mapped_manifest_sha256"]


def test_export_neutralises_formula_cells_unless_asked_for_exact_data(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    config = _config(runs, "sqlite:///unused")
    source = runs["root"] / "runs" / "kcell"
    run = runs["root"] / "runs" / "formulas"
    shutil.copytree(source / "mapped", run / "mapped")
    party = pq.read_table(run / "mapped" / "party.parquet")
    planted = ['=HYPERLINK("http://x","y")', "+77011234567", "-5", "@SUM(A1)", "\tTab"]
    names = planted + party["name"].to_pylist()[len(planted) :]
    party = party.set_column(party.schema.get_field_index("name"), "name", pa.array(names))
    pq.write_table(party, run / "mapped" / "party.parquet")
    run_export(config, run_id="formulas", directory=tmp_path / "safe")
    control = json.loads((tmp_path / "safe" / "control.json").read_text("utf-8"))
    assert control["formula_cells"] == "neutralised"
    assert control["files"]["party.csv"]["neutralised_cells"] == len(planted)
    with (tmp_path / "safe" / "party.csv").open(encoding="utf-8", newline="") as handle:
        written = [row["name"] for row in DictReader(handle)][: len(planted)]
    assert written == ["'" + name for name in planted]
    debts = control["files"]["debt_item.csv"]  # integer amounts, negative ones too, untouched
    assert debts["neutralised_cells"] == 0
    run_export(config, run_id="formulas", directory=tmp_path / "exact", exact_cells=True)
    exact = json.loads((tmp_path / "exact" / "control.json").read_text("utf-8"))
    assert (
        exact["formula_cells"] == "exact" and exact["files"]["party.csv"]["neutralised_cells"] == 0
    )
    with (tmp_path / "exact" / "party.csv").open(encoding="utf-8", newline="") as handle:
        assert [row["name"] for row in DictReader(handle)][: len(planted)] == planted


def test_load_needs_a_target_url_and_a_mapped_run(runs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="no target database URL"):
        load_anywhere(config_for(runs["root"], runs["url"]), run_id="kcell")
    with pytest.raises(InputError, match=r"needs map first.*billmig map --run nope"):
        load_anywhere(_config(runs, "sqlite:///unused"), run_id="nope")


@pytest.mark.postgres
def test_a_type_error_names_the_table_batch_and_first_key(
    runs: dict[str, Any], postgres_url: str
) -> None:
    config = _config(runs, postgres_url, BILLMIG_LOAD__BATCH_ROWS="500")
    engine = create_engine(postgres_url)
    METADATA.create_all(engine)
    with engine.begin() as conn:  # a target whose column is narrower than the data
        conn.execute(sa.text("ALTER TABLE debt_item ALTER COLUMN legacy_key TYPE VARCHAR(5)"))
    engine.dispose()
    debts = pq.read_table(runs["root"] / "runs/kcell/mapped/debt_item.parquet")
    with pytest.raises(TargetError) as refused:
        load_anywhere(config, run_id="kcell")
    message = str(refused.value)
    assert "batch 0 of debt_item" in message
    assert f"legacy_key = {debts.column('legacy_key')[0].as_py()}" in message
    assert "too long" in message
    counts = {name: count for name, (count, _) in fingerprints(postgres_url).items()}
    mapped = _mapped_rows(runs, "kcell")
    assert counts["balance_bucket"] == mapped["balance_bucket"]  # earlier tables are whole
    assert counts["debt_item"] == 0
