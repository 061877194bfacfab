"""The write operations the writer thread runs: append, delete, truncate, stream settings.

Each follows the memory backend's semantics exactly (it is the reference).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from kronika.domain.events import (
    ANY,
    AppendCondition,
    AppendResult,
    MultiAppendResult,
    RecordedEvent,
    StreamInfo,
    StreamState,
    category_of,
)
from kronika.errors import (
    ConcurrencyError,
    ConditionFailed,
    StreamDeleted,
    StreamNotFound,
)
from kronika.store.base import (
    GlobalFilter,
    PreparedAppend,
    check_stream_expectation,
    encode_json,
    resolve_multi_retry,
)
from kronika.store.integrity import append_digests, chain
from kronika.store.sqlite.inline import stored_events
from kronika.store.sqlite.reads import filtered_rows, select_stream
from kronika.store.sqlite.rows import StreamRow, decode_events, encode_tags
from kronika.store.sqlite.sql import QUERIES
from kronika.store.sqlite.transaction import Transaction, WriteOp

__all__ = ["AppendOp", "DeleteOp", "SettingsOp", "TruncateOp", "require_stream"]

_INSERT_EVENT, _INSERT_TAG = QUERIES["insert_event"], QUERIES["insert_event_tag"]
_SAVE_VERSION = QUERIES["save_stream_version"]

_STREAMS = "streams"
"""Cache key prefix of stream rows in ``Transaction.cache``."""

_RETRYABLE = (ConcurrencyError, StreamDeleted, ConditionFailed, sqlite3.IntegrityError)
"""Failures that a retried append (its events stored already) would also meet."""


class AppendOp(WriteOp[MultiAppendResult]):
    """Append to one or more streams, all or nothing.

    Checks run first and the ids are looked up only if something fails: an append whose
    events are all stored already is a retry (it returns the first result), which is what
    looking the ids up first would also find, without a query on the happy path. Appends
    without a condition or check-only streams are batchable: their rows are deferred, and
    the stream rows they change are kept in the transaction's cache for later requests.
    """

    def __init__(
        self, namespace: str, appends: list[PreparedAppend], condition: AppendCondition | None
    ) -> None:
        self.namespace = namespace
        self.appends = appends
        self.condition = condition
        self.digests = [append_digests(a) for a in appends]
        """Each part's content digests, computed on the caller's event loop."""
        self.weight = max(1, sum(len(a.events) for a in appends))
        self.defers_only = True
        self.batchable = condition is None and all(a.events for a in appends)

    def run(self, tx: Transaction) -> MultiAppendResult:
        rows = [self._stream(tx, a.stream) for a in self.appends]
        for append, row in zip(self.appends, rows, strict=True):
            version, state = (None, None) if row is None else (row.version, row.state)
            check_stream_expectation(append.stream, append.expected, version, state)
        if self.condition is not None:
            verify_condition(tx.conn, self.namespace, self.condition)
        results: dict[str, AppendResult] = {}
        position = 0
        for append, row, digests in zip(self.appends, rows, self.digests, strict=True):
            if append.events:
                results[append.stream] = self._write(tx, append, row, digests)
                position = max(position, results[append.stream].position)
            else:
                results[append.stream] = self._check_only(tx.conn, append.stream, row)
        return MultiAppendResult(streams=results, position=position)

    def _stream(self, tx: Transaction, stream: str) -> StreamRow | None:
        key = (_STREAMS, self.namespace, stream)
        if key not in tx.cache:
            tx.cache[key] = select_stream(tx.conn, self.namespace, stream)
        row: StreamRow | None = tx.cache[key]
        return row

    def _write(
        self, tx: Transaction, append: PreparedAppend, row: StreamRow | None, digests: list[bytes]
    ) -> AppendResult:
        events, namespace, stream = append.events, self.namespace, append.stream
        version = -1 if row is None or row.version is None else row.version
        hashes = chain(None if row is None else row.hash, digests)
        first = tx.allocate(len(events))
        category, now = category_of(stream), time.time_ns() // 1000
        tx.defer(
            _INSERT_EVENT,
            [
                (first + i, namespace, stream, category, version + 1 + i, e.id.bytes, e.type,
                 e.data, e.metadata, encode_tags(e.tags), e.correlation_id, now, hashes[i])
                for i, e in enumerate(events)
            ],
        )  # fmt: skip
        tags = [
            (namespace, tag, first + i)
            for i, e in enumerate(events)
            if e.tags
            for tag in dict.fromkeys(e.tags)
        ]
        if tags:
            tx.defer(_INSERT_TAG, tags)
        if tx.inline is not None and tx.inline.wants_any(e.type for e in events):
            tx.pending.extend(stored_events(append, first, version + 1, now, tx.inline))
        version += len(events)
        tx.defer(_SAVE_VERSION, [(namespace, stream, version, hashes[-1])])
        tx.cache[(_STREAMS, namespace, stream)] = _appended(row, version, hashes[-1])
        tx.wrote_events = True
        return AppendResult(version, first + len(events) - 1)

    def _check_only(
        self, conn: sqlite3.Connection, stream: str, row: StreamRow | None
    ) -> AppendResult:
        version = None
        if row is not None and row.state is StreamState.ACTIVE:
            version = row.version
        found = conn.execute(
            QUERIES["stream_last_position"], {"namespace": self.namespace, "stream": stream}
        ).fetchone()
        return AppendResult(-1 if version is None else version, found[0] if found else 0)

    def recover(self, tx: Transaction, error: Exception) -> MultiAppendResult:
        if not isinstance(error, _RETRYABLE):
            raise error
        results = resolve_multi_retry(
            self.appends, [self._stored(tx.conn, a) for a in self.appends]
        )
        if results is None:
            raise error
        for append in self.appends:
            if not append.events:
                row = self._stream(tx, append.stream)
                results[append.stream] = self._check_only(tx.conn, append.stream, row)
        streams = {a.stream: results[a.stream] for a in self.appends}
        return MultiAppendResult(
            streams=streams, position=max(r.position for r in results.values())
        )

    def _stored(self, conn: sqlite3.Connection, append: PreparedAppend) -> list[RecordedEvent]:
        query, namespace = QUERIES["select_event_by_id"], self.namespace
        rows = [
            row
            for e in append.events
            for row in conn.execute(query, {"namespace": namespace, "id": e.id.bytes})
        ]
        return decode_events(rows)


def _appended(row: StreamRow | None, version: int, head: bytes) -> StreamRow:
    """The stream row after an append brought it to ``version`` and its chain to ``head``."""
    if row is None:
        return StreamRow(version, StreamState.ACTIVE, 0, None, None, b"{}", head)
    return StreamRow(
        version,
        StreamState.ACTIVE,
        row.truncated_before,
        row.max_age,
        row.max_count,
        row.metadata,
        head,
    )


def verify_condition(conn: sqlite3.Connection, namespace: str, condition: AppendCondition) -> None:
    """Raise ``ConditionFailed`` if an event after ``condition.after`` matches it."""
    filters = GlobalFilter(types=tuple(condition.types) or None, tags=tuple(condition.tags) or None)
    found = decode_events(filtered_rows(conn, namespace, condition.after + 1, 1, filters))
    if found:
        event = found[0]
        raise ConditionFailed(
            f"event {event.id} ({event.type}) at position {event.position} matches the condition",
            position=event.position,
        )


def require_stream(conn: sqlite3.Connection, namespace: str, stream: str) -> StreamRow:
    """The stream's row; ``StreamNotFound`` if it never existed, ``StreamDeleted`` if tombstoned."""
    row = select_stream(conn, namespace, stream)
    if row is None:
        raise StreamNotFound(stream)
    check_stream_expectation(stream, ANY, row.version, row.state)
    return row


