"""The runtime benchmark's measurements, all through Kronika's public API.

One store per backend and run: N events are loaded (untimed), then, in the same process,

- ``read``: a raw global read of the whole log (``read_all`` in pages of 1,000), the
  baseline the catch-up figures are compared with;
- ``sql``: a projection that upserts one row per event with ``ctx.write`` into a table of
  its own, run by an in-process :class:`kronika.runtime.Worker` from position 0 until every
  partition's checkpoint holds that partition's last event;
- ``docs``: the same with ``ctx.documents`` (a get and a put per event);
- ``latency``: with a live worker, single events appended at a modest rate; the time from
  ``append`` returning to the read-model row being visible (polled on a connection of the
  benchmark's own), p50 and p99.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from benchmarks.common import EVENT_TYPE, METADATA, order_data
from kronika import NewEvent
from kronika.domain.events import RecordedEvent
from kronika.runtime import Context, Projection, Worker, on
from kronika.runtime.processor import partition_of
from kronika.runtime.worker import processing_of
from kronika.store.protocol import EventStore

__all__ = ["Latency", "RuntimeScale", "catch_up", "latency", "load", "raw_read", "supports_sql"]

PAGE = 1_000
"""Events per ``read_all`` page in the raw read."""
LOAD_BATCH = 100
"""Events per append when the log is loaded (untimed)."""
CATCH_UP_TIMEOUT = 600.0
"""Seconds a catch-up may take before the measurement fails."""
VISIBLE_TIMEOUT = 5.0
"""Seconds an appended event may take to show in the read model before the run fails."""


@dataclass(frozen=True, kw_only=True)
class RuntimeScale:
    """How much work one run does."""

    name: str
    events: int
    """Events in the log the projections catch up on."""
    streams: int
    """Streams they are spread over (the partition keys)."""
    latency_events: int
    """Single appends measured for the append-to-projected latency."""
    latency_rate: float = 50.0
    """Appends per second in the latency measurement (at most one in flight)."""
    repeats: int = 1
    """Measurements of each kind (the best is reported)."""


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Append-to-projected latencies, in milliseconds."""

    samples: int
    p50: float
    p99: float
    max: float


def supports_sql(store: EventStore) -> bool:
    """Whether projections on this store can run their own SQL."""
    return store.engine in ("sqlite", "postgresql")


def _event(i: int) -> NewEvent:
    return NewEvent(EVENT_TYPE, order_data(i), METADATA)


async def load(store: EventStore, scale: RuntimeScale) -> None:
    """Append ``scale.events`` events, ``LOAD_BATCH`` at a time, round-robin over the streams."""
    written = 0
    while written < scale.events:
        stream = f"order-{(written // LOAD_BATCH) % scale.streams}"
        count = min(LOAD_BATCH, scale.events - written)
        await store.append(stream, [_event(written + j) for j in range(count)])
        written += count


async def raw_read(store: EventStore) -> tuple[int, float]:
    """Read the whole log in pages; (events read, seconds)."""
    start, position, count = time.perf_counter(), 0, 0
    while True:
        page = await store.read_all(from_position=position, limit=PAGE)
        count += len(page)
        if len(page) < PAGE:
            return count, time.perf_counter() - start
        position = page[-1].position + 1


# -- projections ----------------------------------------------------------------------------


class Table:
    """A read-model table of the benchmark's own, in the store's database."""

    def __init__(self, store: EventStore, name: str) -> None:
        self.engine = store.engine
        schema = getattr(store, "schema", None)
        self.name = f'"{schema}".{name}' if self.engine == "postgresql" else name
        mark = "%s" if self.engine == "postgresql" else "?"
        self.create = (
            f"CREATE TABLE {self.name} (stream TEXT PRIMARY KEY, orders INTEGER NOT NULL, "
            "amount DOUBLE PRECISION NOT NULL, last_position BIGINT NOT NULL)"
        )
        self.upsert = (
            f"INSERT INTO {self.name} (stream, orders, amount, last_position) "
            f"VALUES ({mark}, 1, {mark}, {mark}) ON CONFLICT (stream) DO UPDATE SET "
            f"orders = {self.name}.orders + 1, amount = {self.name}.amount + excluded.amount, "
            "last_position = excluded.last_position"
        )
        self.total = f"SELECT coalesce(sum(orders), 0) FROM {self.name}"
        self.position = f"SELECT last_position FROM {self.name} WHERE stream = {mark}"


