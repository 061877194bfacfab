"""The ``kronika`` command: the root options, error reporting, and the command groups.

Every :class:`kronika.errors.KronikaError` a command raises is printed as one line
``error: <message>`` on stderr; the exit status is 2 for bad input or configuration and 1
for everything else (conflicts, missing streams, an unreachable database).
"""

from __future__ import annotations

import platform
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

import kronika
from kronika.cli import demo, events, migrate, output, processors, streams, worker
from kronika.cli.context import Settings, settings_of
from kronika.errors import KronikaError
from kronika.store import DEFAULT_URL
from kronika.store.options import redact_url

__all__ = ["app", "main"]


class KronikaGroup(TyperGroup):
    """The root group: turns Kronika's errors into a clear message and an exit status."""

    def invoke(self, ctx: Any) -> Any:  # Any: typer's bundled or click's Context
        """Run the chosen command, reporting any ``KronikaError`` without a traceback."""
        try:
            return super().invoke(ctx)
        except KronikaError as exc:
            output.print_error(exc)
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
app.add_typer(processors.app, name="processors")


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="KRONIKA_DATABASE_URL",
            help="Store URL: memory://, sqlite:///PATH or postgresql://...",
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
) -> None:
    """Kronika: an event store and event-sourcing platform."""
    ctx.obj = Settings.from_options(url, namespace)


@app.command()
def version(ctx: typer.Context) -> None:
    """Show Kronika's version and the engine of the configured store."""
    settings = settings_of(ctx)
    store = settings.make_store()
    rows = {
        "kronika": kronika.__version__,
        "python": platform.python_version(),
        "engine": store.engine,
        "url": redact_url(settings.url),
        "namespace": store.namespace,
    }
    for label, value in rows.items():
        output.out.print(f"{label:<10} {value}", markup=False)


def main() -> None:
    """Entry point of the ``kronika`` console script and ``python -m kronika``."""
    app(prog_name="kronika")
