"""billmig.toml, environment overrides, secrets and URL masking."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from migrate.core.config import load_config, mask_url, scrub
from migrate.core.errors import ConfigError


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={})
    assert config.sha256 == ""
    assert config.extract.chunk_rows == 100_000
    assert config.source.url is None


def test_environment_overrides_the_file(workspace: Path) -> None:
    config = load_config(
        workspace / "billmig.toml",
        environ={"BILLMIG_EXTRACT__CHUNK_ROWS": "5000", "BILLMIG_SOURCE_URL": "sqlite:///x.db"},
    )
    assert config.extract.chunk_rows == 5000
    assert config.extract.cutoff == datetime(2016, 7, 1)
    assert config.source_url() == "sqlite:///x.db"
    assert [w.name for w in config.waves] == ["kcell", "activ"]


def test_a_cutoff_with_an_offset_becomes_local_time(workspace: Path) -> None:
    config = load_config(
        workspace / "billmig.toml",
        environ={"BILLMIG_EXTRACT__CUTOFF": "2016-06-30T18:00:00+00:00"},
    )
    assert config.extract.cutoff == datetime(2016, 7, 1)  # Almaty was UTC+6 in 2016


def test_secrets_file_supplies_urls(workspace: Path) -> None:
    (workspace / ".secrets.toml").write_text('[source]\nurl = "postgresql://u:pw@h/db"\n')
    config = load_config(workspace / "billmig.toml", environ={})
    assert config.source.url == "postgresql://u:pw@h/db"


def test_a_url_in_the_committed_file_is_refused(workspace: Path) -> None:
    path = workspace / "billmig.toml"
    path.write_text(path.read_text() + '\n[target]\nurl = "postgresql://u:pw@h/db"\n')
    with pytest.raises(ConfigError, match=r"must not be in billmig\.toml"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"BILLMIG_EXTRACT__CHUNK_ROWS": "many"}, "extract.chunk_rows"),
        ({"BILLMIG_EXTRACT__CUTOFF": "yesterday"}, "extract.cutoff"),
        ({"BILLMIG_WORKSPACE__TIMEZONE": "Mars/Olympus"}, "workspace.timezone"),
        ({"BILLMIG_EXTRACT__SPEED": "1"}, "unknown key extract.speed"),
    ],
)
def test_invalid_settings_name_the_key(
    workspace: Path, override: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(workspace / "billmig.toml", environ=override)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


def test_unknown_wave_lists_the_known_ones(workspace: Path) -> None:
    config = load_config(workspace / "billmig.toml", environ={})
    with pytest.raises(ConfigError, match="known: kcell, activ"):
        config.wave("beeline")


def test_passwords_are_masked() -> None:
    url = "postgresql://migrator:s3cr3t@db.example:5432/legacy"
    assert mask_url(url) == "postgresql://migrator:***@db.example:5432/legacy"
    assert "s3cr3t" not in scrub(f"could not connect to {url} with s3cr3t", url)
