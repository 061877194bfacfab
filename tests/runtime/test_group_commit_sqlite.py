"""Group commit of SQLite processing transactions: shared fsyncs, separate outcomes.

Processing transactions that queue for the SQLite processing connection while one holds it
share one SQLite transaction, each in a savepoint: a commit returns only once that shared
transaction is on disk, a rollback undoes only its own work, and a lost shared transaction
fails every member (see ``kronika.store.sqlite.processing_connection``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kronika import NewEvent
from kronika.errors import ConfigurationError, KronikaError, StoreClosed, Unavailable
from kronika.store.sqlite import SQLiteEventStore, processing_connection

TABLES = """
CREATE TABLE model (k TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "kronika.db"
    with sqlite3.connect(path, isolation_level=None) as raw:
        raw.executescript(TABLES)
    raw.close()
    return path


@pytest.fixture(autouse=True)
def wide_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups stay open as long as these tests hold them (one test narrows it again)."""
    monkeypatch.setattr(processing_connection, "GROUP_WINDOW", 30.0)


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteEventStore]:
    async with SQLiteEventStore(db_path) as opened:
        yield opened


def committed(path: Path) -> dict[str, int]:
    """The model's rows as another connection sees them (committed data only)."""
    raw = sqlite3.connect(path, timeout=10)
    try:
        return dict(raw.execute("SELECT k, n FROM model").fetchall())
    finally:
        raw.close()


async def write(store: SQLiteEventStore, key: str, *, hold: asyncio.Event | None = None) -> None:
    """One processing transaction that upserts ``key`` (and waits for ``hold`` inside)."""
    async with store.processing.transaction() as tx:
        await tx.execute(
            "INSERT INTO model (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1",
            [key],
        )
        if hold is not None:
            await hold.wait()


async def queued(store: SQLiteEventStore, count: int) -> None:
    """Wait until ``count`` transactions wait for the processing connection."""
    connection = store.processing._active_connection()
    while connection._queued < count:  # noqa: ASYNC110 - polls the connection's queue
        await asyncio.sleep(0.001)


async def test_transactions_queued_behind_one_share_its_commit(
    store: SQLiteEventStore, db_path: Path
) -> None:
    release = asyncio.Event()
    first = asyncio.create_task(write(store, "a", hold=release))
    await asyncio.sleep(0.05)  # the first holds the connection
    others = [asyncio.create_task(write(store, k)) for k in "bcdefgh"]
    await queued(store, 7)
    before = store.processing.commits
    release.set()
    await asyncio.gather(first, *others)
    assert committed(db_path) == dict.fromkeys("abcdefgh", 1)
    assert store.processing.commits - before == 1  # eight transactions, one SQLite commit


async def test_a_commit_returns_only_once_the_shared_transaction_is_on_disk(
    store: SQLiteEventStore, db_path: Path
) -> None:
    release_a, release_b = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(write(store, "a", hold=release_a))
    await asyncio.sleep(0.05)
    b = asyncio.create_task(write(store, "b", hold=release_b))
    await queued(store, 1)
    release_a.set()  # a ends and hands the open transaction to b
    await asyncio.sleep(0.1)
    assert not a.done()  # its work waits in the shared transaction, not yet committed
    assert committed(db_path) == {}
    release_b.set()
    await asyncio.gather(a, b)
    assert committed(db_path) == {"a": 1, "b": 1}


async def test_a_group_stays_open_at_most_the_window(
    store: SQLiteEventStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processing_connection, "GROUP_WINDOW", 0.01)
    release = asyncio.Event()
    first = asyncio.create_task(write(store, "a", hold=release))
    await asyncio.sleep(0.05)  # longer than the window: the first commits on its own
    second = asyncio.create_task(write(store, "b"))
    await queued(store, 1)
    before = store.processing.commits
    release.set()
    await asyncio.gather(first, second)
    assert committed(db_path) == {"a": 1, "b": 1}
    assert store.processing.commits - before == 2


async def test_a_lone_transaction_commits_at_once(store: SQLiteEventStore, db_path: Path) -> None:
    before = store.processing.commits
    for _ in range(3):
        await write(store, "a")
        assert committed(db_path)["a"] == store.processing.commits - before


async def test_a_member_that_fails_rolls_back_only_its_own_work(
    store: SQLiteEventStore, db_path: Path
) -> None:
    release = asyncio.Event()

    async def failing() -> None:
        async with store.processing.transaction() as tx:
            await tx.execute("INSERT INTO model (k, n) VALUES ('bad', 1)")
            await tx.documents.put("c", "bad", {"n": 1})
            raise RuntimeError("handler failed")

    first = asyncio.create_task(write(store, "a", hold=release))
    await asyncio.sleep(0.05)
    bad = asyncio.create_task(failing())
    last = asyncio.create_task(write(store, "c"))
    await queued(store, 2)
    release.set()
    results = await asyncio.gather(first, bad, last, return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], RuntimeError)
    assert results[2] is None
    assert committed(db_path) == {"a": 1, "c": 1}
    async with store.processing.documents_reader() as docs:
        assert await docs.get("c", "bad") is None


