"""Identity rules (SPEC §5.8) find exactly what synth planted, across the whole snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from migrate.core.numbering import default_plan
from migrate.extract.run import run_extract
from migrate.mapping.identity import (
    damaged_names,
    in_duplicate_groups,
    merged_away,
    normalise_msisdns,
    valid_national_ids,
)
from migrate.synth import SynthOptions, run_synth
from tests.migrate.helpers import config_for


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("identity")
    url = f"sqlite:///{root / 'legacy.sqlite'}"
    run_synth(url, SynthOptions(accounts=4_000, seed=5, anomaly_rate=0.005), root / "p.json")
    repo = Path(__file__).resolve().parents[2]
    (root / "billmig.toml").write_text((repo / "billmig.toml").read_text())
    (root / "mappings").symlink_to(repo / "mappings")
    result = run_extract(config_for(root, url, BILLMIG_EXTRACT__CHUNK_ROWS="1000"), run_id="s")
    return result.snapshot_dir, json.loads((root / "p.json").read_text(encoding="utf-8"))


def _keys(table: pa.Table, key: str, mask: np.ndarray) -> set[str]:  # type: ignore[type-arg]
    return {str(k) for k in pa.array(table.column(key)).filter(pa.array(mask)).to_pylist()}


def _planted(planted: dict, code: str, entity: str) -> set[str]:  # type: ignore[type-arg]
    return set(planted["planted"][code][entity])


def test_invalid_national_ids(snapshot: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    directory, planted = snapshot
    clients = pq.read_table(directory / "clients.parquet")
    invalid = ~valid_national_ids(clients.column("national_id").combine_chunks())
    assert _keys(clients, "client_id", invalid) == _planted(
        planted, "INVALID_NATIONAL_ID", "clients"
    )


def test_damaged_names(snapshot: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    directory, planted = snapshot
    clients = pq.read_table(directory / "clients.parquet")
    damaged = damaged_names(clients.column("name").combine_chunks())
    assert _keys(clients, "client_id", damaged) == _planted(planted, "ENCODING_DAMAGE", "clients")


def test_duplicate_clients_merge_into_the_earliest(snapshot: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    directory, planted = snapshot
    clients = pq.read_table(directory / "clients.parquet")
    national_ids = clients.column("national_id").combine_chunks()
    merged = merged_away(
        national_ids, clients.column("client_id").combine_chunks(), valid_national_ids(national_ids)
    )
    assert _keys(clients, "client_id", merged) == _planted(planted, "DUPLICATE_CLIENT", "clients")


def test_invalid_and_duplicate_msisdns(snapshot: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    directory, planted = snapshot
    lines = pq.read_table(directory / "lines.parquet")
    e164 = normalise_msisdns(lines.column("msisdn").combine_chunks(), default_plan())
    invalid = e164.is_null().to_numpy(zero_copy_only=False)
    assert _keys(lines, "iccid", invalid) == _planted(planted, "INVALID_MSISDN", "lines")
    active = (lines.column("status").to_numpy(zero_copy_only=False) == "active") & ~invalid
    shared = in_duplicate_groups(e164, active)
    assert _keys(lines, "iccid", shared) == _planted(planted, "DUPLICATE_MSISDN", "lines")


def test_msisdn_styles_normalise_to_e164() -> None:
    raw = pa.array(["77011234567", "87011234567", "+7 701 123 45 67", "7011234567", None])
    assert normalise_msisdns(raw, default_plan()).to_pylist() == ["+77011234567"] * 4 + [None]
    bad = pa.array(["770112345", "+1 202 555 0100", "77O1234567", "76012345670"])
    assert normalise_msisdns(bad, default_plan()).null_count == 4


def test_iin_check_digit_rule_with_its_second_weighting() -> None:
    # 000000000116: first weighting gives 10 on these eleven digits, the second gives 6.
    digits = [0] * 9 + [1, 1]
    assert sum(d * w for d, w in zip(digits, range(1, 12), strict=True)) % 11 == 10
    second = sum(d * w for d, w in zip(digits, [3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2], strict=True))
    ids = pa.array(["00000000011" + str(second % 11), "000000000110"])
    assert valid_national_ids(ids).tolist() == [True, False]
