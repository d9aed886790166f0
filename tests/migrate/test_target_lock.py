"""One writer per target, runs owned by their workspace, rollbacks that cannot strand a target.

The defects of issue 17 these pin down: two loads of one run from two workspaces ended in a
raw ``duplicate key … party_pkey``; two compensations at once in raw duplicate-key errors; the
same run could be loaded into a second target without a word and the delta replayed into
either; a rollback after a compensation stopped on a foreign-key error with some tables
emptied (one transaction per table), after which neither load nor rollback could proceed.

Fixture: 300 synthetic accounts, one run ``all``. The Kcell 2017 rule file grants 5 GB to
every Алга / Престиж / Престиж+ line, so a compensation writes ``balance_action`` rows of run
``compensation-dec17`` that refer to run ``all``'s accounts.
"""

from __future__ import annotations

import logging
import shutil
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from migrate.core import target_lock as target_lock_module
from migrate.core.db import create_engine
from migrate.core.errors import InputError
from migrate.core.target_lock import Workspace, ensure_journal, target_lock
from migrate.core.target_schema import BALANCE_ACTION, LOAD_RUN, TARGET_LOCK
from migrate.extract.run import run_extract
from migrate.load import run as load_module
from migrate.load.run import run_load, run_rollback
from migrate.mapping.run import run_map
from migrate.ops.compensation import run_compensate
from migrate.ops.delta import run_delta
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import config_for, new_workspace
from tests.migrate.test_load import fingerprints

KCELL_RULES = (
    Path(__file__).resolve().parents[2] / "mappings/compensation/kcell-2017-12-billing.toml"
)


@pytest.fixture(autouse=True)
def _brief_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target_lock_module, "WAIT_SECONDS", 0.5)


