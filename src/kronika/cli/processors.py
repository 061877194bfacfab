"""``kronika processors``: state and lag, failed keys, dead letters, retry, skip, pause."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from kronika.cli import output
from kronika.cli.context import with_store
from kronika.cli.worker import APP_OPTION
from kronika.errors import NotFound
from kronika.store.protocol import EventStore

if TYPE_CHECKING:
    from kronika.runtime import admin
    from kronika.runtime.processor import Processor

__all__ = ["app"]

app = typer.Typer(
    help="Operate processors: state, lag, failed keys and dead letters.", no_args_is_help=True
)
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _admin() -> Any:
    """The runtime's admin module, imported when a command needs it (it loads pydantic)."""
    from kronika.runtime import admin

    return admin


def _load(reference: str) -> list[Processor]:
    from kronika.runtime.loading import load_processors

    return load_processors(reference)


def _find(processors: list[Processor], name: str) -> Processor:
    for processor in processors:
        if processor.name == name:
            return processor
    raise NotFound(f"no processor {name!r} in the app")


@app.command("status")
def status(ctx: typer.Context, app_ref: Annotated[str, APP_OPTION], json: JSON = False) -> None:
    """Show each processor's state, position, lag and failed keys."""
    processors = _load(app_ref)

    async def action(store: EventStore) -> list[admin.ProcessorStatus]:
        return [await _admin().status(store, p) for p in processors]

    states = with_store(ctx, action)
    if json:
        for state in states:
            output.print_json(_admin().status_dict(state))
        return
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
    for s in states:
        lag = f"{s.lag_events}{'+' if s.lag_capped else ''}"
        table.add_row(
            s.name,
            s.state.value,
            str(s.position),
            str(s.head),
            lag,
            f"{s.lag_seconds:.1f}",
            str(s.parked),
            str(s.quarantined),
            ", ".join(s.owners) or "-",
        )
    output.out.print(table)


@app.command("failed")
def failed(
    ctx: typer.Context,
    processor: Annotated[
        str | None, typer.Option("--processor", help="Only this processor.")
    ] = None,
    json: JSON = False,
) -> None:
    """List parked and quarantined keys with their last error."""
    failures = with_store(ctx, lambda store: _admin().failed_keys(store, processor))
    if json:
        for failure in failures:
            output.print_json(_admin().failure_dict(failure))
        return
    table = Table(
        "processor", "key", "state", "attempts", "position", "event type", "next retry", "error"
    )
    for f in failures:
        retry = f.next_retry_at.isoformat(timespec="seconds") if f.next_retry_at else "-"
        table.add_row(
            f.processor,
            f.key,
            f.state.value,
            str(f.attempts),
            str(f.position),
            f.event_type,
            retry,
            f.error,
        )
    output.out.print(table)


@app.command("dead-letters")
def dead_letters(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="PROCESSOR", help="The processor.")],
    key: Annotated[str, typer.Argument(metavar="KEY", help="The failed key (usually a stream).")],
    app_ref: Annotated[str, APP_OPTION],
    json: JSON = False,
) -> None:
    """Show the events a failed key is holding back, from the failing one on."""
    processor = _find(_load(app_ref), name)
    events = with_store(ctx, lambda store: _admin().dead_letters(store, processor, key))
    if json:
        for event in events:
            output.print_json(output.event_to_dict(event))
        return
    output.out.print(output.events_table(events, title=f"{name}: {key}"))


def _operate(ctx: typer.Context, verb: str, action: str, *args: str) -> None:
    operation = getattr(_admin(), action)
    with_store(ctx, lambda store: operation(store, *args))
    output.err.print(f"{verb}: {' '.join(args)}", markup=False)


@app.command("retry")
def retry(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="PROCESSOR", help="The processor.")],
    key: Annotated[str, typer.Argument(metavar="KEY", help="The failed key.")],
) -> None:
    """Ask the worker owning the key to retry it now, with fresh attempts."""
    _operate(ctx, "retry requested", "request_retry", name, key)


@app.command("skip")
def skip(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="PROCESSOR", help="The processor.")],
    key: Annotated[str, typer.Argument(metavar="KEY", help="The failed key.")],
) -> None:
    """Ask the worker owning the key to skip its failing event and go on."""
    _operate(ctx, "skip requested", "request_skip", name, key)


@app.command("pause")
def pause(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="PROCESSOR", help="The processor.")],
) -> None:
    """Pause a processor: workers release its partitions."""
    _operate(ctx, "paused", "pause", name)


@app.command("resume")
def resume(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="PROCESSOR", help="The processor.")],
) -> None:
    """Resume a paused processor."""
    _operate(ctx, "resumed", "resume", name)