def _forget(
    conn: sqlite3.Connection, namespace: str, stream: str, before: int, state: StreamState
) -> None:
    """Physically delete the stream's events below ``before`` and set its state.

    The documented purge path of the hash chains: it keeps the chain hash of the last
    event it removes as the stream's anchor, deletes the global chain's checkpoints from
    the lowest position it removes, and counts the purge (see kronika.store.integrity).
    """
    params: dict[str, Any] = {"namespace": namespace, "stream": stream}
    if before > 0:
        purge = {**params, "before_version": before}
        conn.execute(QUERIES["anchor_stream"], purge)
        conn.execute(QUERIES["drop_purged_checkpoints"], purge)
        if conn.execute(QUERIES["delete_stream_events"], purge).rowcount:
            now = time.time_ns() // 1000
            conn.execute(QUERIES["count_purge"], {"namespace": namespace, "now": now})
    marks = {**params, "before_version": max(before, 0), "state": state.value}
    conn.execute(QUERIES["mark_stream"], marks)


class DeleteOp(WriteOp[None]):
    """Soft-delete (versions continue on recreate) or tombstone a stream, and its snapshot."""

    def __init__(self, namespace: str, stream: str, *, hard: bool) -> None:
        self.namespace, self.stream, self.hard = namespace, stream, hard

    def run(self, tx: Transaction) -> None:
        params = {"namespace": self.namespace, "stream": self.stream}
        row = select_stream(tx.conn, self.namespace, self.stream)
        if row is None and not self.hard:
            raise StreamNotFound(self.stream)
        if row is None:
            tx.conn.execute(QUERIES["insert_tombstone"], params)
            return
        check_stream_expectation(self.stream, ANY, row.version, row.state)
        state = StreamState.TOMBSTONED if self.hard else StreamState.DELETED
        before = -1 if row.version is None else row.version + 1
        _forget(tx.conn, self.namespace, self.stream, before, state)
        tx.conn.execute(QUERIES["delete_snapshot"], params)


class TruncateOp(WriteOp[None]):
    """Remove a stream's events below a version."""

    def __init__(self, namespace: str, stream: str, before_version: int) -> None:
        self.namespace, self.stream, self.before_version = namespace, stream, before_version

    def run(self, tx: Transaction) -> None:
        row = require_stream(tx.conn, self.namespace, self.stream)
        _forget(tx.conn, self.namespace, self.stream, self.before_version, row.state)


class SettingsOp(WriteOp[StreamInfo]):
    """Replace a stream's retention limits and metadata (creating its row if needed)."""

    def __init__(
        self,
        namespace: str,
        stream: str,
        max_age: float | None,
        max_count: int | None,
        metadata: dict[str, Any],
    ) -> None:
        self.namespace, self.stream = namespace, stream
        self.max_age, self.max_count, self.metadata = max_age, max_count, metadata

    def run(self, tx: Transaction) -> StreamInfo:
        row = select_stream(tx.conn, self.namespace, self.stream)
        if row is not None:
            check_stream_expectation(self.stream, ANY, row.version, row.state)
        params = {
            "namespace": self.namespace,
            "stream": self.stream,
            "max_age": self.max_age,
            "max_count": self.max_count,
            "metadata": encode_json(self.metadata, "metadata"),
        }
        tx.conn.execute(QUERIES["save_stream_settings"], params)
        saved = select_stream(tx.conn, self.namespace, self.stream)
        assert saved is not None
        return saved.info(self.stream)