async def create_table(store: EventStore, table: Table) -> None:
    """Create the table in a processing transaction (the way an application could)."""
    async with processing_of(store).transaction() as tx:
        await tx.execute(table.create)


async def table_total(store: EventStore, table: Table) -> int:
    """Orders counted in the table (read in a processing transaction)."""
    async with processing_of(store).transaction() as tx:
        rows = await tx.fetch(table.total)
    return int(rows[0][0])


def sql_projection(name: str, table: Table, categories: list[str] | None = None) -> Projection:
    """A projection that upserts one row per stream with ``ctx.write`` (batched on PostgreSQL)."""
    upsert = table.upsert

    class SqlTotals(Projection):
        @on(EVENT_TYPE)
        async def placed(self, event: RecordedEvent, ctx: Context) -> None:
            await ctx.write(upsert, (event.stream, event.data["amount"], event.position))

    SqlTotals.name = name
    SqlTotals.categories = categories
    return SqlTotals()


def documents_projection(name: str, categories: list[str] | None = None) -> Projection:
    """A projection that keeps one document per stream: a get and a put per event."""
    collection = name

    class DocumentTotals(Projection):
        @on(EVENT_TYPE)
        async def placed(self, event: RecordedEvent, ctx: Context) -> None:
            doc = await ctx.documents.get(collection, event.stream) or {"orders": 0, "amount": 0}
            doc["orders"] += 1
            doc["amount"] += event.data["amount"]
            doc["last_position"] = event.position
            await ctx.documents.put(collection, event.stream, doc)

    DocumentTotals.name = name
    DocumentTotals.categories = categories
    return DocumentTotals()


async def _last_of_partitions(store: EventStore, projection: Projection) -> dict[int, int]:
    """Each partition's last event position: where its checkpoint ends up."""
    last: dict[int, int] = {}
    position = 0
    while True:
        page = await store.read_all(from_position=position, limit=PAGE, types=projection.types)
        for event in page:
            last[partition_of(projection.key(event), projection.partitions)] = event.position
        if len(page) < PAGE:
            return last
        position = page[-1].position + 1


def _checkpoints(worker: Worker) -> dict[int, int]:
    """The checkpoints of the worker's partitions as it keeps them in memory: each is moved
    once its transaction has committed."""
    return {
        p: r.checkpoint
        for supervisor in worker.supervisors
        for runner, _ in supervisor.runners.values()
        for p, r in runner.runners.items()
    }


async def _caught_up(
    worker: Worker, store: EventStore, projection: Projection, last: dict[int, int]
) -> None:
    """Wait until every partition's checkpoint holds its last event. Polled in memory
    every 5 ms: a query every few milliseconds would take client CPU from the worker being
    measured. The stored checkpoints are checked once at the end."""
    while not all(_checkpoints(worker).get(p, 0) >= pos for p, pos in last.items()):  # noqa: ASYNC110 - polls the worker's state
        await asyncio.sleep(0.005)
    record = await processing_of(store).processor(projection.name)
    if record is None or not all(record.checkpoints.get(p, 0) >= pos for p, pos in last.items()):
        raise RuntimeError(f"the stored checkpoints lag the worker's: {record}")


