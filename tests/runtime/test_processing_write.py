"""``ctx.write``: a handler's writes whose row count it does not need. PostgreSQL batches
them; both backends keep order, read-your-writes and all-or-nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_processing_hot_path import mark, table

import kronika
from kronika.errors import KronikaError
from kronika.runtime.worker import processing_of
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
