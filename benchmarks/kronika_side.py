"""The workloads run through Kronika's public API: ``kronika.open_store(url)``."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.common import EVENT_TYPE, METADATA, SEED_BATCH, Sample, Scale, order_data
from kronika import NO_STREAM, EventStore, NewEvent, open_store
from kronika.domain.events import ExpectedVersionLike

__all__ = ["run_kronika"]

CATCH_UP_TIMEOUT = 60.0
"""W6t: how long the subscriber may take to deliver everything after the writers finish."""


def _event(i: int) -> NewEvent:
    return NewEvent(EVENT_TYPE, order_data(i), METADATA)


def _expected(version: int) -> ExpectedVersionLike:
    return NO_STREAM if version < 0 else version


async def w1(store: EventStore, scale: Scale) -> Sample:
    """One event per append, each to a new stream."""
    n = scale.w1_appends
    start = time.perf_counter()
    for i in range(n):
        await store.append(f"order-{i}", [_event(i)], expected_version=NO_STREAM)
    return Sample(events=n, seconds=time.perf_counter() - start)


async def w2(store: EventStore, scale: Scale) -> Sample:
    """One event per append to existing streams, round-robin, exact expected versions."""
    versions = [-1] * scale.w2_streams
    for s in range(scale.w2_streams):
        versions[s] = (await store.append(f"account-{s}", [_event(s)])).next_expected_version
    n = scale.w2_appends
    start = time.perf_counter()
    for i in range(n):
        s = i % scale.w2_streams
        result = await store.append(f"account-{s}", [_event(i)], expected_version=versions[s])
        versions[s] = result.next_expected_version
    return Sample(events=n, seconds=time.perf_counter() - start)


async def w3(store: EventStore, scale: Scale) -> Sample:
    """``w3_batch`` events per append, each append to a new stream."""
    n, batch = scale.w3_appends, scale.w3_batch
    start = time.perf_counter()
    for i in range(n):
        events = [_event(i * batch + j) for j in range(batch)]
        await store.append(f"batch-{i}", events, expected_version=NO_STREAM)
    return Sample(events=n * batch, seconds=time.perf_counter() - start)


async def _fill(store: EventStore, total: int, batch: int, prefix: str) -> None:
    """``total`` events in streams ``PREFIX-0``, ``PREFIX-1``... of ``batch`` events each."""
    for b, first in enumerate(range(0, total, batch)):
        count = min(batch, total - first)
        await store.append(f"{prefix}-{b}", [_event(first + v) for v in range(count)])


async def w4(store: EventStore, scale: Scale) -> Sample:
    """Read a whole ``w4_stream_events``-event stream, ``w4_reads`` times."""
    size = scale.w4_stream_events
    await _fill(store, size, size, "big")
    for _ in range(3):  # warm-up, untimed
        await store.read_stream("big-0")
    start = time.perf_counter()
    for _ in range(scale.w4_reads):
        events = await store.read_stream("big-0")
        if len(events) != size:
            raise AssertionError(f"read {len(events)} events, expected {size}")
    return Sample(events=size * scale.w4_reads, seconds=time.perf_counter() - start)


async def w5(store: EventStore, scale: Scale) -> Sample:
    """Read the global log from position 0, ``w5_page`` events per read."""
    total, page = scale.w5_events, scale.w5_page
    await _fill(store, total, SEED_BATCH, "log")
    start = time.perf_counter()
    count, position = 0, 0
    while True:
        events = await store.read_all(from_position=position, limit=page)
        count += len(events)
        if len(events) < page:
            break
        position = events[-1].position + 1
    seconds = time.perf_counter() - start
    if count != total:
        raise AssertionError(f"read {count} events, expected {total}")
    return Sample(events=count, seconds=seconds)


async def _writers(store: EventStore, scale: Scale, written: list[uuid.UUID]) -> float:
    """Run the W6 writers; return the seconds they took."""

    async def writer(w: int) -> None:
        version = -1
        for i in range(scale.w6_appends_per_writer):
            event = _event(i)
            result = await store.append(f"writer-{w}", [event], expected_version=_expected(version))
            version = result.next_expected_version
            written.append(event.event_id)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(scale.w6_writers)))
    return time.perf_counter() - start


async def w6(store: EventStore, scale: Scale) -> Sample:
    """Concurrent writers, one event per append, each to its own stream."""
    written: list[uuid.UUID] = []
    seconds = await _writers(store, scale, written)
    return Sample(events=len(written), seconds=seconds)


async def w6t(store: EventStore, scale: Scale) -> Sample:
    """W6 with a live subscriber from position 0; count what it missed or repeated."""
    seen: list[uuid.UUID] = []
    seen_set: set[uuid.UUID] = set()
    caught_up = asyncio.Event()
    target: set[uuid.UUID] = set()

    async def subscriber() -> None:
        async for event in store.subscribe(from_position=0):
            seen.append(event.id)
            seen_set.add(event.id)
            if target and target <= seen_set:
                caught_up.set()

    task = asyncio.create_task(subscriber())
    written: list[uuid.UUID] = []
    try:
        seconds = await _writers(store, scale, written)
        lag = await _await_catch_up(written, seen_set, target, caught_up)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    missed = len(set(written) - seen_set)
    return Sample(
        events=len(written),
        seconds=seconds,
        missed=missed,
        duplicates=len(seen) - len(seen_set),
        lag=lag,
    )


async def _await_catch_up(
    written: list[uuid.UUID], seen: set[uuid.UUID], target: set[uuid.UUID], done: asyncio.Event
) -> float:
    """Wait (bounded) until the subscriber has seen every written id; return the wait."""
    start = time.perf_counter()
    target.update(written)
    if not target <= seen:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), CATCH_UP_TIMEOUT)
    return time.perf_counter() - start


WORKLOADS: dict[str, Callable[[EventStore, Scale], Awaitable[Sample]]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
    "W6": w6,
    "W6t": w6t,
}


async def run_kronika(workload: str, url: str, scale: Scale, options: dict[str, Any]) -> Sample:
    """Open a store on ``url`` (a fresh database), run one workload, close the store."""
    async with open_store(url, **options) as store:
        # Untimed warm-up: as many concurrent reads as there will be writers, so a pool
        # holds its connections before the clock starts (the raw side connects first too).
        await asyncio.gather(*(store.head_position() for _ in range(scale.w6_writers)))
        return await WORKLOADS[workload](store, scale)
