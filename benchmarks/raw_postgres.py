"""The raw PostgreSQL baseline: plain psycopg 3 (async) on an equivalent table.

Same server, same durability (the server's ``synchronous_commit``), autocommit unless a
workload needs a transaction, JSON encoded and decoded with orjson as Kronika does. The
table has a plain ``BIGSERIAL`` position, which is exactly what the W6t naive reader shows
to be unsafe for a live reader.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from benchmarks.common import EVENT_TYPE, METADATA, SEED_BATCH, Sample, Scale, order_data

__all__ = ["create_schema", "drop_schema", "run_raw_postgres"]

Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Row = tuple[Any, ...]

TABLE = """
CREATE TABLE events (
    position    BIGSERIAL   PRIMARY KEY,
    id          uuid        NOT NULL UNIQUE,
    stream      text        NOT NULL,
    version     integer     NOT NULL,
    type        text        NOT NULL,
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, version)
)
"""

INSERT = """
INSERT INTO events (id, stream, version, type, data, metadata) VALUES (%s, %s, %s, %s, %s, %s)
"""

COPY = "COPY events (id, stream, version, type, data, metadata) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = ["uuid", "text", "int4", "text", "jsonb", "jsonb"]

SELECT_STREAM = """
SELECT position, id, stream, version, type, data, metadata, recorded_at
FROM events WHERE stream = %s ORDER BY version
"""

SELECT_PAGE = """
SELECT position, id, stream, version, type, data, metadata, recorded_at
FROM events WHERE position > %s ORDER BY position LIMIT %s
"""

SELECT_NEW_IDS = "SELECT position, id FROM events WHERE position > %s ORDER BY position LIMIT 1000"


async def create_schema(url: str, schema: str) -> None:
    """Create ``schema`` and the events table in it."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        await conn.execute(TABLE)


async def drop_schema(url: str, schema: str) -> None:
    """Drop ``schema`` and everything in it (no error if it does not exist)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


async def connect(url: str, schema: str) -> Conn:
    """An autocommit connection with ``schema`` on its search path and orjson for JSON."""
    conn = await psycopg.AsyncConnection.connect(
        url, autocommit=True, options=f"-c search_path={schema}"
    )
    set_json_dumps(orjson.dumps, conn)
    set_json_loads(orjson.loads, conn)
    return conn


def row(stream: str, version: int, i: int) -> Row:
    """One event row; the JSON columns are encoded by orjson when sent."""
    return (uuid.uuid4(), stream, version, EVENT_TYPE, Jsonb(order_data(i)), Jsonb(METADATA))


async def w1(conn: Conn, scale: Scale) -> Sample:
    """One autocommitted single-row INSERT per event, each to a new stream."""
    n = scale.w1_appends
    start = time.perf_counter()
    for i in range(n):
        await conn.execute(INSERT, row(f"order-{i}", 0, i))
    return Sample(events=n, seconds=time.perf_counter() - start)


async def w2(conn: Conn, scale: Scale) -> Sample:
    """Single-row INSERTs round-robin over existing streams; UNIQUE(stream, version) checks."""
    streams = scale.w2_streams
    await _copy(conn, [row(f"account-{s}", 0, s) for s in range(streams)])
    versions = [0] * streams
    n = scale.w2_appends
    start = time.perf_counter()
    for i in range(n):
        s = i % streams
        versions[s] += 1
        await conn.execute(INSERT, row(f"account-{s}", versions[s], i))
    return Sample(events=n, seconds=time.perf_counter() - start)


async def _copy(conn: Conn, rows: list[Row]) -> None:
    """Insert ``rows`` with binary COPY in one transaction."""
    async with conn.transaction(), conn.cursor() as cur, cur.copy(COPY) as copy:
        copy.set_types(COPY_TYPES)
        for values in rows:
            await copy.write_row(values)


async def _executemany(conn: Conn, rows: list[Row]) -> None:
    """Insert ``rows`` with ``executemany`` (pipelined) in one transaction."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(INSERT, rows)


W3_INSERT = _copy
"""How W3 inserts a batch: binary COPY (the faster of COPY and executemany here)."""


async def w3(conn: Conn, scale: Scale) -> Sample:
    """One batched insert of ``w3_batch`` rows in one transaction per batch."""
    n, batch = scale.w3_appends, scale.w3_batch
    start = time.perf_counter()
    for i in range(n):
        await W3_INSERT(conn, [row(f"batch-{i}", j, i * batch + j) for j in range(batch)])
    return Sample(events=n * batch, seconds=time.perf_counter() - start)


