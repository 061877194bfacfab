"""PostgreSQL-specific behaviour of the event store, beyond the conformance suite.

Immutability triggers, index use, schema and migrations, failure translation and recovery,
crash atomicity, cross-process notifications, the visibility horizon, and a concurrency
proof with writers in several processes and a live subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from kronika import NO_STREAM, AppendCondition, NewEvent, RecordedEvent, StreamAppend, open_store
from kronika.errors import ConditionFailed, SchemaError, Unavailable
from kronika.store.base import PreparedAppend, _encode_event
from kronika.store.listing import CEILING
from kronika.store.postgres import PostgresEventStore
from kronika.store.postgres import appends as ap
from kronika.store.postgres.database import ADAPTERS
from kronika.store.postgres.queries import queries_for, render
from kronika.store.postgres.schema import MIGRATIONS

pytestmark = pytest.mark.postgres

# -- helpers -------------------------------------------------------------------------------


def ev(type_: str = "Happened", **kwargs: Any) -> NewEvent:
    """A small event."""
    return NewEvent(type_, kwargs.pop("data", {"n": 0}), **kwargs)


def schema_of(url: str) -> str:
    """The ``schema`` option of a store URL."""
    return parse_qs(urlsplit(url).query)["schema"][0]


def with_options(url: str, **options: Any) -> str:
    """``url`` with more query options."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    query.update({k: [str(v)] for k, v in options.items()})
    flat = [(k, v) for k, values in query.items() for v in values]
    return urlunsplit(parts._replace(query=urlencode(flat)))


def with_port(url: str, port: int) -> str:
    """``url`` pointing at 127.0.0.1:``port``."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(
        parts._replace(netloc=f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}")
    )


@contextlib.asynccontextmanager
async def connect(server: str, **kwargs: Any) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A plain autocommit connection to the test server."""
    conn = await psycopg.AsyncConnection.connect(server, autocommit=True, **kwargs)
    try:
        yield conn
    finally:
        await conn.close()


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Await ``check()`` until it returns something truthy (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def child(code: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Run ``code`` in a new Python process (stdout piped); kill it if still running."""
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


async def read_line(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The next line the child prints (fails the test after ``timeout``)."""
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout)
    assert line, f"the child exited early (code {process.poll()})"
    return line.strip()


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresEventStore]:
    """An open store in a fresh schema."""
    async with open_store(postgres_url) as opened:
        assert isinstance(opened, PostgresEventStore)
        yield opened


# -- immutability ----------------------------------------------------------------------------


async def test_sql_cannot_update_delete_or_truncate_events(
    store: PostgresEventStore, postgres_server: str
) -> None:
    await store.append("order-1", [ev("Placed", tags=["customer:1"])])
    schema = sql.Identifier(store.schema)
    statements = [
        "UPDATE {}.events SET type = 'Forged'",
        "DELETE FROM {}.events",
        "TRUNCATE {}.events",
        "UPDATE {}.event_tags SET tag = 'forged'",
        "DELETE FROM {}.event_tags",
        "TRUNCATE {}.event_tags",
    ]
    async with connect(postgres_server) as conn:
        for statement in statements:
            with pytest.raises(psycopg.Error) as info:
                await conn.execute(sql.SQL(statement).format(schema))
            assert info.value.sqlstate == "KRIMM", statement
            assert "immutable" in str(info.value)
    assert [e.type for e in await store.read_stream("order-1")] == ["Placed"]


async def test_only_the_purge_path_removes_events(
    store: PostgresEventStore, postgres_server: str
) -> None:
    await store.append("order-1", [ev(), ev()])
    await store.truncate_stream("order-1", 1)
    assert [e.version for e in await store.read_stream("order-1")] == [1]
    async with connect(postgres_server) as conn, conn.transaction(force_rollback=True):
        await conn.execute("SELECT set_config('kronika.purge', 'on', true)")
        query = sql.SQL("DELETE FROM {}.events").format(sql.Identifier(store.schema))
        deleted = await conn.execute(query)
        assert deleted.rowcount == 1  # the documented privileged path (rolled back here)
    assert [e.version for e in await store.read_stream("order-1")] == [1]


# -- indexes ---------------------------------------------------------------------------------


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for sub in plan.get("Plans", []):
        yield from _plan_nodes(sub)


