"""``kronika verify`` on real SQLite files and PostgreSQL schemas: tampering done directly in
the database (with its immutability triggers out of the way) is reported with the right
kind and position and exit status 1; a clean log, a resumed run and a store migrated from
schema 0004 with events already in it verify clean."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import psycopg
import pytest
from psycopg import sql
from rich.console import Console
from typer.testing import CliRunner, Result

from kronika import NewEvent, StreamAppend, open_store
from kronika.cli import output
from kronika.cli.app import app
from kronika.domain.events import ANY, RecordedEvent
from kronika.store.base import PreparedAppend, _encode_event
from kronika.store.integrity import chains_of
from kronika.store.postgres import appends as ap
from kronika.store.postgres.database import ADAPTERS
from kronika.store.postgres.queries import queries_for, render
from kronika.store.postgres.schema import MIGRATIONS as PG_MIGRATIONS
from kronika.store.sqlite.schema import apply as apply_sqlite
from kronika.store.sqlite.sql import MIGRATIONS as SQLITE_MIGRATIONS
from kronika.store.verify import verify

Tamper = Callable[[str, list[Any]], None]
"""Run one statement with parameters against the test's database, triggers disabled."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


def invoke(*args: str) -> Result:
    """Run the CLI in-process, with no ``KRONIKA_*`` variable from the environment."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KRONIKA_")}
    return CliRunner().invoke(app, list(args), env={**clean, "COLUMNS": "200"})


def verify_json(url: str, *args: str, code: int = 0) -> dict[str, Any]:
    result = invoke("--url", url, "verify", "--json", *args)
    assert result.exit_code == code, result.output
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


def problems(report: dict[str, Any]) -> list[tuple[str, int | None, str | None, int | None]]:
    return [(p["kind"], p["position"], p["stream"], p["version"]) for p in report["problems"]]


def seed(url: str) -> list[RecordedEvent]:
    """Streams with multi-stream appends, a truncation, deletions; every event afterwards."""

    async def go() -> list[RecordedEvent]:
        async with open_store(url) as store:
            for i in range(9):
                events = [
                    NewEvent("Placed", {"i": i, "big": 1e16}, tags=["t"]),
                    NewEvent("Paid", {}),
                ]
                await store.append(f"order-{i % 3}", events)
            await store.append_multi(
                [
                    StreamAppend("order-0", [NewEvent("Shipped", {})]),
                    StreamAppend("audit-1", [NewEvent("Noted", {"by": "me"})]),
                ]
            )
            await store.truncate_stream("order-1", 2)
            await store.delete_stream("order-2")
            await store.append("order-2", [NewEvent("Reopened", {})])
            await store.append("gone-1", [NewEvent("A", {})])
            await store.delete_stream("gone-1", hard=True)
            return await store.read_all()

    return asyncio.run(go())


def server_and_schema(url: str) -> tuple[str, str]:
    """The server URL and the schema of a ``postgres_url``."""
    return url.split("?", maxsplit=1)[0], parse_qs(urlsplit(url).query)["schema"][0]


def stream_of(events: list[RecordedEvent], stream: str) -> list[RecordedEvent]:
    return [e for e in events if e.stream == stream]


@pytest.fixture
def tamper(url: str) -> Tamper:
    """Change the database behind the store's back (triggers disabled)."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")

        def on_sqlite(statement: str, params: list[Any]) -> None:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute("DROP TRIGGER IF EXISTS events_immutable")
                conn.execute(statement.replace("{schema}.", ""), params)
            finally:
                conn.close()

        return on_sqlite
    server, schema = server_and_schema(url)

    def on_postgres(statement: str, params: list[Any]) -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")  # no user triggers
            query = sql.SQL(statement.replace("?", "%s")).format(schema=sql.Identifier(schema))
            conn.execute(query, params)

    return on_postgres


# -- clean -----------------------------------------------------------------------------------


def test_a_clean_store_verifies_clean(url: str) -> None:
    events = seed(url)
    report = verify_json(url)
    assert report["clean"] and report["complete"] and report["problems"] == []
    assert report["events"] == len(events) and report["unchained"] == 0
    assert report["streams"] == 5
    assert report["checkpoints_recorded"] == 1
    assert report["last_position"] == events[-1].position
    again = verify_json(url)
    assert again["checkpoints_checked"] == 1 and again["global_hash"] == report["global_hash"]


def test_the_text_report_and_the_exit_status(url: str) -> None:
    seed(url)
    clean = invoke("--url", url, "verify")
    assert clean.exit_code == 0, clean.output
    assert "clean: no event was altered, removed or reordered" in clean.stdout
    assert "5 stream rows compared" in clean.stdout


def test_a_stopped_run_resumes_and_agrees_with_a_full_run(url: str) -> None:
    events = seed(url)
    first = invoke("--url", url, "verify", "--max-events", "5")
    assert first.exit_code == 0, first.output
    assert "run with --resume to carry on" in first.stdout
    rest = verify_json(url, "--resume")
    assert rest["complete"] and rest["clean"]
    assert rest["resumed_from"] == events[4].position
    assert rest["events"] == len(events) - 5
    full = verify_json(url)
    assert (full["global_hash"], full["global_events"]) == (
        rest["global_hash"],
        rest["global_events"],
    )