async def w4(conn: Conn, scale: Scale) -> Sample:
    """``SELECT ... WHERE stream = %s ORDER BY version`` (JSON parsed), repeatedly."""
    size = scale.w4_stream_events
    await _copy(conn, [row("big-0", v, v) for v in range(size)])
    for _ in range(3):  # warm-up, untimed
        await (await conn.execute(SELECT_STREAM, ("big-0",))).fetchall()
    start = time.perf_counter()
    for _ in range(scale.w4_reads):
        events = await (await conn.execute(SELECT_STREAM, ("big-0",))).fetchall()
        if len(events) != size:
            raise AssertionError(f"read {len(events)} rows, expected {size}")
    return Sample(events=size * scale.w4_reads, seconds=time.perf_counter() - start)


async def w5(conn: Conn, scale: Scale) -> Sample:
    """Keyset-paginated ``SELECT ... WHERE position > %s`` (JSON parsed)."""
    total, page = scale.w5_events, scale.w5_page
    for b, first in enumerate(range(0, total, SEED_BATCH)):
        count = min(SEED_BATCH, total - first)
        await _copy(conn, [row(f"log-{b}", v, first + v) for v in range(count)])
    start = time.perf_counter()
    count, last = 0, 0
    while True:
        events = await (await conn.execute(SELECT_PAGE, (last, page))).fetchall()
        count += len(events)
        if len(events) < page:
            break
        last = events[-1][0]
    seconds = time.perf_counter() - start
    if count != total:
        raise AssertionError(f"read {count} rows, expected {total}")
    return Sample(events=count, seconds=seconds)


async def _writers(url: str, schema: str, scale: Scale, written: list[uuid.UUID]) -> float:
    """W6 writers: one task and one connection each, autocommitted single-row INSERTs."""
    conns = [await connect(url, schema) for _ in range(scale.w6_writers)]

    async def writer(w: int, conn: Conn) -> None:
        for i in range(scale.w6_appends_per_writer):
            values = row(f"writer-{w}", i, i)
            await conn.execute(INSERT, values)
            written.append(values[0])

    try:
        start = time.perf_counter()
        await asyncio.gather(*(writer(w, c) for w, c in enumerate(conns)))
        return time.perf_counter() - start
    finally:
        for conn in conns:
            await conn.close()


async def w6(url: str, schema: str, scale: Scale) -> Sample:
    """8 tasks, each its own connection, autocommitted single-row INSERTs."""
    written: list[uuid.UUID] = []
    seconds = await _writers(url, schema, scale, written)
    return Sample(events=len(written), seconds=seconds)


async def w6t(url: str, schema: str, scale: Scale) -> Sample:
    """W6 plus a naive reader polling ``WHERE position > last`` on the BIGSERIAL column."""
    seen: list[uuid.UUID] = []
    stop = asyncio.Event()
    reader = asyncio.create_task(_naive_reader(await connect(url, schema), seen, stop))
    written: list[uuid.UUID] = []
    try:
        seconds = await _writers(url, schema, scale, written)
    finally:
        stop.set()
        await reader
    return Sample(
        events=len(written),
        seconds=seconds,
        missed=len(set(written) - set(seen)),
        duplicates=len(seen) - len(set(seen)),
    )


async def _naive_reader(conn: Conn, seen: list[uuid.UUID], stop: asyncio.Event) -> None:
    """Poll for rows above the last position seen; once stopped, read until nothing is new."""
    last = 0
    async with conn:
        while True:
            stopping = stop.is_set()
            rows = await (await conn.execute(SELECT_NEW_IDS, (last,))).fetchall()
            seen.extend(r[1] for r in rows)
            last = rows[-1][0] if rows else last
            if stopping and not rows:
                return
            if not rows:
                await asyncio.sleep(0.001)


ON_CONNECTION: dict[str, Callable[[Conn, Scale], Awaitable[Sample]]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
}
ON_SCHEMA: dict[str, Callable[[str, str, Scale], Awaitable[Sample]]] = {"W6": w6, "W6t": w6t}


async def run_raw_postgres(workload: str, url: str, schema: str, scale: Scale) -> Sample:
    """Run one workload on the events table in ``schema`` (already created, empty)."""
    if workload in ON_SCHEMA:
        return await ON_SCHEMA[workload](url, schema, scale)
    async with await connect(url, schema) as conn:
        return await ON_CONNECTION[workload](conn, scale)