def _scans(plans: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(node type, relation, index) of every scan in the plans."""
    return [
        (node["Node Type"], node.get("Relation Name", ""), node.get("Index Name", ""))
        for plan in plans
        for node in _plan_nodes(plan)
        if "Relation Name" in node or "Index Name" in node
    ]


def _assert_no_seq_scan(scans: list[tuple[str, str, str]], what: str) -> None:
    bad = [s for s in scans if s[0] == "Seq Scan" and s[1] in {"events", "event_tags", "streams"}]
    assert not bad, f"{what} scans sequentially: {scans}"


async def _fill_for_plans(store: PostgresEventStore) -> None:
    """Enough rows (8,000) that a sequential scan would lose against the indexes."""
    for b in range(80):
        events = [
            ev(
                f"Type{i % 20}",
                tags=[f"tag:{(b * 100 + i) % 200}"],
                metadata={"correlation_id": f"c-{b}"},
            )
            for i in range(100)
        ]
        await store.append(f"cat{b % 8}-{b}", events)


async def test_reads_use_their_indexes(store: PostgresEventStore, postgres_server: str) -> None:
    await _fill_for_plans(store)
    events = await store.read_all(limit=5000)
    middle, some_id = events[2500].position, events[1234].id
    q = queries_for(store.schema, "unused")
    ns, page = {"namespace": "default"}, {"namespace": "default", "limit": 100}
    no_filter = {"types": None, "categories": None}
    stream = {**page, "stream": "cat3-43"}
    cases: dict[str, tuple[bytes, dict[str, Any], str]] = {
        "read_stream": (
            q.read_stream_forward,
            {**stream, "from_version": 10},
            "events_stream_version_key",
        ),
        "read_stream backwards": (
            q.read_stream_backward,
            {**stream, "from_version": None},
            "events_stream_version_key",
        ),
        "read_all from a position": (q.read_all, {**page, "from_position": middle}, "events_pkey"),
        "read_all by type": (
            q.read_all_type,
            {**page, "categories": None, "from_position": middle, "type": "Type7"},
            "events_type_idx",
        ),
        "read_all by type and categories": (
            q.read_all_type,
            {**page, "categories": ["cat5"], "from_position": 0, "type": "Type7"},
            "events_type_idx",
        ),
        "read_all by types": (
            q.read_all_types,
            {**page, **no_filter, "from_position": 0, "types": ["Type7", "Type8"]},
            "events_type_idx",
        ),
        "read_all by category": (
            q.read_all_category,
            {**page, "from_position": middle, "category": "cat5"},
            "events_category_idx",
        ),
        "read_all by categories": (
            q.read_all_categories,
            {**page, "from_position": middle, "categories": ["cat5", "cat6"]},
            "events_category_idx",
        ),
        "read_all by tag": (
            q.read_all_tags,
            {**page, **no_filter, "from_position": 0, "tag": "tag:17", "tags": ["tag:17"]},
            "event_tags_pkey",
        ),
        "lookup by correlation id": (
            q.read_correlated,
            {**page, "correlation_id": "c-42"},
            "events_correlation_idx",
        ),
        "lookup by ids": (q.events_by_ids, {**ns, "ids": [some_id]}, "events_id_key"),
        "head position": (q.head_position, ns, "events_pkey"),
        "pending above the horizon": (q.pending_above_horizon, ns, "events_pkey"),
    }
    async with connect(postgres_server) as conn:
        await conn.execute(sql.SQL("ANALYZE {}.events").format(sql.Identifier(store.schema)))
        await conn.execute(sql.SQL("ANALYZE {}.event_tags").format(sql.Identifier(store.schema)))
        for what, (query, params, index) in cases.items():
            cur = await conn.execute(b"EXPLAIN (FORMAT JSON) " + query, params)
            row = await cur.fetchone()
            assert row is not None
            scans = _scans([row[0][0]["Plan"]])
            _assert_no_seq_scan(scans, what)
            assert index in {s[2] for s in scans}, f"{what} does not use {index}: {scans}"


async def test_stream_listings_scan_a_range_of_the_stream_key(
    store: PostgresEventStore, postgres_server: str
) -> None:
    streams = sql.Identifier(store.schema, "streams")
    q = queries_for(store.schema, "unused")
    page = {"namespace": "default", "after": "", "limit": 100, "category": None}
    cases = {
        "all, first page": {**page, "low": "", "high": CEILING},
        "after a cursor": {**page, "after": "cat3-500", "low": "", "high": CEILING},
        "by category": {**page, "category": "cat7", "low": "cat7", "high": "cat7."},
    }
    async with connect(postgres_server) as conn:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (namespace, stream, version) "
                "SELECT 'default', 'cat' || mod(i, 50) || '-' || i, 0 FROM generate_series(1, %s) i"
            ).format(streams),
            (20_000,),
        )
        await conn.execute(sql.SQL("ANALYZE {}").format(streams))
        for what, params in cases.items():
            cur = await conn.execute(b"EXPLAIN (FORMAT JSON) " + q.list_streams, params)
            row = await cur.fetchone()
            assert row is not None
            scans = _scans([row[0][0]["Plan"]])
            _assert_no_seq_scan(scans, what)
            assert "streams_pkey" in {s[2] for s in scans}, f"{what}: {scans}"
    listed = await store.list_streams(category="cat7", after="cat7-1007", limit=3)
    names = sorted(f"cat7-{i}" for i in range(1, 20_001) if i % 50 == 7)
    assert [i.stream for i in listed] == [n for n in names if n > "cat7-1007"][:3]


async def test_append_checks_use_their_indexes(
    store: PostgresEventStore, postgres_server: str
) -> None:
    """The condition checks and the idempotency lookup inside kronika_append, seen through
    auto_explain (nested statements, reported to the client as notices)."""
    await _fill_for_plans(store)
    plans: list[dict[str, Any]] = []

    def collect(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        if "{" in message:
            plans.append(json.loads(message[message.index("{") :])["Plan"])

    q = queries_for(store.schema, "unused")
    scope = f"{store.schema}\x00default"
    conditions = [
        AppendCondition(types=["Type3"], after=0),
        AppendCondition(tags=["tag:5"], after=0),
    ]
    async with connect(postgres_server, context=ADAPTERS) as conn:
        await conn.execute(sql.SQL("ANALYZE {}.events").format(sql.Identifier(store.schema)))
        await conn.execute(sql.SQL("ANALYZE {}.event_tags").format(sql.Identifier(store.schema)))
        for setting in [
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_format = json",
            "SET auto_explain.log_level = notice",
            "SET client_min_messages = notice",
        ]:
            await conn.execute(setting)
        conn.add_notice_handler(collect)
        for condition in conditions:
            append = PreparedAppend("other-1", NO_STREAM, (_encode_event(ev("New"), "e"),))
            with pytest.raises(psycopg.Error, match="condition matched"):
                await conn.execute(
                    q.append, ap.append_params("default", [append], condition, scope)
                )
        stored = (await store.read_stream("cat1-1"))[0]
        retry = PreparedAppend("cat1-1", NO_STREAM, (_encode_event(ev(id=stored.id), "e"),))
        params = {**ap.append_params("default", [retry], None, scope), "lookup": True}
        await conn.execute(q.append, params)
    scans = _scans(plans)
    _assert_no_seq_scan(scans, "kronika_append")
    used = {s[2] for s in scans}
    assert {"events_type_idx", "event_tags_pkey", "events_id_key"} <= used, scans


# -- schema and migrations --------------------------------------------------------------------

_CATALOG = """
SELECT 'column', c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || ' ' || a.attgenerated::text
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %(schema)s AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind = 'r'
UNION ALL
SELECT 'constraint', c.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s
UNION ALL
SELECT 'index', i.indexname, replace(i.indexdef, %(schema)s, 'S')
FROM pg_indexes i WHERE i.schemaname = %(schema)s
UNION ALL
SELECT 'trigger', t.tgname, replace(pg_get_triggerdef(t.oid), %(schema)s, 'S')
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND NOT t.tgisinternal
UNION ALL
SELECT 'function', p.proname || '(' || pg_get_function_arguments(p.oid) || ')',
       pg_get_function_result(p.oid) || ' ' || p.provolatile::text
       || ' ' || replace(p.prosrc, %(schema)s, 'S')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = %(schema)s
ORDER BY 1, 2
"""


async def _catalog(conn: psycopg.AsyncConnection[Any], schema: str) -> list[tuple[str, str, str]]:
    cur = await conn.execute(_CATALOG, {"schema": schema})
    return [row for row in await cur.fetchall() if "schema_migrations" not in row[1]]


async def test_schema_sql_agrees_with_the_migrations(postgres_server: str) -> None:
    from importlib import resources

    canonical, migrated = (f"kronika_test_{uuid.uuid4().hex[:10]}" for _ in range(2))
    text = resources.files("kronika.store.postgres").joinpath("schema.sql").read_text("utf-8")
    async with connect(postgres_server) as conn:
        try:
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(canonical)))
            await conn.execute(render(text, canonical), prepare=False)
            applied = await PostgresEventStore(postgres_server, schema=migrated).migrate()
            assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
            expected = await _catalog(conn, canonical)
            assert len(expected) > 30
            assert await _catalog(conn, migrated) == expected
        finally:
            for schema in (canonical, migrated):
                drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                await conn.execute(drop)


async def test_migrate_is_idempotent_and_safe_when_concurrent(postgres_url: str) -> None:
    stores = [PostgresEventStore(postgres_url) for _ in range(4)]
    applied = await asyncio.gather(*(s.migrate() for s in stores))
    assert sorted(len(a) for a in applied) == [0, 0, 0, len(MIGRATIONS)]
    assert await stores[0].migrate() == []
    status = await stores[1].schema_status()
    assert status.up_to_date
    assert status.current == MIGRATIONS[-1].version


async def test_a_schema_newer_than_the_code_is_refused(
    postgres_url: str, postgres_server: str
) -> None:
    store = PostgresEventStore(postgres_url)
    await store.migrate()
    async with connect(postgres_server) as conn:
        query = sql.SQL(
            "INSERT INTO {}.schema_migrations (version, name, checksum) VALUES (99, 'future', 'x')"
        ).format(sql.Identifier(schema_of(postgres_url)))
        await conn.execute(query)
    latest = MIGRATIONS[-1].version
    for candidate in (store, PostgresEventStore(postgres_url, migrate=False)):
        with pytest.raises(SchemaError, match=rf"version 99.*version {latest}"):
            await candidate.open()
    with pytest.raises(SchemaError, match="version 99"):
        await store.migrate()
    assert (await store.schema_status()).too_new


async def test_pending_migrations_without_migrate_refuse_to_open(postgres_url: str) -> None:
    store = PostgresEventStore(postgres_url, migrate=False)
    status = await store.schema_status()
    assert status.current == 0
    assert len(status.pending) == len(MIGRATIONS)
    with pytest.raises(SchemaError, match=r"pending; run 'kronika migrate'"):
        await store.open()
    assert [m.version for m in await store.migrate()] == [m.version for m in MIGRATIONS]
    async with store:
        await store.append("s-1", [ev()])


# -- failures ---------------------------------------------------------------------------------


async def test_a_closed_port_is_unavailable_quickly(postgres_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = with_options(with_port(postgres_url, port), connect_timeout=2)
    store = PostgresEventStore(url)
    start = time.monotonic()
    with pytest.raises(Unavailable):
        await store.open()
    with pytest.raises(Unavailable):
        await store.schema_status()
    assert time.monotonic() - start < 5


class TcpProxy:
    """A TCP proxy in front of the server that a test can cut and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        """Accept connections (again, on the same port)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()


async def test_unavailable_while_cut_off_then_recovers(postgres_url: str) -> None:
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = with_options(with_port(postgres_url, proxy.port), pool_timeout=1, connect_timeout=2)
    try:
        async with open_store(url) as store:
            await store.append("s-1", [ev()])
            await proxy.cut()
            with pytest.raises(Unavailable):
                await store.append("s-1", [ev()])
            with pytest.raises(Unavailable):
                await store.read_stream("s-1")
            await proxy.start()

            async def append_works() -> bool:
                with contextlib.suppress(Unavailable):
                    await store.append("s-1", [ev()])
                    return True
                return False

            await eventually(append_works, timeout=20)
            assert [e.version for e in await store.read_stream("s-1")] == [0, 1]
    finally:
        await proxy.cut()


async def test_a_full_pool_times_out_as_unavailable(
    postgres_url: str, postgres_server: str
) -> None:
    url = with_options(postgres_url, pool_min_size=1, pool_max_size=1, pool_timeout=0.3)
    async with open_store(url) as store, connect(postgres_server) as blocker:
        key = ap.lock_key(f"{schema_of(url)}\x00default", "stream", "s-1")
        await blocker.execute("SELECT pg_advisory_lock(%s)", (key,))
        append = asyncio.create_task(store.append("s-1", [ev()]))
        await asyncio.sleep(0.2)  # the append holds the only connection, waiting for the lock
        with pytest.raises(Unavailable, match="connection"):
            await store.stream_info("s-1")
        await blocker.execute("SELECT pg_advisory_unlock(%s)", (key,))
        assert (await append).next_expected_version == 0


_BIG_APPEND = """
import asyncio, sys
from kronika import NewEvent, open_store

async def main(url, count):
    async with open_store(url) as store:
        events = [NewEvent("Big", {"i": i, "pad": "x" * 200}) for i in range(count)]
        print("ready", flush=True)
        await store.append("big-1", events)
        print("done", flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _backend_active(conn: psycopg.AsyncConnection[Any], name: str) -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'",
        (name,),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def _gone(conn: psycopg.AsyncConnection[Any], name: str) -> bool:
    cur = await conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
    )
    row = await cur.fetchone()
    return bool(row and row[0] == 0)


@pytest.mark.parametrize("moment", ["sending", "executing"])
async def test_a_client_killed_mid_append_leaves_all_or_nothing(
    postgres_url: str, postgres_server: str, moment: str
) -> None:
    count = 20_000
    name = f"kronika-kill-{uuid.uuid4().hex[:8]}"
    await PostgresEventStore(postgres_url).migrate()
    url = with_options(postgres_url, application_name=name)
    with child(_BIG_APPEND, url, str(count)) as process:
        assert await read_line(process) == "ready"
        async with connect(postgres_server) as conn:
            if moment == "executing":
                await eventually(lambda: _backend_active(conn, name), timeout=20)
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)
            await eventually(lambda: _gone(conn, name), timeout=60)
    async with open_store(postgres_url) as store:
        versions = [e.version for e in await store.read_stream("big-1")]
        assert versions in ([], list(range(count)))
        expected = len(versions) - 1 if versions else NO_STREAM
        await store.append("big-1", [ev()], expected_version=expected)


