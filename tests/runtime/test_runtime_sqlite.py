"""The processing runtime on SQLite: SQL read models, exactly-once across crashes, sharing.

A projection here keeps its read model in tables of its own, in the store's database, and
writes them with ``ctx.execute`` in the transaction that moves its checkpoint. The module
is also imported by a worker subprocess (see :func:`serve`).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import kronika
from kronika import NewEvent, RecordedEvent
from kronika.errors import ConfigurationError, KronikaError, StoreClosed
from kronika.runtime import Context, Projection, Worker, on
from kronika.store.processing import FailedKey, FailureAction, FailureState, LeaseLost
from kronika.store.sqlite import SQLiteEventStore

TABLES = """
CREATE TABLE tally (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO tally (id, n) VALUES (1, 0);
CREATE TABLE last_seen (stream TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE violations (stream TEXT, previous INTEGER, version INTEGER);
CREATE TABLE handled (position INTEGER PRIMARY KEY, worker TEXT NOT NULL);
"""


class Tally(Projection):
    """Counts events in SQL and checks that each stream's versions arrive one by one.

    A duplicate, a gap or a reordering within a stream lands in ``violations``; an event
    handled twice also breaks the primary key of ``handled`` (the key is then parked).
    """

    name = "tally"
    partitions = 4
    batch_size = 20

    def __init__(self, tag: str = "worker") -> None:
        self.tag = tag

    @on("Tick")
    async def tick(self, event: RecordedEvent, ctx: Context) -> None:
        await ctx.execute("UPDATE tally SET n = n + 1 WHERE id = 1")
        rows = await ctx.transaction.fetch(
            "SELECT version FROM last_seen WHERE stream = ?", [event.stream]
        )
        previous = rows[0][0] if rows else -1
        if previous != event.version - 1:
            await ctx.execute(
                "INSERT INTO violations (stream, previous, version) VALUES (?, ?, ?)",
                [event.stream, previous, event.version],
            )
        await ctx.execute(
            "INSERT INTO last_seen (stream, version) VALUES (:stream, :version) "
            "ON CONFLICT (stream) DO UPDATE SET version = excluded.version",
            {"stream": event.stream, "version": event.version},
        )
        await ctx.execute(
            "INSERT INTO handled (position, worker) VALUES (?, ?)", [event.position, self.tag]
        )


def serve(url: str) -> None:
    """Run a worker with :class:`Tally` until SIGTERM (the subprocess's entry point)."""

    async def main() -> None:
        async with kronika.open_store(url) as store:
            worker = Worker(store, [Tally()], lease_ttl=1.0, drain_timeout=5)
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
            print("started", flush=True)
            await worker.run()

    asyncio.run(main())


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "kronika.db"
    with sqlite3.connect(path, isolation_level=None) as raw:
        raw.executescript(TABLES)
    raw.close()
    return path


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteEventStore]:
    async with SQLiteEventStore(db_path) as opened:
        yield opened


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    raw = sqlite3.connect(path, timeout=10)
    try:
        return raw.execute(sql, params).fetchall()
    finally:
        raw.close()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def tally(path: Path) -> int:
    rows = await asyncio.to_thread(query, path, "SELECT n FROM tally")
    return int(rows[0][0])


async def append_ticks(store: SQLiteEventStore, streams: int, per_stream: int) -> int:
    for _ in range(per_stream):
        for s in range(streams):
            await store.append(f"tick-{s}", [NewEvent("Tick", {})])
    return streams * per_stream


async def assert_exactly_once(store: SQLiteEventStore, path: Path, total: int) -> None:
    assert await tally(path) == total
    assert query(path, "SELECT count(*) FROM handled") == [(total,)]
    assert query(path, "SELECT * FROM violations") == []
    last = dict(query(path, "SELECT stream, version FROM last_seen"))
    for stream, version in last.items():
        assert version == (await store.stream_info(stream)).version, stream
    assert await store.processing.failures() == []


async def run_worker(worker: Worker) -> asyncio.Task[None]:
    return asyncio.create_task(worker.run())


async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(task, 15)


# -- a projection with its own SQL tables -----------------------------------------------------


async def test_a_projection_writes_its_tables_with_its_checkpoint(
    store: SQLiteEventStore, db_path: Path
) -> None:
    worker = Worker(store, [Tally()], lease_ttl=1.0)
    task = await run_worker(worker)
    try:
        total = await append_ticks(store, 5, 20)
        await wait_for(lambda: _equals(tally(db_path), total))
    finally:
        await stop(worker, task)
    await assert_exactly_once(store, db_path, total)
    record = await store.processing.processor("tally")
    assert record is not None
    assert max(record.checkpoints.values()) == await store.head_position()


async def _equals(got: Awaitable[int], expected: int) -> bool:
    return await got == expected


async def test_sql_and_documents_roll_back_with_the_transaction(
    store: SQLiteEventStore, db_path: Path
) -> None:
    processing = store.processing

    async def fail_after_writing() -> None:
        async with processing.transaction() as tx:
            assert await tx.execute("UPDATE tally SET n = 41 WHERE id = 1") == 1
            assert await tx.fetch("SELECT n FROM tally") == [(41,)]
            await tx.documents.put("c", "k", {"a": 1})
            await tx.set_checkpoint("tally", 0, 7)
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await fail_after_writing()
    assert await tally(db_path) == 0
    async with processing.documents_reader() as docs:
        assert await docs.get("c", "k") is None
        with pytest.raises(ConfigurationError):
            await docs.put("c", "k", {})
    async with processing.transaction() as tx:
        await tx.execute("UPDATE tally SET n = :n WHERE id = 1", {"n": 42})
        await tx.documents.put("c", "k", {"a": [1, "ü"]})
    assert await tally(db_path) == 42
    async with processing.documents_reader() as docs:
        assert await docs.get("c", "k") == {"a": [1, "ü"]}


async def test_a_handlers_bad_sql_fails_the_handler_not_the_connection(
    store: SQLiteEventStore,
) -> None:
    with pytest.raises(KronikaError, match="no such table: missing"):
        async with store.processing.transaction() as tx:
            await tx.execute("UPDATE missing SET x = 1")
    with pytest.raises(KronikaError, match="must not end"):
        async with store.processing.transaction() as tx:
            await tx.execute("COMMIT")
    async with store.processing.transaction() as tx:
        assert await tx.fetch("SELECT n FROM tally") == [(0,)]


async def test_writing_to_the_store_behind_the_transactions_lock_fails_fast(
    store: SQLiteEventStore,
) -> None:
    async with store.processing.transaction() as tx:
        await store.append("before-1", [NewEvent("Tick", {})])  # the lock is not taken yet
        await tx.documents.put("c", "k", {})
        with pytest.raises(ConfigurationError, match="one writer"):
            await asyncio.wait_for(store.append("after-1", [NewEvent("Tick", {})]), 2)
    await store.append("after-1", [NewEvent("Tick", {})])


async def test_concurrent_transactions_take_turns(store: SQLiteEventStore, db_path: Path) -> None:
    async def bump(times: int) -> None:
        for _ in range(times):
            async with store.processing.transaction() as tx:
                [(n,)] = await tx.fetch("SELECT n FROM tally")
                await asyncio.sleep(0)
                await tx.execute("UPDATE tally SET n = ? WHERE id = 1", [n + 1])

    await asyncio.gather(*(bump(25) for _ in range(8)), append_ticks(store, 4, 25))
    assert await tally(db_path) == 200


async def test_a_cancelled_transaction_lets_the_next_one_in(
    store: SQLiteEventStore, db_path: Path
) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with store.processing.transaction() as tx:
            await tx.execute("UPDATE tally SET n = 99 WHERE id = 1")
            started.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with store.processing.transaction() as tx:
        assert await tx.fetch("SELECT n FROM tally") == [(0,)]
    await store.append("s-1", [NewEvent("Tick", {})])


# -- bookkeeping semantics ---------------------------------------------------------------------


async def test_a_checkpoint_is_fenced_by_the_lease(store: SQLiteEventStore, db_path: Path) -> None:
    processing = store.processing
    await processing.register_processor("tally", 2)
    with pytest.raises(ConfigurationError, match="2 partitions"):
        await processing.register_processor("tally", 3)
    assert await processing.acquire_leases("tally", [0, 1], "a", 30) == [0, 1]
    assert await processing.acquire_leases("tally", [0, 1], "b", 30) == []

    async def write_as(owner: str) -> None:
        async with processing.transaction() as tx:
            await tx.execute("UPDATE tally SET n = 5 WHERE id = 1")
            await tx.set_checkpoint("tally", 0, 10, owner=owner)

    with pytest.raises(LeaseLost):
        await write_as("b")
    assert await tally(db_path) == 0
    await write_as("a")
    assert await tally(db_path) == 5
    await processing.release_leases_except("tally", "a", [1])
    assert [(lease.partition, lease.owner) for lease in await processing.leases("tally")] == [
        (1, "a")
    ]
    assert await processing.acquire_leases("tally", [0, 1], "b", 0.05) == [0]
    await asyncio.sleep(0.1)  # b's lease on 0 lapses
    assert await processing.acquire_leases("tally", [0], "a", 30) == [0]
    record = await processing.processor("tally")
    assert record is not None
    assert (record.partitions, record.checkpoints, record.paused) == (2, {0: 10}, False)
    await processing.set_paused("tally", True)
    assert [r.paused for r in await processing.processors()] == [True]


async def test_failures_keep_an_operators_request_and_their_times(
    store: SQLiteEventStore,
) -> None:
    processing = store.processing
    at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    failure = FailedKey(
        processor="tally",
        partition=1,
        key="k-1",
        position=3,
        event_id=kronika.NewEvent("Tick", {}).event_id,
        event_type="Tick",
        attempts=1,
        error="RuntimeError: no",
        stack="Traceback ...",
        first_failed_at=at,
        last_failed_at=at,
        next_retry_at=at + timedelta(seconds=1),
        state=FailureState.RETRYING,
    )
    async with processing.transaction() as tx:
        await tx.save_failure(failure)
    assert await processing.failures("tally") == [failure]
    assert await processing.request("tally", "k-1", FailureAction.SKIP)
    assert not await processing.request("tally", "k-2", FailureAction.SKIP)
    later = FailedKey(**{**_fields(failure), "attempts": 2, "next_retry_at": None})
    async with processing.transaction() as tx:
        await tx.save_failure(later)
    [stored] = await processing.failures()
    assert stored.requested is FailureAction.SKIP
    assert (stored.attempts, stored.next_retry_at, stored.first_failed_at) == (2, None, at)
    async with processing.transaction() as tx:
        await tx.clear_request("tally", "k-1")
    assert (await processing.failures())[0].requested is None
    async with processing.transaction() as tx:
        await tx.clear_failure("tally", "k-1")
    assert await processing.failures() == []


def _fields(failure: FailedKey) -> dict[str, Any]:
    return {name: getattr(failure, name) for name in FailedKey.__dataclass_fields__}


async def test_heartbeats_list_live_workers(store: SQLiteEventStore) -> None:
    processing = store.processing
    assert await processing.worker_heartbeat("b", 30) == ["b"]
    assert await processing.worker_heartbeat("a", 0.05) == ["a", "b"]
    await asyncio.sleep(0.1)
    assert await processing.worker_heartbeat("c", 30) == ["b", "c"]


async def test_processing_refuses_work_once_the_store_is_closed(db_path: Path) -> None:
    store = SQLiteEventStore(db_path)
    async with store, store.processing.transaction() as tx:
        await tx.documents.put("c", "k", {})
    with pytest.raises(StoreClosed):
        async with store.processing.transaction():
            pass
    with pytest.raises(StoreClosed):
        await store.processing.processors()


# -- exactly once, across a crash and across workers ---------------------------------------------


def start_worker_process(url: str) -> subprocess.Popen[str]:
    here = str(Path(__file__).parent)
    script = "import sys; sys.path.insert(0, sys.argv[2]); import test_runtime_sqlite as t; "
    script += "t.serve(sys.argv[1])"
    return subprocess.Popen(
        [sys.executable, "-c", script, url, here], stdout=subprocess.PIPE, text=True
    )


async def test_a_worker_killed_mid_batch_loses_and_repeats_nothing(
    store: SQLiteEventStore, db_path: Path
) -> None:
    url = f"sqlite:///{db_path}"
    appended = 0

    async def keep_appending(rounds: int) -> None:
        nonlocal appended
        for _ in range(rounds):
            appended += await append_ticks(store, 12, 1)
            await asyncio.sleep(0.002)

    for threshold in (150, 700):
        process = start_worker_process(url)
        assert process.stdout is not None
        assert (await asyncio.to_thread(process.stdout.readline)).startswith("started")
        appending = asyncio.create_task(keep_appending(60))
        await wait_for(reached(db_path, threshold))
        process.send_signal(signal.SIGKILL)  # while events arrive and batches are in flight
        await asyncio.to_thread(process.wait, 30)
        process.stdout.close()
        await appending
        assert await tally(db_path) < appended, "the worker was killed too late to prove much"
    process = start_worker_process(url)
    try:
        await wait_for(lambda: _equals(tally(db_path), appended), timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert process.stdout is not None
        process.stdout.close()
    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
    await assert_exactly_once(store, db_path, appended)


def reached(path: Path, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await tally(path) >= count

    return check


async def test_two_workers_share_the_partitions_and_one_takes_over(
    store: SQLiteEventStore, db_path: Path
) -> None:
    ttl = 1.0
    one, two = (Worker(store, [Tally(tag)], worker_id=tag, lease_ttl=ttl) for tag in ("w1", "w2"))
    tasks = [await run_worker(one), await run_worker(two)]
    try:
        await wait_for(lambda: _owners_are(store, {"w1": 2, "w2": 2}))
        total = await append_ticks(store, 16, 10)
        await wait_for(lambda: _equals(tally(db_path), total))
        by_worker = dict(query(db_path, "SELECT worker, count(*) FROM handled GROUP BY worker"))
        assert set(by_worker) == {"w1", "w2"}
        await stop(one, tasks[0])
        started = asyncio.get_running_loop().time()
        await wait_for(lambda: _owners_are(store, {"w2": 4}), timeout=4 * ttl)
        took = asyncio.get_running_loop().time() - started
        assert took < 2 * ttl, f"the survivor took {took:.2f}s to take over"
        total += await append_ticks(store, 16, 5)
        await wait_for(lambda: _equals(tally(db_path), total))
    finally:
        one.stop()
        await stop(two, tasks[1])
        await asyncio.gather(*tasks, return_exceptions=True)
    await assert_exactly_once(store, db_path, total)


async def _owners_are(store: SQLiteEventStore, expected: dict[str, int]) -> bool:
    leases = await store.processing.leases("tally")
    now = datetime.now(UTC)
    counts: dict[str, int] = {}
    for lease in leases:
        if lease.expires_at > now:
            counts[lease.owner] = counts.get(lease.owner, 0) + 1
    return counts == expected
