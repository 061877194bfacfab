"""``kronika events``: read and follow the global log across all streams."""

from __future__ import annotations

from typing import Annotated

import typer

from kronika.cli import output
from kronika.cli.context import run as run_async
from kronika.cli.context import settings_of, with_store
from kronika.domain.events import RecordedEvent
from kronika.store import EventStore

__all__ = ["app"]

app = typer.Typer(help="Read and follow the global log of all streams.", no_args_is_help=True)

Types = Annotated[
    list[str] | None, typer.Option("--type", help="Only events of this type; repeatable.")
]
Categories = Annotated[
    list[str] | None,
    typer.Option("--category", help="Only streams of this category (name before '-'); repeatable."),
]
Tags = Annotated[
    list[str] | None, typer.Option("--tag", help="Only events carrying this tag; repeatable.")
]
Json = Annotated[bool, typer.Option("--json", help="Print NDJSON, one event per line.")]


@app.command()
def read(
    ctx: typer.Context,
    *,
    from_position: Annotated[int, typer.Option(min=0, help="First global position.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many events.")] = None,
    types: Types = None,
    categories: Categories = None,
    tags: Tags = None,
    as_json: Json = False,
) -> None:
    """Read the global log in commit order, optionally filtered."""

    async def action(store: EventStore) -> list[RecordedEvent]:
        return await store.read_all(
            from_position=from_position, limit=limit, types=types, categories=categories, tags=tags
        )

    events = with_store(ctx, action)
    if as_json:
        for event in events:
            output.print_json(output.event_to_dict(event))
        return
    output.out.print(output.events_table(events, title=f"global log ({len(events)} events)"))


@app.command()
def tail(
    ctx: typer.Context,
    *,
    from_position: Annotated[
        int | None,
        typer.Option(min=0, help="Start here (default: only events appended from now on)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many events (default: never).")
    ] = None,
    types: Types = None,
    categories: Categories = None,
    tags: Tags = None,
    as_json: Json = False,
) -> None:
    """Follow the global log live, printing events as they are appended, until Ctrl-C."""
    store = settings_of(ctx).make_store()

    async def follow() -> None:
        async with store:
            start = from_position
            if start is None:
                start = await store.head_position() + 1
            output.err.print(f"following from position {start}; Ctrl-C stops", style="dim")
            count = 0
            subscription = store.subscribe(
                from_position=start, types=types, categories=categories, tags=tags
            )
            async for event in subscription:
                _show(event, as_json)
                count += 1
                if limit is not None and count >= limit:
                    break

    run_async(follow())


def _show(event: RecordedEvent, as_json: bool) -> None:
    if as_json:
        output.print_json(output.event_to_dict(event))
    else:
        output.out.print(output.event_line(event), markup=False)