# -- notifications and the horizon -------------------------------------------------------------

_SUBSCRIBER = """
import asyncio, json, sys
from kronika import open_store

async def main(url):
    async with open_store(url) as store:
        start = await store.head_position()
        print("ready", flush=True)
        async for event in store.subscribe(from_position=start + 1):
            print(json.dumps({"type": event.type, "position": event.position}), flush=True)
            if event.type == "Stop":
                return

asyncio.run(main(sys.argv[1]))
"""


async def _listener_pids(conn: psycopg.AsyncConnection[Any], name: str) -> list[int]:
    cur = await conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query LIKE 'LISTEN %%'",
        (name,),
    )
    return [row[0] for row in await cur.fetchall()]


async def _expect_woken(
    store: PostgresEventStore, process: subprocess.Popen[str], type_: str
) -> None:
    sent = time.monotonic()
    result = await store.append("greeting-1", [ev(type_)])
    got = json.loads(await read_line(process, timeout=20))
    assert got == {"type": type_, "position": result.position}
    assert time.monotonic() - sent < 10  # typically a few milliseconds; the poll is 60 s


async def test_a_subscriber_in_another_process_is_woken_by_notify(
    store: PostgresEventStore, postgres_url: str, postgres_server: str
) -> None:
    """The child's fallback poll is 60 s, so only a notification can wake it in time; its
    listener connection is killed once and must come back by itself."""
    name = f"kronika-listen-{uuid.uuid4().hex[:8]}"
    url = with_options(postgres_url, poll_interval=60, application_name=name)
    with child(_SUBSCRIBER, url) as process:
        assert await read_line(process) == "ready"
        async with connect(postgres_server) as admin:
            pids = await eventually(lambda: _listener_pids(admin, name))
            await _expect_woken(store, process, "Hello")
            await _expect_woken(store, process, "Again")
            await admin.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
            await eventually(lambda: _new_listener(admin, name, pids[0]))
            await _expect_woken(store, process, "AfterReconnect")
        await store.append("greeting-1", [ev("Stop")])
        assert json.loads(await read_line(process))["type"] == "Stop"
        assert await asyncio.to_thread(process.wait, 10) == 0


