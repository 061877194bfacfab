"""Reads on one SQLite connection: stream reads, global reads with filters, stream info.

Plain functions of a connection, run by a reader thread (or by the writer, inside its
transaction, for append conditions). Errors are translated by the caller.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from kronika.domain.events import ANY, RecordedEvent, StreamInfo
from kronika.errors import StreamNotFound
from kronika.store.base import GlobalFilter, check_stream_expectation
from kronika.store.listing import StreamSelection
from kronika.store.sqlite.rows import EventRow, StreamRow, decode_events
from kronika.store.sqlite.sql import QUERIES

__all__ = [
    "filtered_rows",
    "head_position",
    "list_streams",
    "read_all",
    "read_stream",
    "select_stream",
    "snapshot",
    "stream_info",
]

FIRST_WINDOW = 4_096
"""Positions scanned by the first query of a filtered read."""
LARGEST_WINDOW = 1 << 22
"""Windows grow (x4) up to this many positions while matches are sparse."""
_NO_LIMIT = -1
DENSE_SHARE = 4
"""A window in which at least one position in this many matched is *dense*: the next
window of the same filters is read by position, checking every row, which costs less than
an index lookup per match once most rows match (a projection catching up, typically)."""
_DENSE_REMEMBERED = 1_024
_dense: dict[tuple[str, GlobalFilter], bool] = {}
"""Whether the last window of these filters was dense. Only the plan depends on it, never
the result, so a lost or stale entry costs speed only (and threads may share it)."""


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block's queries in one read transaction, so they see one snapshot."""
    conn.execute(QUERIES["begin_deferred"])
    try:
        yield
    finally:
        conn.execute(QUERIES["rollback"])


def select_stream(conn: sqlite3.Connection, namespace: str, stream: str) -> StreamRow | None:
    """The stream's row, or ``None``."""
    params = {"namespace": namespace, "stream": stream}
    return StreamRow.from_row(conn.execute(QUERIES["select_stream"], params).fetchone())


def stream_info(conn: sqlite3.Connection, namespace: str, stream: str) -> StreamInfo:
    """The stream's info; ``StreamNotFound`` if it never existed."""
    row = select_stream(conn, namespace, stream)
    if row is None:
        raise StreamNotFound(stream)
    return row.info(stream)


def list_streams(
    conn: sqlite3.Connection, namespace: str, selection: StreamSelection
) -> list[StreamInfo]:
    """The streams ``selection`` picks, in name order."""
    params = {
        "namespace": namespace,
        "low": selection.start,
        "high": selection.high,
        "category": selection.category,
        "limit": _NO_LIMIT if selection.limit is None else selection.limit,
    }
    rows = conn.execute(QUERIES["list_streams"], params).fetchall()
    return [_stream_row(row[1:]).info(row[0]) for row in rows]


def _stream_row(values: tuple[Any, ...]) -> StreamRow:
    row = StreamRow.from_row(values)
    assert row is not None
    return row


def head_position(conn: sqlite3.Connection, namespace: str) -> int:
    """Position of the newest event of the namespace (0 if none)."""
    row = conn.execute(QUERIES["head_position"], {"namespace": namespace}).fetchone()
    return int(row[0] or 0)


def read_stream(
    conn: sqlite3.Connection,
    namespace: str,
    stream: str,
    *,
    from_version: int | None,
    backwards: bool,
    limit: int | None,
) -> list[RecordedEvent]:
    """A stream's events, honouring its ``max_count`` and ``max_age``."""
    with snapshot(conn):
        row = select_stream(conn, namespace, stream)
        if row is None:
            return []
        check_stream_expectation(stream, ANY, row.version, row.state)
        if row.version is None:
            return []
        rows = _stream_rows(
            conn,
            namespace,
            stream,
            row,
            from_version=from_version,
            backwards=backwards,
            limit=limit,
        )
        return decode_events(rows)


