"""What only the SQLite backend must show: group commit, crash safety, several processes on
one file, immutability, schema and migrations, and clear errors.

The shared behaviour is in the conformance suite (tests/contract/test_sqlite.py).
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kronika.domain.events import (
    NO_STREAM,
    AppendCondition,
    AppendResult,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from kronika.errors import (
    ConcurrencyError,
    ConditionFailed,
    ConfigurationError,
    DuplicateEventError,
    SchemaError,
    StoreClosed,
    Unavailable,
    ValidationError,
)
from kronika.store import open_store
from kronika.store.listing import StreamSelection
from kronika.store.sqlite import SQLiteEventStore, reads
from kronika.store.sqlite.sql import MIGRATIONS, canonical_schema, split_script
from kronika.testing.contract import collect


def ev(type_: str = "Happened", **data: Any) -> NewEvent:
    return NewEvent(type_, data or {"n": 0})


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "kronika.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteEventStore]:
    async with SQLiteEventStore(db_path) as opened:
        yield opened


def run_python(script: str, *args: str, capture: bool = True) -> subprocess.Popen[str]:
    """Start ``python -c script args...``, its stdout piped (or discarded)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
    )


def assert_gap_free(events: list[RecordedEvent]) -> None:
    streams: dict[str, list[int]] = {}
    for event in events:
        streams.setdefault(event.stream, []).append(event.version)
    for name, versions in streams.items():
        assert versions == list(range(len(versions))), f"versions of {name} have gaps"


# -- URLs and options --------------------------------------------------------------------


