"""Inline projections on SQLite: handlers run on the writer's connection, in its transaction.

An append's events are inserted, then (still inside the group's transaction, in the
append's savepoint when it runs alone) every handler that wants them writes through
:class:`SQLiteInlineOutput`, directly on the writer's connection. A failing handler undoes
only its own append (see :mod:`.writer`). Registration, rebuilds and dropping a record are
write operations too, so a rebuild holds the writer: appends queue behind it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from kronika.domain.events import RecordedEvent
from kronika.errors import NotFound
from kronika.store.base import PreparedAppend, decode_json, encode_json
from kronika.store.inline import (
    REBUILD_BATCH,
    InlineHandler,
    InlineHandlers,
    InlineOutput,
    InlineRecord,
    Params,
    apply_one,
    check_statement,
    ddl_for,
    sorted_types,
    unseen_types,
)
from kronika.store.sqlfiles import load_queries
from kronika.store.sqlite.processing_rows import now_micros
from kronika.store.sqlite.rows import decode_events
from kronika.store.sqlite.sql import QUERIES
from kronika.store.sqlite.transaction import Transaction, WriteOp

__all__ = [
    "DropInlineOp",
    "RebuildInlineOp",
    "RegisterInlineOp",
    "SQLiteInlineOutput",
    "read_records",
    "stored_events",
]

INLINE: dict[str, str] = load_queries("kronika.store.sqlite", "inline.sql")
"""The queries of ``inline.sql``."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SQLiteInlineOutput(InlineOutput):
    """Writes of inline handlers, run at once on the writer's connection."""

    def __init__(self, conn: sqlite3.Connection, namespace: str) -> None:
        self._conn = conn
        self._namespace = namespace

    def write(self, sql: str, params: Params) -> None:
        check_statement(sql)
        self._conn.execute(sql, params)

    def put_document(self, collection: str, key: str, value: dict[str, Any]) -> None:
        data = encode_json(value, "document").decode()
        self._conn.execute(QUERIES["save_document"], self._key(collection, key, data=data))

    def delete_document(self, collection: str, key: str) -> None:
        self._conn.execute(QUERIES["delete_document"], self._key(collection, key))

    def _key(self, collection: str, key: str, **more: Any) -> dict[str, Any]:
        return {"namespace": self._namespace, "collection": collection, "key": key, **more}


def stored_events(
    append: PreparedAppend, first: int, version: int, micros: int, inline: InlineHandlers
) -> list[RecordedEvent]:
    """The events of ``append`` that handlers want, as they are stored: the first at global
    ``first`` and stream version ``version``, recorded at ``micros``."""
    at = _EPOCH + timedelta(microseconds=micros)
    stream, make = append.stream, RecordedEvent.from_row
    return [
        make(e.id, stream, version + i, first + i, e.type, decode_json(e.data),
             decode_json(e.metadata), e.tags, at)
        for i, e in enumerate(append.events)
        if inline.wants(e.type)
    ]  # fmt: skip


# -- records --------------------------------------------------------------------------------