def _stream_rows(
    conn: sqlite3.Connection,
    namespace: str,
    stream: str,
    row: StreamRow,
    *,
    from_version: int | None,
    backwards: bool,
    limit: int | None,
) -> list[EventRow]:
    assert row.version is not None
    low = 0 if row.max_count is None else row.version - row.max_count + 1
    params: dict[str, Any] = {
        "namespace": namespace,
        "stream": stream,
        "recorded_since": _recorded_since(row.max_age),
        "limit": _NO_LIMIT if limit is None else limit,
    }
    if backwards:
        params.update(low=low, high=row.version if from_version is None else from_version)
        return conn.execute(QUERIES["read_stream_backwards"], params).fetchall()
    params.update(low=max(low, from_version or 0))
    return conn.execute(QUERIES["read_stream_forwards"], params).fetchall()


def _recorded_since(max_age: float | None) -> int:
    """The oldest ``recorded_at`` (µs) a stream read returns."""
    if max_age is None:
        return _NO_LIMIT
    return math.ceil((time.time() - max_age) * 1_000_000)


def read_all(
    conn: sqlite3.Connection,
    namespace: str,
    from_position: int,
    limit: int | None,
    filters: GlobalFilter,
) -> list[RecordedEvent]:
    """Events of the global log from ``from_position`` (inclusive) that pass ``filters``."""
    filters = _normalised(filters)
    if filters.empty:
        params = {
            "namespace": namespace,
            "from_position": from_position,
            "limit": _NO_LIMIT if limit is None else limit,
        }
        return decode_events(conn.execute(QUERIES["read_all"], params))
    with snapshot(conn):
        return decode_events(filtered_rows(conn, namespace, from_position, limit, filters))


def filtered_rows(
    conn: sqlite3.Connection,
    namespace: str,
    from_position: int,
    limit: int | None,
    filters: GlobalFilter,
) -> list[EventRow]:
    """Matching rows from ``from_position``, scanning widening windows of positions."""
    head = head_position(conn, namespace)
    filters = _normalised(filters)
    indexed, params = _filter_query(namespace, filters)
    scannable = filters.types is not None or filters.categories is not None
    memo = (namespace, filters)
    dense = scannable and _dense.get(memo, False)
    rows: list[EventRow] = []
    low, size = max(from_position, 1), FIRST_WINDOW
    while low <= head and (limit is None or len(rows) < limit):
        wanted = _NO_LIMIT if limit is None else limit - len(rows)
        params.update(low=low, high=low + size - 1, limit=wanted)
        found = conn.execute(_SCAN if dense else indexed, params).fetchall()
        rows.extend(found)
        complete = wanted == _NO_LIMIT or len(found) < wanted  # the whole window was read
        span = size if complete else found[-1][0] - low + 1
        dense = scannable and len(found) * DENSE_SHARE >= span
        low += size
        if complete:
            size = min(size * 4, LARGEST_WINDOW)
    if scannable:
        if len(_dense) >= _DENSE_REMEMBERED:
            _dense.clear()
        _dense[memo] = dense
    return rows


_SCAN = QUERIES["read_window_scan"]


def _normalised(filters: GlobalFilter) -> GlobalFilter:
    """An empty tag list restricts nothing (every event carries all of no tags)."""
    if filters.tags == ():
        return GlobalFilter(filters.types, filters.categories, None)
    return filters


def _filter_query(namespace: str, filters: GlobalFilter) -> tuple[str, dict[str, Any]]:
    """The query that answers ``filters`` from the most selective index, and its parameters."""
    params: dict[str, Any] = {
        "namespace": namespace,
        "types": _json_list(filters.types),
        "categories": _json_list(filters.categories),
        "tags": _json_list(filters.tags),
        "tag_count": len(set(filters.tags or ())),
    }
    if filters.types is not None:
        return QUERIES["read_window_by_types"], params
    if filters.categories is not None:
        return QUERIES["read_window_by_categories"], params
    return QUERIES["read_window_by_tags"], params


def _json_list(values: tuple[str, ...] | None) -> str | None:
    return None if values is None else orjson.dumps(values).decode()
