"""Inline projections (K8) on SQLite and PostgreSQL: the read model commits with the append.

Each test runs on a real SQLite file and on a real PostgreSQL schema of its own, with the
:class:`~tests.runtime.inline_app.OrderTotals` projection: one SQL row per order stream and
a document with the last event applied.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest
from inline_app import OrderTotals, placed
from inline_support import documents, implied, projection_for, query, table

import kronika
import kronika.sync
from kronika import NewEvent, StreamAppend
from kronika.errors import ConfigurationError, InlineProjectionFailed, NotFound
from kronika.runtime import InlineContext, on
from kronika.store.base import StoreBase


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh store URL on each engine."""
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


@pytest.fixture
async def store(url: str) -> AsyncIterator[StoreBase]:
    """An open store with the OrderTotals projection registered."""
    opened = kronika.open_store(url, inline=[projection_for(url)])
    assert isinstance(opened, StoreBase)
    async with opened:
        yield opened


async def _seed(store: StoreBase, orders: int = 6, per_order: int = 5) -> None:
    for i in range(per_order):
        for order in range(orders):
            events = [placed(10 + i)]
            if i % 2:
                events.append(NewEvent("Refunded", {"amount": 3}))
            if order % 3 == 0:
                events.append(NewEvent("Shipped", {"n": i}))
            await store.append(f"order-{order}", events)


# -- the read model commits with the append -------------------------------------------------


async def test_an_append_updates_the_read_model_before_it_returns(
    store: StoreBase, url: str
) -> None:
    first = await store.append("order-1", [placed(5)])
    assert table(url) == {"order-1": (5, 1, first.position, 0)}
    await store.append("order-1", [placed(7), NewEvent("Shipped", {}), placed(1)])
    events = await store.read_stream("order-1")
    assert table(url) == implied(events) == {"order-1": (13, 3, events[-1].position, 3)}
    document = (await documents(store, ["order-1"]))["order-1"]
    assert document is not None
    last = events[-1]
    # Handlers see the event as reads return it: real version, position and recorded_at.
    assert document["version"] == last.version
    assert document["position"] == last.position
    assert document["id"] == str(last.id)
    assert datetime.fromisoformat(document["recorded_at"]) == last.recorded_at


async def test_append_multi_applies_the_events_of_every_stream(store: StoreBase, url: str) -> None:
    await store.append("order-a", [placed(1)])
    result = await store.append_multi(
        [
            StreamAppend("order-a", [placed(2), NewEvent("Refunded", {"amount": 1})]),
            StreamAppend("order-b", [placed(4)]),
            StreamAppend("order-c", []),  # only checked
        ]
    )
    events = await store.read_all()
    assert table(url) == implied(events)
    assert table(url)["order-a"] == (2, 3, result.streams["order-a"].position, 2)
    assert table(url)["order-b"] == (4, 1, result.streams["order-b"].position, 0)


async def test_a_concurrent_reader_never_sees_an_event_without_its_row(
    store: StoreBase, url: str
) -> None:
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def read_one_snapshot_at_a_time() -> None:
        while not stop.is_set():
            seen.append(_counts_in_one_snapshot(url))

    reader = asyncio.create_task(asyncio.to_thread(read_one_snapshot_at_a_time))
    try:
        for round_ in range(20):
            appends = [
                store.append(f"order-{round_}-{i}", [placed(1), NewEvent("Shipped", {})])
                for i in range(8)
            ]
            await asyncio.gather(*appends)
    finally:
        stop.set()
        await reader
    assert len(seen) > 5
    assert all(events == rows for events, rows in seen), [s for s in seen if s[0] != s[1]]
    assert _counts_in_one_snapshot(url) == (160, 160)


def _counts_in_one_snapshot(url: str) -> tuple[int, int]:
    """(OrderPlaced events stored, events the read model counts), read in one snapshot."""
    events = "SELECT count(*) FROM events WHERE type = 'OrderPlaced'"
    rows = "SELECT coalesce(sum(events), 0) FROM order_totals"
    if url.startswith("sqlite"):
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)) as c:
            c.execute("BEGIN")
            found = c.execute(events).fetchone()[0], c.execute(rows).fetchone()[0]
            c.execute("COMMIT")
            return found
    import psycopg
    from inline_support import split_postgres
    from psycopg import sql

    server, schema = split_postgres(url)
    with psycopg.connect(server) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        counted = conn.execute(events.encode()).fetchone()
        summed = conn.execute(rows.encode()).fetchone()
        assert counted is not None and summed is not None
        return int(counted[0]), int(summed[0])


