"""``kronika worker``: run an application's processors until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from kronika.cli import output
from kronika.cli.context import run, settings_of

__all__ = ["APP_OPTION", "worker"]

APP_OPTION = typer.Option(
    "--app",
    envvar="KRONIKA_APP",
    help="Where the processors are: 'package.module:attribute'.",
)


def worker(
    ctx: typer.Context,
    app: Annotated[str, APP_OPTION],
    worker_id: Annotated[
        str | None,
        typer.Option("--worker-id", help="Name of this worker (default: host-pid-random)."),
    ] = None,
    lease_ttl: Annotated[
        float,
        typer.Option(
            "--lease-ttl", help="Seconds a partition lease lasts unless renewed.", min=1.0
        ),
    ] = 10.0,
    drain_timeout: Annotated[
        float,
        typer.Option(
            "--drain-timeout", help="Seconds to finish in-flight work on shutdown.", min=0.0
        ),
    ] = 30.0,
) -> None:
    """Run processors; several workers on one PostgreSQL share the work through leases."""
    from kronika.runtime.loading import load_processors
    from kronika.runtime.worker import Worker

    processors = load_processors(app)
    store = settings_of(ctx).make_store()

    async def go() -> None:
        async with store:
            running = Worker(
                store,
                processors,
                worker_id=worker_id,
                lease_ttl=lease_ttl,
                drain_timeout=drain_timeout,
            )
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, running.stop)
            names = ", ".join(p.name for p in processors)
            output.err.print(f"worker {running.id} running: {names}", markup=False)
            await running.run()
            output.err.print(f"worker {running.id} stopped", markup=False)

    run(go())
