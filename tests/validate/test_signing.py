"""Keys: made outside the workspace, registered inside it, chosen per role, refused when wrong."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from migrate.cli.main import main
from migrate.core.config import load_config
from migrate.core.errors import ConfigError, InputError
from validate.signing import BUILDER, load_registry, new_key, signing_key


@pytest.fixture
def in_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(workspace)
    monkeypatch.delenv("BILLMIG_SIGNER", raising=False)
    return workspace


def test_keys_new_keeps_the_private_half_outside_and_registers_the_public_half(
    in_workspace: Path, key_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["keys", "new", "a.sarsenova", "--name", "Aigerim Sarsenova",
            "--role", "finance_controller"]  # fmt: skip
    assert main(args) == 0
    private = key_dir / "a.sarsenova.pem"
    assert private.is_file() and stat.S_IMODE(private.stat().st_mode) == 0o600
    assert not list(in_workspace.rglob("a.sarsenova.pem"))  # never inside the workspace
    assert (in_workspace / "keys" / "a.sarsenova.pub.pem").is_file()
    assert 'roles = ["finance_controller"]' in (in_workspace / "signers.toml").read_text()
    assert main(args) == 2  # a key is never overwritten
    assert "already exists" in capsys.readouterr().err
    assert main(["--json", "keys", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)["signers"]
    mine = next(s for s in listed if s["id"] == "a.sarsenova")
    assert mine["private_key_here"] is True and mine["roles"] == ["finance_controller"]


def test_a_key_folder_inside_the_workspace_and_bad_ids_are_refused(
    in_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(in_workspace / "billmig.toml", environ={})
    with pytest.raises(InputError, match="not valid"):
        new_key(config, "../../etc/x", "X", ["internal_audit"])
    with pytest.raises(InputError, match="neither builder nor one of"):
        new_key(config, "x", "X", ["janitor"])
    monkeypatch.setenv("BILLMIG_KEY_DIR", str(in_workspace / "secrets"))
    with pytest.raises(ConfigError, match="inside the workspace"):
        new_key(config, "inside", "Inside", ["internal_audit"])


def test_the_signing_key_must_be_registered_for_the_role(in_workspace: Path) -> None:
    config = load_config(in_workspace / "billmig.toml", environ={})
    new_key(config, "auditor-only", "A. Auditor", ["internal_audit"])
    registry = load_registry(config)
    with pytest.raises(InputError, match="not registered for role builder"):
        signing_key(config, registry, BUILDER, "auditor-only")
    with pytest.raises(InputError, match=r"not registered in signers\.toml"):
        signing_key(config, registry, BUILDER, "nobody")
    assert signing_key(config, registry, "internal_audit", "auditor-only").signer.id == (
        "auditor-only"
    )


def test_a_private_key_that_does_not_match_its_registration_is_refused(
    in_workspace: Path, key_dir: Path
) -> None:
    config = load_config(in_workspace / "billmig.toml", environ={})
    new_key(config, "swapped-a", "A", ["internal_audit"])
    new_key(config, "swapped-b", "B", ["internal_audit"])
    a, b = key_dir / "swapped-a.pem", key_dir / "swapped-b.pem"
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    try:
        with pytest.raises(InputError, match="does not match the public key registered"):
            signing_key(config, load_registry(config), "internal_audit", "swapped-a")
    finally:
        a.write_bytes(a_bytes)
