"""``kronika worker``: run an application's processors until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from typing import Annotated

import typer

from kronika.cli import output
from kronika.cli.context import run, settings_of
from kronika.cli.workermetrics import serving_metrics

__all__ = ["APP_OPTION", "worker"]

APP_OPTION = typer.Option(
    "--app",
    envvar="KRONIKA_APP",
    help="Where the processors are: 'package.module:attribute'.",
)


def worker(  # noqa: PLR0917 - Typer passes every option by keyword anyway
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
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            envvar="KRONIKA_WORKER_METRICS_PORT",
            help="Serve Prometheus metrics at http://HOST:PORT/metrics (default: off).",
            min=0,
            max=65535,
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            "--metrics-host",
            envvar="KRONIKA_WORKER_METRICS_HOST",
            help="Address the metrics endpoint binds.",
        ),
    ] = "127.0.0.1",
    retention_interval: Annotated[
        float | None,
        typer.Option(
            "--retention-interval",
            help="Apply the retention policies every SECONDS (default: "
            "$KRONIKA_RETENTION_INTERVAL, else off).",
            min=0.001,
        ),
    ] = None,
) -> None:
    """Run processors; several workers on one PostgreSQL share the work through leases.

    Inline projections the app lists are registered on the worker's store, so the events
    its reactors and sagas append update them too.
    """
    from kronika.cli.telemetry import start_telemetry
    from kronika.ops.retention import scheduled
    from kronika.ops.retention_policy import RetentionPolicy
    from kronika.runtime.loading import load_inline, load_processors
    from kronika.runtime.worker import Worker

    processors = load_processors(app)
    policy = RetentionPolicy.from_env(os.environ).with_values(interval=retention_interval)
    # The app's inline projections run in this process's appends too (reactors, sagas).
    store = settings_of(ctx).database_store(inline=load_inline(app))
    start_telemetry("kronika-worker", namespace=store.namespace)

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
            async with (
                serving_metrics(store, processors, metrics_host, metrics_port),
                scheduled(store, policy, processors=processors, owner=running.id),
            ):
                # Start-up is over: what exists now (modules, the app, the store) lives as
                # long as the process, so full collections need not scan it again (as
                # `kronika serve` does, see kronika.server.app); catching up, they took
                # about a tenth of the worker's time.
                gc.freeze()
                await running.run()
            output.err.print(f"worker {running.id} stopped", markup=False)

    run(go())
