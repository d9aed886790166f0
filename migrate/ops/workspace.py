"""``billmig init [DIR]``: a new workspace from what the installed package carries.

The wheel installs the workspace template under ``<prefix>/share/billmig/workspace``: the
commented ``billmig.toml``, ``mappings/`` (tariffs, dispositions, window policy, profiles,
compensation rules), ``runbooks/`` and ``docs/`` (the product contract). In a source checkout
(an editable install) the repository itself is the template. ``init`` copies it, writes a
``.gitignore`` that keeps run outputs and credentials out of git, and runs ``git init`` so
every edit of the mapping files becomes part of the audit trail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrate.core.config import CONFIG_FILE, SECRETS_FILE
from migrate.core.errors import EXIT_OK, InputError
from migrate.core.rendering import TableData

TEMPLATE_PARTS = (CONFIG_FILE, "mappings", "runbooks", "docs")
GITIGNORE = f"""# run outputs and demo databases are regenerated, never committed
runs/
*.sqlite
# credentials live here or in the environment, never in git
{SECRETS_FILE}
.venv/
"""


@dataclass(frozen=True)
class InitResult:
    """What ``init`` created."""

    directory: Path
    created: tuple[str, ...]
    git: str
    """What became of ``git init``: done, already a repository, or why not."""

    @property
    def exit_code(self) -> int:
        """Always 0: refusals raise."""
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"directory": str(self.directory), "created": list(self.created), "git": self.git}

    def tables(self) -> list[TableData]:
        """What was created, then the next steps."""
        steps = (
            (f"cd {self.directory}", "every command reads ./billmig.toml"),
            ("billmig doctor", "configuration, databases, drivers, PDF libraries, disk"),
            (
                "billmig demo",
                "the whole job on embedded SQLite databases (20 000 accounts, 15–45 s)",
            ),
            (
                f"export BILLMIG_SOURCE_URL=… BILLMIG_TARGET_URL=… (or {SECRETS_FILE})",
                "your legacy and target databases; then runbooks/00-overview.md",
            ),
        )
        return [
            TableData(
                title=f"new billmig workspace {self.directory}",
                headers=("created",),
                rows=[(name,) for name in self.created],
                footer=f"git: {self.git}",
            ),
            TableData(title="next", headers=("run", "what it does"), rows=list(steps)),
        ]


def template_root() -> Path:
    """Where the workspace template is: the installed data folder, else the source checkout.

    Raises:
        InputError: neither holds a billmig.toml (a broken install).
    """
    candidates = [
        Path(sysconfig.get_path("data")) / "share" / "billmig" / "workspace",
        Path(sys.prefix) / "share" / "billmig" / "workspace",
        Path(__file__).resolve().parents[2],  # a source checkout: the repository root
    ]
    for candidate in candidates:
        if (candidate / CONFIG_FILE).is_file() and (candidate / "mappings").is_dir():
            return candidate
    raise InputError(
        "the installed billmig carries no workspace template (share/billmig/workspace)",
        hint="reinstall billmig from its wheel: pip install --force-reinstall billmig",
    )


def init_workspace(directory: Path) -> InitResult:
    """Create a workspace in ``directory`` (made if missing; must hold no billmig.toml).

    Raises:
        InputError: ``directory`` already is a workspace, or is a file.
    """
    directory = directory.absolute()
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is a file", hint="name a folder for the new workspace")
    if (directory / CONFIG_FILE).exists():
        raise InputError(
            f"{directory} already is a workspace ({CONFIG_FILE} exists)",
            hint="billmig doctor checks it; init never overwrites a workspace",
        )
    source = template_root()
    directory.mkdir(parents=True, exist_ok=True)
    created = []
    for part in TEMPLATE_PARTS:
        origin, copy = source / part, directory / part
        if not origin.exists() or copy.exists():
            continue
        if origin.is_dir():
            shutil.copytree(origin, copy, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, copy)
        created.append(part + ("/" if origin.is_dir() else ""))
    gitignore = directory / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(GITIGNORE, encoding="utf-8")
        created.append(".gitignore")
    return InitResult(directory, tuple(created), _git_init(directory))


def _git_init(directory: Path) -> str:
    if (directory / ".git").exists():
        return "already a repository"
    git = shutil.which("git")
    if git is None:
        return "git not found: run `git init` yourself, then commit billmig.toml and mappings/"
    done = subprocess.run(
        [git, "init", "-q", str(directory)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return f"git init failed ({done.stderr.strip()[:120]}): run it yourself"
    return "initialised: commit billmig.toml and mappings/ (they are the audit trail)"
