"""The raw SQLite baseline: plain ``sqlite3`` on an equivalent table, same durability.

WAL journal, ``synchronous=FULL``, autocommit (every statement outside ``BEGIN`` is its own
transaction). Events are encoded with orjson, as Kronika does.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from benchmarks.common import EVENT_TYPE, METADATA, SEED_BATCH, Sample, Scale, order_data

__all__ = ["run_raw_sqlite"]

SCHEMA = """
CREATE TABLE events (
    position    INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE,
    stream      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    data        BLOB    NOT NULL,
    metadata    BLOB    NOT NULL,
    recorded_at REAL    NOT NULL,
    UNIQUE (stream, version)
)
"""

INSERT = """
INSERT INTO events (id, stream, version, type, data, metadata, recorded_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""

SELECT_STREAM = """
SELECT position, id, stream, version, type, data, metadata, recorded_at
FROM events WHERE stream = ? ORDER BY version
"""

SELECT_PAGE = """
SELECT position, id, stream, version, type, data, metadata, recorded_at
FROM events WHERE position > ? ORDER BY position LIMIT ?
"""

SELECT_NEW_IDS = "SELECT position, id FROM events WHERE position > ? ORDER BY position LIMIT 1000"

BUSY_TIMEOUT_MS = 30_000

Row = tuple[Any, ...]


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with ``synchronous=FULL`` and a busy timeout."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


def row(stream: str, version: int, i: int) -> Row:
    """One event row, encoded the way the workload's Kronika side would encode it."""
    return (
        uuid.uuid4().bytes,
        stream,
        version,
        EVENT_TYPE,
        orjson.dumps(order_data(i)),
        orjson.dumps(METADATA),
        time.time(),
    )


def decode(rows: list[Row]) -> list[Row]:
    """Rows with their JSON columns parsed into dicts."""
    loads = orjson.loads
    return [(p, i, s, v, t, loads(d), loads(m), r) for p, i, s, v, t, d, m, r in rows]


def w1(conn: sqlite3.Connection, scale: Scale) -> Sample:
    """One autocommitted single-row INSERT per event, each to a new stream."""
    n = scale.w1_appends
    start = time.perf_counter()
    for i in range(n):
        conn.execute(INSERT, row(f"order-{i}", 0, i))
    return Sample(events=n, seconds=time.perf_counter() - start)


def w2(conn: sqlite3.Connection, scale: Scale) -> Sample:
    """Single-row INSERTs round-robin over existing streams; UNIQUE(stream, version) checks."""
    streams = scale.w2_streams
    for s in range(streams):
        conn.execute(INSERT, row(f"account-{s}", 0, s))
    versions = [0] * streams
    n = scale.w2_appends
    start = time.perf_counter()
    for i in range(n):
        s = i % streams
        versions[s] += 1
        conn.execute(INSERT, row(f"account-{s}", versions[s], i))
    return Sample(events=n, seconds=time.perf_counter() - start)


def _insert_batch(conn: sqlite3.Connection, rows: list[Row]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")


def w3(conn: sqlite3.Connection, scale: Scale) -> Sample:
    """``executemany`` of ``w3_batch`` rows in one transaction per batch."""
    n, batch = scale.w3_appends, scale.w3_batch
    start = time.perf_counter()
    for i in range(n):
        _insert_batch(conn, [row(f"batch-{i}", j, i * batch + j) for j in range(batch)])
    return Sample(events=n * batch, seconds=time.perf_counter() - start)


def _fill(conn: sqlite3.Connection, total: int, batch: int, prefix: str) -> None:
    """``total`` events in streams ``PREFIX-0``, ``PREFIX-1``... of ``batch`` events each."""
    for b, first in enumerate(range(0, total, batch)):
        count = min(batch, total - first)
        _insert_batch(conn, [row(f"{prefix}-{b}", v, first + v) for v in range(count)])


def w4(conn: sqlite3.Connection, scale: Scale) -> Sample:
    """``SELECT ... WHERE stream = ? ORDER BY version`` plus JSON decoding, repeatedly."""
    size = scale.w4_stream_events
    _fill(conn, size, size, "big")
    for _ in range(3):  # warm-up, untimed
        decode(conn.execute(SELECT_STREAM, ("big-0",)).fetchall())
    start = time.perf_counter()
    for _ in range(scale.w4_reads):
        events = decode(conn.execute(SELECT_STREAM, ("big-0",)).fetchall())
        if len(events) != size:
            raise AssertionError(f"read {len(events)} rows, expected {size}")
    return Sample(events=size * scale.w4_reads, seconds=time.perf_counter() - start)


def w5(conn: sqlite3.Connection, scale: Scale) -> Sample:
    """Keyset-paginated ``SELECT ... WHERE position > ?`` plus JSON decoding."""
    total, page = scale.w5_events, scale.w5_page
    _fill(conn, total, SEED_BATCH, "log")
    start = time.perf_counter()
    count, last = 0, 0
    while True:
        events = decode(conn.execute(SELECT_PAGE, (last, page)).fetchall())
        count += len(events)
        if len(events) < page:
            break
        last = events[-1][0]
    seconds = time.perf_counter() - start
    if count != total:
        raise AssertionError(f"read {count} rows, expected {total}")
    return Sample(events=count, seconds=seconds)


def _writers(path: Path, scale: Scale, written: list[bytes]) -> float:
    """W6 writers: one thread and one connection each, one transaction per INSERT."""
    conns = [connect(path) for _ in range(scale.w6_writers)]
    ready = threading.Barrier(len(conns) + 1)
    errors: list[BaseException] = []

    def writer(w: int, conn: sqlite3.Connection) -> None:
        ready.wait()
        try:
            for i in range(scale.w6_appends_per_writer):
                values = row(f"writer-{w}", i, i)
                conn.execute(INSERT, values)
                written.append(values[0])
        except BaseException as exc:  # reported by the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w, c)) for w, c in enumerate(conns)]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    for conn in conns:
        conn.close()
    if errors:
        raise errors[0]
    return seconds


def w6(path: Path, scale: Scale) -> Sample:
    """8 threads, each its own connection, autocommitted single-row INSERTs."""
    written: list[bytes] = []
    seconds = _writers(path, scale, written)
    return Sample(events=len(written), seconds=seconds)


def w6t(path: Path, scale: Scale) -> Sample:
    """W6 plus a naive reader polling ``WHERE position > last``: what does it miss?"""
    seen: list[bytes] = []
    stop = threading.Event()
    reader = threading.Thread(target=_naive_reader, args=(path, seen, stop))
    reader.start()
    written: list[bytes] = []
    try:
        seconds = _writers(path, scale, written)
    finally:
        stop.set()
        reader.join()
    return Sample(
        events=len(written),
        seconds=seconds,
        missed=len(set(written) - set(seen)),
        duplicates=len(seen) - len(set(seen)),
    )


def _naive_reader(path: Path, seen: list[bytes], stop: threading.Event) -> None:
    conn = connect(path)
    last = 0
    try:
        while True:
            stopping = stop.is_set()  # read once more after the writers are done
            rows = conn.execute(SELECT_NEW_IDS, (last,)).fetchall()
            seen.extend(r[1] for r in rows)
            last = rows[-1][0] if rows else last
            if stopping and not rows:
                return
            if not rows:
                time.sleep(0.001)
    finally:
        conn.close()


ON_CONNECTION: dict[str, Callable[[sqlite3.Connection, Scale], Sample]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
}
ON_PATH: dict[str, Callable[[Path, Scale], Sample]] = {"W6": w6, "W6t": w6t}


def run_raw_sqlite(workload: str, path: Path, scale: Scale) -> Sample:
    """Create the table in a fresh database file at ``path`` and run one workload."""
    conn = connect(path)
    try:
        conn.execute(SCHEMA)
        if workload in ON_PATH:
            return ON_PATH[workload](path, scale)
        return ON_CONNECTION[workload](conn, scale)
    finally:
        conn.close()
