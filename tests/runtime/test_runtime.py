"""The processing runtime on every backend: partitions, failures, retries, leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import kronika
from kronika import NewEvent, RecordedEvent, RetryPolicy
from kronika.runtime import Context, Projection, Worker, on
from kronika.runtime.worker import assigned_partitions, processing_of
from kronika.store.processing import FailureAction, FailureState
from kronika.store.protocol import EventStore

broken: set[str] = set()


class Ledger(Projection):
    """Appends each event's number to a document per stream; fails on streams in `broken`."""

    name = "ledger"
    partitions = 4
    batch_size = 10
    retry = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.05, jitter=False)

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        if event.stream in broken or f"{event.stream}/{event.data['n']}" in broken:
            raise RuntimeError(f"cannot handle {event.stream}")
        doc = await ctx.documents.get("ledger", event.stream) or {"seen": []}
        doc["seen"].append(event.data["n"])
        await ctx.documents.put("ledger", event.stream, doc)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def ledger(store: EventStore, stream: str) -> list[int]:
    async with processing_of(store).documents_reader() as docs:
        doc = await docs.get("ledger", stream)
    return [] if doc is None else doc["seen"]


BACKENDS = ["memory", "sqlite", "postgres"]
"""Backends whose stores can run processors (each adds itself here when it can)."""


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EventStore]:
    broken.clear()
    async with kronika.open_store(store_url) as opened:
        yield opened


@pytest.fixture
async def worker(store: EventStore) -> AsyncIterator[Worker]:
    running = Worker(store, [Ledger()], lease_ttl=1.0, drain_timeout=5)
    task = asyncio.create_task(running.run())
    yield running
    running.stop()
    await asyncio.wait_for(task, 10)


async def append_numbers(store: EventStore, stream: str, numbers: range) -> None:
    for n in numbers:
        await store.append(stream, [NewEvent("Numbered", {"n": n})])


def test_assignment_spreads_partitions_over_live_workers() -> None:
    assert assigned_partitions(8, ["a", "b", "c"], "a") == [0, 3, 6]
    assert assigned_partitions(8, ["a", "b", "c"], "c") == [2, 5]
    assert assigned_partitions(8, ["a"], "a") == list(range(8))
    assert assigned_partitions(8, ["a"], "z") == []


async def test_a_projection_catches_up_and_stays_live(store: EventStore, worker: Worker) -> None:
    await append_numbers(store, "s-1", range(5))
    await append_numbers(store, "s-2", range(3))
    await wait_for(lambda: _equals(ledger(store, "s-1"), [0, 1, 2, 3, 4]))
    await append_numbers(store, "s-2", range(3, 6))
    await wait_for(lambda: _equals(ledger(store, "s-2"), list(range(6))))


async def _equals(got: Awaitable[list[int]], expected: list[int]) -> bool:
    return await got == expected


async def test_a_poison_event_parks_only_its_key(store: EventStore, worker: Worker) -> None:
    broken.add("bad-1")
    await append_numbers(store, "bad-1", range(3))
    await append_numbers(store, "good-1", range(3))
    await wait_for(lambda: _equals(ledger(store, "good-1"), [0, 1, 2]))
    processing = processing_of(store)

    async def quarantined() -> bool:
        failures = await processing.failures("ledger")
        return bool(failures) and failures[0].state is FailureState.QUARANTINED

    await wait_for(quarantined)
    [failure] = await processing.failures("ledger")
    assert (failure.key, failure.attempts, failure.event_type) == ("bad-1", 3, "Numbered")
    assert "RuntimeError: cannot handle bad-1" in failure.error
    assert "Traceback" in failure.stack
    assert await ledger(store, "bad-1") == []

    await append_numbers(store, "bad-1", range(3, 5))  # more events for the parked key
    await append_numbers(store, "good-1", range(3, 4))
    await wait_for(lambda: _equals(ledger(store, "good-1"), [0, 1, 2, 3]))

    broken.clear()  # the handler is fixed
    assert await processing.request("ledger", "bad-1", FailureAction.RETRY)
    await wait_for(lambda: _equals(ledger(store, "bad-1"), [0, 1, 2, 3, 4]))
    await wait_for(lambda: _no_failures(store))


async def _no_failures(store: EventStore) -> bool:
    return not await processing_of(store).failures("ledger")