def _time(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


def _record(row: tuple[Any, ...]) -> InlineRecord:
    name, types, registered_at, position, needs, rebuilt_at, rebuilt_position = row
    registered = _time(registered_at)
    assert registered is not None
    return InlineRecord(
        name=name,
        types=None if types is None else tuple(orjson.loads(types)),
        registered_at=registered,
        registered_position=position,
        needs_rebuild=bool(needs),
        rebuilt_at=_time(rebuilt_at),
        rebuilt_position=rebuilt_position,
    )


def read_records(conn: sqlite3.Connection, namespace: str) -> list[InlineRecord]:
    """Every inline projection recorded in ``namespace``, by name."""
    rows = conn.execute(INLINE["inline_records"], {"namespace": namespace}).fetchall()
    return [_record(row) for row in rows]


def _read_record(conn: sqlite3.Connection, namespace: str, name: str) -> InlineRecord | None:
    row = conn.execute(INLINE["inline_record"], {"namespace": namespace, "name": name}).fetchone()
    return None if row is None else _record(row)


def _types_json(types: tuple[str, ...] | None) -> str | None:
    return None if types is None else orjson.dumps(types).decode()


def _head(conn: sqlite3.Connection, namespace: str) -> int:
    row = conn.execute(QUERIES["head_position"], {"namespace": namespace}).fetchone()
    return int(row[0] or 0)


def _unseen(
    conn: sqlite3.Connection, namespace: str, record: InlineRecord | None, handler: InlineHandler
) -> bool:
    """Whether events are stored that the handler handles now but did not when ``record``
    was kept (a new projection has handled nothing yet)."""
    unseen = unseen_types(record, handler)
    if unseen is None:
        return False
    types, inside = unseen
    params = {"namespace": namespace, "types": _types_json(types), "inside": int(inside)}
    return bool(conn.execute(INLINE["events_exist"], params).fetchone()[0])


def _register(conn: sqlite3.Connection, namespace: str, handler: InlineHandler) -> None:
    """Create the handler's tables and keep (or update) its record."""
    for _, ddl in ddl_for(handler):
        conn.execute(ddl)
    record = _read_record(conn, namespace, handler.name)
    types = sorted_types(handler)
    if record is not None and record.types == types:
        return
    params = {
        "namespace": namespace,
        "name": handler.name,
        "types": _types_json(types),
        "needs_rebuild": int(_unseen(conn, namespace, record, handler)),
    }
    if record is None:
        params.update(now=now_micros(), position=_head(conn, namespace))
        conn.execute(INLINE["insert_inline_record"], params)
    else:
        conn.execute(INLINE["update_inline_types"], params)


class RegisterInlineOp(WriteOp[list[InlineRecord]]):
    """On open: create each handler's tables and record it; answer every record."""

    def __init__(self, namespace: str, handlers: InlineHandlers) -> None:
        self.namespace, self.handlers = namespace, handlers

    def run(self, tx: Transaction) -> list[InlineRecord]:
        for handler in self.handlers.handlers:
            _register(tx.conn, self.namespace, handler)
        return read_records(tx.conn, self.namespace)


class RebuildInlineOp(WriteOp[InlineRecord]):
    """Empty a projection's tables and collections and apply every event of its types again,
    in position order, in the writer's transaction (appends wait for it)."""

    def __init__(self, namespace: str, handler: InlineHandler) -> None:
        self.namespace, self.handler = namespace, handler

    def run(self, tx: Transaction) -> InlineRecord:
        conn, namespace, handler = tx.conn, self.namespace, self.handler
        _register(conn, namespace, handler)
        for table, _ in ddl_for(handler):
            conn.execute(f'DELETE FROM "{table}"')  # sql-static: allow checked identifier
        for collection in handler.collections:
            cleared = {"namespace": namespace, "collection": collection}
            conn.execute(INLINE["clear_inline_collection"], cleared)
        self._apply_all(conn)
        params: dict[str, Any] = {
            "namespace": namespace,
            "name": handler.name,
            "now": now_micros(),
            "position": _head(conn, namespace),
        }
        conn.execute(INLINE["record_inline_rebuild"], params)
        record = _read_record(conn, namespace, handler.name)
        assert record is not None
        return record

    def _apply_all(self, conn: sqlite3.Connection) -> None:
        output = SQLiteInlineOutput(conn, self.namespace)
        params: dict[str, Any] = {
            "namespace": self.namespace,
            "types": _types_json(sorted_types(self.handler)),
            "from_position": 0,
            "limit": REBUILD_BATCH,
        }
        while True:
            events = decode_events(conn.execute(INLINE["rebuild_events"], params).fetchall())
            for event in events:
                apply_one(self.handler, event, output)
            if len(events) < REBUILD_BATCH:
                return
            params["from_position"] = events[-1].position + 1


class DropInlineOp(WriteOp[None]):
    """Forget a projection's record; ``NotFound`` if there is none."""

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace, self.name = namespace, name

    def run(self, tx: Transaction) -> None:
        params = {"namespace": self.namespace, "name": self.name}
        if tx.conn.execute(INLINE["delete_inline_record"], params).rowcount == 0:
            raise NotFound(f"no inline projection {self.name!r} is recorded in this store")
