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
            if match:
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
