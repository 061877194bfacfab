"""What the fast paths of processing transactions must keep: read-your-writes, all-or-nothing.

On SQLite a transaction's statements run on the caller's thread between a ``BEGIN`` and a
``COMMIT`` that run on the connection's thread; on PostgreSQL documents are written behind
and flushed before anything that could see them. Neither may change what a transaction
means: a handler reads its own writes, and nothing of a failed or fenced-off transaction
is left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import kronika
from kronika.errors import KronikaError
from kronika.runtime.worker import processing_of
from kronika.store.processing import LeaseLost
from kronika.store.protocol import EventStore


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    async with kronika.open_store(url) as opened:
        yield opened


def table(store: EventStore) -> str:
    """A read-model table of the test's own, in the store's schema on PostgreSQL."""
    schema = getattr(store, "schema", None)
    return f'"{schema}".model' if store.engine == "postgresql" else "model"


def mark(store: EventStore) -> str:
    return "%s" if store.engine == "postgresql" else "?"


async def stored(store: EventStore, key: str) -> dict[str, Any] | None:
    async with processing_of(store).documents_reader() as docs:
        return await docs.get("c", key)


async def test_a_transaction_reads_its_own_document_writes(store: EventStore) -> None:
    original = {"n": 1, "tags": ["a"]}
    async with processing_of(store).transaction() as tx:
        await tx.documents.put("c", "k", original)
        original["n"] = 99  # the document was taken as it was when put
        got = await tx.documents.get("c", "k")
        assert got == {"n": 1, "tags": ["a"]}
        assert got is not None
        got["tags"].append("b")  # a copy: the stored document does not change
        assert await tx.documents.get("c", "k") == {"n": 1, "tags": ["a"]}
        await tx.documents.delete("c", "k")
        assert await tx.documents.get("c", "k") is None
        await tx.documents.put("c", "k", {"n": 2})
        await tx.documents.put("c", "gone", {"n": 3})
        await tx.documents.delete("c", "gone")
    assert await stored(store, "k") == {"n": 2}
    assert await stored(store, "gone") is None


async def test_a_handlers_sql_sees_the_documents_written_before_it(store: EventStore) -> None:
    query = f"SELECT count(*) FROM documents WHERE key = {mark(store)}"
    if store.engine == "postgresql":
        query = query.replace("documents", f'"{getattr(store, "schema", "")}".documents')
    async with processing_of(store).transaction() as tx:
        await tx.documents.put("c", "seen-by-sql", {"n": 1})
        assert await tx.fetch(query, ["seen-by-sql"]) == [(1,)]


async def test_many_writes_in_one_transaction_commit_together(store: EventStore) -> None:
    async with processing_of(store).transaction() as tx:
        await tx.execute(f"CREATE TABLE {table(store)} (k TEXT PRIMARY KEY, n INTEGER)")
    upsert = (
        f"INSERT INTO {table(store)} (k, n) VALUES ({mark(store)}, 1) "
        f"ON CONFLICT (k) DO UPDATE SET n = {table(store)}.n + 1"
    )
    await processing_of(store).register_processor("fast", 1)
    async with processing_of(store).transaction() as tx:
        for i in range(300):
            assert await tx.execute(upsert, [f"k{i % 7}"]) == 1
            doc = await tx.documents.get("c", f"k{i % 7}") or {"n": 0}
            await tx.documents.put("c", f"k{i % 7}", {"n": doc["n"] + 1})
        await tx.set_checkpoint("fast", 0, 300)
    async with processing_of(store).transaction() as tx:
        assert await tx.fetch(f"SELECT sum(n) FROM {table(store)}") == [(300,)]
    assert sum([(await stored(store, f"k{i}") or {"n": 0})["n"] for i in range(7)]) == 300
    record = await processing_of(store).processor("fast")
    assert record is not None
    assert record.checkpoints == {0: 300}


async def put_then_fail(store: EventStore) -> None:
    async with processing_of(store).transaction() as tx:
        await tx.documents.put("c", "buffered", {"n": 1})
        raise RuntimeError("handler failed")


async def put_then_run_bad_sql(store: EventStore, insert: str) -> None:
    async with processing_of(store).transaction() as tx:
        await tx.documents.put("c", "before-bad-sql", {"n": 1})
        await tx.execute(insert, ["a"])
        await tx.execute(insert, ["a"])  # a duplicate key: the statement fails


async def test_nothing_is_left_of_a_transaction_that_fails(store: EventStore) -> None:
    async with processing_of(store).transaction() as tx:
        await tx.execute(f"CREATE TABLE {table(store)} (k TEXT PRIMARY KEY, n INTEGER)")
    insert = f"INSERT INTO {table(store)} (k, n) VALUES ({mark(store)}, 1)"
    with pytest.raises(RuntimeError, match="handler failed"):
        await put_then_fail(store)
    with pytest.raises(KronikaError, match=r"(?i)unique|duplicate"):
        await put_then_run_bad_sql(store, insert)
    assert await stored(store, "buffered") is None
    assert await stored(store, "before-bad-sql") is None
    async with processing_of(store).transaction() as tx:  # the connection still works
        assert await tx.fetch(f"SELECT count(*) FROM {table(store)}") == [(0,)]
        await tx.execute(insert, ["b"])
    async with processing_of(store).transaction() as tx:
        assert await tx.fetch(f"SELECT k FROM {table(store)}") == [("b",)]


async def write_fenced(store: EventStore, owner: str, n: int) -> None:
    async with processing_of(store).transaction() as tx:
        await tx.documents.put("c", "fenced", {"n": n})
        await tx.set_checkpoint("fenced", 0, 5, owner=owner)


async def test_a_fenced_off_transaction_leaves_nothing_behind(store: EventStore) -> None:
    processing = processing_of(store)
    await processing.register_processor("fenced", 1)
    assert await processing.acquire_leases("fenced", [0], "worker-a", 30) == [0]
    with pytest.raises(LeaseLost):
        await write_fenced(store, "worker-b", 1)
    assert await stored(store, "fenced") is None
    await write_fenced(store, "worker-a", 2)
    assert await stored(store, "fenced") == {"n": 2}


async def test_transactions_from_concurrent_tasks_do_not_mix(store: EventStore) -> None:
    """Partitions run as tasks on one event loop, each with its own transactions."""

    async def task(t: int) -> None:
        for round_ in range(5):
            async with processing_of(store).transaction() as tx:
                for i in range(20):
                    key = f"t{t}-{i}"
                    doc = await tx.documents.get("c", key) or {"n": 0}
                    await tx.documents.put("c", key, {"n": doc["n"] + 1})
                    await asyncio.sleep(0)
                await tx.set_checkpoint("mixed", t, round_)

    await processing_of(store).register_processor("mixed", 4)
    await asyncio.gather(*(task(t) for t in range(4)))
    for t in range(4):
        for i in range(20):
            assert await stored(store, f"t{t}-{i}") == {"n": 5}
    record = await processing_of(store).processor("mixed")
    assert record is not None
    assert record.checkpoints == dict.fromkeys(range(4), 4)


async def test_a_postgres_document_the_server_refuses_fails_the_transaction(
    postgres_url: str,
) -> None:
    """A buffered write that the server refuses (jsonb has no NUL character) surfaces when
    the buffer is flushed, inside the same transaction, which then rolls back."""
    async with kronika.open_store(postgres_url) as store:
        await processing_of(store).register_processor("refused", 1)
        with pytest.raises(KronikaError):
            await put_nul(store, checkpoint=True)
        assert await stored(store, "ok") is None
        record = await processing_of(store).processor("refused")
        assert record is not None
        assert record.checkpoints == {}
        with pytest.raises(KronikaError):
            await put_nul(store, checkpoint=False)  # flushed at COMMIT
        async with processing_of(store).transaction() as tx:
            await tx.documents.put("c", "ok", {"n": 2})
        assert await stored(store, "ok") == {"n": 2}


async def put_nul(store: EventStore, *, checkpoint: bool) -> None:
    async with processing_of(store).transaction() as tx:
        await tx.documents.put("c", "ok", {"n": 1})
        await tx.documents.put("c", "nul", {"s": "a\x00b"})
        if checkpoint:
            await tx.set_checkpoint("refused", 0, 1)
