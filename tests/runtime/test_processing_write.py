"""``ctx.write``: a handler's writes whose row count it does not need. PostgreSQL batches
them; both backends keep order, read-your-writes and all-or-nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from test_processing_hot_path import mark, table

import kronika
from kronika.errors import KronikaError, ValidationError
from kronika.runtime.worker import processing_of
from kronika.store.processing import LeaseLost
from kronika.store.protocol import EventStore


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    async with kronika.open_store(url) as opened:
        yield opened


async def create(store: EventStore) -> str:
    name = table(store)
    async with processing_of(store).transaction() as tx:
        await tx.execute(f"CREATE TABLE {name} (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    return name


async def rows(store: EventStore, name: str) -> dict[str, int]:
    async with processing_of(store).transaction() as tx:
        return dict(await tx.fetch(f"SELECT k, n FROM {name}"))  # type: ignore[arg-type]


async def test_writes_keep_their_order_and_are_read_back(store: EventStore) -> None:
    name, m = await create(store), mark(store)
    upsert = (
        f"INSERT INTO {name} (k, n) VALUES ({m}, 1) ON CONFLICT (k) DO UPDATE SET n = {name}.n + 1"
    )
    double = f"UPDATE {name} SET n = n * 2 WHERE k = {m}"
    async with processing_of(store).transaction() as tx:
        for key in ["a", "b", "a"]:
            await tx.write(upsert, [key])
        await tx.write(double, ["a"])  # after the two upserts of "a": (1 + 1) * 2
        await tx.write(upsert, ["a"])
        assert dict(await tx.fetch(f"SELECT k, n FROM {name}")) == {"a": 5, "b": 1}
        for n in range(300):
            await tx.write(upsert, [f"many-{n}"])
    found = await rows(store, name)
    assert (found["a"], found["b"], len(found)) == (5, 1, 302)


async def test_a_failing_write_rolls_back_the_whole_transaction(store: EventStore) -> None:
    name, m = await create(store), mark(store)
    insert = f"INSERT INTO {name} (k, n) VALUES ({m}, {m})"

    async def duplicate() -> None:
        async with processing_of(store).transaction() as tx:
            await tx.write(insert, ["x", 1])
            await tx.write(insert, ["x", 2])  # a duplicate key: fails now or at the commit

    async def without_parameters() -> None:
        async with processing_of(store).transaction() as tx:
            await tx.write(f"DELETE FROM {name}", [])

    with pytest.raises(KronikaError):
        await duplicate()
    assert await rows(store, name) == {}
    with pytest.raises(KronikaError, match="parameters"):
        await without_parameters()


@pytest.mark.parametrize("run", [1, 10], ids=["one write", "a run of writes"])
async def test_a_parameter_that_is_not_text_is_a_validation_error(
    store: EventStore, run: int
) -> None:
    name, m = await create(store), mark(store)
    insert = f"INSERT INTO {name} (k, n) VALUES ({m}, {m})"

    async def write_run() -> None:
        async with processing_of(store).transaction() as tx:
            await tx.write(insert, ["ok", 0])
            for n in range(run):
                await tx.write(insert, [f"ab\ud800{n}", n])  # a lone surrogate

    async def execute() -> None:
        async with processing_of(store).transaction() as tx:
            await tx.execute(insert, ["ab\ud800", 1])

    with pytest.raises(
        ValidationError, match=r"SQL parameter: not valid text.*'\\ud800' at index 2"
    ):
        await write_run()
    with pytest.raises(ValidationError, match="SQL parameter"):
        await execute()
    assert await rows(store, name) == {}


async def test_writes_of_a_fenced_off_transaction_leave_nothing_behind(store: EventStore) -> None:
    name, m = await create(store), mark(store)
    processing = processing_of(store)
    await processing.register_processor("fenced-writes", 1)
    assert await processing.acquire_leases("fenced-writes", [0], "worker-a", 30) == [0]

    async def write_as(owner: str, key: str) -> None:
        async with processing.transaction() as tx:
            for n in range(3):
                await tx.write(f"INSERT INTO {name} (k, n) VALUES ({m}, {m})", [f"{key}-{n}", n])
            await tx.set_checkpoint("fenced-writes", 0, 3, owner=owner)

    with pytest.raises(LeaseLost):
        await write_as("worker-b", "b")
    assert await rows(store, name) == {}
    await write_as("worker-a", "a")
    assert await rows(store, name) == {"a-0": 0, "a-1": 1, "a-2": 2}


async def test_a_write_failing_with_the_checkpoint_rolls_back_everything(store: EventStore) -> None:
    name, m = await create(store), mark(store)
    processing = processing_of(store)
    await processing.register_processor("failing-writes", 1)

    async def duplicate_then_checkpoint() -> None:
        async with processing.transaction() as tx:
            await tx.documents.put("c", "with-writes", {"n": 1})
            await tx.write(f"INSERT INTO {name} (k, n) VALUES ({m}, 1)", ["x"])
            await tx.write(f"INSERT INTO {name} (k, n) VALUES ({m}, 1)", ["x"])
            await tx.set_checkpoint("failing-writes", 0, 9)

    with pytest.raises(KronikaError, match=r"(?i)unique|duplicate"):
        await duplicate_then_checkpoint()
    assert await rows(store, name) == {}
    record = await processing.processor("failing-writes")
    assert record is not None
    assert record.checkpoints == {}
    async with processing.documents_reader() as docs:
        assert await docs.get("c", "with-writes") is None


async def test_a_write_that_executemany_refuses_still_runs(sqlite_url: str) -> None:
    async with kronika.open_store(sqlite_url) as store:
        name = await create(store)
        async with processing_of(store).transaction() as tx:
            for key in ["a", "b"]:  # two runs of a statement sqlite3's executemany refuses
                await tx.write(f"SELECT ?, (SELECT count(*) FROM {name})", [key])
            await tx.write(f"INSERT INTO {name} (k, n) VALUES (?, 1)", ["c"])
        assert await rows(store, name) == {"c": 1}


async def test_a_sqlite_write_takes_the_lock_only_when_it_runs(sqlite_url: str) -> None:
    """A handler may append after writes (not after a statement): writes wait in the
    transaction until its checkpoint or commit."""
    async with kronika.open_store(sqlite_url) as store:
        name = await create(store)
        async with processing_of(store).transaction() as tx:
            await tx.write(f"INSERT INTO {name} (k, n) VALUES (?, 1)", ["before-append"])
            await asyncio.wait_for(store.append("s-1", [kronika.NewEvent("Tick", {})]), 5)
        assert await rows(store, name) == {"before-append": 1}
        assert await store.head_position() == 1