def test_from_position_checks_only_the_rest(url: str) -> None:
    events = seed(url)
    report = verify_json(url, "--from-position", str(events[6].position))
    assert report["clean"] and report["events"] == len(events) - 6
    assert report["global_hash"] is None and report["checkpoints_recorded"] == 0


def test_bad_options_exit_2(url: str) -> None:
    both = invoke("--url", url, "verify", "--resume", "--from-position", "3")
    assert both.exit_code == 2 and "resume or from_position" in both.output
    zero = invoke("--url", url, "verify", "--max-events", "0")
    assert zero.exit_code == 2, zero.output


def test_a_server_url_is_refused(sqlite_url: str) -> None:
    result = invoke("--url", "http://127.0.0.1:9", "verify")
    assert result.exit_code == 2, result.output
    assert "verify against the database" in result.output


def test_a_terminal_gets_a_progress_bar_unless_quiet(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(sqlite_url)
    screen = io.StringIO()
    monkeypatch.setattr(output, "err", Console(file=screen, force_terminal=True, width=100))
    assert invoke("--url", sqlite_url, "verify", "--quiet").exit_code == 0
    assert "verify" not in screen.getvalue()
    assert invoke("--url", sqlite_url, "verify").exit_code == 0
    assert "events" in screen.getvalue() and "verify" in screen.getvalue()


# -- tampering ---------------------------------------------------------------------------------


def test_altered_data_is_reported(url: str, tamper: Tamper) -> None:
    events = seed(url)
    victim = stream_of(events, "order-0")[1]
    verify_json(url)  # records a checkpoint over the intact log
    tamper(
        "UPDATE {schema}.events SET data = ? WHERE position = ?",
        [_json(url, {"forged": True}), victim.position],
    )
    report = verify_json(url, code=1)
    assert problems(report)[0] == ("altered", victim.position, "order-0", 1)
    assert {p[0] for p in problems(report)} == {"altered"}


def test_altered_metadata_type_or_tags_are_reported(url: str, tamper: Tamper) -> None:
    events = seed(url)
    a, b = stream_of(events, "order-1")[0], stream_of(events, "audit-1")[0]
    tamper("UPDATE {schema}.events SET type = ? WHERE position = ?", ["Refunded", a.position])
    tamper(
        "UPDATE {schema}.events SET metadata = ? WHERE position = ?", [_json(url, {}), b.position]
    )
    report = verify_json(url, code=1)
    assert problems(report) == [
        ("altered", a.position, "order-1", a.version),
        ("altered", b.position, "audit-1", 0),
    ]


def test_a_deleted_event_is_reported_as_removed(url: str, tamper: Tamper) -> None:
    events = seed(url)
    order = stream_of(events, "order-0")
    tamper("DELETE FROM {schema}.events WHERE position = ?", [order[2].position])
    report = verify_json(url, code=1)
    assert problems(report) == [("removed", order[3].position, "order-0", 2)]
    assert "version 2 is missing" in report["problems"][0]["detail"]


def test_a_deleted_first_event_is_removed_not_truncated(url: str, tamper: Tamper) -> None:
    events = seed(url)
    first = stream_of(events, "audit-1")[0]
    tamper("DELETE FROM {schema}.events WHERE position = ?", [first.position])
    report = verify_json(url, code=1)
    assert ("removed", None, "audit-1", 0) in problems(report)


def test_deleted_newest_events_are_reported(url: str, tamper: Tamper) -> None:
    events = seed(url)
    verify_json(url)  # the checkpoint at the end of the log
    newest = events[-1]
    tamper("DELETE FROM {schema}.events WHERE position = ?", [newest.position])
    report = verify_json(url, code=1)
    found = problems(report)
    assert ("removed", None, newest.stream, newest.version) in found
    assert ("checkpoint", newest.position, None, None) in found


def test_swapped_versions_are_reported_as_reordered(url: str, tamper: Tamper) -> None:
    events = seed(url)
    one, two = stream_of(events, "order-0")[1:3]
    move = "UPDATE {schema}.events SET version = ? WHERE position = ?"
    tamper(move, [-1, one.position])
    tamper(move, [one.version, two.position])
    tamper(move, [two.version, one.position])
    report = verify_json(url, code=1)
    assert problems(report) == [
        ("reordered", one.position, "order-0", two.version),
        ("reordered", two.position, "order-0", one.version),
    ]
    text = invoke("--url", url, "verify")
    assert text.exit_code == 1
    assert "reordered" in text.stdout and "2 problem(s) found" in text.output


def test_a_rewritten_chain_head_is_reported(url: str, tamper: Tamper) -> None:
    seed(url)
    tamper("UPDATE {schema}.streams SET hash = ? WHERE stream = ?", [bytes(32), "order-2"])
    report = verify_json(url, code=1)
    assert [(p[0], p[2]) for p in problems(report)] == [("altered", "order-2")]


def _json(url: str, value: Any) -> Any:
    """A JSON value as the engine's column takes it (SQLite: orjson bytes)."""
    return orjson.dumps(value) if url.startswith("sqlite") else orjson.dumps(value).decode()


# -- a store migrated from schema 0004 ------------------------------------------------------


def test_events_stored_before_0005_are_unchained_not_tampered(sqlite_url: str) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for migration in SQLITE_MIGRATIONS[:4]:
            apply_sqlite(conn, migration)
        for stream, count in (("old-1", 3), ("old-2", 4)):
            for version in range(count):
                conn.execute(
                    "INSERT INTO events (namespace, stream, category, version, id, type, data,"
                    " metadata, tags, correlation_id, recorded_at)"
                    " VALUES ('default', ?, 'old', ?, ?, 'Old', ?, X'7B7D', NULL, NULL, 0)",
                    [stream, version, uuid.uuid4().bytes, orjson.dumps({"v": version})],
                )
            conn.execute(
                "INSERT INTO streams (namespace, stream, version) VALUES ('default', ?, ?)",
                [stream, count - 1],
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
    _then_append_and_truncate(sqlite_url)
    report = verify_json(sqlite_url)
    assert report["clean"], report["problems"]
    assert report["unchained"] == 3 + 2  # old-1, and old-2 less its 2 truncated events


@pytest.mark.postgres
def test_events_stored_before_0005_on_postgres_are_unchained(postgres_url: str) -> None:
    asyncio.run(_old_postgres_store(postgres_url))
    _then_append_and_truncate(postgres_url)
    report = verify_json(postgres_url)
    assert report["clean"], report["problems"]
    assert report["unchained"] == 3 + 2


def _then_append_and_truncate(url: str) -> None:
    """With today's code: migrate, append to old and new streams, truncate an old one."""

    async def go() -> None:
        async with open_store(url) as store:
            await store.append("old-1", [NewEvent("New", {"n": 1})])
            await store.append("old-2", [NewEvent("New", {"n": 2}), NewEvent("New", {})])
            await store.append("new-1", [NewEvent("New", {})])
            await store.truncate_stream("old-2", 2)

    asyncio.run(go())


_OLD_APPEND = """
SELECT o_versions, o_positions, o_stored FROM {schema}.kronika_append(
    %(namespace)s, %(streams)b, %(expected)b, %(counts)b, %(keys)b, %(exclusive)b,
    %(ids)b, %(types)b, %(data)b, %(metadata)b, %(tags)b, %(correlations)b,
    %(condition)s, %(lookup)s
)
"""
"""The append query of Kronika before migration 0005."""


async def _old_postgres_store(url: str) -> None:
    """A schema at migration 0004 with events appended by its own kronika_append."""
    server, schema = server_and_schema(url)
    async with _connection(server) as conn:
        queries = queries_for(schema)
        await conn.execute(queries.create_migrations_table)
        for migration in PG_MIGRATIONS[:4]:
            await conn.execute(render(migration.sql, schema))
            await conn.execute(
                queries.record_migration,
                {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                },
            )
        for stream, count in (("old-1", 3), ("old-2", 4)):
            events = tuple(_encode_event(NewEvent("Old", {"v": v}), "e") for v in range(count))
            params = ap.append_params("default", [PreparedAppend(stream, ANY, events)], None, "s")
            del params["digests"]
            await conn.execute(render(_OLD_APPEND, schema), params)


@asynccontextmanager
async def _connection(server: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(server, autocommit=True, context=ADAPTERS)
    try:
        yield conn
    finally:
        await conn.close()


# -- the position offset (raised by a restore) -----------------------------------------------


@pytest.mark.postgres
def test_a_position_offset_lifts_new_positions_and_everything_agrees(postgres_url: str) -> None:
    server, schema = server_and_schema(postgres_url)
    offset = 65_536 * 10**9

    async def go() -> None:
        async with open_store(postgres_url) as store:
            before = await store.append("s-1", [NewEvent("A", {})])
            assert before.position < offset
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(
                    sql.SQL(
                        "CREATE OR REPLACE FUNCTION {}.kronika_position_offset() RETURNS bigint "
                        "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {}::bigint $$"
                    ).format(sql.Identifier(schema), sql.Literal(offset))
                )
            events = [NewEvent("B", {"i": i}) for i in range(3)]
            after = await store.append("s-1", events)
            assert after.position > offset
            assert await store.append("s-1", events) == after  # the retry finds them stored
            seen = await store.read_all(from_position=before.position + 1)
            assert [e.position for e in seen] == [
                after.position - 2,
                after.position - 1,
                after.position,
            ]
            assert await store.head_position() == after.position
            report = await verify(chains_of(store))
            assert report.clean, report.problems

    asyncio.run(go())
