"""Group commit on PostgreSQL: appends that wait for a transaction slot go together.

Each test holds the store's only slot (``append_transactions=1``) with an append that waits
for an advisory lock held by another connection, queues more appends behind it, then lets
it go: the queued appends are committed as one group, in one transaction (their positions
share its transaction id), and each must still succeed or fail exactly as it would alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from kronika import ANY, NO_STREAM, NewEvent, open_store
from kronika.domain.events import AppendResult
from kronika.errors import ConcurrencyError, ConfigurationError, StreamDeleted, Unavailable
from kronika.store.integrity import chains_of
from kronika.store.postgres import PostgresEventStore
from kronika.store.postgres import appends as ap
from kronika.store.verify import verify

pytestmark = pytest.mark.postgres

Append = Coroutine[Any, Any, AppendResult]


def ev(n: int = 0) -> NewEvent:
    return NewEvent("Happened", {"n": n})


def transaction_of(position: int) -> int:
    """The transaction id a position was derived from (see kronika.store.postgres.store)."""
    return position >> 16


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresEventStore]:
    async with open_store(postgres_url, append_transactions=1) as opened:
        assert isinstance(opened, PostgresEventStore)
        yield opened


@asynccontextmanager
async def slot_held(
    store: PostgresEventStore, postgres_server: str
) -> AsyncIterator[asyncio.Task[AppendResult]]:
    """Hold the store's one append slot with an append to ``held`` that waits for a lock;
    on exit, release the lock and wait for that append."""
    key = ap.lock_key(f"{store.schema}\x00default", "stream", "held")
    async with await psycopg.AsyncConnection.connect(postgres_server, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        held = asyncio.create_task(store.append("held", [ev()]))
        deadline = time.monotonic() + 10
        while not await _waiting_for_lock(conn, key):
            assert time.monotonic() < deadline, "the append never waited for its lock"
            await asyncio.sleep(0.01)
        try:
            yield held
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            await asyncio.gather(held, return_exceptions=True)


async def _waiting_for_lock(conn: psycopg.AsyncConnection[Any], key: int) -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND classid::bigint = (%(key)s >> 32) & 4294967295 "
        "AND objid::bigint = %(key)s & 4294967295",
        {"key": key},
    )
    row = await cur.fetchone()
    return row is not None and row[0] > 0


async def queued(*appends: Append) -> list[asyncio.Task[AppendResult]]:
    """Start appends and let each reach the group commit's queue."""
    tasks = [asyncio.create_task(a) for a in appends]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in tasks), "an append ran although the slot was held"
    return tasks


async def test_waiting_appends_are_committed_together(
    store: PostgresEventStore, postgres_server: str
) -> None:
    await store.append("old", [ev(0)])
    async with slot_held(store, postgres_server) as held:
        tasks = await queued(
            store.append("new", [ev(1), ev(2)], expected_version=NO_STREAM),
            store.append("old", [ev(3)], expected_version=0),
            store.append("any", [ev(4)]),
        )
    results = await asyncio.gather(*tasks)
    assert [r.next_expected_version for r in results] == [1, 1, 0]
    assert len({transaction_of(r.position) for r in results}) == 1
    assert transaction_of((await held).position) != transaction_of(results[0].position)
    for stream, result in zip(("new", "old", "any"), results, strict=True):
        events = await store.read_stream(stream)
        assert (events[-1].version, events[-1].position) == (
            result.next_expected_version,
            result.position,
        )
    log = await store.read_all()
    assert [e.data["n"] for e in log] == [0, 0, 1, 2, 3, 4]
    report = await verify(chains_of(store))
    assert report.complete and report.problems_total == 0


async def test_each_part_of_a_failed_group_gets_its_own_result(
    store: PostgresEventStore, postgres_server: str
) -> None:
    first = [ev(1)]
    original = await store.append("retried", first)
    await store.append("tombstoned", [ev()])
    await store.delete_stream("tombstoned", hard=True)
    await store.append("stale", [ev(), ev()])
    async with slot_held(store, postgres_server):
        tasks = await queued(
            store.append("fine-1", [ev(2)]),
            store.append("stale", [ev(3)], expected_version=0),
            store.append("tombstoned", [ev(4)]),
            store.append("retried", first),
            store.append("fine-2", [ev(5)], expected_version=NO_STREAM),
        )
    fine_1, stale, tombstoned, retried, fine_2 = await asyncio.gather(
        *tasks, return_exceptions=True
    )
    assert isinstance(stale, ConcurrencyError)
    assert (stale.stream, stale.actual) == ("stale", 1)
    assert isinstance(tombstoned, StreamDeleted)
    assert retried == original  # the same ids: the first result, nothing written twice
    assert isinstance(fine_1, AppendResult) and isinstance(fine_2, AppendResult)
    assert fine_1.next_expected_version == fine_2.next_expected_version == 0
    assert [e.version for e in await store.read_stream("stale")] == [0, 1]
    assert len(await store.read_stream("retried")) == 1
    report = await verify(chains_of(store))
    assert report.complete and report.problems_total == 0


async def test_appends_to_one_stream_go_in_separate_groups_in_order(
    store: PostgresEventStore, postgres_server: str
) -> None:
    async with slot_held(store, postgres_server):
        appends = (store.append("one", [ev(n)], expected_version=ANY) for n in range(3))
        tasks = await queued(*appends)
    results = await asyncio.gather(*tasks)
    assert [r.next_expected_version for r in results] == [0, 1, 2]
    assert len({transaction_of(r.position) for r in results}) == 3
    assert [e.data["n"] for e in await store.read_stream("one")] == [0, 1, 2]


async def test_a_cancelled_waiting_append_writes_nothing(
    store: PostgresEventStore, postgres_server: str
) -> None:
    async with slot_held(store, postgres_server):
        kept, cancelled = await queued(store.append("kept", [ev()]), store.append("gone", [ev()]))
        cancelled.cancel()
    assert (await kept).next_expected_version == 0
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await store.read_stream("gone") == []


async def test_a_group_that_times_out_fails_every_part_as_unavailable(
    postgres_url: str, postgres_server: str
) -> None:
    async with open_store(postgres_url, append_transactions=1, statement_timeout=0.5) as store:
        assert isinstance(store, PostgresEventStore)
        locked = ap.lock_key(f"{store.schema}\x00default", "stream", "locked")
        async with await psycopg.AsyncConnection.connect(postgres_server, autocommit=True) as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (locked,))
            async with slot_held(store, postgres_server):
                tasks = await queued(store.append("locked", [ev()]), store.append("free", [ev()]))
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            await conn.execute("SELECT pg_advisory_unlock(%s)", (locked,))
        assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
        assert await store.read_stream("free") == []
        assert (await store.append("free", [ev()])).next_expected_version == 0


def test_append_transactions_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="append_transactions"):
        PostgresEventStore("postgresql://db/app", append_transactions=0)
    store = PostgresEventStore("postgresql://db/app?append_transactions=4")
    assert store._settings.append_transactions == 4
