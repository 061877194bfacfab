"""The processing runtime on PostgreSQL: SQL read models, lease fencing, workers that crash.

:class:`Sequenced` keeps its read model in tables of its own (in the test's schema) and
writes them with ``ctx.execute`` in the transaction that moves its checkpoint. Worker
processes run it with ``kronika worker --app tests.runtime.test_runtime_postgres:PROCESSORS``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

import kronika
from kronika import NewEvent, RecordedEvent, RetryPolicy
from kronika.errors import ConfigurationError, KronikaError, StoreClosed
from kronika.runtime import Context, Projection, admin, on
from kronika.store.postgres import PostgresEventStore
from kronika.store.processing import FailedKey, FailureAction, FailureState, LeaseLost

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).parents[2]
APP = "tests.runtime.test_runtime_postgres:PROCESSORS"
LEASE_TTL = 2.0


TABLES = """
CREATE TABLE {schema}.seen (
    stream text NOT NULL,
    version bigint NOT NULL,
    position bigint NOT NULL,
    partition integer NOT NULL,
    pid integer NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE {schema}.last_version (stream text PRIMARY KEY, version bigint NOT NULL);
"""


@dataclass(frozen=True)
class Statements:
    """The projection's SQL, with the schema composed in."""

    insert_seen: str
    first: str
    advance: str


@functools.cache
def statements(schema: str) -> Statements:
    def compose(text: str) -> str:
        return sql.SQL(text).format(schema=sql.Identifier(schema)).as_string(None)

    return Statements(
        insert_seen=compose(
            "INSERT INTO {schema}.seen (stream, version, position, partition, pid) "
            "VALUES (%s, %s, %s, %s, %s)"
        ),
        first=compose(
            "INSERT INTO {schema}.last_version (stream, version) VALUES (%s, 0) "
            "ON CONFLICT (stream) DO NOTHING"
        ),
        advance=compose(
            "UPDATE {schema}.last_version SET version = %(version)s "
            "WHERE stream = %(stream)s AND version = %(version)s - 1"
        ),
    )


class OutOfOrder(Exception):
    """An event of a stream arrived other than right after the stream's previous one."""


class Sequenced(Projection):
    """One row per (stream, version), UNIQUE; per stream, the last version moves by one.

    Handling an event twice breaks the UNIQUE constraint, and handling a stream's events
    out of order raises :class:`OutOfOrder`: either parks the key, which the tests see as a
    failed key.
    """

    name = "sequenced"
    partitions = 8
    batch_size = 50
    retry = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.05, jitter=False)

    @on("Tick")
    async def tick(self, event: RecordedEvent, ctx: Context) -> None:
        q = statements(cast(PostgresEventStore, ctx.store).schema)
        row = [event.stream, event.version, event.position, self.partition(event), os.getpid()]
        await ctx.execute(q.insert_seen, row)
        if event.version == 0:
            moved = await ctx.execute(q.first, [event.stream])
        else:
            moved = await ctx.execute(q.advance, {"stream": event.stream, "version": event.version})
        if moved != 1:
            raise OutOfOrder(f"{event.stream} version {event.version} is out of order")


PROCESSORS = [Sequenced]


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresEventStore]:
    async with PostgresEventStore(postgres_url) as opened:
        await execute(opened, TABLES)
        yield opened


async def execute(store: PostgresEventStore, text: str, params: Sequence[Any] = ()) -> None:
    async with store.processing.transaction() as tx:
        await tx.execute(statements_text(store, text), params)