async def catch_up(store: EventStore, projection: Projection) -> float:
    """Run ``projection`` from position 0 in an in-process worker until it is caught up;
    the seconds from starting the worker to the last checkpoint."""
    last = await _last_of_partitions(store, projection)
    worker = Worker(store, [projection], lease_ttl=30, drain_timeout=30)
    start = time.perf_counter()
    task = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(CATCH_UP_TIMEOUT):
            waiting = asyncio.create_task(_caught_up(worker, store, projection, last))
            done, _ = await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                waiting.cancel()
                task.result()
                raise RuntimeError("the worker stopped before catching up")
        return time.perf_counter() - start
    finally:
        worker.stop()
        await task


async def _leased(store: EventStore, projection: Projection) -> None:
    """Wait until the worker holds every partition (and has had a moment to subscribe)."""
    processing = processing_of(store)
    while len(await processing.leases(projection.name)) < projection.partitions:  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)


# -- latency --------------------------------------------------------------------------------

Probe = Callable[[str], Awaitable[int | None]]
"""The read model's last handled position for a stream (None: no row yet)."""


async def _sqlite_probe(store: EventStore, table: Table) -> tuple[Probe, Callable[[], None]]:
    path = store.path  # type: ignore[attr-defined]
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    async def probe(stream: str) -> int | None:
        row = conn.execute(table.position, (stream,)).fetchone()
        return None if row is None else int(row[0])

    return probe, conn.close


async def _postgres_probe(
    store: EventStore, table: Table, url: str
) -> tuple[Probe, Callable[[], Awaitable[None]]]:
    import psycopg

    parts = urlsplit(url)  # the server's URL without Kronika's own ?schema= option
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "schema"])
    conn = await psycopg.AsyncConnection.connect(
        urlunsplit(parts._replace(query=query)), autocommit=True
    )

    async def probe(stream: str) -> int | None:
        cur = await conn.execute(table.position, (stream,))
        row = await cur.fetchone()
        return None if row is None else int(row[0])

    return probe, conn.close


def _documents_probe(store: EventStore, collection: str) -> Probe:
    async def probe(stream: str) -> int | None:
        async with processing_of(store).documents_reader() as docs:
            doc = await docs.get(collection, stream)
        return None if doc is None else int(doc["last_position"])

    return probe


async def _measure(store: EventStore, probe: Probe, scale: RuntimeScale) -> list[float]:
    interval, samples = 1.0 / scale.latency_rate, []
    for i in range(scale.latency_events):
        tick = time.perf_counter()
        stream = f"live-{i % 10}"
        result = await store.append(stream, [_event(i)])
        appended = time.perf_counter()
        while (seen := await probe(stream)) is None or seen < result.position:
            if time.perf_counter() - appended > VISIBLE_TIMEOUT:
                raise RuntimeError(
                    f"event {result.position} not projected after {VISIBLE_TIMEOUT}s"
                )
            await asyncio.sleep(0.0002)
        samples.append((time.perf_counter() - appended) * 1000)
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - tick)))
    return samples


async def latency(store: EventStore, scale: RuntimeScale, url: str, label: str) -> Latency:
    """Append-to-projected latency with a live worker (SQL read model where supported)."""
    closer: Callable[[], Any]
    if supports_sql(store):
        table = Table(store, f"live_{label}")
        await create_table(store, table)
        projection = sql_projection(f"live-sql-{label}", table, ["live"])
        if store.engine == "sqlite":
            probe, closer = await _sqlite_probe(store, table)
        else:
            probe, closer = await _postgres_probe(store, table, url)
    else:
        projection = documents_projection(f"live-docs-{label}", ["live"])
        probe, closer = _documents_probe(store, projection.name), lambda: None
    worker = Worker(store, [projection], lease_ttl=30, drain_timeout=30)
    task = asyncio.create_task(worker.run())
    try:
        await _leased(store, projection)
        samples = await _measure(store, probe, scale)
    finally:
        worker.stop()
        await task
        done = closer()
        if done is not None:
            await done
    ordered = sorted(samples)
    return Latency(
        samples=len(ordered),
        p50=statistics.median(ordered),
        p99=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        max=ordered[-1],
    )
