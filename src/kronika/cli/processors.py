"""``kronika processors``: state and lag, failed keys, dead letters, retry, skip, pause.

Each command works on the database of ``--url`` or through the server of ``--server``
(see :mod:`kronika.cli.operations`) and renders the same rows either way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from kronika.cli import output
from kronika.cli.operations import FailureAction, operate
from kronika.cli.worker import APP_OPTION

__all__ = ["APP", "JSON", "app", "failed_table", "print_rows", "status_table"]

app = typer.Typer(
    help="Operate processors: state, lag, failed keys and dead letters.", no_args_is_help=True
)
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
APP = Annotated[str | None, APP_OPTION]
"""``--app``: optional; locally it gives exact lag, a server uses its own KRONIKA_APP."""
PROCESSOR = Annotated[str, typer.Argument(metavar="PROCESSOR", help="The processor.")]


def _lag(row: dict[str, Any]) -> str:
    return f"{row['lag_events']}{'+' if row['lag_capped'] else ''}"


def _when(stamp: str | None) -> str:
    """An ISO 8601 time to the second, or ``-``."""
    return datetime.fromisoformat(stamp).isoformat(timespec="seconds") if stamp else "-"


def status_table(rows: list[dict[str, Any]]) -> Table:
    """Processors (``status_dict``): state, position, head, lag, failing keys, workers."""
    table = Table(
        "processor",
        "state",
        "position",
        "head",
        "lag (events)",
        "lag (s)",
        "parked",
        "quarantined",
        "workers",
    )
    for row in rows:
        table.add_row(
            row["name"],
            row["state"],
            str(row["position"]),
            str(row["head"]),
            _lag(row),
            f"{row['lag_seconds']:.1f}",
            str(row["parked"]),
            str(row["quarantined"]),
            ", ".join(row["workers"]) or "-",
        )
    return table


def failed_table(rows: list[dict[str, Any]]) -> Table:
    """Failed keys (``failure_dict``): attempts, failing event, next retry, last error."""
    table = Table(
        "processor", "key", "state", "attempts", "position", "event type", "next retry", "error"
    )
    for row in rows:
        table.add_row(
            row["processor"],
            row["key"],
            row["state"],
            str(row["attempts"]),
            str(row["position"]),
            row["event_type"],
            _when(row["next_retry_at"]),
            row["error"],
        )
    return table


def print_rows(
    rows: list[dict[str, Any]], as_json: bool, table: Callable[[list[dict[str, Any]]], Table]
) -> None:
    """One JSON line per row with ``--json``, else the rows as ``table`` renders them."""
    if as_json:
        for row in rows:
            output.print_json(row)
        return
    output.out.print(table(rows))


@app.command("status")
def status(ctx: typer.Context, app_ref: APP = None, json: JSON = False) -> None:
    """Show each processor's state, position, lag and failed keys."""
    rows = operate(ctx, lambda ops: ops.processors(), app=app_ref)
    print_rows(rows, json, status_table)


@app.command("failed")
def failed(
    ctx: typer.Context,
    processor: Annotated[
        str | None, typer.Option("--processor", help="Only this processor.")
    ] = None,
    json: JSON = False,
) -> None:
    """List parked and quarantined keys with their last error."""
    rows = operate(ctx, lambda ops: ops.failed(processor))
    print_rows(rows, json, failed_table)


@app.command("dead-letters")
def dead_letters(
    ctx: typer.Context,
    name: PROCESSOR,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The failed key (usually a stream).")],
    app_ref: APP = None,
    json: JSON = False,
) -> None:
    """Show the events a failed key is holding back, from the failing one on."""
    events = operate(ctx, lambda ops: ops.dead_letters(name, key), app=app_ref)
    if json:
        for event in events:
            output.print_json(output.event_to_dict(event))
        return
    output.out.print(output.events_table(events, title=f"{name}: {key}"))


def _request(ctx: typer.Context, action: FailureAction, name: str, key: str) -> None:
    operate(ctx, lambda ops: ops.request(action, name, key))
    output.err.print(f"{action} requested: {name} {key}", markup=False)


@app.command("retry")
def retry(
    ctx: typer.Context,
    name: PROCESSOR,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The failed key.")],
) -> None:
    """Ask the worker owning the key to retry it now, with fresh attempts."""
    _request(ctx, "retry", name, key)


@app.command("skip")
def skip(
    ctx: typer.Context,
    name: PROCESSOR,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The failed key.")],
) -> None:
    """Ask the worker owning the key to skip its failing event and go on."""
    _request(ctx, "skip", name, key)


@app.command("pause")
def pause(ctx: typer.Context, name: PROCESSOR) -> None:
    """Pause a processor: workers release its partitions."""
    operate(ctx, lambda ops: ops.pause(name))
    output.err.print(f"paused: {name}", markup=False)


@app.command("resume")
def resume(ctx: typer.Context, name: PROCESSOR) -> None:
    """Resume a paused processor."""
    operate(ctx, lambda ops: ops.resume(name))
    output.err.print(f"resumed: {name}", markup=False)
