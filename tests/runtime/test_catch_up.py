"""The catch-up path: what the runtime's per-event shortcuts must keep.

Routing remembers each key's partition and hands events over through an ``Inbox``; with
no tracer provider a batch is handled without a span per event, causation ids are made
strings only if a handler asks, and handler durations are observed once per batch. None
of that may change what is handled, in which order, or what metrics, logs and appended
events say.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
import structlog

import kronika
from kronika import NewEvent, RecordedEvent, caused_by, current_causation
from kronika.domain.context import reset_cause, set_cause
from kronika.observability import metrics
from kronika.observability.logging import configure_logging
from kronika.runtime import Context, Projection, Worker, on
from kronika.runtime import partition as partition_module
from kronika.runtime.partition import Inbox, Routed, partitioner
from kronika.runtime.processor import partition_of
from kronika.runtime.worker import PAGE, processing_of
from kronika.store.base import StoreBase
from kronika.store.protocol import EventStore
from kronika.store.sqlite import reads as sqlite_reads


def recorded(stream: str, position: int) -> RecordedEvent:
    return RecordedEvent(
        id=uuid.uuid4(),
        stream=stream,
        version=0,
        position=position,
        type="Numbered",
        data={},
        metadata={},
        tags=(),
        recorded_at=datetime.now(UTC),
    )


# -- the inbox and the partition cache --------------------------------------------------------


async def test_an_inbox_keeps_order_and_makes_the_router_wait_when_full() -> None:
    inbox = Inbox(3)
    events = [recorded("s", p) for p in range(1, 6)]
    assert [inbox.offer(e) for e in events[:4]] == [True, True, True, False]
    blocked = asyncio.create_task(inbox.put(events[3]))
    await asyncio.sleep(0.01)
    assert not blocked.done()  # full: the router waits
    assert [e.position for e in inbox.take(2)] == [1, 2]
    await asyncio.wait_for(blocked, 1)
    assert inbox.offer(events[4])
    assert [e.position for e in inbox.take(10)] == [3, 4, 5]
    assert len(inbox) == 0
    waiting = asyncio.create_task(inbox.wait())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing to take
    inbox.offer(events[0])
    await asyncio.wait_for(waiting, 1)


async def test_an_inbox_holds_back_partial_batches_while_the_router_catches_up() -> None:
    routed = Routed(0)
    inbox = Inbox(8, batch=3, routed=routed)
    events = [recorded("s", p) for p in range(1, 9)]
    routed.catching_up = True  # full pages: more events are on their way
    inbox.offer(events[0])
    inbox.offer(events[1])
    assert not inbox.ready()  # a partial batch waits
    inbox.offer(events[2])
    assert inbox.ready()  # a full one may go
    for e in events[3:5]:
        inbox.offer(e)
    assert [e.position for e in inbox.take(3)] == [1, 2, 3]
    assert not inbox.ready()  # two left: still partial
    inbox.release()  # the router has caught up
    assert inbox.ready()
    assert [e.position for e in inbox.take(3)] == [4, 5]
    assert not inbox.ready()
    routed.catching_up = False  # live: every event may go at once
    inbox.offer(events[5])
    assert inbox.ready()


class Keyed(Projection):
    name = "keyed"
    partitions = 7

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        """Nothing to do."""


class ByCustomer(Keyed):
    name = "by-customer"

    def partition(self, event: RecordedEvent) -> int:
        return 0 if event.stream.startswith("vip-") else 1 + super().partition(event) % 6


def test_the_partition_cache_agrees_with_the_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partition_module, "KEYS_REMEMBERED", 10)
    processor = Keyed()
    route = partitioner(processor)
    for round_ in range(2):  # the second round hits the cache (and its clearing)
        for n in range(50):
            event = recorded(f"order-{n}", n + 1 + round_)
            assert route(event) == partition_of(f"order-{n}", 7) == processor.partition(event)


def test_a_processor_that_overrides_partition_is_asked_every_time() -> None:
    processor = ByCustomer()
    route = partitioner(processor)
    assert route(recorded("vip-1", 1)) == 0
    assert route(recorded("order-1", 2)) == processor.partition(recorded("order-1", 2)) != 0


# -- causation, metrics and logs -----------------------------------------------------------------


def test_a_set_cause_gives_appended_events_the_same_ids_as_caused_by() -> None:
    event_id = uuid.uuid4()
    token = set_cause(event_id, "conversation-1")
    try:
        causation = current_causation()
        assert causation is not None
        assert (causation.correlation_id, causation.causation_id) == (
            "conversation-1",
            str(event_id),
        )
        with caused_by("command-2") as inner:  # nested: inherits the conversation
            assert inner.correlation_id == "conversation-1"
    finally:
        reset_cause(token)
    assert current_causation() is None
    with caused_by("request-1", "conversation-9"):
        token = set_cause(event_id)  # no correlation of its own: the enclosing one
        try:
            causation = current_causation()
            assert causation is not None
            assert causation.correlation_id == "conversation-9"
        finally:
            reset_cause(token)
    token = set_cause(event_id)  # nothing enclosing: it starts the conversation
    try:
        assert current_causation() == kronika.Causation(str(event_id), str(event_id))
    finally:
        reset_cause(token)


def _histogram(name: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.labels.get("processor") == name:
                values[f"{sample.name}{sample.labels.get('le', '')}"] = sample.value
    return values


def test_durations_observed_per_batch_equal_one_observation_each() -> None:
    durations = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.2, 7.0, 0.0]
    for value in durations:
        metrics._handler_duration("one-by-one").observe(value)
    metrics.handler_durations("per-batch", durations)
    metrics.handler_durations("per-batch", [])
    one, batch = _histogram("one-by-one"), _histogram("per-batch")
    assert one and {k: v for k, v in one.items() if "_created" not in k} == {
        k: v for k, v in batch.items() if "_created" not in k
    }


# -- end to end: a worker catching up -------------------------------------------------------------


class Ordered(Projection):
    """Logs every event with ``ctx.write`` (batched), in handling order, and checks the
    causation ids a handler sees."""

    name = "ordered"
    partitions = 8
    batch_size = 50
    table = "ordered_log"
    seen_causes: ClassVar[list[tuple[str, str]]] = []

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        mark = "%s" if ctx.store.engine == "postgresql" else "?"
        await ctx.write(
            f"INSERT INTO {self.table} (stream, n, position) VALUES ({mark}, {mark}, {mark})",
            (event.stream, event.data["n"], event.position),
        )
        if event.data["n"] == 0:
            causation = current_causation()
            assert causation is not None
            self.seen_causes.append((causation.causation_id, str(event.id)))
            logging.getLogger("tests.catch_up").info("first event of %s", event.stream)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Kronika's JSON logging into a buffer (restored afterwards)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("kronika-test", environ={}, stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    async with kronika.open_store(url) as opened:
        yield opened


def log_table(store: EventStore) -> str:
    schema = getattr(store, "schema", None)
    return f'"{schema}".ordered_log' if store.engine == "postgresql" else "ordered_log"


async def test_a_worker_catches_up_exactly_once_in_order_per_key(
    store: EventStore, log_lines: io.StringIO
) -> None:
    table = log_table(store)
    serial = "BIGSERIAL" if store.engine == "postgresql" else "INTEGER"
    async with processing_of(store).transaction() as tx:
        await tx.execute(
            f"CREATE TABLE {table} (id {serial} PRIMARY KEY, stream TEXT NOT NULL, "
            "n INTEGER NOT NULL, position BIGINT NOT NULL, UNIQUE (stream, n))"
        )
    streams, per_stream = 40, 30
    for n in range(per_stream):
        for s in range(streams):
            await store.append(f"order-{s}", [NewEvent("Numbered", {"n": n})])
    projection = Ordered()
    projection.table = table
    projection.seen_causes = []
    worker = Worker(store, [projection], lease_ttl=5, drain_timeout=5)
    task = asyncio.create_task(worker.run())
    try:
        head = await store.head_position()
        while True:
            record = await processing_of(store).processor("ordered")
            if record and len(record.checkpoints) == 8 and min(record.checkpoints.values()) >= head:
                break
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)
    async with processing_of(store).transaction() as tx:
        rows: list[Any] = await tx.fetch(f"SELECT stream, n FROM {table} ORDER BY id")
    assert len(rows) == streams * per_stream  # each event once (UNIQUE (stream, n))
    by_stream: dict[str, list[int]] = {}
    for stream, n in rows:
        by_stream.setdefault(stream, []).append(n)
    assert all(ns == list(range(per_stream)) for ns in by_stream.values())  # in order
    assert len(projection.seen_causes) == streams
    assert all(cause == event_id for cause, event_id in projection.seen_causes)
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.strip()]
    firsts = [line for line in lines if line.get("logger") == "tests.catch_up"]
    assert len(firsts) == streams  # each names the event it was logged for
    assert {(line["processor"], line["event_type"]) for line in firsts} == {("ordered", "Numbered")}
    assert {line["stream"] for line in firsts} == {f"order-{s}" for s in range(streams)}


class Batches(Projection):
    """Counts the events each transaction handled, per partition."""

    name = "batches"
    partitions = 2
    batch_size = 300
    seen: ClassVar[dict[int, list[list[Any]]]] = {}
    """partition -> [transaction, events handled in it], in order."""

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        handled = self.seen.setdefault(self.partition(event), [])
        if handled and handled[-1][0] is ctx.transaction:
            handled[-1][1] += 1
        else:
            handled.append([ctx.transaction, 1])


async def test_catching_up_a_partition_takes_full_batches(store: EventStore) -> None:
    # Each of the router's pages holds about 250 events of each partition: without waiting
    # for more pages, a partition would commit a transaction per page, not per batch.
    for s in range(30):
        await store.append(f"order-{s}", [NewEvent("Numbered", {"n": n}) for n in range(50)])
    assert await store.head_position() > 2 * PAGE
    projection = Batches()
    projection.seen = {}
    worker = Worker(store, [projection], lease_ttl=5, drain_timeout=5)
    task = asyncio.create_task(worker.run())
    try:
        while sum(n for txs in projection.seen.values() for _, n in txs) < 1_500:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)
    for partition, handled in projection.seen.items():
        sizes = [n for _, n in handled]
        assert sizes[:-1] == [300] * (len(sizes) - 1), (partition, sizes)
        streams = [s for s in range(30) if partition_of(f"order-{s}", 2) == partition]
        assert sum(sizes) == 50 * len(streams)


# -- the router's pages --------------------------------------------------------------------------


async def test_pages_hold_what_subscribe_yields_and_stay_live(store: EventStore) -> None:
    assert isinstance(store, StoreBase)
    for n in range(7):
        await store.append(f"page-{n % 3}", [NewEvent("Numbered", {"n": n})])
        await store.append(f"other-{n}", [NewEvent("Other", {"n": n})])
    for processing in (False, True):
        expected = await store.read_all(types=["Numbered"])
        pages = store.subscribe_pages(types=["Numbered"], batch_size=3, processing=processing)
        seen: list[list[RecordedEvent]] = []
        async with contextlib.aclosing(pages):
            while sum(map(len, seen)) < len(expected):
                seen.append(await asyncio.wait_for(anext(pages), 5))
            sizes = [3] * (len(expected) // 3) + ([len(expected) % 3] if len(expected) % 3 else [])
            assert [len(page) for page in seen] == sizes  # full pages, never an empty one
            assert [e for page in seen for e in page] == expected
            if processing:  # caught up: empty pages, until new events come
                await store.append("other-9", [NewEvent("Other", {"n": 9})])  # none for it
                assert await asyncio.wait_for(anext(pages), 5) == []
                result = await store.append("page-9", [NewEvent("Numbered", {"n": 9})])
                page = await asyncio.wait_for(anext(pages), 5)
                while not page:
                    page = await asyncio.wait_for(anext(pages), 5)
                assert [e.position for e in page] == [result.position]
                continue
            live = asyncio.ensure_future(anext(pages))
            try:
                await asyncio.sleep(0.05)
                assert not live.done()  # caught up: waits for new events
                await store.append("other-9", [NewEvent("Other", {"n": 9})])  # none for it
                await asyncio.sleep(0.05)
                assert not live.done()
                result = await store.append("page-9", [NewEvent("Numbered", {"n": 9})])
                page = await asyncio.wait_for(live, 5)
                assert [e.position for e in page] == [result.position]
            finally:
                live.cancel()


async def test_a_sqlite_worker_reads_its_catch_up_on_the_event_loop_thread(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading on a reader thread would trade the GIL with the handlers for every row.
    threads: set[int] = set()
    read_all = sqlite_reads.read_all

    def spied(*args: Any, **kwargs: Any) -> list[RecordedEvent]:
        threads.add(threading.get_ident())
        return read_all(*args, **kwargs)

    async with kronika.open_store(sqlite_url) as store:
        for n in range(20):
            await store.append(f"order-{n % 4}", [NewEvent("Numbered", {"n": n})])
        monkeypatch.setattr(sqlite_reads, "read_all", spied)
        worker = Worker(store, [Keyed()], lease_ttl=5, drain_timeout=5)
        task = asyncio.create_task(worker.run())
        try:
            while True:
                record = await processing_of(store).processor("keyed")
                if record and sum(1 for p in record.checkpoints.values() if p >= 20) >= 1:
                    break
                await asyncio.sleep(0.02)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)
    assert threads == {threading.get_ident()}
