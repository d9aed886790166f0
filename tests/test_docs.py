"""Runbooks and README stay true: every ``billmig`` command they show exists with its options."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from migrate.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "runbooks").glob("*.md")), ROOT / "README.md"]
COMMAND = re.compile(r"(?:\.venv/bin/)?billmig((?: [^`|\n]+)?)")


def _commands(path: Path) -> list[list[str]]:
    found = []
    for block in re.findall(r"```(?:sh|bash)?\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            line = line.split(" #")[0].split(">")[0].strip()
            match = COMMAND.search(line)
            if match and not line.startswith("pip "):  # pip install 'billmig[…]'  names a package
                found.append(shlex.split(match.group(1)))
    return found


def _check(words: list[str]) -> None:
    group: click.Command = cli
    options = {o for p in cli.params for o in getattr(p, "opts", [])}
    words = [w for w in words if w not in options]
    assert isinstance(group, click.Group)
    assert words, "bare billmig"
    command = group.commands.get(words[0])
    assert command is not None, f"no command {words[0]!r}"
    while isinstance(command, click.Group) and len(words) > 1:  # billmig window open …
        words = words[1:]
        command = command.commands.get(words[0])
        assert command is not None, f"no subcommand {words[0]!r}"
    known = {  # a hidden option is an old spelling kept only to refuse it with a hint
        o for p in command.params if not getattr(p, "hidden", False) for o in getattr(p, "opts", [])
    }
    for word in words[1:]:
        if word.startswith("--"):
            assert word.split("=")[0] in known, f"{words[0]} has no option {word}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_documented_command_exists(path: Path) -> None:
    commands = _commands(path)
    for words in commands:
        _check(words)


def test_the_extract_runbook_shows_commands() -> None:
    assert _commands(ROOT / "runbooks" / "01-extract.md")


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *DOCS[:-1]]


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.name)
def test_links_point_at_files_in_the_repository(path: Path) -> None:
    # observed: the README's first reference, ../shared/SPEC.md, did not exist in a clone
    text = path.read_text(encoding="utf-8")
    targets = [t for t in LINK.findall(text) if "://" not in t]
    outside = [t for t in targets if not (path.parent / t).resolve().is_relative_to(ROOT)]
    missing = [t for t in targets if not (path.parent / t).exists()]
    assert (outside, missing) == ([], [])
    assert "shared/" not in text, "names a file outside the repository"


def test_the_readme_leads_with_the_contract() -> None:
    first = LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))[0]
    assert first == "docs/SPEC.md"


def test_the_reason_code_table_is_the_enum() -> None:
    """SPEC §6 lists exactly the codes billmig raises, each with the severity it has."""
    from migrate.core.reasons import ReasonCode

    spec = (ROOT / "docs" / "SPEC.md").read_text(encoding="utf-8")
    section = spec.split("## 6.")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `([A-Z_0-9]+)` \| (\w+) \|", section, re.M)
    assert rows == [(code.value, code.severity.value) for code in ReasonCode]


def test_the_wheel_carries_every_workspace_file() -> None:
    # observed: after pip install the mapping files were not packaged (billmig init had nothing)
    import fnmatch
    import tomllib

    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]["data-files"]
    patterns = [p for globs in data_files.values() for p in globs]
    folders = ("mappings", "runbooks", "docs")
    files = [ROOT / "billmig.toml", *(p for d in folders for p in (ROOT / d).rglob("*"))]
    names = [str(p.relative_to(ROOT)) for p in files if p.is_file()]
    unpackaged = [n for n in names if not any(fnmatch.fnmatchcase(n, g) for g in patterns)]
    assert unpackaged == []