async def test_skipping_moves_past_the_failing_event(store: EventStore, worker: Worker) -> None:
    broken.add("odd-1/0")  # only the first event is poison, and stays so
    await append_numbers(store, "odd-1", range(2))
    processing = processing_of(store)

    async def failed() -> bool:
        return bool(await processing.failures("ledger"))

    await wait_for(failed)
    assert await processing.request("ledger", "odd-1", FailureAction.SKIP)
    await wait_for(lambda: _equals(ledger(store, "odd-1"), [1]))
    assert not await processing.request("ledger", "nothing", FailureAction.SKIP)


async def test_status_reports_position_lag_and_failures(store: EventStore) -> None:
    from kronika.runtime import admin

    projection = Ledger()
    with pytest.raises(kronika.NotFound):
        await admin.status(store, projection)
    broken.add("bad-1")
    await append_numbers(store, "bad-1", range(2))
    await append_numbers(store, "good-1", range(3))
    running = Worker(store, [projection], lease_ttl=1.0)
    task = asyncio.create_task(running.run())
    try:
        await wait_for(lambda: _equals(ledger(store, "good-1"), [0, 1, 2]))
        await wait_for(lambda: _has_failure(store))
        # The key is parked in one transaction; the checkpoint passes its held-back events
        # in the next one.
        await wait_for(lambda: _caught_up(store, projection))
        state = await admin.status(store, projection)
        assert state.state is admin.ProcessorState.DEGRADED
        assert state.owners == (running.id,)
        assert (state.lag_events, state.lag_capped, state.head) == (
            0,
            False,
            await store.head_position(),
        )
        [failure] = await admin.failed_keys(store, "ledger")
        assert (failure.key, failure.event_type) == ("bad-1", "Numbered")
        dead = await admin.dead_letters(store, projection, "bad-1")
        assert [e.data["n"] for e in dead] == [0, 1]
        with pytest.raises(kronika.NotFound):
            await admin.request_retry(store, "ledger", "good-1")
        await admin.pause(store, "ledger")
        await wait_for(lambda: _released(store, projection))
        await append_numbers(store, "good-1", range(3, 5))
        await asyncio.sleep(0.5)
        lagging = await admin.status(store, projection)
        assert lagging.lag_events == 2
        assert lagging.lag_seconds > 0
        await admin.resume(store, "ledger")
        await wait_for(lambda: _equals(ledger(store, "good-1"), [0, 1, 2, 3, 4]))
    finally:
        running.stop()
        await asyncio.wait_for(task, 10)
    stopped = await admin.status(store, projection)
    assert stopped.state is admin.ProcessorState.STOPPED


async def _has_failure(store: EventStore) -> bool:
    return bool(await processing_of(store).failures("ledger"))


async def _caught_up(store: EventStore, projection: Ledger) -> bool:
    from kronika.runtime import admin

    return (await admin.status(store, projection)).lag_events == 0


async def _released(store: EventStore, projection: Ledger) -> bool:
    from kronika.runtime import admin

    state = await admin.status(store, projection)
    return state.state is admin.ProcessorState.PAUSED and not state.owners


async def test_a_cleanly_stopped_worker_hands_over_without_waiting_for_its_lease(
    store: EventStore,
) -> None:
    ttl = 3.0
    first, second = (
        Worker(store, [Ledger()], worker_id=name, lease_ttl=ttl) for name in ("a", "b")
    )
    tasks = [asyncio.create_task(w.run()) for w in (first, second)]
    processing = processing_of(store)

    async def owners() -> set[str]:
        return {lease.owner for lease in await processing.leases("ledger")}

    try:
        await wait_for(lambda: _equals_set(owners(), {"a", "b"}))
        first.stop()
        await asyncio.wait_for(tasks[0], 10)
        started = asyncio.get_running_loop().time()
        await wait_for(lambda: _all_held_by(processing, "b", Ledger.partitions))
        assert asyncio.get_running_loop().time() - started < ttl / 2
    finally:
        second.stop()
        await asyncio.wait_for(tasks[1], 10)


async def _equals_set(got: Awaitable[set[str]], expected: set[str]) -> bool:
    return await got == expected


async def _all_held_by(processing: Any, owner: str, partitions: int) -> bool:
    leases = await processing.leases("ledger")
    return sorted(lease.partition for lease in leases if lease.owner == owner) == list(
        range(partitions)
    )