# -- failures: nothing is written -------------------------------------------------------------


async def test_a_failing_handler_fails_the_append_and_writes_nothing(
    store: StoreBase, url: str
) -> None:
    await store.append("order-1", [placed(5)])
    head = await store.head_position()
    with pytest.raises(InlineProjectionFailed) as failed:
        await store.append("order-2", [placed(3), NewEvent("Poisoned", {})])
    error = failed.value
    assert error.projection == "order-totals"
    assert error.event_type == "Poisoned"
    assert error.stream == "order-2"
    assert "order-totals" in str(error) and "nothing was appended" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    assert error.to_dict()["code"] == "inline_projection_failed"
    # Neither the events (not even the good one before it) nor any read-model row.
    assert await store.read_stream("order-2") == []
    assert await store.head_position() == head
    assert table(url) == {"order-1": (5, 1, head, 0)}
    assert (await documents(store, ["order-2"]))["order-2"] is None
    assert [s.stream for s in await store.list_streams()] == ["order-1"]
    # The store goes on: the same stream can be written afterwards.
    await store.append("order-2", [placed(3)])
    assert table(url)["order-2"][:2] == (3, 1)


async def test_a_failing_statement_of_the_handler_fails_the_append(
    store: StoreBase, url: str
) -> None:
    await store.append("order-1", [placed(5)])
    with pytest.raises(InlineProjectionFailed, match="order-totals") as failed:
        await store.append("order-1", [NewEvent("Refunded", {"amount": 9})])  # total < 0
    assert "check" in str(failed.value).lower()
    assert failed.value.event_type == "Refunded"
    assert len(await store.read_stream("order-1")) == 1
    assert table(url)["order-1"][:2] == (5, 1)


async def test_a_failing_append_does_not_fail_the_appends_beside_it(
    store: StoreBase, url: str
) -> None:
    async def one(i: int) -> str:
        events = [placed(1)] + ([NewEvent("Poisoned", {})] if i % 5 == 0 else [])
        try:
            await store.append(f"order-{i}", events)
        except InlineProjectionFailed:
            return "failed"
        return "ok"

    for _ in range(3):  # several rounds: SQLite commits concurrent appends in groups
        outcomes = await asyncio.gather(*(one(i) for i in range(40)))
        assert outcomes.count("failed") == 8
    events = await store.read_all()
    assert {e.stream for e in events} == {f"order-{i}" for i in range(40) if i % 5}
    assert table(url) == implied(events)
    assert len(events) == 32 * 3
    stats = getattr(store, "writer_stats", None)
    if stats is not None:
        assert stats.largest_group > 1  # the failing appends shared groups with good ones


# -- retries and rebuilds ------------------------------------------------------------------------


async def test_a_retried_append_returns_the_first_result_and_applies_nothing_again(
    store: StoreBase, url: str
) -> None:
    events = [placed(4), NewEvent("Refunded", {"amount": 1})]
    first = await store.append("order-1", events)
    again = await store.append("order-1", events)
    assert again == first
    checked = await store.append("order-2", [placed(2)], expected_version=kronika.NO_STREAM)
    retried = await store.append(
        "order-2", [NewEvent("OrderPlaced", {"total": 2}, id=uuid.uuid4())], expected_version=0
    )
    assert retried.position > checked.position
    batch = [NewEvent("OrderPlaced", {"total": 1}, id=uuid.uuid4())]
    done = await store.append("order-3", batch, expected_version=kronika.NO_STREAM)
    assert await store.append("order-3", batch, expected_version=kronika.NO_STREAM) == done
    multi = [StreamAppend("order-4", [placed(6)]), StreamAppend("order-5", [placed(7)])]
    assert await store.append_multi(multi) == await store.append_multi(multi)
    assert table(url) == implied(await store.read_all())
    assert table(url)["order-1"][:2] == (3, 2)


async def test_a_rebuild_gives_the_read_model_the_appends_built(store: StoreBase, url: str) -> None:
    await _seed(store)
    built_inline = table(url)
    streams = sorted(built_inline)
    docs_inline = await documents(store, streams)
    assert built_inline == implied(await store.read_all())
    record = await store.rebuild_inline("order-totals")
    assert table(url) == built_inline
    assert await documents(store, streams) == docs_inline
    assert record.rebuilt_at is not None and not record.needs_rebuild
    assert record.rebuilt_position == await store.head_position()