async def _new_listener(conn: psycopg.AsyncConnection[Any], name: str, old: int) -> bool:
    return any(pid != old for pid in await _listener_pids(conn, name))


async def test_global_readers_never_pass_a_transaction_that_may_still_commit(
    store: PostgresEventStore, postgres_url: str, postgres_server: str
) -> None:
    """A late committer (an append whose transaction started first) is never skipped."""
    early = PreparedAppend("early-1", NO_STREAM, (_encode_event(ev("Early"), "e"),))
    params = ap.append_params("default", [early], None, f"{store.schema}\x00default")
    q = queries_for(store.schema, "unused")
    async with open_store(postgres_url) as reader:
        late = await psycopg.AsyncConnection.connect(postgres_server, context=ADAPTERS)
        try:
            await late.execute(q.append, params)  # written, not committed: a lower position
            later = await store.append("later-1", [ev("Later")])
            assert [e.type for e in await store.read_stream("later-1")] == ["Later"]
            assert await reader.read_all() == []
            assert await reader.head_position() == 0
            await late.commit()
        finally:
            await late.close()
        events: list[RecordedEvent] = await eventually(reader.read_all)
        assert [e.type for e in events] == ["Early", "Later"]
        assert events[1].position == later.position
        assert events[0].position < events[1].position


