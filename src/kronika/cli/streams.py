"""``kronika streams``: list streams; append to, read, inspect, delete and truncate one."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kronika.cli import output
from kronika.cli.context import with_store
from kronika.cli.parsing import (
    events_from_ndjson,
    make_event,
    parse_expected_version,
    parse_json_object,
)
from kronika.domain import names
from kronika.domain.events import NewEvent
from kronika.errors import ValidationError
from kronika.store import EventStore

__all__ = ["app"]

app = typer.Typer(
    help="List streams; append to, read, inspect, delete and truncate one.", no_args_is_help=True
)


def _check_stream(value: str) -> str:
    """Reject a bad stream name before the store is opened (and a database file created)."""
    return names.check_stream(value)


Stream = Annotated[
    str,
    typer.Argument(help="The stream name, e.g. order-42.", callback=_check_stream),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _events_for_append(
    *,
    event_type: str | None,
    data: str | None,
    metadata: str | None,
    event_id: str | None,
    tags: list[str],
    from_stdin: bool,
) -> list[NewEvent]:
    if from_stdin:
        if event_type is not None or data is not None or event_id or metadata:
            raise ValidationError("give TYPE, DATA_JSON, --id and --metadata per line", "--stdin")
        return events_from_ndjson(sys.stdin, tags)
    if event_type is None:
        raise ValidationError("is required (or pass --stdin to read NDJSON events)", "TYPE")
    payload = parse_json_object(data, "DATA_JSON") if data is not None else {}
    meta = parse_json_object(metadata, "--metadata") if metadata is not None else None
    return [make_event(event_type, payload, metadata=meta, event_id=event_id, tags=tags)]


@app.command()
def append(
    ctx: typer.Context,
    *,
    stream: Stream,
    event_type: Annotated[
        str | None, typer.Argument(metavar="TYPE", help="The event type, e.g. OrderPlaced.")
    ] = None,
    data: Annotated[
        str | None, typer.Argument(metavar="DATA_JSON", help="The payload, a JSON object.")
    ] = None,
    expected_version: Annotated[
        str,
        typer.Option(help="any, no_stream, stream_exists or the stream's current version."),
    ] = "any",
    tag: Annotated[list[str] | None, typer.Option(help="A tag; repeat for several.")] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="The event's UUID (makes retries idempotent).")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option(help="Event metadata, a JSON object.", show_default=False)
    ] = None,
    from_stdin: Annotated[
        bool,
        typer.Option("--stdin", help='Read events as NDJSON lines {"type", "data", ...}.'),
    ] = False,
    as_json: Json = False,
) -> None:
    """Append one event, or a batch of NDJSON events from stdin, atomically."""
    expected = parse_expected_version(expected_version)
    events = _events_for_append(
        event_type=event_type,
        data=data,
        metadata=metadata,
        event_id=event_id,
        tags=tag or [],
        from_stdin=from_stdin,
    )
    result = with_store(ctx, lambda s: s.append(stream, events, expected_version=expected))
    if as_json:
        output.print_json(
            {"next_expected_version": result.next_expected_version, "position": result.position}
        )
        return
    output.out.print(
        f"appended {len(events)} event(s) to {stream!r}: version {result.next_expected_version},"
        f" position {result.position}",
        markup=False,
    )


@app.command()
def read(
    ctx: typer.Context,
    *,
    stream: Stream,
    from_version: Annotated[
        int | None, typer.Option(min=0, help="First version to read (default: start or end).")
    ] = None,
    backwards: Annotated[bool, typer.Option("--backwards", help="Newest first.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many events.")] = None,
    as_json: Json = False,
) -> None:
    """Read the events of one stream (NDJSON with --json)."""
    events = with_store(
        ctx,
        lambda s: s.read_stream(
            stream, from_version=from_version, backwards=backwards, limit=limit
        ),
    )
    if as_json:
        for event in events:
            output.print_json(output.event_to_dict(event))
        return
    output.out.print(output.events_table(events, title=f"{stream} ({len(events)} events)"))


@app.command("list")
def list_streams(
    ctx: typer.Context,
    *,
    prefix: Annotated[
        str | None, typer.Option(help="Only streams whose name starts with this.")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="Only streams of this category (the name before '-').")
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(help="Start after this name (the last one of the previous page)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many streams.")] = 100,
    as_json: Json = False,
) -> None:
    """List streams in name order with their version and state, a page at a time."""
    found = with_store(
        ctx,
        lambda s: s.list_streams(after=after, prefix=prefix, category=category, limit=limit),
    )
    if as_json:
        for stream in found:
            output.print_json(output.info_to_dict(stream))
    else:
        output.out.print(output.streams_table(found))
    if len(found) == limit:
        output.err.print(f"more may follow: --after {found[-1].stream}", markup=False)


@app.command()
def info(ctx: typer.Context, *, stream: Stream, as_json: Json = False) -> None:
    """Show a stream's version, state, truncation point and metadata."""
    found = output.info_to_dict(with_store(ctx, lambda s: s.stream_info(stream)))
    if as_json:
        output.print_json(found)
        return
    for key, value in found.items():
        output.out.print(f"{key:>16}: {value}", markup=False)


@app.command()
def delete(
    ctx: typer.Context,
    *,
    stream: Stream,
    hard: Annotated[
        bool, typer.Option("--hard", help="Tombstone it: it can never be written or read again.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Soft-delete a stream (it may be recreated), or hard-delete it with --hard."""
    if not yes:
        question = "Tombstone (hard-delete)" if hard else "Soft-delete"
        typer.confirm(f"{question} stream {stream!r}?", abort=True, err=True)

    async def action(store: EventStore) -> None:
        await store.delete_stream(stream, hard=hard)

    with_store(ctx, action)
    done = "tombstoned" if hard else "soft-deleted"
    output.out.print(f"{done} stream {stream!r}", markup=False)


@app.command()
def truncate(
    ctx: typer.Context,
    *,
    stream: Stream,
    before: Annotated[
        int, typer.Option(min=0, help="Remove events with a version lower than this.")
    ],
) -> None:
    """Remove the events of a stream below a version; later versions stay readable."""

    async def action(store: EventStore) -> None:
        await store.truncate_stream(stream, before)

    with_store(ctx, action)
    output.out.print(f"truncated stream {stream!r} before version {before}", markup=False)
