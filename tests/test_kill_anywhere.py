"""The kill-anywhere suite: every phase SIGKILLed at random moments, resumed, and compared.

A few kills per phase here (CI, SQLite and PostgreSQL); the campaign issue 17 asks for (≥ 20
kills per phase on 5 000 accounts) runs the same driver by hand, see ``tests/kill_anywhere.py``
and runbook 00. Each phase of the victim workspace must finish after its kills, with the
reference's snapshot and mapped hashes, the reference's target rows after load, delta and
compensate, validate PASS after load and delta, a pack that verifies, and a rollback that
leaves none of the run's rows and reloads to the reference's rows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kill_anywhere import campaign, synthesise

ACCOUNTS = 400
KILLS = 2


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kill-legacy") / "legacy.sqlite"
    synthesise(path, ACCOUNTS)
    return path


def _assert_survived(legacy: Path, targets: tuple[str, str], workdir: Path) -> None:
    results = campaign(legacy, targets, KILLS, seed=2016, workdir=workdir)
    assert [r.phase for r in results] == [
        "extract", "map", "load", "delta", "validate", "report", "compensate", "rollback",
    ]  # fmt: skip
    for result in results:
        assert result.stuck == [], f"{result.phase}: stuck workspace {result.stuck}"
        assert result.mismatches == [], f"{result.phase}: {result.mismatches}"
    assert sum(r.kills for r in results) >= len(results)  # most attempts killed something


@pytest.mark.kill
def test_every_phase_survives_kills_on_sqlite(legacy: Path, tmp_path: Path) -> None:
    targets = (f"sqlite:///{tmp_path / 'reference.sqlite'}", f"sqlite:///{tmp_path / 'v.sqlite'}")
    _assert_survived(legacy, targets, tmp_path)


@pytest.mark.kill
@pytest.mark.postgres
def test_every_phase_survives_kills_on_postgresql(
    legacy: Path, tmp_path: Path, postgres_url: str, second_postgres_url: str
) -> None:
    _assert_survived(legacy, (postgres_url, second_postgres_url), tmp_path)
