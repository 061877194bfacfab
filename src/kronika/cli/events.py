"""``kronika events``: read and follow the global log across all streams."""

from __future__ import annotations

from typing import Annotated, Any

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


@app.command()
def check(
    ctx: typer.Context,
    registry: Annotated[
        str,
        typer.Option(
            "--registry",
            envvar="KRONIKA_REGISTRY",
            help="The application's events: MODULE (registers into the default registry) or "
            "MODULE:ATTRIBUTE (an EventRegistry).",
        ),
    ],
    ignore_unregistered: Annotated[
        bool,
        typer.Option(
            "--ignore-unregistered", help="Leave out types no class claims (shared stores)."
        ),
    ] = False,
    as_json: Json = False,
) -> None:
    """List stored event types and versions that cannot be read: no class, or no upcaster
    path to the registered version. Exit 1 if there is any (a CI gate before a release)."""
    events_registry = _registry(registry)

    async def action(store: EventStore) -> list[Any]:
        from kronika.cqrs.checks import unreadable_event_types

        return await unreadable_event_types(
            store, events_registry, ignore_unregistered=ignore_unregistered
        )

    missing = with_store(ctx, action)
    for item in missing:
        if as_json:
            output.print_json({"type": item.type, "version": item.version, "reason": item.reason})
        else:
            output.out.print(f"{item.type} v{item.version}: {item.reason}", markup=False)
    if missing:
        output.err.print(f"{len(missing)} stored type/version pair(s) cannot be read", markup=False)
        raise typer.Exit(1)
    output.err.print("every stored event type and version can be read", markup=False)


def _registry(reference: str) -> Any:
    """The EventRegistry named by ``MODULE[:ATTRIBUTE]`` (importing MODULE registers)."""
    from kronika.cqrs.registry import EventRegistry, default_registry
    from kronika.errors import ConfigurationError
    from kronika.runtime.loading import import_module

    module_name, _, attribute = reference.partition(":")
    module = import_module(module_name, "--registry")
    found = getattr(module, attribute, None) if attribute else default_registry
    if not isinstance(found, EventRegistry):
        raise ConfigurationError(
            f"--registry: {reference!r} is not an EventRegistry (give MODULE or MODULE:ATTRIBUTE)"
        )
    return found