def test_relative_and_absolute_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = SQLiteEventStore.from_url("sqlite:///sub/rel.db")
    assert relative.path == tmp_path / "sub" / "rel.db"
    absolute = SQLiteEventStore.from_url(f"sqlite:///{tmp_path}/abs.db?readers=2")
    assert absolute.path == tmp_path / "abs.db"
    assert isinstance(open_store("sqlite:///x.db", namespace="t1"), SQLiteEventStore)


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("sqlite:///x.db?synchronous=off", {}, "synchronous"),
        ("sqlite:///x.db?bogus=1", {}, "bogus"),
        ("sqlite:///x.db", {"readers": 0}, "readers"),
        ("sqlite://host/x.db", {}, "no host"),
        ("sqlite://", {}, "names no database file"),
        ("sqlite:///x.db?namespace=bad%20name", {}, "namespace"),
    ],
)
def test_bad_urls_and_options_are_refused(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises((ConfigurationError, ValueError), match=message):
        SQLiteEventStore.from_url(url, **options)


async def test_synchronous_normal_and_reopening_keep_the_data(db_path: Path) -> None:
    url = f"sqlite:///{db_path}?synchronous=normal&readers=1"
    async with open_store(url) as store:
        await store.append("order-1", [ev(), ev()])
    async with open_store(f"sqlite:///{db_path}") as store:
        assert [e.version for e in await store.read_stream("order-1")] == [0, 1]


# -- errors ------------------------------------------------------------------------------


async def test_a_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "k.db"
    with pytest.raises(ConfigurationError, match=re.escape(str(path))):
        await SQLiteEventStore(path).open()


async def test_a_path_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    folder = tmp_path / "a-directory.db"
    folder.mkdir()
    with pytest.raises(Unavailable, match="cannot be opened") as caught:
        await SQLiteEventStore(folder).open()
    assert str(folder) in str(caught.value)
    assert not isinstance(caught.value, sqlite3.Error)


def test_a_file_that_is_not_a_database_is_a_configuration_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database, just text " * 200)
    asyncio.run(_open_not_a_database(db_path))


async def _open_not_a_database(db_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a SQLite database"):
        await SQLiteEventStore(db_path).open()


async def test_a_locked_database_makes_writes_unavailable(db_path: Path) -> None:
    async with SQLiteEventStore(db_path, busy_timeout=0.2) as store:
        await store.append("order-1", [ev()])
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(Unavailable, match="locked") as caught:
                await store.append("order-1", [ev()])
            assert str(db_path) in str(caught.value)
            assert len(await store.read_stream("order-1")) == 1  # reads still work
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (await store.append("order-1", [ev()])).next_expected_version == 1


async def test_a_closed_store_refuses_work(db_path: Path) -> None:
    store = SQLiteEventStore(db_path)
    async with store:
        await store.append("order-1", [ev()])
    with pytest.raises(StoreClosed):
        await store.append("order-1", [ev()])
    with pytest.raises(StoreClosed):
        await store.read_all()


# -- immutability, positions ---------------------------------------------------------------


async def test_events_cannot_be_updated(store: SQLiteEventStore, db_path: Path) -> None:
    await store.append("order-1", [ev()])
    raw = sqlite3.connect(db_path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="immutable"):
            raw.execute("UPDATE events SET type = 'Forged'")
    finally:
        raw.close()
    assert (await store.read_stream("order-1"))[0].type == "Happened"


async def test_positions_are_never_reused_after_the_newest_events_are_deleted(
    store: SQLiteEventStore,
) -> None:
    await store.append("keep-1", [ev()])
    result = await store.append("gone-1", [ev(), ev()])
    await store.delete_stream("gone-1")
    after = await store.append("keep-1", [ev()])
    assert after.position == result.position + 1
    assert await store.head_position() == after.position


async def test_delete_and_truncate_remove_rows_and_their_tags(
    store: SQLiteEventStore, db_path: Path
) -> None:
    tagged = [NewEvent("Tagged", {"i": i}, tags=["t:1", "t:1", f"i:{i}"]) for i in range(4)]
    await store.append("order-1", tagged)
    await store.truncate_stream("order-1", 2)
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("SELECT count(*) FROM events").fetchone()[0] == 2
        assert raw.execute("SELECT count(*) FROM event_tags").fetchone()[0] == 4
        await store.delete_stream("order-1", hard=True)
        assert raw.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert raw.execute("SELECT count(*) FROM event_tags").fetchone()[0] == 0
    finally:
        raw.close()


async def test_filtered_reads_scan_many_windows(
    store: SQLiteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "FIRST_WINDOW", 3)
    monkeypatch.setattr(reads, "LARGEST_WINDOW", 12)
    for i in range(60):
        kind = "Rare" if i % 7 == 0 else "Common"
        tags = ["all", f"mod3:{i % 3}"]
        await store.append(
            f"{'a' if i % 2 else 'b'}-{i % 5}", [NewEvent(kind, {"i": i}, tags=tags)]
        )
    everything = await store.read_all()
    cases: list[dict[str, Any]] = [
        {"types": ["Rare"]},
        {"types": ["Rare", "Common"], "limit": 25},
        {"categories": ["a"], "tags": ["mod3:1"]},
        {"tags": ["all", "mod3:2"], "from_position": 20},
        {"types": ["Common"], "categories": ["b"], "tags": ["mod3:0"], "limit": 4},
        {"tags": []},
    ]
    for case in cases:
        found = await store.read_all(**case)
        expected = [
            e
            for e in everything
            if e.position >= case.get("from_position", 0)
            and ("types" not in case or e.type in case["types"])
            and ("categories" not in case or e.category in case["categories"])
            and set(case.get("tags", ())) <= set(e.tags)
        ][: case.get("limit")]
        assert found == expected, case


async def test_filtered_reads_agree_whichever_plan_each_window_takes(
    store: SQLiteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dense runs (most events match: read by position) alternate with sparse ones (few
    # match: read through an index); a read's plan follows the last window's density.
    monkeypatch.setattr(reads, "FIRST_WINDOW", 4)
    monkeypatch.setattr(reads, "LARGEST_WINDOW", 16)
    monkeypatch.setattr(reads, "_dense", {})
    for i in range(120):
        dense_run = (i // 30) % 2 == 0
        kind = "Hit" if (dense_run and i % 5) or (not dense_run and i % 13 == 0) else "Miss"
        stream = f"{'x' if i % 3 else 'y'}-{i % 4}"
        await store.append(stream, [NewEvent(kind, {"i": i}, tags=[f"t{i % 2}"])])
    everything = await store.read_all()
    cases: list[dict[str, Any]] = [
        {"types": ["Hit"]},
        {"types": ["Hit"], "limit": 7},
        {"types": ["Hit", "Miss"], "categories": ["x"], "limit": 9},
        {"categories": ["y"], "tags": ["t1"], "limit": 5},
        {"types": ["Hit"], "tags": ["t0"], "limit": 3},
    ]
    for case in cases:
        expected = [
            e
            for e in everything
            if ("types" not in case or e.type in case["types"])
            and ("categories" not in case or e.category in case["categories"])
            and set(case.get("tags", ())) <= set(e.tags)
        ]
        for _ in range(2):  # the second time starts with what the first one learnt
            found, position = [], 0
            while True:
                page = await store.read_all(from_position=position, **case)
                found.extend(page)
                if not page or "limit" not in case:
                    break
                position = page[-1].position + 1
            assert found == expected, case
    assert True in reads._dense.values()  # some windows were read by position


# -- schema and migrations -------------------------------------------------------------------


def _normalised_schema(path: Path) -> list[tuple[str, str, str, str]]:
    raw = sqlite3.connect(path)
    try:
        rows = raw.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    finally:
        raw.close()
    # Whitespace around punctuation is not compared: ALTER TABLE ... ADD COLUMN writes the
    # new column as ", name TYPE" right before the closing parenthesis.
    return sorted(
        (kind, name, table, _tokens(re.sub(r"--[^\n]*", "", sql or "")))
        for kind, name, table, sql in rows
    )


def _tokens(sql: str) -> str:
    return re.sub(r"\s*([,()])\s*", r"\1", " ".join(sql.split()))


async def test_schema_sql_equals_the_migrations(tmp_path: Path) -> None:
    canonical = tmp_path / "canonical.db"
    raw = sqlite3.connect(canonical, isolation_level=None)
    try:
        for statement in split_script(canonical_schema()):
            raw.execute(statement)
    finally:
        raw.close()
    migrated = tmp_path / "migrated.db"
    applied = await SQLiteEventStore(migrated).migrate()
    assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
    assert _normalised_schema(canonical) == _normalised_schema(migrated)
    assert any(name == "events_immutable" for _, name, _, _ in _normalised_schema(migrated))


async def test_migrate_is_idempotent_and_works_before_and_after_open(db_path: Path) -> None:
    store = SQLiteEventStore(db_path, migrate=False)
    before = await store.schema_status()
    assert (before.current, before.latest, len(before.pending)) == (
        0,
        len(MIGRATIONS),
        len(MIGRATIONS),
    )
    assert not await asyncio.to_thread(db_path.exists), "schema_status must not create it"
    assert len(await store.migrate()) == len(MIGRATIONS)
    assert await store.migrate() == []
    async with store:
        assert await store.migrate() == []
        status = await store.schema_status()
        assert status.up_to_date
        assert not status.too_new


async def test_pending_migrations_with_migrate_false_are_refused(db_path: Path) -> None:
    with pytest.raises(SchemaError, match="kronika migrate"):
        await SQLiteEventStore(db_path, migrate=False).open()


async def test_a_schema_from_a_newer_kronika_is_always_refused(db_path: Path) -> None:
    await SQLiteEventStore(db_path).migrate()
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
            "VALUES (99, 'future', 'x', '2099-01-01')"
        )
    raw.close()
    latest = len(MIGRATIONS)
    for migrate in (True, False):
        with pytest.raises(SchemaError, match=rf"version 99\b.*version {latest}\b"):
            await SQLiteEventStore(db_path, migrate=migrate).open()
    with pytest.raises(SchemaError, match="99"):
        await SQLiteEventStore(db_path).migrate()
    assert (await SQLiteEventStore(db_path).schema_status()).too_new


async def test_an_edited_migration_is_refused(db_path: Path) -> None:
    await SQLiteEventStore(db_path).migrate()
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("UPDATE schema_migrations SET checksum = 'edited'")
    raw.close()
    with pytest.raises(SchemaError, match="differs"):
        await SQLiteEventStore(db_path).open()


# -- group commit --------------------------------------------------------------------------


async def _while_locked(db_path: Path, work: Any) -> Any:
    """Run ``work`` while another connection holds the write lock for a moment, so that
    the requests pile up in the writer's queue and are committed as one group."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    task = asyncio.ensure_future(work)
    await asyncio.sleep(0.3)
    other.execute("COMMIT")
    other.close()
    return await task


async def _behind(plug: Any, requests: list[Any]) -> list[Any]:
    """Queue ``plug`` first and, once the writer holds it, ``requests`` (as one group)."""
    first = asyncio.ensure_future(plug)
    await asyncio.sleep(0.05)
    results = await asyncio.gather(*requests, return_exceptions=True)
    await first
    return results


async def test_concurrent_appends_are_committed_in_groups(
    store: SQLiteEventStore, db_path: Path
) -> None:
    before = store.writer_stats.commits
    appends = [store.append(f"order-{i}", [ev(i=i)], expected_version=NO_STREAM) for i in range(50)]
    results = await _while_locked(db_path, asyncio.gather(*appends))
    assert all(isinstance(r, AppendResult) for r in results)
    assert store.writer_stats.commits - before <= 3
    assert store.writer_stats.largest_group >= 40
    assert len(await store.read_all()) == 50


async def test_a_failing_request_does_not_affect_its_group(
    store: SQLiteEventStore, db_path: Path
) -> None:
    await store.append("taken-1", [ev()])
    shared = ev("Shared")
    retried = [ev("Retried"), ev("Retried")]
    requests = [
        store.append("good-1", [ev()]),
        store.append("taken-1", [ev()], expected_version=NO_STREAM),  # ConcurrencyError
        store.append("good-2", [shared]),
        store.append("good-3", [shared]),  # the same id in another stream: duplicate
        store.append("good-4", retried),
        store.append("good-4", retried),  # a retry of the previous append
        store.append("good-5", [ev()], condition=AppendCondition(types=["Shared"])),
        store.append_multi([StreamAppend("good-6", [ev()]), StreamAppend("good-1")]),
        store.append("good-7", [ev(), ev()]),
    ]
    before = store.writer_stats.commits
    results = await _while_locked(db_path, asyncio.gather(*requests, return_exceptions=True))
    assert store.writer_stats.commits - before <= 3
    assert isinstance(results[1], ConcurrencyError)
    assert isinstance(results[3], DuplicateEventError)
    assert results[4] == results[5]
    assert isinstance(results[6], ConditionFailed)
    assert results[7].streams["good-1"].next_expected_version == 0
    failed = [1, 3, 6]
    assert all(not isinstance(r, BaseException) for i, r in enumerate(results) if i not in failed)
    stored = await store.read_all()
    assert sorted({e.stream for e in stored}) == [
        "good-1", "good-2", "good-4", "good-6", "good-7", "taken-1",
    ]  # fmt: skip
    assert [e.type for e in stored if e.stream == "good-4"] == ["Retried", "Retried"]
    positions = [e.position for e in stored]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert_gap_free(stored)
    assert (await store.append("good-7", [ev()])).next_expected_version == 2


# -- concurrency, processes, crashes ---------------------------------------------------------


async def test_concurrent_writers_and_live_subscribers_see_everything_once_in_order(
    store: SQLiteEventStore, db_path: Path
) -> None:
    writers, appends_per_writer = 8, 500
    acknowledged: list[Any] = []
    seen_live: list[RecordedEvent] = []
    seen_remote: list[RecordedEvent] = []

    async def subscriber(source: SQLiteEventStore, seen: list[RecordedEvent]) -> None:
        async for event in source.subscribe():
            seen.append(event)  # noqa: PERF401 - the test watches the list grow live

    async def writer(w: int) -> None:
        rng, version = random.Random(w), -1
        for _ in range(appends_per_writer):
            events = [ev(w=w) for _ in range(rng.randint(1, 11))]
            if rng.random() < 0.3:
                stream = f"shared-{rng.randrange(3)}"
                multi = [StreamAppend(stream, events[:1]), StreamAppend(f"side-{w}", events[1:])]
                await store.append_multi([m for m in multi if m.events])
            else:
                expected = NO_STREAM if version < 0 else version
                result = await store.append(f"own-{w}", events, expected_version=expected)
                version = result.next_expected_version
            acknowledged.extend(e.event_id for e in events)

    async with SQLiteEventStore(db_path) as other:
        live = asyncio.create_task(subscriber(store, seen_live))
        remote = asyncio.create_task(subscriber(other, seen_remote))
        await asyncio.gather(*(writer(w) for w in range(writers)))
        total = len(acknowledged)
        assert total > 20_000
        for _ in range(600):
            if len(seen_live) >= total and len(seen_remote) >= total:
                break
            await asyncio.sleep(0.1)
        live.cancel()
        remote.cancel()
        await asyncio.gather(live, remote, return_exceptions=True)
    stored = await store.read_all()
    for seen in (seen_live, seen_remote):
        assert [e.id for e in seen] == [e.id for e in stored]
    assert len({e.id for e in stored}) == total == len(stored)
    assert {e.id for e in stored} == set(acknowledged)
    positions = [e.position for e in stored]
    assert positions == sorted(positions)
    assert_gap_free(stored)
    assert store.writer_stats.commits < store.writer_stats.requests


_WRITER_SCRIPT = """
    import asyncio, sys
    from kronika import NewEvent, open_store

    async def main(url, batches, size):
        async with open_store(url) as store:
            for b in range(batches):
                events = [NewEvent("Filled", {"b": b, "i": i}) for i in range(size)]
                await store.append("from-process-1", events)
                print("appended", b, flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def test_a_subscriber_sees_writes_of_another_process(db_path: Path) -> None:
    url = f"sqlite:///{db_path}"
    async with open_store(url, poll_interval=0.02) as store:
        watching = asyncio.create_task(collect(store, 200, timeout=60, from_position=0))
        await asyncio.sleep(0.1)
        process = run_python(_WRITER_SCRIPT, url, "20", "10", capture=False)
        assert await asyncio.to_thread(process.wait, 60) == 0
        seen = await watching
    assert [e.data["i"] for e in seen[:10]] == list(range(10))
    assert [e.version for e in seen] == list(range(200))


async def test_a_process_killed_mid_append_leaves_only_whole_appends(db_path: Path) -> None:
    url, size = f"sqlite:///{db_path}", 20_000
    for _ in range(2):
        process = run_python(_WRITER_SCRIPT, url, "1000", str(size))
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        assert line.startswith("appended"), line
        await asyncio.sleep(random.uniform(0.05, 0.6))
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 30)
        process.stdout.close()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()
    async with open_store(url) as store:
        events = await store.read_stream("from-process-1")
        info = await store.stream_info("from-process-1")
    assert len(events) >= 2 * size
    assert len(events) % size == 0, f"a partial append survived: {len(events)} events"
    assert [e.version for e in events] == list(range(len(events)))
    assert info.version == len(events) - 1
    assert all(e.data["i"] == e.version % size for e in events[:: size // 7])


async def test_two_store_objects_share_the_file_and_its_streams(db_path: Path) -> None:
    async with SQLiteEventStore(db_path) as one, SQLiteEventStore(db_path) as two:
        seen = asyncio.create_task(collect(two, 30, timeout=30))
        for i in range(10):
            await one.append("shared-1", [ev(i=i)], expected_version=3 * i - 1 if i else NO_STREAM)
            await two.append("shared-1", [ev(i=i)], expected_version=3 * i)
            await one.append("shared-1", [ev(i=i)], expected_version=3 * i + 1)
        with pytest.raises(ConcurrencyError):
            await two.append("shared-1", [ev()], expected_version=28)
        events = await seen
    assert [e.version for e in events] == list(range(30))
    assert len({e.position for e in events}) == 30


async def test_a_full_disk_fails_the_whole_group_and_writes_none_of_it(
    store: SQLiteEventStore, db_path: Path
) -> None:
    # SQLITE_FULL rolls back the whole transaction, not only the statement: every request
    # of the group must fail (none may report success for a write that was rolled back).
    await store.append("small-1", [ev()])
    writer = store._writer  # the test reaches in to cap the database size
    assert writer is not None
    pages = await writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
    await writer.call(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages + 20}"))
    big = [NewEvent("Big", {"blob": "x" * 4000}) for _ in range(100)]
    requests = [
        store.append("small-2", [ev()]),
        store.append("big-1", big),
        store.append("small-3", [ev()]),
    ]
    # A no-op request first: the writer waits for the lock with it, so the three appends
    # (whose hashing may let the writer thread run between them) queue up behind it.
    results = await _while_locked(db_path, _behind(writer.call(lambda conn: None), requests))
    for result in results:
        assert isinstance(result, Unavailable)
        assert "full" in str(result)
    assert [e.stream for e in await store.read_all()] == ["small-1"]
    await writer.call(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    await store.append("small-2", [ev()])
    await store.append("big-1", big)
    assert len(await store.read_all()) == 102


async def test_the_writer_thread_stops_on_close(db_path: Path) -> None:
    import threading

    def writers() -> int:
        return sum(t.name == "kronika-sqlite-writer" for t in threading.enumerate())

    before = writers()
    async with SQLiteEventStore(db_path) as store:
        await store.append("order-1", [ev()])
        assert writers() == before + 1
    assert writers() == before


async def test_namespaces_share_the_file_but_not_their_events(db_path: Path) -> None:
    async with (
        SQLiteEventStore(db_path, namespace="tenant-a") as a,
        SQLiteEventStore(db_path, namespace="tenant-b") as b,
    ):
        first = await a.append("order-1", [ev()])
        second = await b.append("order-1", [ev(), ev()], expected_version=NO_STREAM)
        assert second.position > first.position
        assert [e.version for e in await b.read_stream("order-1")] == [0, 1]
        assert len(await a.read_all()) == 1
        assert await a.head_position() == first.position
        assert (await a.stream_info("order-1")).version == 0
        with pytest.raises(ConditionFailed):
            await b.append("x-1", [ev()], condition=AppendCondition(types=["Happened"]))
        await a.append("x-1", [ev()], condition=AppendCondition(types=["Happened"], after=1))


async def test_numbers_too_large_for_sqlite_are_validation_errors(store: SQLiteEventStore) -> None:
    await store.append("order-1", [ev()])
    with pytest.raises(ValidationError, match="too large"):
        await store.set_stream_metadata("order-1", max_count=2**70)
    with pytest.raises(ValidationError, match="too large"):
        await store.read_all(from_position=2**70)
    assert (await store.append("order-1", [ev()])).next_expected_version == 1


async def test_stream_listings_scan_a_range_of_the_primary_key(
    store: SQLiteEventStore, db_path: Path
) -> None:
    """``list_streams`` seeks to its first name and stops at its last (no full scan)."""
    for name in ("cat1-1", "cat1-2", "cat2-1"):
        await store.append(name, [ev()])
    selection = StreamSelection.checked(category="cat1", after="cat1-1", limit=10)
    params = {
        "namespace": "default",
        "low": selection.start,
        "high": selection.high,
        "category": selection.category,
        "limit": 10,
    }
    with sqlite3.connect(db_path) as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN " + reads.QUERIES["list_streams"], params)
        details = " ".join(row[-1] for row in plan)
        listed = reads.list_streams(conn, "default", selection)
    assert "USING PRIMARY KEY (namespace=? AND stream>? AND stream<?)" in details, details
    assert [i.stream for i in listed] == ["cat1-2"]