STRANGER = Workspace("00000000-0000-4000-8000-000000000000", "elsewhere:/srv/other-workspace")


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace with run ``all`` mapped (copied per test: load records are per workspace)."""
    root = tmp_path_factory.mktemp("owned")
    url = new_workspace(root)
    run_synth(url, SynthOptions(accounts=300, seed=11), root / "planted.json")
    config = config_for(root, url)
    run_extract(config, run_id="all")
    run_map(config, run_id="all")
    return {"root": root, "url": url}


def _workspace(mapped: dict[str, Any], where: Path) -> Path:
    shutil.copytree(mapped["root"], where)
    (where / "runs" / ".workspace-id").unlink(missing_ok=True)  # a workspace of its own
    return where


def _config(root: Path, mapped: dict[str, Any], target: str) -> Any:
    legacy = str(mapped["url"]).replace(str(mapped["root"]), str(root))
    return config_for(root, legacy, BILLMIG_TARGET_URL=target)


def test_a_held_target_refuses_a_second_writer_and_names_it(
    mapped: dict[str, Any], tmp_path: Path, any_url: str
) -> None:
    config = _config(_workspace(mapped, tmp_path / "w"), mapped, any_url)
    engine = create_engine(any_url)
    try:
        with target_lock(engine, "delta", "other-run", STRANGER), pytest.raises(InputError) as busy:
            run_load(config, run_id="all")
    finally:
        engine.dispose()
    message = str(busy.value)
    assert (
        "is busy: delta of run other-run from workspace elsewhere:/srv/other-workspace" in message
    )
    assert "pid" in message and "since" in message
    assert run_load(config, run_id="all").outcome == "loaded"  # released when the holder ends


def test_two_loads_of_one_run_at_once_one_loads_the_other_is_told(
    mapped: dict[str, Any], tmp_path: Path, postgres_url: str
) -> None:
    """Before: the loser failed with a raw ``duplicate key … "party_pkey"``."""
    configs = [_config(_workspace(mapped, tmp_path / name), mapped, postgres_url) for name in "ab"]
    outcomes: dict[int, str] = {}

    def load(n: int) -> None:
        try:
            outcomes[n] = run_load(configs[n], run_id="all").outcome
        except InputError as exc:
            outcomes[n] = str(exc)

    threads = [threading.Thread(target=load, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o == "loaded" for o in outcomes.values()) == [False, True], outcomes
    (refusal,) = (o for o in outcomes.values() if o != "loaded")
    assert "is busy: load of run all" in refusal or "belongs to another workspace" in refusal
    assert "duplicate key" not in refusal


def test_a_run_belongs_to_the_workspace_that_loaded_it(
    mapped: dict[str, Any], tmp_path: Path, sqlite_url: str
) -> None:
    first = _config(_workspace(mapped, tmp_path / "a"), mapped, sqlite_url)
    second = _config(_workspace(mapped, tmp_path / "b"), mapped, sqlite_url)
    run_load(first, run_id="all")
    with pytest.raises(InputError, match=r"run all in this target belongs to another workspace"):
        run_load(second, run_id="all")
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        owner = conn.execute(sa.select(LOAD_RUN.c.workspace)).scalar_one()
    engine.dispose()
    assert owner.endswith(str(tmp_path / "a"))


def test_a_second_target_for_one_run_is_refused_unless_asked_and_delta_follows_the_load(
    mapped: dict[str, Any], tmp_path: Path
) -> None:
    root = _workspace(mapped, tmp_path / "w")
    first_target = f"sqlite:///{tmp_path / 'first.sqlite'}"
    second_target = f"sqlite:///{tmp_path / 'second.sqlite'}"
    run_load(_config(root, mapped, first_target), run_id="all")
    second = _config(root, mapped, second_target)
    with pytest.raises(InputError, match=r"run all is loaded into another target .*first\.sqlite"):
        run_load(second, run_id="all")
    assert run_load(second, run_id="all", another_target=True).outcome == "loaded"
    with pytest.raises(InputError, match=r"loaded into .*second\.sqlite.*is another target"):
        run_delta(_config(root, mapped, first_target), run_id="all")
    assert run_delta(second, run_id="all").reconciled


def test_a_holder_that_died_is_taken_over_with_a_line_saying_so(
    mapped: dict[str, Any], tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = _config(_workspace(mapped, tmp_path / "w"), mapped, sqlite_url)
    engine = create_engine(sqlite_url)
    ensure_journal(engine)
    with engine.begin() as conn:  # what a SIGKILLed load leaves: its row, not its lock
        conn.execute(
            sa.insert(TARGET_LOCK).values(
                lock_name="target",
                holder='{"phase": "load", "run_id": "all", "workspace": "x:/w", '
                '"workspace_id": "w", "user": "ops", "host": "x", "pid": 4242}',
            )
        )
    engine.dispose()
    with caplog.at_level(logging.WARNING, logger="billmig"):
        assert run_load(config, run_id="all").outcome == "loaded"
    assert "took over the target lock: its last holder, load of run all" in caplog.text
    assert "pid 4242" in caplog.text


def _compensated(mapped: dict[str, Any], root: Path, target: str) -> Any:
    config = _config(root, mapped, target)
    run_load(config, run_id="all")
    result = run_compensate(
        config,
        rules=KCELL_RULES,
        incident="dec17",
        start=date(2016, 7, 1),
        end=date(2016, 7, 2),
    )
    assert result.applied > 0  # 5 GB grants: rows of another run on run all's accounts
    return config


def _actions_of(url: str, run_id: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(sa.func.count())
            .select_from(BALANCE_ACTION)
            .where(BALANCE_ACTION.c.run_id == run_id)
        ).scalar_one()
    engine.dispose()
    return int(found)


def test_a_rollback_after_a_compensation_takes_its_rows_too_in_one_transaction(
    mapped: dict[str, Any], tmp_path: Path, any_url: str
) -> None:
    """Before: a foreign-key error on PostgreSQL after some tables were emptied."""
    config = _compensated(mapped, _workspace(mapped, tmp_path / "w"), any_url)
    credits = _actions_of(any_url, "compensation-dec17")
    undone = run_rollback(config, run_id="all")
    assert undone.outcome == "rolled back"
    assert undone.dependent_runs == ("compensation-dec17",)
    actions = next(t for t in undone.table_rollbacks if t.name == "balance_action")
    assert actions.dependent_rows_deleted == credits
    assert all(count == 0 for count, _ in fingerprints(any_url).values())
    assert run_load(config, run_id="all").outcome == "loaded"  # the target is usable again


def test_a_rollback_stopped_half_way_leaves_the_target_whole_and_can_be_finished(
    mapped: dict[str, Any], tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure (or a kill) inside the rollback: the database undoes it all, nothing strands."""
    config = _compensated(mapped, _workspace(mapped, tmp_path / "w"), postgres_url)
    before = fingerprints(postgres_url)
    real = load_module._rollback_table
    seen: list[str] = []

    def dies_on_the_fourth_table(conn: sa.Connection, table: sa.Table, run_id: str) -> Any:
        seen.append(table.name)
        if len(seen) == 4:
            raise KeyboardInterrupt  # as if stopped while deleting
        return real(conn, table, run_id)

    monkeypatch.setattr(load_module, "_rollback_table", dies_on_the_fourth_table)
    with pytest.raises(KeyboardInterrupt):
        run_rollback(config, run_id="all")
    monkeypatch.setattr(load_module, "_rollback_table", real)
    assert fingerprints(postgres_url) == before  # three tables' deletes were undone with it
    with pytest.raises(InputError, match="half rolled back"):
        run_load(config, run_id="all")
    assert run_rollback(config, run_id="all").outcome == "rolled back"
    assert all(count == 0 for count, _ in fingerprints(postgres_url).values())


def _at_once(*calls: Any) -> list[Any]:
    """Run the calls in threads at the same moment; their results or the exceptions raised."""
    results: list[Any] = [None] * len(calls)

    def run(n: int) -> None:
        try:
            results[n] = calls[n]()
        except Exception as exc:  # what each caller would see
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_compensations_and_two_deltas_at_once_apply_once_without_a_raw_error(
    mapped: dict[str, Any], tmp_path: Path, postgres_url: str
) -> None:
    """Before: the second of two compensations (or deltas) ended in a raw duplicate key."""
    first_root = _workspace(mapped, tmp_path / "a")
    first = _config(first_root, mapped, postgres_url)
    run_load(first, run_id="all")
    second = _config(
        _workspace({**mapped, "root": first_root}, tmp_path / "b"), mapped, postgres_url
    )

    def compensate(config: Any) -> Any:
        return lambda: run_compensate(
            config, rules=KCELL_RULES, incident="dec17", start=date(2016, 7, 1),
            end=date(2016, 7, 2),
        )  # fmt: skip

    results = _at_once(compensate(first), compensate(second))
    assert not any(isinstance(r, Exception) for r in results), results
    assert sorted(r.applied > 0 for r in results) == [False, True]  # one applied, one found it
    assert results[0].applied + results[1].applied == _actions_of(
        postgres_url, "compensation-dec17"
    )
    deltas = _at_once(
        lambda: run_delta(first, run_id="all"), lambda: run_delta(second, run_id="all")
    )
    assert not any(isinstance(r, Exception) for r in deltas), deltas
    assert all(r.reconciled for r in deltas)
