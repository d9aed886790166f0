"""Small helpers shared by the migrate tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from migrate.core.config import Config, load_config


def config_for(workspace: Path, url: str, **overrides: str) -> Config:
    """The workspace's configuration pointed at ``url``, with BILLMIG_* style overrides."""
    environ = {"BILLMIG_SOURCE_URL": url, **overrides}
    return load_config(workspace / "billmig.toml", environ=environ)


def manifest(snapshot_dir: Path) -> dict[str, Any]:
    """The snapshot's manifest as a dict."""
    loaded: dict[str, Any] = json.loads((snapshot_dir / "manifest.json").read_text("utf-8"))
    return loaded


def file_hashes(snapshot_dir: Path) -> dict[str, str]:
    """SHA-256 of every Parquet file of a snapshot, by file name."""
    import hashlib

    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(snapshot_dir.glob("*.parquet"))
    }


def new_workspace(root: Path) -> str:
    """Make ``root`` a workspace like the repository; returns its legacy SQLite URL."""
    repo = Path(__file__).resolve().parents[2]
    (root / "billmig.toml").write_text((repo / "billmig.toml").read_text("utf-8"), "utf-8")
    (root / "mappings").symlink_to(repo / "mappings")
    return f"sqlite:///{root / 'legacy.sqlite'}"
