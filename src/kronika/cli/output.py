"""How the CLI shows things: Rich tables for people, JSON lines for programs, one-line errors.

Normal output goes to stdout; errors and notices go to stderr, so ``--json`` output can be
piped into another program untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import orjson
from rich.console import Console, JustifyMethod
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from kronika.domain.events import RecordedEvent, StreamInfo
from kronika.errors import (
    ConfigurationError,
    Forbidden,
    KronikaError,
    Unauthorized,
    ValidationError,
)

__all__ = [
    "ProgressBar",
    "err",
    "event_line",
    "event_to_dict",
    "events_table",
    "exit_code_for",
    "info_to_dict",
    "out",
    "print_error",
    "print_json",
    "streams_table",
]

out = Console(highlight=False, soft_wrap=True)
"""stdout, for results."""
err = Console(stderr=True, highlight=False, soft_wrap=True)
"""stderr, for errors and notices."""

DATA_WIDTH = 60
"""Characters of an event's JSON shown in a table cell before it is cut."""


def exit_code_for(exc: KronikaError) -> int:
    """2 for bad input, configuration or credentials (the caller must change something),
    else 1."""
    caller = (ValidationError, ConfigurationError, Unauthorized, Forbidden)
    return 2 if isinstance(exc, caller) else 1


def print_error(exc: KronikaError) -> None:
    """Print ``error: <message>`` on stderr, then one line per field error if several."""
    err.print(f"[bold red]error:[/] {escape(exc.message)}")
    if isinstance(exc, ValidationError) and len(exc.errors) > 1:
        for field, message in exc.errors:
            err.print(f"  {escape(field)}: {escape(message)}")


def print_json(value: Any) -> None:
    """Write ``value`` as one line of JSON on stdout (UUIDs and datetimes as strings)."""
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    sys.stdout.flush()


def event_to_dict(event: RecordedEvent) -> dict[str, Any]:
    """A recorded event as a JSON-ready dict."""
    return {
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "id": str(event.id),
        "data": event.data,
        "metadata": event.metadata,
        "tags": list(event.tags),
        "recorded_at": event.recorded_at.isoformat(),
    }


def info_to_dict(info: StreamInfo) -> dict[str, Any]:
    """Stream information as a JSON-ready dict."""
    return {
        "stream": info.stream,
        "version": info.version,
        "state": info.state.value,
        "truncated_before": info.truncated_before,
        "max_age": info.max_age,
        "max_count": info.max_count,
        "metadata": info.metadata,
    }


def streams_table(infos: Iterable[StreamInfo]) -> Table:
    """A table of streams: name, state, version, truncation point and retention limits."""
    table = Table("stream", "state", "version", "truncated before", "max age (s)", "max count")
    for info in infos:
        table.add_row(
            escape(info.stream),
            info.state.value,
            "-" if info.version is None else str(info.version),
            str(info.truncated_before),
            "-" if info.max_age is None else f"{info.max_age:g}",
            "-" if info.max_count is None else str(info.max_count),
        )
    return table


def _short_json(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= DATA_WIDTH else text[: DATA_WIDTH - 1] + "…"


_COLUMNS: list[tuple[str, JustifyMethod, bool]] = [
    ("pos", "right", True),
    ("stream", "left", True),
    ("ver", "right", True),
    ("type", "left", True),
    ("tags", "left", False),
    ("data", "left", False),
]
"""Table columns: name, justification, and whether the cell must stay on one line."""


def events_table(events: Iterable[RecordedEvent], title: str | None = None) -> Table:
    """A table of events: position, stream, version, type, tags and data (see ``--json``)."""
    table = Table(title=title)
    for name, justify, no_wrap in _COLUMNS:
        table.add_column(name, justify=justify, no_wrap=no_wrap, overflow="fold")
    for event in events:
        table.add_row(*(escape(cell) for cell in _cells(event)))
    return table


def _cells(event: RecordedEvent) -> list[str]:
    return [
        str(event.position),
        event.stream,
        str(event.version),
        event.type,
        "\n".join(event.tags),
        _short_json(event.data),
    ]


def event_line(event: RecordedEvent) -> str:
    """One event on one line, for live output (``events tail``)."""
    stamp = event.recorded_at.strftime("%Y-%m-%d %H:%M:%S")
    tags = f" [{', '.join(event.tags)}]" if event.tags else ""
    where = f"{event.stream}@{event.version}"
    return f"{event.position:>8}  {stamp}  {where}  {event.type}{tags}  {_short_json(event.data)}"


class ProgressBar:
    """A Rich progress bar on stderr for long operations (backup, restore, verify, retention),
    one task at a time; drawn only when stderr is a terminal and ``quiet`` is off.

    ``text`` is the label column's Rich format (``{task.description}`` and the task's
    ``{task.fields[...]}``); ``counts`` shows done/total rows and the time elapsed instead
    of a percentage and the time remaining; a ``transient`` bar is erased when it stops.
    It serves as a backup's :class:`~kronika.ops.backup.Progress` (``phase``, ``done``).
    """

    def __init__(
        self,
        quiet: bool,
        *,
        text: str = "{task.description:<12}",
        counts: bool = False,
        transient: bool = True,
    ) -> None:
        columns: list[ProgressColumn] = [
            TextColumn(text),
            BarColumn(),
            MofNCompleteColumn() if counts else TaskProgressColumn(),
            TimeElapsedColumn() if counts else TimeRemainingColumn(),
        ]
        self._progress = Progress(
            *columns, console=err, disable=quiet or not err.is_terminal, transient=transient
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase(self, label: str, total: int | None, **fields: Any) -> None:
        """Start a new task of ``total`` steps (``None``: not known yet) in place of the
        current one; ``fields`` fill the label's ``{task.fields[...]}``."""
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(label, total=total, **fields)

    def done(self, completed: int, *, total: int | None = None, **fields: Any) -> None:
        """Move the current task to ``completed`` steps (and to a new ``total``)."""
        if self._task is not None:
            self._progress.update(self._task, completed=completed, total=total, **fields)

    def advance(self, steps: int) -> None:
        """Move the current task ``steps`` further."""
        if self._task is not None:
            self._progress.advance(self._task, steps)
