"""Every ``kronika`` command the operations docs tell an operator to run exists, with the
options they give it.

A runbook step that names a command which was renamed, or an option which was dropped,
fails here instead of during an incident. Commands are taken from fenced ``console``,
``sh`` and ``bash`` blocks and from inline code spans that start with ``kronika``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from kronika.cli.app import app

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations"
FENCE = re.compile(r"^```(?:console|sh|bash|shell)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"`(?P<command>kronika [^`]+)`")
ROOT = typer.main.get_command(app)


def _lines(text: str) -> Iterator[str]:
    """The ``kronika ...`` command lines of a page, prompts and continuations joined."""
    for block in FENCE.finditer(text):
        joined = block["body"].replace("\\\n", " ")
        for line in joined.splitlines():
            command = line.strip().removeprefix("$ ")
            # "VAR=value kronika ..." and "... | kronika ..." still name a kronika command
            for part in re.split(r"\s*(?:\||&&|;)\s*", command):
                words = part.split()
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
                    words.pop(0)
                if words and words[0] == "kronika":
                    yield " ".join(words)
    for span in SPAN.finditer(text):
        yield span["command"]


def _commands() -> list[tuple[str, str]]:
    found = []
    for page in sorted(OPERATIONS.glob("*.md")):
        found.extend((page.name, line) for line in _lines(page.read_text(encoding="utf-8")))
    return found


def _options(command: Any) -> dict[str, bool]:
    """A command's option flags, each with whether it takes a value."""
    return {
        opt: not (param.is_flag or param.count)
        for param in command.params
        if param.param_type_name == "option"
        for opt in [*param.opts, *param.secondary_opts]
    }


def _problem(line: str) -> str | None:
    """Why ``line`` is not a command the CLI accepts, or ``None`` when it is."""
    try:
        words = shlex.split(line)[1:]
    except ValueError as exc:
        return f"cannot be split into words: {exc}"
    command: Any = ROOT
    path = ["kronika"]
    options = _options(command)
    while words:
        word = words.pop(0)
        subcommands = getattr(command, "commands", {})
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            if name in {"--help", "-h"}:
                continue
            if name not in options:
                return f"{' '.join(path)} has no option {name}"
            if options[name] and "=" not in word and words:
                words.pop(0)  # the option's value
            continue
        if word not in subcommands and "create" in subcommands:  # kronika backup FILE
            words.insert(0, word)
            word = "create"
        if word in subcommands:
            command = subcommands[word]
            path.append(word)
            options |= _options(command)
            continue
        takes_arguments = any(param.param_type_name == "argument" for param in command.params)
        if subcommands and not takes_arguments:
            return f"{' '.join(path)} has no command {word!r}"
    return None


COMMANDS = _commands()


def test_the_operations_docs_name_commands() -> None:
    assert len(COMMANDS) > 20, "the runbooks should tell operators which commands to run"


@pytest.mark.parametrize(("page", "line"), COMMANDS, ids=[f"{p}: {c}" for p, c in COMMANDS])
def test_every_command_in_the_operations_docs_exists(page: str, line: str) -> None:
    problem = _problem(line)
    assert problem is None, f"{page}: `{line}`: {problem}"
