"""The leaner ``kronika_append`` (migration 0008) against 0005's, on the same appends.

0008 changed which statements a written part runs (one event chained by the statement that
writes its stream row, no stream inserted first, events inserted by subscript), not what an
append does: every shape of append below must give the same result or error, and leave the
same rows and chain hashes, on a schema whose function is put back to 0005's.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kronika import ANY, NO_STREAM, STREAM_EXISTS, NewEvent, StreamAppend
from kronika.domain.events import ExpectedVersionLike
from kronika.store.integrity import chains_of
from kronika.store.postgres import PostgresEventStore
from kronika.store.postgres.queries import render
from kronika.store.postgres.schema import MIGRATIONS
from kronika.store.verify import verify

pytestmark = pytest.mark.postgres

Step = Callable[[PostgresEventStore], Awaitable[object]]

_ROWS = {
    "events": "SELECT stream, version, id, type, tags, data, metadata, hash, position & 65535 "
    "FROM {}.events ORDER BY stream, version",
    "streams": "SELECT stream, version, state, hash, anchor, truncated_before FROM {}.streams "
    "ORDER BY stream",
    "tags": "SELECT t.tag, e.id FROM {0}.event_tags t JOIN {0}.events e "
    "ON e.namespace = t.namespace AND e.position = t.position ORDER BY 1, 2",
    "order": "SELECT id FROM {}.events ORDER BY position",
}
"""What both schemas must hold alike (positions differ by transaction id: low bits only)."""


def _function_of_0005() -> str:
    text = next(m.sql for m in MIGRATIONS if m.version == 5)
    function = text[text.index("CREATE FUNCTION {schema}.kronika_append(") :]
    return function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)


@pytest.fixture
async def stores(postgres_server: str) -> AsyncIterator[tuple[PostgresEventStore, ...]]:
    """Two stores: 0005's kronika_append, and the current one."""
    names = [f"kronika_test_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    stores = tuple(PostgresEventStore(postgres_server, schema=name) for name in names)
    try:
        for store in stores:
            await store.migrate()
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(render(_function_of_0005(), names[0]))
        async with stores[0], stores[1]:
            yield stores
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
            for name in names:
                conn.execute(drop.format(sql.Identifier(name)))


def _events(count: int, *tags: str) -> list[NewEvent]:
    return [NewEvent("Happened", {"n": n}, {"k": "v"}, tags=tags) for n in range(count)]


def _append(stream: str, count: int, expected: ExpectedVersionLike, *tags: str) -> Step:
    events = _events(count, *tags)  # the same ids in both stores
    return lambda store: store.append(stream, events, expected_version=expected)


def _multi(*parts: tuple[str, int, ExpectedVersionLike]) -> Step:
    appends = [StreamAppend(s, _events(n), expected) for s, n, expected in parts]
    return lambda store: store.append_multi(appends)


def _steps() -> list[Step]:
    first = _append("a-1", 1, NO_STREAM)
    return [
        first,  # no stream, one event: inserted
        _append("a-1", 1, 0),  # one event, updated
        _append("a-1", 3, 1),  # more events, updated
        _append("b-1", 3, NO_STREAM),  # more events, inserted
        _append("c-1", 1, ANY),  # any: a new stream after all
        _append("c-2", 2, ANY),
        _append("c-1", 2, ANY),
        _append("c-1", 1, STREAM_EXISTS),
        _append("a-1", 1, NO_STREAM),  # refused: an active stream
        _append("a-1", 2, NO_STREAM),
        _append("a-1", 2, 7),
        _append("zz-1", 1, STREAM_EXISTS),  # refused: no such stream
        _append("zz-1", 3, 0),
        lambda store: store.delete_stream("b-1"),
        _append("b-1", 1, NO_STREAM),  # a deleted stream revives, its chain goes on
        lambda store: store.delete_stream("b-1"),
        _append("b-1", 2, NO_STREAM),
        lambda store: store.delete_stream("c-2"),
        _append("c-2", 1, ANY),
        lambda store: store.set_stream_metadata("m-1", max_count=9),  # a row, no version
        _append("m-1", 1, NO_STREAM),
        lambda store: store.set_stream_metadata("m-2", max_count=9),
        _append("m-2", 2, ANY),
        lambda store: store.delete_stream("d-1", hard=True),  # tombstoned
        _append("d-1", 1, NO_STREAM),
        _append("d-1", 2, ANY),
        _multi(("e-1", 2, NO_STREAM), ("a-1", 0, ANY), ("e-2", 1, ANY), ("b-1", 3, ANY)),
        _multi(("e-3", 1, NO_STREAM), ("e-1", 1, 5)),  # refused: e-3 is not written either
        _multi(("e-3", 0, NO_STREAM), ("e-4", 1, NO_STREAM), ("e-1", 2, 1)),
        _append("t-1", 2, NO_STREAM, "a", 'q"x'),  # tags
        _append("t-1", 1, 1, "b\\s"),
        first,  # a retry: the stored events answer
        lambda store: store.truncate_stream("a-1", 2),
        _append("a-1", 1, ANY),
        _append("a-1", 2, ANY),
    ]


def _outcome(value: object) -> object:
    """A step's result or error, positions cut to their low 16 bits."""
    text = repr(value) if not isinstance(value, Exception) else f"{type(value).__name__}: {value}"
    return re.sub(r"position=(\d+)|position (\d+)", lambda m: str(int(m[1] or m[2]) & 0xFFFF), text)


async def _run(step: Step, store: PostgresEventStore) -> object:
    try:
        return _outcome(await step(store))
    except Exception as exc:  # compared between the two stores
        return _outcome(exc)


def _rows(server: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(server, autocommit=True) as conn:
        return {
            name: conn.execute(sql.SQL(query).format(sql.Identifier(schema))).fetchall()
            for name, query in _ROWS.items()
        }


async def test_every_append_shape_matches_0005(
    stores: tuple[PostgresEventStore, PostgresEventStore], postgres_server: str
) -> None:
    old, new = stores
    for number, step in enumerate(_steps()):
        assert await _run(step, new) == await _run(step, old), f"step {number}"
    rows = _rows(postgres_server, new.schema)
    assert rows == _rows(postgres_server, old.schema)
    assert len(rows["events"]) > 20 and len(rows["tags"]) == 5
    for store in stores:
        report = await verify(chains_of(store))
        assert report.complete and report.problems_total == 0 and report.unchained == 0
