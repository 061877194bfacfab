"""The ``kronika`` command: the root options, error reporting, and the command groups.

Every :class:`kronika.errors.KronikaError` a command raises is printed as one line
``error: <message>`` on stderr; the exit status is 2 for bad input or configuration and 1
for everything else (conflicts, missing streams, an unreachable database).
"""

from __future__ import annotations

import asyncio
import platform
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

import kronika
from kronika.cli import (
    backup,
    demo,
    doctor,
    events,
    inline,
    keys,
    maintenance,
    migrate,
    output,
    processors,
    replay,
    retention,
    serve,
    smoke,
    streams,
    verify,
    worker,
)
from kronika.cli.context import Settings, run, settings_of
from kronika.errors import KronikaError
from kronika.store import DEFAULT_URL, EventStore

__all__ = ["app", "main"]

T = TypeVar("T")
SCHEMA_TIMEOUT = 10.0
"""Seconds ``kronika version`` waits for the database to report its schema version."""


class KronikaGroup(TyperGroup):
    """The root group: turns Kronika's errors into a clear message and an exit status."""

    def invoke(self, ctx: Any) -> Any:  # Any: typer's bundled or click's Context
        """Run the chosen command, reporting any ``KronikaError`` without a traceback."""
        try:
            return super().invoke(ctx)
        except KronikaError as exc:
            from kronika.cli.remote import explained  # only now: it loads the HTTP client

            output.print_error(explained(exc, settings_of(ctx)))
            raise typer.Exit(output.exit_code_for(exc)) from None


app = typer.Typer(
    name="kronika",
    cls=KronikaGroup,
    help="Kronika: an event store and event-sourcing platform. Operate a store from the shell.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(streams.app, name="streams")
app.add_typer(events.app, name="events")
app.command(name="migrate")(migrate.migrate)
app.command(name="demo")(demo.demo)
app.command(name="worker")(worker.worker)
app.command(name="serve")(serve.serve)
app.command(name="doctor")(doctor.doctor)
app.command(name="smoke")(smoke.smoke)
app.command(name="verify")(verify.verify)
app.add_typer(processors.app, name="processors")
app.add_typer(replay.app, name="replay")
app.add_typer(inline.app, name="inline")
app.add_typer(keys.app, name="keys")
app.add_typer(backup.app, name="backup")
app.command(name="restore")(backup.restore)
app.add_typer(retention.app, name="retention")
app.add_typer(maintenance.app, name="maintenance")


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="KRONIKA_DATABASE_URL",
            help="Store URL: memory://, sqlite:///PATH, postgresql://... (http(s)://: a server).",
            show_default=DEFAULT_URL,
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            help="Namespace (tenant) to work in.",
            show_default="the store's default",
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            envvar="KRONIKA_SERVER",
            help="Work through a running kronika serve at http(s)://HOST:PORT instead of "
            "on the database.",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="KRONIKA_TOKEN",
            help="API key or JWT for --server (prefer the environment variable).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Kronika: an event store and event-sourcing platform."""
    ctx.obj = Settings.from_options(url, namespace, server, token)


@app.command()
def version(ctx: typer.Context) -> None:
    """Show Kronika's version, the configured store's engine and its schema version."""
    settings = settings_of(ctx)
    store = settings.make_store()
    rows = {
        "kronika": kronika.__version__,
        "python": platform.python_version(),
        "engine": store.engine,
        "url": settings.shown_url,
        "namespace": store.namespace,
        "schema": _schema(store),
    }
    for label, value in rows.items():
        output.out.print(f"{label:<10} {value}", markup=False)


def _schema(store: EventStore) -> str:
    """The database's schema version against this code's, or why it is unknown."""
    try:
        status = run(_within(store.schema_status(), SCHEMA_TIMEOUT))
    except KronikaError as exc:
        return f"unknown ({exc.message})"
    except TimeoutError:
        return f"unknown (no answer within {SCHEMA_TIMEOUT:g} s)"
    if status.latest == 0:
        return "none (nothing is stored on disk)"
    if status.too_new:
        state = "newer than this Kronika: upgrade Kronika"
    elif status.pending:
        state = f"{len(status.pending)} migrations pending: run kronika migrate"
    else:
        state = "current"
    return f"{status.current} of {status.latest} ({state})"


async def _within(awaitable: Awaitable[T], seconds: float) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


def main() -> None:
    """Entry point of the ``kronika`` console script and ``python -m kronika``."""
    app(prog_name="kronika")