async def rows(
    store: PostgresEventStore, text: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    async with store.processing.transaction() as tx:
        return await tx.fetch(statements_text(store, text), params)


def statements_text(store: PostgresEventStore, text: str) -> str:
    return sql.SQL(text).format(schema=sql.Identifier(store.schema)).as_string(None)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def seen(store: PostgresEventStore) -> int:
    [(count,)] = await rows(store, "SELECT count(*) FROM {schema}.seen")
    return int(count)


async def write(
    store: PostgresEventStore,
    appends: int,
    streams: int,
    seed: int,
    *,
    pause: float = 0.004,
    until: asyncio.Event | None = None,
) -> int:
    """Append 1-3 Ticks at a time to random streams (``appends`` times, and on until
    ``until`` is set); the number of events written."""
    rng, written, done = random.Random(seed), 0, 0
    while done < appends or (until is not None and not until.is_set()):
        done += 1
        count = rng.randint(1, 3)
        stream = f"tick-{rng.randrange(streams)}"
        await store.append(stream, [NewEvent("Tick", {"n": i}) for i in range(count)])
        written += count
        await asyncio.sleep(pause)
    return written


def start_worker(url: str, worker_id: str, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "kronika", "--url", url, "worker", "--app", APP]
    command += ["--worker-id", worker_id, "--lease-ttl", str(LEASE_TTL), "--drain-timeout", "10"]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


async def stop_worker(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, then the worker must drain and exit 0 in time."""
    process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(process.wait, 20)
    except subprocess.TimeoutExpired:
        process.kill()
        await asyncio.to_thread(process.wait, 10)
        code = None
    assert code == 0, await asyncio.to_thread(log.read_text)


async def owners(store: PostgresEventStore) -> dict[int, str]:
    """Partition -> worker, for the unexpired leases of the projection."""
    now = datetime.now(UTC)
    leases = await store.processing.leases(Sequenced.name)
    return {lease.partition: lease.owner for lease in leases if lease.expires_at > now}


async def assert_exactly_once_in_order(store: PostgresEventStore) -> None:
    """Every event is in ``seen`` once, each stream's last version is its newest, and no
    key failed (a duplicate or an out-of-order event would have parked its key)."""
    [(total, distinct)] = await rows(
        store, "SELECT count(*), count(DISTINCT (stream, version)) FROM {schema}.seen"
    )
    events = await store.read_all()
    assert total == distinct == len(events)
    last = dict(await rows(store, "SELECT stream, version FROM {schema}.last_version"))
    newest = {e.stream: e.version for e in events}
    assert last == newest
    assert await admin.failed_keys(store) == []


# -- the proof: workers share a projection, one is killed, nothing is lost or repeated --------


async def test_killing_a_worker_loses_and_repeats_nothing(
    store: PostgresEventStore, postgres_url: str, tmp_path: Path
) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("w0", "w1", "w2")}
    workers = {name: start_worker(postgres_url, name, log) for name, log in logs.items()}
    # The writers go on at least until the kill, however slow the workers are to start.
    killed = asyncio.Event()
    writers = [asyncio.create_task(write(store, 350, 120, seed, until=killed)) for seed in range(4)]
    try:
        await wait_for(lambda: _all_working(store, set(workers)))
        await wait_for(lambda: _at_least(seen(store), 800))
        victim = "w1"
        held = {p for p, owner in (await owners(store)).items() if owner == victim}
        assert held, "the victim holds no partition"
        workers[victim].send_signal(signal.SIGKILL)  # mid-batch, while writers append
        killed_at = time.monotonic()
        await asyncio.to_thread(workers.pop(victim).wait, 10)
        assert not any(w.done() for w in writers), "a writer stopped before the kill"
        killed.set()

        await wait_for(lambda: _taken_over(store, victim), timeout=3 * LEASE_TTL)
        takeover = time.monotonic() - killed_at
        total = sum(await asyncio.gather(*writers))
        await wait_for(lambda: _projected_or_failed(store, total), timeout=30)
        await asyncio.sleep(0.5)  # a duplicate arriving late would show up as a failed key
        await assert_exactly_once_in_order(store)
        assert total >= 2_000
        assert takeover < 3 * LEASE_TTL
        handlers = await rows(
            store,
            "SELECT DISTINCT pid FROM {schema}.seen WHERE partition = ANY (%s)",
            [sorted(held)],
        )
        assert len(handlers) >= 2, "nobody took over the victim's partitions"
    finally:
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        for name, process in workers.items():
            if process.poll() is None:
                await stop_worker(process, logs[name])
    assert await store.processing.leases(Sequenced.name) == []


async def _all_working(store: PostgresEventStore, names: set[str]) -> bool:
    leased = await owners(store)
    return set(leased.values()) == names and len(leased) == Sequenced.partitions


async def _at_least(count: Awaitable[int], wanted: int) -> bool:
    return await count >= wanted


async def _projected_or_failed(store: PostgresEventStore, total: int) -> bool:
    return await seen(store) >= total or bool(await admin.failed_keys(store))


async def _taken_over(store: PostgresEventStore, victim: str) -> bool:
    leased = await owners(store)
    return len(leased) == Sequenced.partitions and victim not in leased.values()


async def test_sigterm_drains_commits_whole_batches_and_releases_leases(
    store: PostgresEventStore, postgres_url: str, tmp_path: Path
) -> None:
    backlog = [write(store, 300, 40, seed, pause=0) for seed in range(4)]
    total = sum(await asyncio.gather(*backlog))
    log = tmp_path / "w0.log"
    worker = start_worker(postgres_url, "w0", log)
    try:
        await wait_for(lambda: _at_least(seen(store), 400))
    finally:
        await stop_worker(worker, log)  # with a backlog: batches are in flight, queues full
    assert "worker w0 stopped" in log.read_text()
    assert await store.processing.leases(Sequenced.name) == []
    await assert_checkpoints_match_the_read_model(store)
    assert await seen(store) < total, "the worker caught up before it was stopped"

    worker = start_worker(postgres_url, "w1", log)  # a new worker resumes from the checkpoints
    try:
        await wait_for(lambda: _at_least(seen(store), total), timeout=30)
    finally:
        await stop_worker(worker, log)
    await assert_exactly_once_in_order(store)


async def assert_checkpoints_match_the_read_model(store: PostgresEventStore) -> None:
    """Per partition, the read model holds exactly the events up to its checkpoint."""
    record = await store.processing.processor(Sequenced.name)
    assert record is not None
    projection = Sequenced()
    expected: dict[int, int] = {}
    for event in await store.read_all():
        partition = projection.partition(event)
        if event.position <= record.checkpoints.get(partition, 0):
            expected[partition] = expected.get(partition, 0) + 1
    counted = await rows(store, "SELECT partition, count(*) FROM {schema}.seen GROUP BY partition")
    assert dict(counted) == expected


# -- the processing store's own rules ----------------------------------------------------------


async def test_sql_and_documents_commit_or_roll_back_with_the_transaction(
    store: PostgresEventStore, postgres_url: str
) -> None:
    processing = store.processing

    async def fail_after_writing() -> None:
        async with processing.transaction() as tx:
            await tx.execute(
                statements_text(store, "INSERT INTO {schema}.last_version VALUES ('a', 1)")
            )
            assert await tx.fetch(
                statements_text(store, "SELECT * FROM {schema}.last_version")
            ) == [("a", 1)]
            await tx.documents.put("c", "k", {"a": 1})
            await tx.set_checkpoint("sequenced", 0, 7)
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await fail_after_writing()
    assert await rows(store, "SELECT * FROM {schema}.last_version") == []
    assert await processing.processors() == []
    async with processing.documents_reader() as docs:
        assert await docs.get("c", "k") is None
        with pytest.raises(ConfigurationError):
            await docs.put("c", "k", {})
    async with processing.transaction() as tx:
        text = "INSERT INTO {schema}.last_version VALUES (%(stream)s, %(version)s)"
        assert await tx.execute(statements_text(store, text), {"stream": "b", "version": 2}) == 1
        await tx.documents.put("c", "k", {"a": [1, "ü"], "n": None})
        assert await tx.documents.get("c", "k") == {"a": [1, "ü"], "n": None}
        await tx.documents.put("c", "gone", {})
        await tx.documents.delete("c", "gone")
    assert await rows(store, "SELECT * FROM {schema}.last_version") == [("b", 2)]
    async with processing.documents_reader() as docs:
        assert await docs.get("c", "k") == {"a": [1, "ü"], "n": None}
        assert await docs.get("c", "gone") is None
    other = PostgresEventStore(postgres_url, namespace="other")
    async with other, other.processing.documents_reader() as docs:
        assert await docs.get("c", "k") is None


async def test_a_handlers_bad_sql_fails_the_handler_not_the_connection(
    store: PostgresEventStore,
) -> None:
    processing = store.processing
    with pytest.raises(KronikaError, match=r"42P01.*missing"):
        async with processing.transaction() as tx:
            await tx.execute("UPDATE missing SET x = 1")
    with pytest.raises(ConfigurationError, match="must not end"):
        async with processing.transaction() as tx:
            await tx.execute("COMMIT")
    with pytest.raises(KronikaError, match="failed earlier: rolled back"):
        await swallow_an_error(store)
    async with processing.documents_reader() as docs:
        assert await docs.get("c", "k") is None
    async with processing.transaction() as tx:
        assert await tx.fetch("SELECT 1; SELECT 2") == [(1,)]  # no parameters: sent as is
        assert await tx.fetch("SELECT %s::int + %s", [1, 2]) == [(3,)]
        assert await tx.fetch("SELECT 'x'") == [("x",)]
        assert await tx.fetch("SET LOCAL work_mem = '8MB'") == []


async def swallow_an_error(store: PostgresEventStore) -> None:
    """A handler that catches its own SQL error and carries on: the commit must not
    pretend to succeed."""
    async with store.processing.transaction() as tx:
        await tx.documents.put("c", "k", {})
        with pytest.raises(KronikaError, match="division by zero"):
            await tx.execute("SELECT 1/0")


async def test_a_cancelled_transaction_rolls_back_and_holds_nothing(
    store: PostgresEventStore,
) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with store.processing.transaction() as tx:
            await tx.documents.put("c", "k", {})
            started.set()
            await tx.execute("SELECT pg_sleep(60)")

    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    async with store.processing.documents_reader() as docs:
        assert await docs.get("c", "k") is None
    await store.append("s-1", [NewEvent("Tick", {})])
    assert len(await asyncio.wait_for(store.read_all(), 2)) == 1  # the horizon moved on


async def test_a_checkpoint_is_fenced_by_the_lease(store: PostgresEventStore) -> None:
    processing = store.processing
    await processing.register_processor("sequenced", 2)
    with pytest.raises(ConfigurationError, match="2 partitions"):
        await processing.register_processor("sequenced", 3)
    assert await processing.acquire_leases("sequenced", [1, 0, 1], "a", 30) == [0, 1]
    assert await processing.acquire_leases("sequenced", [0, 1], "b", 30) == []

    async def write_as(owner: str, version: int) -> None:
        async with processing.transaction() as tx:
            await tx.execute(
                statements_text(store, "INSERT INTO {schema}.last_version VALUES (%s, %s)"),
                [f"s-{version}", version],
            )
            await tx.set_checkpoint("sequenced", 0, 10, owner=owner)

    with pytest.raises(LeaseLost):
        await write_as("b", 1)
    await write_as("a", 2)
    assert await rows(store, "SELECT version FROM {schema}.last_version") == [(2,)]
    await processing.release_leases_except("sequenced", "a", [1])
    assert [(lease.partition, lease.owner) for lease in await processing.leases("sequenced")] == [
        (1, "a")
    ]
    assert await processing.acquire_leases("sequenced", [0, 1], "b", 0.2) == [0]
    await asyncio.sleep(0.3)  # b's lease on 0 lapses: b may no longer commit
    with pytest.raises(LeaseLost):
        await write_as("b", 3)
    assert await processing.acquire_leases("sequenced", [0], "a", 30) == [0]
    record = await processing.processor("sequenced")
    assert record is not None
    assert (record.partitions, record.checkpoints, record.paused) == (2, {0: 10}, False)
    await processing.set_paused("sequenced", True)
    assert [r.paused for r in await processing.processors()] == [True]
    with pytest.raises(kronika.NotFound):
        await processing.set_paused("nothing", True)
    await processing.release_leases("sequenced", "a")
    assert await processing.leases("sequenced") == []


async def test_a_claim_waits_for_a_fenced_transaction_then_sees_its_checkpoint(
    store: PostgresEventStore,
) -> None:
    processing = store.processing
    await processing.register_processor("sequenced", 1)
    assert await processing.acquire_leases("sequenced", [0], "a", 0.5) == [0]
    async with processing.transaction() as tx:
        await tx.set_checkpoint("sequenced", 0, 42, owner="a")  # fenced while a holds it
        await asyncio.sleep(0.6)  # a's lease lapses before it commits
        claim = asyncio.create_task(processing.acquire_leases("sequenced", [0], "b", 30))
        await asyncio.sleep(0.2)
        assert not claim.done(), "the claim did not wait for the fenced transaction"
    assert await claim == [0]
    record = await processing.processor("sequenced")
    assert record is not None
    assert record.checkpoints == {0: 42}


async def test_leases_and_heartbeats_use_the_database_clock(store: PostgresEventStore) -> None:
    processing = store.processing
    assert await processing.worker_heartbeat("b", 30) == ["b"]
    assert await processing.worker_heartbeat("a", 0.1) == ["a", "b"]
    await asyncio.sleep(0.2)
    assert await processing.worker_heartbeat("c", 30) == ["b", "c"]
    assert await processing.worker_heartbeat("b", 0) == ["c"]  # b leaves
    await processing.acquire_leases("sequenced", [0], "a", 5)
    [(now,)] = await rows(store, "SELECT now()")
    [lease] = await processing.leases("sequenced")
    assert now + timedelta(seconds=4) < lease.expires_at <= now + timedelta(seconds=5)


async def test_failures_keep_an_operators_request_and_their_times(
    store: PostgresEventStore,
) -> None:
    processing = store.processing
    at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    failure = FailedKey(
        processor="sequenced",
        partition=1,
        key="k-1",
        position=3,
        event_id=NewEvent("Tick", {}).event_id,
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
        await tx.save_failure(replace(failure, key="k-0", first_failed_at=at + timedelta(days=1)))
    assert await processing.failures("sequenced") == [
        failure,
        replace(failure, key="k-0", first_failed_at=at + timedelta(days=1)),
    ]
    assert await processing.request("sequenced", "k-1", FailureAction.SKIP)
    assert not await processing.request("sequenced", "k-2", FailureAction.SKIP)
    later = replace(failure, attempts=2, next_retry_at=None, state=FailureState.QUARANTINED)
    async with processing.transaction() as tx:
        await tx.save_failure(later)
    stored = (await processing.failures())[0]
    assert stored == replace(later, requested=FailureAction.SKIP)
    async with processing.transaction() as tx:
        await tx.clear_request("sequenced", "k-1")
        await tx.clear_failure("sequenced", "k-0")
    assert await processing.failures() == [later]
    assert await processing.failures("other") == []


async def test_processing_refuses_work_once_the_store_is_closed(postgres_url: str) -> None:
    store = PostgresEventStore(postgres_url)
    async with store, store.processing.transaction() as tx:
        await tx.documents.put("c", "k", {})
    with pytest.raises(StoreClosed):
        async with store.processing.transaction() as tx:
            await tx.documents.get("c", "k")
    with pytest.raises(StoreClosed):
        await store.processing.processors()


async def test_the_guides_grants_are_enough_for_the_runtime_role(
    postgres_url: str, postgres_server: str
) -> None:
    """Runs the GRANTs of docs/guides/postgresql.md for a fresh role, then works as it."""
    async with PostgresEventStore(postgres_url) as owner:  # migrates, as the owner role
        await owner.append("s-1", [NewEvent("Tick", {})])
        schema = owner.schema
    role, password = f"kronika_app_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    guide = (ROOT / "docs" / "guides" / "postgresql.md").read_text(encoding="utf-8")
    grants = [" ".join(g.split()) for g in re.findall(r"^GRANT [^;]*;", guide, re.MULTILINE)]
    assert any("kronika.partitions" in g for g in grants)
    names = {"role": sql.Identifier(role), "schema": sql.Identifier(schema)}
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        create = sql.SQL("CREATE ROLE {role} LOGIN PASSWORD {password}")
        conn.execute(create.format(**names, password=sql.Literal(password)))
        for grant in grants:
            text = re.sub(r"\bkronika_app\b", "{role}", grant)
            text = re.sub(r"\bkronika\b(?=\.| TO)", "{schema}", text)
            conn.execute(sql.SQL(text).format(**names))
    try:
        parts = urlsplit(postgres_url)
        netloc = f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"
        await work_as_the_runtime_role(urlunsplit(parts._replace(netloc=netloc)) + "&migrate=false")
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {role}").format(**names))
            conn.execute(sql.SQL("DROP ROLE {role}").format(**names))


async def work_as_the_runtime_role(url: str) -> None:
    async with PostgresEventStore(url) as app:
        await app.append("s-1", [NewEvent("Tick", {})])
        await app.write_snapshot("s-1", 1, {"n": 2})
        assert await app.read_snapshot("s-1") is not None
        processing = app.processing
        await processing.register_processor("p", 2)
        assert await processing.worker_heartbeat("w", 5) == ["w"]
        assert await processing.acquire_leases("p", [0, 1], "w", 5) == [0, 1]
        async with processing.transaction() as tx:
            await tx.documents.put("c", "k", {})
            await tx.documents.delete("c", "k")
            await tx.set_checkpoint("p", 0, 5, owner="w")
        await processing.release_leases("p", "w")
        await processing.set_paused("p", True)
        with pytest.raises(KronikaError, match="42501"):  # removing events is the owner's
            await app.delete_stream("s-1")
