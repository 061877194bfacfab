"""Inline projections on PostgreSQL: the append and the handlers' writes in one transaction.

An append whose events no inline projection wants keeps the one-statement autocommit path.
Otherwise it runs in an explicit transaction on its pooled connection: ``append_inline``
(the append plus ``now()``, the events' ``recorded_at``), the handlers (synchronous, on the
event loop) with their writes buffered in a :class:`PostgresInlineOutput`, the buffer sent
(one ``executemany`` per run of one statement), then ``COMMIT``. Any failure rolls all of
it back. A retry whose events are stored already writes nothing and runs no handler.

A rebuild takes ``LOCK TABLE streams IN SHARE MODE``: every append that writes events
inserts or updates its stream's row, so appends wait until the rebuild commits, while
reads go on. (Plain appends do not take the advisory *bulk* key, see :mod:`.appends`, so
it would not stop them.) Registration serialises on an advisory key of its own, so two
processes opening at once do not race on ``CREATE TABLE IF NOT EXISTS``; a table that
exists is not created again (that needs the CREATE privilege even then, which a runtime
role usually lacks: the owner creates the tables once, e.g. by a first open or a rebuild).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import AsyncCursor, sql

from kronika.domain.events import RecordedEvent
from kronika.errors import ConfigurationError, NotFound
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
    failure,
    sorted_types,
    unseen_types,
)
from kronika.store.postgres.appends import lock_key
from kronika.store.postgres.database import Connection, Database, RawJson
from kronika.store.postgres.errors import describe
from kronika.store.postgres.queries import Queries, render
from kronika.store.postgres.rows import event_rows
from kronika.store.sqlfiles import load_queries

__all__ = ["PostgresInline", "PostgresInlineOutput", "stored_events"]

_TEXTS = load_queries("kronika.store.postgres", "inline.sql")

_Source = tuple[str, RecordedEvent]
"""The projection and event a buffered write was made for (to name them if it fails)."""


class PostgresInlineOutput(InlineOutput):
    """Buffers the handlers' writes of one append (or rebuild batch) until :meth:`flush`."""

    def __init__(self) -> None:
        self.documents: dict[tuple[str, str], tuple[RawJson | None, _Source]] = {}
        """(collection, key) -> the document's JSON (None: delete); the last write wins."""
        self.writes: list[tuple[str, Params, _Source]] = []
        """The handlers' SQL writes, in order."""

    def _source(self) -> _Source:
        assert self.event is not None
        return self.projection, self.event

    def write(self, sql: str, params: Params) -> None:
        check_statement(sql)
        if not params:
            raise ConfigurationError("write() takes parameters (PostgreSQL sends them batched)")
        self.writes.append((sql, params, self._source()))

    def put_document(self, collection: str, key: str, value: dict[str, Any]) -> None:
        data = RawJson(encode_json(value, "document"))
        self.documents[collection, key] = (data, self._source())

    def delete_document(self, collection: str, key: str) -> None:
        self.documents[collection, key] = (None, self._source())

    async def flush(self, cur: AsyncCursor[Any], queries: Queries, namespace: str) -> None:
        """Send the buffered writes: documents, then SQL in order, each run of one statement
        in one ``executemany``. A failing write raises ``InlineProjectionFailed`` naming the
        projection and (the first) event it was written for."""
        documents, self.documents = self.documents, {}
        puts = [(_key(namespace, c, k, d), s) for (c, k), (d, s) in documents.items() if d]
        deletes = [(_key(namespace, c, k), s) for (c, k), (d, s) in documents.items() if not d]
        for query, batch in ((queries.put_document, puts), (queries.delete_document, deletes)):
            if batch:
                await _send(cur, query, [params for params, _ in batch], batch[0][1])
        writes, self.writes = self.writes, []
        start = 0
        while start < len(writes):
            statement, end = writes[start][0], start + 1
            while end < len(writes) and writes[end][0] == statement:
                end += 1
            rows = [params for _, params, _ in writes[start:end]]
            await _send(cur, statement, rows, writes[start][2])
            start = end


def _key(namespace: str, collection: str, key: str, data: RawJson | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"namespace": namespace, "collection": collection, "key": key}
    if data is not None:
        params["data"] = data
    return params


async def _send(
    cur: AsyncCursor[Any], query: str | bytes, rows: Sequence[Params], source: _Source
) -> None:
    try:
        await cur.executemany(query, rows)
    except psycopg.OperationalError:
        raise  # the connection, not the projection: translated as Unavailable
    except psycopg.Error as exc:
        projection, event = source
        raise failure(projection, event, exc, f"PostgreSQL: {describe(exc)}") from exc


def stored_events(
    appends: Sequence[PreparedAppend], row: Sequence[Any], inline: InlineHandlers
) -> list[RecordedEvent]:
    """The events handlers want, as ``append_inline`` stored them: each part's last version
    and position are in the row, its events are consecutive, ``row[3]`` is the time."""
    versions, positions, at = row[0], row[1], row[3]
    make, events = RecordedEvent.from_row, []
    for append, last_version, last_position in zip(appends, versions, positions, strict=True):
        count = len(append.events)
        for i, e in enumerate(append.events):
            if inline.wants(e.type):
                back = count - 1 - i
                events.append(
                    make(e.id, append.stream, last_version - back, last_position - back, e.type,
                         decode_json(e.data), decode_json(e.metadata), e.tags, at)
                )  # fmt: skip
    return events


def _record(row: Sequence[Any]) -> InlineRecord:
    name, types, registered_at, position, needs, rebuilt_at, rebuilt_position = row
    return InlineRecord(
        name=name,
        types=None if types is None else tuple(types),
        registered_at=registered_at,
        registered_position=position,
        needs_rebuild=needs,
        rebuilt_at=rebuilt_at,
        rebuilt_position=rebuilt_position,
    )