async def test_a_lost_shared_transaction_fails_every_member(
    store: SQLiteEventStore, db_path: Path
) -> None:
    """``OR ROLLBACK`` makes SQLite roll back the whole transaction, the members' work too:
    they must fail (and be handled again), not report a commit that did not happen."""
    await write(store, "taken")
    release = asyncio.Event()

    async def rolls_back_everything() -> None:
        async with store.processing.transaction() as tx:
            await tx.execute("INSERT OR ROLLBACK INTO model (k, n) VALUES ('taken', 1)")

    first = asyncio.create_task(write(store, "a", hold=release))
    await asyncio.sleep(0.05)
    breaker = asyncio.create_task(rolls_back_everything())
    await queued(store, 1)
    release.set()
    first_error, breaker_error = await asyncio.gather(first, breaker, return_exceptions=True)
    assert isinstance(first_error, Unavailable)
    assert "rolled back" in str(first_error)
    assert isinstance(breaker_error, KronikaError)
    assert committed(db_path) == {"taken": 1}
    await write(store, "after")  # the connection goes on
    assert committed(db_path) == {"taken": 1, "after": 1}


@pytest.mark.parametrize("statement", ["COMMIT", "END", "ROLLBACK", "BEGIN", "commit -- x"])
async def test_a_handlers_sql_cannot_end_the_shared_transaction(
    store: SQLiteEventStore, db_path: Path, statement: str
) -> None:

    async def end_it() -> None:
        async with store.processing.transaction() as tx:
            await tx.execute("INSERT INTO model (k, n) VALUES ('x', 1)")
            await tx.execute(statement)

    with pytest.raises(ConfigurationError, match="must not end the processing transaction"):
        await end_it()
    assert committed(db_path) == {}
    async with store.processing.transaction() as tx:  # its own savepoints are fine
        await tx.execute("SAVEPOINT mine")
        await tx.execute("INSERT INTO model (k, n) VALUES ('y', 1)")
        await tx.execute("ROLLBACK TO mine")
        await tx.execute("RELEASE mine")
        await tx.execute("INSERT INTO model (k, n) VALUES ('z', 1)")
    assert committed(db_path) == {"z": 1}


async def test_a_member_cancelled_while_waiting_for_the_commit_is_still_committed(
    store: SQLiteEventStore, db_path: Path
) -> None:
    release_a, release_b = asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(write(store, "a", hold=release_a))
    await asyncio.sleep(0.05)
    b = asyncio.create_task(write(store, "b", hold=release_b))
    await queued(store, 1)
    release_a.set()
    await asyncio.sleep(0.05)
    a.cancel()  # waiting for the shared commit: its work stays in the transaction
    await asyncio.gather(a, return_exceptions=True)
    release_b.set()
    await b
    assert committed(db_path) == {"a": 1, "b": 1}


async def test_closing_the_store_fails_members_waiting_for_the_commit(db_path: Path) -> None:
    store = SQLiteEventStore(db_path)
    await store.open()
    release = asyncio.Event()
    a = asyncio.create_task(write(store, "a"))
    b = asyncio.create_task(write(store, "b", hold=release))
    await asyncio.sleep(0.05)
    await store.close()
    release.set()
    results = await asyncio.gather(a, b, return_exceptions=True)
    assert [type(r) for r in results] == [StoreClosed, StoreClosed]
    assert committed(db_path) == {}


async def test_appends_wait_for_a_group_and_then_go_on(
    store: SQLiteEventStore, db_path: Path
) -> None:
    release = asyncio.Event()
    first = asyncio.create_task(write(store, "a", hold=release))
    await asyncio.sleep(0.05)
    others = [asyncio.create_task(write(store, k)) for k in "bc"]
    append = asyncio.create_task(store.append("s-1", [NewEvent("Tick", {})]))
    await queued(store, 2)
    release.set()
    await asyncio.gather(first, *others)
    assert (await asyncio.wait_for(append, 5)).position == 1
    assert committed(db_path) == {"a": 1, "b": 1, "c": 1}
