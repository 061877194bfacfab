"""Blue/green replays on every backend: a new generation is built beside the live read model,
takes over atomically when caught up, older generations are pruned or reactivated, and a
replayed read model equals the one built live (B1, B2, B3, B5, C8)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_runtime import BACKENDS, wait_for

import kronika
from kronika import NewEvent, RecordedEvent
from kronika.errors import ConflictError, KronikaError, NotFound, ValidationError
from kronika.runtime import Context, Projection, Reactor, Worker, on
from kronika.runtime.generations import live_table, read_model
from kronika.runtime.replay import (
    activate,
    delete_replay,
    generations,
    job,
    replay_status,
    resume_replay,
    start_replay,
    stop_replay,
)
from kronika.runtime.worker import processing_of
from kronika.store.processing import JobState
from kronika.store.protocol import EventStore

STREAMS = [f"acct-{n}" for n in range(12)]


class Balances(Projection):
    """A balance and an event count per account, as documents."""

    name = "balances"
    partitions = 4
    batch_size = 20
    collections = ("balances",)

    @on("Deposited")
    async def deposited(self, event: RecordedEvent, ctx: Context) -> None:
        await self._add(ctx, event.stream, event.data["amount"])

    @on("Withdrawn")
    async def withdrawn(self, event: RecordedEvent, ctx: Context) -> None:
        await self._add(ctx, event.stream, -event.data["amount"])

    async def _add(self, ctx: Context, account: str, amount: int) -> None:
        doc = await ctx.documents.get("balances", account) or {"balance": 0, "events": []}
        doc["balance"] += amount
        doc["events"].append(ctx.event.version)
        await ctx.documents.put("balances", account, doc)


class Tally(Projection):
    """Counts events per stream in a SQL table of its own."""

    name = "tally"
    partitions = 2
    tables = {  # noqa: RUF012
        "tally": "CREATE TABLE IF NOT EXISTS {table} (stream TEXT PRIMARY KEY, n INTEGER NOT NULL)"
    }

    @on("Deposited")
    async def deposited(self, event: RecordedEvent, ctx: Context) -> None:
        table = ctx.table("tally")
        await ctx.execute(
            f"INSERT INTO {table} (stream, n) VALUES ({self.marker}, 1) "
            f"ON CONFLICT (stream) DO UPDATE SET n = {table}.n + 1",
            [event.stream],
        )

    def __init__(self, marker: str) -> None:
        self.marker = marker


class Mailer(Reactor):
    name = "mailer"

    @on("Deposited")
    async def deposited(self, event: RecordedEvent, ctx: Context) -> None:
        return None


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    async with kronika.open_store(url) as opened:
        yield opened


async def run_worker(
    store: EventStore, *processors: Projection
) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(store, list(processors), lease_ttl=1.0, drain_timeout=5)
    return worker, asyncio.create_task(worker.run())


async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(task, 15)


async def deposit(store: EventStore, count: int, seed: int = 0) -> None:
    chooser = random.Random(seed)
    for _ in range(count):
        kind = chooser.choice(["Deposited", "Deposited", "Withdrawn"])
        data = {"amount": chooser.randint(1, 100)}
        await store.append(chooser.choice(STREAMS), [NewEvent(kind, data)])


async def live_balances(store: EventStore) -> dict[str, Any]:
    async with read_model(processing_of(store), "balances") as docs:
        return {s: await docs.get("balances", s) for s in STREAMS}


async def expected_balances(store: EventStore) -> dict[str, Any]:
    """What the read model must hold: folded directly from the log."""
    expected: dict[str, Any] = dict.fromkeys(STREAMS)
    for event in await store.read_all():
        doc = expected[event.stream] or {"balance": 0, "events": []}
        sign = 1 if event.type == "Deposited" else -1
        doc["balance"] += sign * event.data["amount"]
        doc["events"].append(event.version)
        expected[event.stream] = doc
    return expected


async def caught_up(store: EventStore) -> bool:
    return await live_balances(store) == await expected_balances(store)


async def live_generation(store: EventStore, name: str = "balances") -> int:
    record = await processing_of(store).processor(name)
    assert record is not None
    return record.generation


async def test_a_replay_builds_beside_live_then_switches_and_equals_live(
    store: EventStore,
) -> None:
    """B1, B2, B3: live keeps serving while the new generation builds; after the switch the
    rebuilt read model equals the one built live, including events appended meanwhile."""
    worker, task = await run_worker(store, Balances())
    try:
        await asyncio.gather(deposit(store, 60, seed=1), deposit(store, 60, seed=2))
        await wait_for(lambda: caught_up(store), timeout=20)
        built_live = await live_balances(store)

        replay = await start_replay(store, Balances())
        assert (replay.generation, replay.state) == (2, JobState.RUNNING)
        assert await live_balances(store) == built_live  # generation 1 still serves
        await deposit(store, 30, seed=3)  # the log moves on during the replay

        async def switched() -> bool:
            return await live_generation(store) == 2

        await wait_for(switched, timeout=30)
        await wait_for(lambda: caught_up(store), timeout=20)
        assert (await job(store, replay.id)).state is JobState.COMPLETED
        status = await replay_status(store, Balances(), await job(store, replay.id))
        assert status.progress == 1.0
        kept = {g.generation: g.live for g in await generations(store, "balances")}
        assert kept == {2: True, 1: False}  # replayed_versions_to_keep = 1
    finally:
        await stop(worker, task)


async def test_old_generations_are_pruned_and_a_kept_one_can_be_reactivated(
    store: EventStore,
) -> None:
    """B2, B5: a second replay prunes generation 1 (documents too); generation 2 is kept
    and made live again without a replay, catching up from its own checkpoints."""
    worker, task = await run_worker(store, Balances())
    try:
        await deposit(store, 40, seed=4)
        for generation in (2, 3):
            await start_replay(store, Balances())

            async def switched(generation: int = generation) -> bool:
                return await live_generation(store) == generation

            await wait_for(switched, timeout=30)

        async def pruned() -> bool:
            return [g.generation for g in await generations(store, "balances")] == [3, 2]

        await wait_for(pruned, timeout=10)
        async with processing_of(store).documents_reader() as docs:
            assert all([await docs.get("balances", s) is None for s in STREAMS])  # gen 1 gone

        await activate(store, Balances(), 2)
        assert await live_generation(store) == 2
        await deposit(store, 20, seed=5)
        await wait_for(lambda: caught_up(store), timeout=20)
        with pytest.raises(NotFound, match="generation 1"):
            await activate(store, Balances(), 1)
    finally:
        await stop(worker, task)


async def test_replay_jobs_can_be_stopped_resumed_and_deleted(store: EventStore) -> None:
    """C8, with no worker running: jobs are persisted records an operator moves."""
    await deposit(store, 10, seed=6)
    worker, task = await run_worker(store, Balances())
    await wait_for(lambda: caught_up(store), timeout=20)
    await stop(worker, task)

    replay = await start_replay(store, Balances())
    with pytest.raises(ConflictError, match="already under way"):
        await start_replay(store, Balances())
    assert (await stop_replay(store, replay.id)).state is JobState.STOPPED
    with pytest.raises(ConflictError, match="stopped"):
        await stop_replay(store, replay.id)
    assert (await resume_replay(store, replay.id)).state is JobState.RUNNING
    assert [g.generation for g in await generations(store, "balances")] == [2, 1]

    await delete_replay(store, Balances(), replay.id)
    assert [g.generation for g in await generations(store, "balances")] == [1]
    with pytest.raises(NotFound):
        await job(store, replay.id)
    nxt = await start_replay(store, Balances())
    assert nxt.generation == 3  # generation numbers are never reused
    with pytest.raises(ValidationError, match="only projections are replayed"):
        await start_replay(store, Mailer())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_sql_read_models_get_a_table_per_generation(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"{backend}_url")
    marker = "?" if backend == "sqlite" else "%s"
    async with kronika.open_store(url) as store:
        await deposit(store, 30, seed=7)
        expected = {}
        for event in await store.read_all(types=["Deposited"]):
            expected[event.stream] = expected.get(event.stream, 0) + 1
        processing = processing_of(store)

        async def rows() -> dict[str, int]:
            if await processing.processor("tally") is None:
                return {}  # the worker has not started yet
            table = await live_table(processing, "tally", "tally")
            try:
                async with processing.transaction() as tx:
                    found = await tx.fetch(f"SELECT stream, n FROM {table}")
            except KronikaError:
                return {}  # the worker has not created the table yet
            return dict(found)

        worker, task = await run_worker(store, Tally(marker))
        try:
            await wait_for(lambda: _equals(rows(), expected), timeout=20)
            await start_replay(store, Tally(marker))

            async def switched() -> bool:
                return await live_generation(store, "tally") == 2

            await wait_for(switched, timeout=30)
            assert await live_table(processing, "tally", "tally") == "tally__g2"
            assert await rows() == expected
        finally:
            await stop(worker, task)


async def _equals(got: Any, expected: Any) -> bool:
    return await got == expected