async def test_reading_own_writes_waits_for_the_horizon(
    postgres_url: str, postgres_server: str
) -> None:
    async with open_store(with_options(postgres_url, pool_timeout=0.5)) as store:
        async with connect(postgres_server) as idle:
            await idle.execute("BEGIN")
            await idle.execute("SELECT pg_current_xact_id()")  # an open transaction
            await store.append("s-1", [ev()])
            assert len(await store.read_stream("s-1")) == 1
            with pytest.raises(Unavailable, match="horizon"):
                await store.read_all()
            await idle.execute("ROLLBACK")
        assert len(await store.read_all()) == 1


async def test_a_subscriber_sees_events_the_horizon_releases_without_a_notification(
    postgres_url: str, postgres_server: str
) -> None:
    """Events committed above the horizon become visible when some other transaction ends,
    which no notification announces: a quiet subscriber checks for them (poll_interval is
    30 s here, so only that check delivers in time)."""
    async with open_store(with_options(postgres_url, poll_interval=30)) as store:
        received: list[RecordedEvent] = []

        async def consume() -> None:
            async for event in store.subscribe(from_position=0):
                received.append(event)  # noqa: PERF401 - seen as they arrive; it never ends

        async def arrived() -> list[RecordedEvent]:
            return received

        task = asyncio.create_task(consume())
        try:
            async with connect(postgres_server) as idle:
                await idle.execute("BEGIN")
                await idle.execute("SELECT pg_current_xact_id()")  # holds the horizon back
                await store.append("s-1", [ev()])  # notified, read, but not visible yet
                await asyncio.sleep(0.3)
                assert received == []
                await idle.execute("ROLLBACK")  # releases it; nothing notifies
            await eventually(arrived, timeout=10)
            assert [e.stream for e in received] == ["s-1"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_namespaces_are_isolated(postgres_url: str) -> None:
    shared_id = uuid.uuid4()
    async with (
        open_store(postgres_url, namespace="tenant-a") as a,
        open_store(postgres_url, namespace="tenant-b") as b,
    ):
        ra = await a.append("s-1", [ev("A", id=shared_id)], expected_version=NO_STREAM)
        rb = await b.append("s-1", [ev("B", id=shared_id)], expected_version=NO_STREAM)
        assert ra.next_expected_version == rb.next_expected_version == 0
        assert [e.type for e in await a.read_all()] == ["A"]
        assert [e.type for e in await b.read_stream("s-1")] == ["B"]
        assert await a.head_position() == ra.position
        await b.delete_stream("s-1", hard=True)
        assert [e.type for e in await a.read_stream("s-1")] == ["A"]


# -- the concurrency proof --------------------------------------------------------------------

_WRITER = """
import asyncio, sys
from kronika import NewEvent, open_store

async def main(url, appends):
    async with open_store(url) as store:
        print("ready", flush=True)
        for i in range(appends):
            events = [NewEvent("FromProcess", {"i": i, "j": j}) for j in range(40)]
            await store.append(f"process-{i % 7}", events)
        print("done", flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def _writer_task(
    store: PostgresEventStore, w: int, appends: int, acked: list[uuid.UUID]
) -> None:
    rng = random.Random(w)
    own, version = f"own-{w}", -1
    for i in range(appends):
        events = [ev("Written", data={"w": w, "i": i, "j": j}) for j in range(rng.randint(1, 20))]
        roll = rng.random()
        if roll < 0.4:
            await store.append(f"shared-{rng.randrange(5)}", events)
        elif roll < 0.8:
            expected = NO_STREAM if version < 0 else version
            result = await store.append(own, events, expected_version=expected)
            version = result.next_expected_version
        else:
            half = len(events) // 2
            parts = [
                StreamAppend(f"pair-{w}-a", events[:half]),
                StreamAppend(f"pair-{w}-b", events[half:]),
            ]
            await store.append_multi(parts)
        acked.extend(e.event_id for e in events)


async def test_concurrent_writers_in_several_processes_and_a_live_subscriber(
    postgres_url: str,
) -> None:
    tasks, appends, process_appends = 8, 150, 200  # about 12,600 + 8,000 events
    acked: list[uuid.UUID] = []
    live: list[RecordedEvent] = []
    await PostgresEventStore(postgres_url).migrate()
    async with (
        open_store(with_options(postgres_url, pool_max_size=12)) as writer,
        open_store(postgres_url) as reader,
    ):
        assert isinstance(writer, PostgresEventStore)

        async def subscribe() -> None:
            async for event in reader.subscribe():
                live.append(event)  # noqa: PERF401 - the test watches the list grow

        subscription = asyncio.create_task(subscribe())
        with child(_WRITER, postgres_url, str(process_appends)) as process:
            assert await read_line(process) == "ready"
            await asyncio.gather(*(_writer_task(writer, w, appends, acked) for w in range(tasks)))
            assert await read_line(process, timeout=120) == "done"
            assert await asyncio.to_thread(process.wait, 30) == 0
        stored = await writer.read_all()
        total = len(acked) + process_appends * 40
        assert len(stored) == total
        await eventually(lambda: _async_true(len(live) >= total), timeout=60)
        subscription.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await subscription

    ids = [e.id for e in live]
    assert len(ids) == len(set(ids)), "the live subscriber saw an event twice"
    assert ids == [e.id for e in stored], "live order differs from the stored global order"
    assert set(acked) <= set(ids), "the live subscriber missed acknowledged events"
    positions = [e.position for e in live]
    assert all(a < b for a, b in itertools.pairwise(positions)), "positions not increasing"
    streams: dict[str, list[int]] = {}
    for event in stored:
        streams.setdefault(event.stream, []).append(event.version)
    for name, versions in streams.items():
        assert versions == list(range(len(versions))), f"versions of {name} are not gap-free"


async def _async_true(value: bool) -> bool:
    return value


async def test_an_append_prepares_its_statement_again_after_deallocate_all(
    store: PostgresEventStore,
) -> None:
    # psycopg runs DEALLOCATE ALL on a connection after a ROLLBACK or DROP there; appends
    # send a statement prepared under their own name, and must prepare it again.
    await store.append("s-1", [ev()])
    async with store._db.connection() as conn:  # the one this store reuses while idle
        await conn.execute("DEALLOCATE ALL")
    assert (await store.append("s-1", [ev()])).next_expected_version == 1
    assert [e.version for e in await store.read_stream("s-1")] == [0, 1]


async def test_stream_names_with_array_syntax_round_trip(store: PostgresEventStore) -> None:
    names = ['a "quoted", {braced} \\ name', "NULL", "ünïcødé-ストリーム", "comma,separated"]
    parts = [StreamAppend(name, [ev(tags=['tag "x"', "{y}"])]) for name in names]
    result = await store.append_multi(parts)
    assert list(result.streams) == names
    for name in names:
        assert [e.stream for e in await store.read_stream(name)] == [name]
    tagged = await store.read_all(tags=['tag "x"', "{y}"])
    assert [e.stream for e in tagged] == names


async def test_check_only_parts_report_like_the_reference(store: PostgresEventStore) -> None:
    await store.append("gone-1", [ev(), ev()])
    await store.delete_stream("gone-1")
    await store.set_stream_metadata("meta-1", metadata={"a": 1})
    written = await store.append("live-1", [ev()])
    result = await store.append_multi(
        [
            StreamAppend("gone-1", expected_version=NO_STREAM),
            StreamAppend("meta-1"),
            StreamAppend("live-1", expected_version=0),
            StreamAppend("never-1"),
            StreamAppend("new-1", [ev()]),
        ]
    )
    reported = {name: (r.next_expected_version, r.position) for name, r in result.streams.items()}
    assert reported["gone-1"] == (-1, 0)
    assert reported["meta-1"] == (-1, 0)
    assert reported["live-1"] == (0, written.position)
    assert reported["never-1"] == (-1, 0)
    assert reported["new-1"][0] == 0
    assert result.position == reported["new-1"][1]
    again = await store.append("gone-1", [ev()], expected_version=NO_STREAM)
    assert again.next_expected_version == 2


async def test_statement_timeout_cancels_as_unavailable(
    postgres_url: str, postgres_server: str
) -> None:
    url = with_options(postgres_url, statement_timeout=0.3)
    async with open_store(url) as store, connect(postgres_server) as blocker:
        key = ap.lock_key(f"{schema_of(url)}\x00default", "stream", "s-1")
        await blocker.execute("SELECT pg_advisory_lock(%s)", (key,))
        with pytest.raises(Unavailable, match="statement timeout"):
            await store.append("s-1", [ev()])
        await blocker.execute("SELECT pg_advisory_unlock(%s)", (key,))
        assert (await store.append("s-1", [ev()])).next_expected_version == 0


async def test_conditional_appends_cannot_both_pass(postgres_url: str) -> None:
    """The consistency boundary under real concurrency: two appends decided on the same
    state, each adding an event the other's condition matches; exactly one may succeed."""
    async with open_store(postgres_url) as one, open_store(postgres_url) as two:

        async def reserve(store: Any, seat: int, who: str) -> bool:
            condition = AppendCondition(types=["Reserved"], tags=[f"seat:{seat}"], after=0)
            event = ev("Reserved", tags=[f"seat:{seat}"], data={"who": who})
            with contextlib.suppress(ConditionFailed):
                await store.append(f"booking-{who}-{seat}", [event], condition=condition)
                return True
            return False

        for seat in range(15):
            wins = await asyncio.gather(reserve(one, seat, "ann"), reserve(two, seat, "bob"))
            assert sorted(wins) == [False, True], f"seat {seat}: {wins}"
            assert len(await one.read_all(tags=[f"seat:{seat}"])) == 1


async def test_a_bulk_append_is_serialised_with_conditional_appends(postgres_url: str) -> None:
    """An append with more tags than MAX_SHARED_KEYS locks the bulk key instead of each tag;
    a conditional append either sees its events or is ordered before them."""
    async with open_store(postgres_url) as one, open_store(postgres_url) as two:
        for round_ in range(5):
            tag = f"item:{round_}:0"
            bulk = [
                ev("Imported", tags=[f"item:{round_}:{i}"]) for i in range(ap.MAX_SHARED_KEYS + 5)
            ]
            condition = AppendCondition(tags=[tag], after=0)

            async def conditional(store: Any = two, condition: Any = condition) -> int | None:
                with contextlib.suppress(ConditionFailed):
                    return (
                        await store.append("guard-1", [ev("Guarded")], condition=condition)
                    ).position
                return None

            imported, guarded = await asyncio.gather(
                one.append(f"import-{round_}", bulk), conditional()
            )
            if guarded is not None:  # it passed: then it came first in the global order
                assert guarded < imported.position - len(bulk) + 1


async def test_binary_array_parameters_round_trip(postgres_server: str) -> None:
    from kronika.store.postgres.arrays import (
        BigintArray,
        IntArray,
        JsonbArray,
        TextArray,
        UuidArray,
    )

    ids = [uuid.uuid4(), uuid.uuid4()]
    texts = ["a", None, 'q"uote\\', "ünï", ""]
    ints = [0, -1, 2**31 - 1, -(2**31)]
    bigs = [0, -(2**63), 2**63 - 1]
    docs = [b'{"a": 1}', b"[]", b'{"x": {"y": "\\u00fc"}}']
    async with connect(postgres_server, context=ADAPTERS) as conn:
        cur = await conn.execute(
            "SELECT %b, %b, %b, %b, %b, %b, %b",
            (
                UuidArray.of(ids),
                TextArray.of(texts),
                IntArray.of(ints),
                BigintArray.of(bigs),
                JsonbArray.of(docs),
                TextArray.of([]),
                IntArray.of_small((1,)),
            ),
        )
        row = await cur.fetchone()
    assert row is not None
    assert row[:5] == (ids, texts, ints, bigs, [{"a": 1}, [], {"x": {"y": "ü"}}])
    assert row[5:] == ([], [1])