async def test_a_projection_registered_on_a_non_empty_log_needs_a_rebuild(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with kronika.open_store(url) as plain:  # no projection: nothing applied
        for i in range(4):
            await plain.append(f"order-{i}", [placed(i + 1), NewEvent("Shipped", {})])
    projection = projection_for(url)
    with caplog.at_level(logging.WARNING, logger="kronika.store.inline"):
        async with kronika.open_store(url, inline=[projection]) as store:
            assert isinstance(store, StoreBase)
            [record] = await store.inline_status()
            assert record.needs_rebuild and record.state == "needs rebuild"
            assert record.registered_position == await store.head_position()
            assert table(url) == {}
            await store.append("order-9", [placed(9)])
            assert list(table(url)) == ["order-9"]
            rebuilt = await store.rebuild_inline("order-totals")
            assert rebuilt.state == "complete"
            assert table(url) == implied(await store.read_all())
    assert "order-totals" in caplog.text and "rebuild" in caplog.text
    async with kronika.open_store(url, inline=[projection]) as again:
        assert isinstance(again, StoreBase)
        assert [r.needs_rebuild for r in await again.inline_status()] == [False]


def test_the_blocking_store_reports_rebuilds_and_drops_inline_projections(url: str) -> None:
    with kronika.sync.open_store(url) as plain:  # no projection: nothing applied
        for i in range(3):
            plain.append(f"order-{i}", [placed(i + 1)])
    with kronika.sync.open_store(url, inline=[projection_for(url)]) as store:
        [record] = store.inline_status()
        assert (record.name, record.needs_rebuild) == ("order-totals", True)
        assert table(url) == {}
        rebuilt = store.rebuild_inline("order-totals")
        assert rebuilt.state == "complete" and not rebuilt.needs_rebuild
        assert table(url) == implied(store.read_all())
        with pytest.raises(ConfigurationError):
            store.drop_inline("order-totals")  # still registered here
        with pytest.raises(NotFound, match="'nope' is not registered"):
            store.rebuild_inline("nope")
    with kronika.sync.open_store(url) as store:  # removed from the code: forget it
        store.drop_inline("order-totals")
        assert store.inline_status() == []
        with pytest.raises(NotFound):
            store.drop_inline("order-totals")


async def test_a_projection_that_gains_event_types_needs_a_rebuild(url: str) -> None:
    class WithShipments(type(projection_for(url))):  # type: ignore[misc]
        @on("Shipped")
        def shipped(self, event: kronika.RecordedEvent, ctx: InlineContext) -> None:
            ctx.put_document("shipments", event.stream, {"n": event.data.get("n")})

    async with kronika.open_store(url, inline=[projection_for(url)]) as store:
        await store.append("order-1", [placed(1)])
        await store.append("order-2", [NewEvent("Shipped", {"n": 1})])
        assert isinstance(store, StoreBase)
        assert [r.needs_rebuild for r in await store.inline_status()] == [False]
    async with kronika.open_store(url, inline=[WithShipments()]) as store:
        assert isinstance(store, StoreBase)
        [record] = await store.inline_status()
        assert record.needs_rebuild
        assert record.types == ("OrderPlaced", "Poisoned", "Refunded", "Shipped")
        await store.rebuild_inline("order-totals")
        async with store.processing.documents_reader() as docs:
            assert await docs.get("shipments", "order-2") == {"n": 1}


async def test_appends_wait_for_a_rebuild_and_are_applied_after_it(
    store: StoreBase, url: str
) -> None:
    await _seed(store, orders=10, per_order=20)  # 200 OrderPlaced and 100 Refunded events
    rebuilding = store._inline.named("order-totals")  # type: ignore[union-attr]
    assert isinstance(rebuilding, OrderTotals)
    rebuilding.slow = 0.003  # this store's handler: about a second for the rebuild
    ended: list[tuple[float, float]] = []
    ready, go = threading.Event(), threading.Event()

    def append_from_another_store() -> None:
        with kronika.sync.open_store(url, inline=[projection_for(url)]) as other:
            ready.set()
            go.wait(10)
            for i in range(5):
                started = time.monotonic()
                other.append(f"order-late-{i}", [placed(2)])
                ended.append((started, time.monotonic()))

    appender = threading.Thread(target=append_from_another_store)
    appender.start()
    assert await asyncio.to_thread(ready.wait, 10)
    task = asyncio.create_task(store.rebuild_inline("order-totals"))
    await asyncio.sleep(0.2)
    go.set()
    record = await task
    done = time.monotonic()
    await asyncio.to_thread(appender.join)
    rebuilding.slow = 0.0
    first_started, first_ended = ended[0]
    assert first_started < done, "the appends should start while the rebuild runs"
    assert first_ended >= done - 0.05, "an append finished before the rebuild committed"
    everything = await store.read_all()
    assert table(url) == implied(everything)
    assert len([s for s in table(url) if s.startswith("order-late-")]) == 5
    assert record.rebuilt_position is not None


# -- every appending process must register it ---------------------------------------------------


async def test_a_store_without_a_recorded_projection_refuses_its_event_types(
    store: StoreBase, url: str
) -> None:
    await store.append("order-1", [placed(1)])
    async with kronika.open_store(url) as plain:
        assert isinstance(plain, StoreBase)
        with pytest.raises(ConfigurationError, match=r"'order-totals' handles 'OrderPlaced'"):
            await plain.append("order-2", [placed(1)])
        with pytest.raises(ConfigurationError, match="register it in every process"):
            await plain.append_multi([StreamAppend("order-3", [NewEvent("Refunded", {})])])
        await plain.append("order-2", [NewEvent("Shipped", {})])  # a type it does not handle
        with pytest.raises(ConfigurationError, match="is registered on this store"):
            await store.drop_inline("order-totals")
        await plain.drop_inline("order-totals")
        await plain.append("order-2", [placed(1)])
        assert await plain.inline_status() == []
        with pytest.raises(NotFound, match="no inline projection 'order-totals'"):
            await plain.drop_inline("order-totals")
    assert list(table(url)) == ["order-1"]


async def test_rebuilding_an_unregistered_projection_is_refused(store: StoreBase) -> None:
    with pytest.raises(NotFound, match=r"'nope' is not registered.*order-totals"):
        await store.rebuild_inline("nope")


def test_bad_registrations_are_refused_with_the_reason(url: str) -> None:
    class Unnamed(OrderTotals):
        name = ""

    class BadTable(OrderTotals):
        tables: ClassVar[dict[str, str]] = {"order totals": "CREATE TABLE {table} (x TEXT)"}

    def problem(handlers: Any) -> str:
        with pytest.raises(ConfigurationError) as refused:
            kronika.open_store(url, inline=handlers)
        return str(refused.value)

    assert "has no name" in problem([Unnamed()])
    assert "registered twice" in problem([OrderTotals(), OrderTotals()])
    assert "plain SQL identifier" in problem([BadTable()])
    assert "is not an inline projection" in problem([object()])
    assert "takes a list" in problem("order-totals")
    assert query(url, "SELECT 1") == [(1,)]  # nothing was opened or created


# -- PostgreSQL: the application's role -----------------------------------------------------------

APP_GRANTS = """
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT, INSERT ON {schema}.events, {schema}.event_tags TO {role};
GRANT SELECT, INSERT, UPDATE ON {schema}.streams TO {role};
GRANT SELECT ON {schema}.schema_migrations TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.snapshots, {schema}.processors,
    {schema}.partitions, {schema}.failures, {schema}.documents, {schema}.workers, {schema}.jobs,
    {schema}.inline_projections TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.order_totals TO {role};
"""


@pytest.mark.postgres
async def test_the_runtime_role_of_the_postgresql_guide_appends_and_rebuilds(
    postgres_url: str,
) -> None:
    import psycopg
    from inline_support import split_postgres
    from psycopg import sql

    server, schema = split_postgres(postgres_url)
    role = f"kronika_app_{uuid.uuid4().hex[:8]}"
    async with kronika.open_store(postgres_url, inline=[projection_for(postgres_url)]) as owner:
        await owner.append("order-1", [placed(2)])  # the owner's open created the table
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        grants = APP_GRANTS.format(schema='"' + schema + '"', role=role)
        conn.execute(grants.encode())
    parts = urlsplit(postgres_url)
    host = parts.netloc.rpartition("@")[2]
    as_app = parts._replace(netloc=f"{role}@{host}").geturl() + "&migrate=false"
    try:
        async with kronika.open_store(as_app, inline=[projection_for(as_app)]) as store:
            assert isinstance(store, StoreBase)
            await store.append("order-1", [placed(3), NewEvent("Refunded", {"amount": 1})])
            record = await store.rebuild_inline("order-totals")
            assert not record.needs_rebuild
            assert table(postgres_url) == implied(await store.read_all())
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
