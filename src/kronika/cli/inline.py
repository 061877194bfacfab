"""``kronika inline``: the inline projections recorded in a store, their rebuilds and records.

These commands work on the database (``--url``): inline projections run where the
database is, so a server (``--server``) has nothing to offer them yet.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from kronika.cli import output
from kronika.cli.context import run, settings_of
from kronika.errors import ConfigurationError
from kronika.store.base import StoreBase
from kronika.store.inline import InlineHandler, InlineRecord

__all__ = ["app", "record_to_dict"]

T = TypeVar("T")

app = typer.Typer(
    help="Inline projections: read models updated in each append's transaction.",
    no_args_is_help=True,
)
NAME = Annotated[str, typer.Argument(metavar="NAME", help="The inline projection.")]
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
APP = Annotated[
    str,
    typer.Option(
        "--app",
        envvar="KRONIKA_APP",
        help="Where the inline projections are: 'package.module:attribute'.",
    ),
]


def record_to_dict(record: InlineRecord) -> dict[str, Any]:
    """An inline projection's record as JSON: what ``kronika inline status --json`` prints."""
    rebuilt = record.rebuilt_at.isoformat() if record.rebuilt_at else None
    return {
        "name": record.name,
        "state": record.state,
        "needs_rebuild": record.needs_rebuild,
        "types": None if record.types is None else list(record.types),
        "registered_at": record.registered_at.isoformat(),
        "registered_position": record.registered_position,
        "rebuilt_at": rebuilt,
        "rebuilt_position": record.rebuilt_position,
    }


def _table(records: list[InlineRecord]) -> Table:
    table = Table("projection", "state", "types", "registered", "at position", "rebuilt")
    for record in records:
        table.add_row(
            record.name,
            record.state,
            "all" if record.types is None else ", ".join(record.types),
            record.registered_at.isoformat(timespec="seconds"),
            str(record.registered_position),
            record.rebuilt_at.isoformat(timespec="seconds") if record.rebuilt_at else "-",
        )
    return table


def _on_database(
    ctx: typer.Context,
    action: Callable[[StoreBase], Awaitable[T]],
    inline: list[InlineHandler] | None = None,
) -> T:
    """Open the database store of ``--url`` (with ``inline`` registered) and run ``action``."""
    settings = settings_of(ctx)
    if settings.remote:
        raise ConfigurationError(
            "kronika inline works on the database (--url), not through a server (--server): "
            "inline projections run in the process that opens the database"
        )
    store = settings.database_store()
    assert isinstance(store, StoreBase)  # every database backend is one
    if inline:
        store.register_inline(inline)

    async def go() -> T:
        async with store:
            return await action(store)

    return run(go())


@app.command("status")
def status(ctx: typer.Context, json: JSON = False) -> None:
    """List the inline projections recorded in the store and whether each needs a rebuild."""
    records = _on_database(ctx, lambda store: store.inline_status())
    if json:
        for record in records:
            output.print_json(record_to_dict(record))
        return
    if not records:
        output.err.print("no inline projections are recorded in this store", markup=False)
        return
    output.out.print(_table(records))


@app.command("rebuild")
def rebuild(
    ctx: typer.Context,
    name: NAME,
    app_ref: APP,
    json: JSON = False,
) -> None:
    """Rebuild an inline projection's read model from the whole log (appends wait meanwhile)."""
    from kronika.runtime.loading import load_inline

    handlers = load_inline(app_ref)
    if name not in {h.name for h in handlers}:
        known = ", ".join(sorted(h.name for h in handlers)) or "none"
        raise ConfigurationError(
            f"--app {app_ref} has no inline projection {name!r} (it has: {known})"
        )
    started = time.monotonic()
    record = _on_database(ctx, lambda store: store.rebuild_inline(name), list(handlers))
    if json:
        output.print_json(record_to_dict(record))
        return
    seconds = time.monotonic() - started
    output.out.print(
        f"rebuilt {name} up to position {record.rebuilt_position} in {seconds:.1f} s",
        markup=False,
    )


@app.command("drop")
def drop(ctx: typer.Context, name: NAME) -> None:
    """Forget the record of an inline projection removed from the application.

    Its tables and documents are left as they are; appends of its event types are no longer
    refused for lack of it.
    """
    _on_database(ctx, lambda store: store.drop_inline(name))
    output.err.print(f"dropped the record of inline projection {name}", markup=False)
