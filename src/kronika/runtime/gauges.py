"""Refreshing the metric gauges that need a query: head, positions, lag, failed keys, replays.

Counting lag reads the log, so it is never done per scrape without a bound: each refresh
costs one :func:`kronika.runtime.admin.status` per processor (whose lag scan stops at
``LAG_SCAN_LIMIT`` events) plus one job listing, and :class:`GaugeRefresher` runs at most
one refresh per ``interval`` however often Prometheus scrapes. The server refreshes at
scrape time; a worker runs :meth:`GaugeRefresher.run_forever` beside its processors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from kronika.errors import KronikaError, NotFound
from kronika.observability import metrics
from kronika.runtime import admin, replay
from kronika.runtime.processor import Processor
from kronika.store.processing import JobState
from kronika.store.protocol import EventStore

__all__ = ["REFRESH_INTERVAL", "GaugeRefresher"]

REFRESH_INTERVAL = 5.0
"""Seconds between two refreshes: a scrape in between sees the previous figures."""

log = logging.getLogger("kronika.runtime.gauges")


class GaugeRefresher:
    """Sets the store's and the processors' gauges, at most once per ``interval``."""

    def __init__(
        self,
        store: EventStore,
        processors: Sequence[Processor],
        *,
        interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.store = store
        self.processors = list(processors)
        self.interval = interval
        self._last: float | None = None
        self._lock = asyncio.Lock()

    async def maybe_refresh(self) -> None:
        """Refresh unless the last refresh is younger than ``interval``; errors are logged."""
        async with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last < self.interval:
                return
            self._last = now
            try:
                await self.refresh()
            except KronikaError as exc:  # a scrape must still answer, with older figures
                log.warning("could not refresh gauges: %s", exc.message)

    async def refresh(self) -> None:
        """Query head, every processor's status and running replays, and set the gauges."""
        metrics.set_head(await self.store.head_position())
        for processor in self.processors:
            try:
                status = await admin.status(self.store, processor)
            except NotFound:  # never ran yet: nothing to say
                continue
            metrics.set_processor(
                processor.name,
                status.position,
                status.lag_events,
                status.lag_seconds,
                status.parked,
                status.quarantined,
            )
        await self._replays()

    async def _replays(self) -> None:
        projections = {p.name: p for p in self.processors}
        running = {
            s.job.processor: s.progress
            for s in await replay.replays(self.store, projections)
            if s.job.state is JobState.RUNNING
        }
        for name in projections:
            metrics.set_replay_progress(name, running.get(name))

    async def run_forever(self) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        while True:
            await self.maybe_refresh()
            await asyncio.sleep(self.interval)