class PostgresInline:
    """A store's inline projections in its PostgreSQL schema and namespace."""

    def __init__(self, db: Database, queries: Queries, schema: str, namespace: str) -> None:
        self._db = db
        self._queries = queries
        self._namespace = namespace
        self._q = {name: render(text, schema) for name, text in _TEXTS.items()}
        self._lock = lock_key(f"{schema}\x00{namespace}", "inline", "")

    # -- appends ------------------------------------------------------------------------

    async def append(
        self,
        conn: Connection,
        appends: Sequence[PreparedAppend],
        params: dict[str, Any],
        inline: InlineHandlers,
    ) -> tuple[Any, ...] | None:
        """The append and the handlers' writes in one transaction; the append's row."""
        async with conn.transaction():
            cur = conn.cursor()
            await cur.execute(self._q["append_inline"], params, prepare=True)
            row: tuple[Any, ...] | None = await cur.fetchone()
            if row is not None and not row[2]:  # not a retry: the events were written
                output = PostgresInlineOutput()
                inline.run(stored_events(appends, row, inline), output)
                await output.flush(cur, self._queries, self._namespace)
            return row

    # -- records --------------------------------------------------------------------------

    async def records(self) -> list[InlineRecord]:
        """Every inline projection recorded in the namespace, by name."""
        async with self._db.connection() as conn:
            cur = await conn.execute(self._q["inline_records"], {"namespace": self._namespace})
            return [_record(row) for row in await cur.fetchall()]

    async def register(self, inline: InlineHandlers) -> list[InlineRecord]:
        """Create each handler's tables and keep its record; every record of the namespace."""
        async with self._db.transaction() as conn:
            for handler in inline.handlers:
                await self._register(conn, handler)
        return await self.records()

    async def _register(self, conn: Connection, handler: InlineHandler) -> None:
        await conn.execute(self._q["lock_registration"], {"key": self._lock})
        for table, ddl in ddl_for(handler):
            cur = await conn.execute(self._q["table_exists"], {"table": table})
            exists = await cur.fetchone()
            if not (exists and exists[0]):
                await conn.execute(ddl)  # sql-static: allow the projection's own DDL
        params: dict[str, Any] = {"namespace": self._namespace, "name": handler.name}
        cur = await conn.execute(self._q["inline_record"], params)
        found = await cur.fetchone()
        record = None if found is None else _record(found)
        types = sorted_types(handler)
        if record is not None and record.types == types:
            return
        params.update(
            types=None if types is None else list(types),
            needs_rebuild=await self._unseen(conn, record, handler),
        )
        if record is None:
            cur = await conn.execute(self._q["stored_head"], {"namespace": self._namespace})
            head = await cur.fetchone()
            params["position"] = head[0] if head else 0
            await conn.execute(self._q["insert_inline_record"], params)
        else:
            await conn.execute(self._q["update_inline_types"], params)

    async def _unseen(
        self, conn: Connection, record: InlineRecord | None, handler: InlineHandler
    ) -> bool:
        unseen = unseen_types(record, handler)
        if unseen is None:
            return False
        types, inside = unseen
        params = {
            "namespace": self._namespace,
            "types": None if types is None else list(types),
            "inside": inside,
        }
        cur = await conn.execute(self._q["events_exist"], params)
        found = await cur.fetchone()
        return bool(found and found[0])

    async def drop(self, name: str) -> None:
        """Forget a projection's record; ``NotFound`` if there is none."""
        params = {"namespace": self._namespace, "name": name}
        async with self._db.connection() as conn:
            cur = await conn.execute(self._q["delete_inline_record"], params)
            if cur.rowcount == 0:
                raise NotFound(f"no inline projection {name!r} is recorded in this store")

    # -- rebuilds -------------------------------------------------------------------------

    async def rebuild(self, handler: InlineHandler) -> InlineRecord:
        """Empty the handler's tables and collections and apply every event of its types
        again, in position order, in one transaction that makes appends wait."""
        params: dict[str, Any] = {"namespace": self._namespace, "name": handler.name}
        async with self._db.transaction() as conn:
            await conn.execute(self._q["lock_appends"])
            await self._register(conn, handler)
            await self._empty(conn, handler)
            await self._apply_all(conn, handler)
            cur = await conn.execute(self._q["stored_head"], {"namespace": self._namespace})
            head = await cur.fetchone()
            params["position"] = head[0] if head else 0
            await conn.execute(self._q["record_inline_rebuild"], params)
            cur = await conn.execute(self._q["inline_record"], params)
            found = await cur.fetchone()
        assert found is not None
        return _record(found)

    async def _empty(self, conn: Connection, handler: InlineHandler) -> None:
        for table, _ in ddl_for(handler):
            await conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        for collection in handler.collections:
            params = {"namespace": self._namespace, "collection": collection}
            await conn.execute(self._queries.clear_documents, params)

    async def _apply_all(self, conn: Connection, handler: InlineHandler) -> None:
        types = sorted_types(handler)
        params: dict[str, Any] = {
            "namespace": self._namespace,
            "types": None if types is None else list(types),
            "from_position": 0,
            "limit": REBUILD_BATCH,
        }
        reader = conn.cursor(row_factory=event_rows)
        writer = conn.cursor()
        while True:
            await reader.execute(self._q["rebuild_events"], params)
            events = await reader.fetchall()
            output = PostgresInlineOutput()
            for event in events:
                apply_one(handler, event, output)
            await output.flush(writer, self._queries, self._namespace)
            if len(events) < REBUILD_BATCH:
                return
            params["from_position"] = events[-1].position + 1
