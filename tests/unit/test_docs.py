"""The reference docs cover what the code offers: every CLI command, argument and option,
every store option of every backend, and every environment variable the CLI reads.

Store options come from one source of truth per backend: a module-level ``OPTIONS`` dict
(name -> converter) that the backend's ``from_url`` also validates against.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from kronika.cli.app import app

DOCS = Path(__file__).resolve().parents[2] / "docs"
CLI_DOC = DOCS / "reference" / "cli.md"
CONFIG_DOC = DOCS / "reference" / "configuration.md"

BACKEND_OPTIONS = {
    "memory": "kronika.store.memory.store",
    "sqlite": "kronika.store.sqlite",
    "postgresql": "kronika.store.postgres",
    "http": "kronika.store.http",
}
"""Backend -> the module whose ``OPTIONS`` lists the store options it accepts."""

HEADING = re.compile(r"^#+ `(?P<command>kronika[^`]*)`\s*$", re.MULTILINE)


def _commands(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(path, command)`` for a command and, recursively, its subcommands."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, f"{path} {name}")


COMMANDS = dict(_commands(typer.main.get_command(app), "kronika"))


def _sections(text: str) -> dict[str, str]:
    """The text under each ``# `kronika ...` `` heading, up to the next such heading."""
    matches = list(HEADING.finditer(text))
    ends = [m.start() for m in matches[1:]] + [len(text)]
    return {m["command"]: text[m.end() : end] for m, end in zip(matches, ends, strict=True)}


def _names(param: Any) -> list[str]:
    """How a parameter appears in the docs: its option flags, or its argument metavar."""
    if param.param_type_name == "argument":
        return [param.metavar or param.name.upper()]
    return list(param.opts)


def test_every_command_has_a_section_in_the_cli_reference() -> None:
    sections = _sections(CLI_DOC.read_text(encoding="utf-8"))
    missing = [path for path in COMMANDS if path not in sections]
    assert not missing, f"add a '## `COMMAND`' heading to {CLI_DOC.name} for: {missing}"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_argument_and_option_is_documented_under_its_command(path: str) -> None:
    section = _sections(CLI_DOC.read_text(encoding="utf-8")).get(path, "")
    missing = [
        name
        for param in COMMANDS[path].params
        for name in _names(param)
        if f"`{name}" not in section
    ]
    assert not missing, f"document in the '{path}' section of {CLI_DOC.name}: {missing}"


def test_every_environment_variable_of_the_cli_is_documented() -> None:
    config = CONFIG_DOC.read_text(encoding="utf-8")
    envvars = {
        param.envvar
        for command in COMMANDS.values()
        for param in command.params
        if isinstance(getattr(param, "envvar", None), str)
    }
    assert envvars, "the CLI reads at least KRONIKA_DATABASE_URL"
    assert [name for name in sorted(envvars) if f"`{name}`" not in config] == []


def _store_options(module_name: str) -> list[str]:
    """The option names (and passed-through URL parameters) a backend module declares."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        pytest.skip(f"{module_name} is not importable here (optional driver missing)")
    if getattr(module, "__file__", None) is None:
        pytest.skip(f"{module_name} is a bare folder: the backend is not written yet")
    options = getattr(module, "OPTIONS", None)
    assert isinstance(options, dict), f"{module_name} must export OPTIONS: dict[str, converter]"
    return [*options, *getattr(module, "PASSTHROUGH", ())]


def test_the_memory_backend_declares_the_common_options() -> None:
    assert {"namespace", "migrate"} <= set(_store_options(BACKEND_OPTIONS["memory"]))


@pytest.mark.parametrize("backend", sorted(BACKEND_OPTIONS))
def test_every_store_option_is_documented(backend: str) -> None:
    config = CONFIG_DOC.read_text(encoding="utf-8")
    names = _store_options(BACKEND_OPTIONS[backend])
    missing = sorted(name for name in names if f"`{name}`" not in config)
    assert not missing, f"document these {backend} store options in {CONFIG_DOC.name}: {missing}"


def _error_classes() -> list[type[Any]]:
    import kronika.errors

    found = (getattr(kronika.errors, name) for name in kronika.errors.__all__)
    return [obj for obj in found if isinstance(obj, type) and issubclass(obj, BaseException)]


@pytest.mark.parametrize("error", _error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_class_is_documented_with_status_and_code(error: type[Any]) -> None:
    rows = (DOCS / "reference" / "errors.md").read_text(encoding="utf-8").splitlines()
    row = next((r for r in rows if r.startswith(f"| `{error.__name__}` |")), None)
    assert row is not None, f"add a row for {error.__name__} to errors.md"
    assert f"| {error.status} | `{error.code}` |" in row


LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize(
    "page",
    [DOCS.parent / "README.md", *sorted(DOCS.rglob("*.md"))],
    ids=lambda page: str(page.relative_to(DOCS.parent)),
)
def test_relative_links_point_at_existing_files(page: Path) -> None:
    targets = LINK.findall(page.read_text(encoding="utf-8"))
    broken = [
        target
        for target, _ in targets
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert not broken, f"{page.name} links to missing files: {broken}"
