"""The worker's ``/metrics`` endpoint: prometheus-client's HTTP server plus a gauge refresher.

The endpoint runs on a daemon thread (prometheus-client's ``start_http_server``), so a
scrape never waits for the event loop; the gauges that need a query (head, positions, lag,
failed keys, replay progress) are refreshed on the loop every few seconds instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from prometheus_client import start_http_server

from kronika.cli import output
from kronika.errors import ConfigurationError
from kronika.observability.metrics import REGISTRY
from kronika.runtime.gauges import GaugeRefresher
from kronika.runtime.processor import Processor
from kronika.store.protocol import EventStore

__all__ = ["serving_metrics"]


@contextlib.asynccontextmanager
async def serving_metrics(
    store: EventStore, processors: Sequence[Processor], host: str, port: int | None
) -> AsyncIterator[None]:
    """Serve ``/metrics`` on ``host:port`` while the block runs (nothing when ``port`` is
    None)."""
    if port is None:
        yield
        return
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise ConfigurationError(f"--metrics-port: cannot listen on {host}:{port}: {exc}") from None
    bound = server.server_address[1]
    output.err.print(f"metrics at http://{host}:{bound}/metrics", markup=False)
    refresher = asyncio.create_task(GaugeRefresher(store, processors).run_forever())
    try:
        yield
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
