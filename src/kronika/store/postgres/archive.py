"""Backups of a PostgreSQL schema: a consistent export, restores, and the backups catalog.

The export reads every table in one ``REPEATABLE READ READ ONLY`` transaction on a
connection of its own, through server-side cursors: one snapshot of the whole schema,
while writers carry on (a read-only transaction takes no transaction id, so it does not
hold back the visibility horizon of global readers).

A restore runs in one transaction: ``COPY`` per table, the tag index rebuilt with one
``INSERT ... SELECT``, then ``kronika_position_offset()`` raised so that positions of new
events lie above every restored one (see :func:`_raise_offset`). Any error or interruption
rolls it all back. Restores run as the schema's owner: they replace a function.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from kronika.errors import ConflictError
from kronika.store.archive import (
    SECTIONS,
    BackupRecord,
    Converter,
    LoadPlan,
    Section,
    SectionRows,
    SourceInfo,
    TargetState,
    check_target,
    converting,
    time_of,
)
from kronika.store.postgres.database import Connection, Database
from kronika.store.postgres.errors import translated
from kronika.store.postgres.queries import Queries, render
from kronika.store.postgres.schema import apply_pending, check_usable, read_status
from kronika.store.sqlfiles import load_queries

__all__ = ["PostgresArchive"]

_STEP = 1 << 16
"""Positions are ``(transaction id << 16) | index``: offsets move in whole transactions."""

_TO_POSTGRES: dict[str, Converter] = {"time": time_of, "bytes": bytes.fromhex}
"""Per kind, what an archive value becomes for COPY (others go as they are: PostgreSQL
parses uuids from hex and JSON from text)."""


@functools.cache
def _texts() -> dict[str, str]:
    return load_queries(__package__ or "kronika.store.postgres", "archive.sql")


@functools.cache
def _queries(schema: str) -> dict[str, bytes]:
    """Every query of ``archive.sql`` rendered for ``schema`` (but set_position_offset)."""
    return {
        name: render(text, schema)
        for name, text in _texts().items()
        if name != "set_position_offset"
    }


def _set_offset_query(schema: str, offset: int) -> sql.Composed:
    """``set_position_offset`` with the offset as a literal (DDL takes no parameters)."""
    return sql.SQL(_texts()["set_position_offset"]).format(
        schema=sql.Identifier(schema), offset=sql.Literal(offset)
    )


def _import_converter(section: Section) -> Callable[[list[list[Any]]], list[list[Any]]]:
    """Convert a page of archive rows of ``section`` for COPY, in place."""
    return converting(
        [(i, _TO_POSTGRES[c.kind]) for i, c in enumerate(section.columns) if c.kind in _TO_POSTGRES]
    )


class _Source:
    """An open snapshot transaction: what a backup exports."""

    def __init__(self, conn: Connection, queries: dict[str, bytes], info: SourceInfo) -> None:
        self._conn = conn
        self._queries = queries
        self.info = info

    async def pages(self, section: Section, size: int) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """The section's rows in archive values, ``size`` at a time (a server-side cursor)."""
        with translated():
            async with self._conn.cursor(name=f"kronika_backup_{section.name}") as cursor:
                await cursor.execute(self._queries[f"export_{section.name}"])
                while rows := await cursor.fetchmany(size):
                    yield rows


class PostgresArchive:
    """The backup hooks of one store's PostgreSQL schema (see :class:`StoreArchive`)."""

    engine = "postgresql"

    def __init__(self, db: Database, queries: Queries, schema: str) -> None:
        self._db = db
        self._store_queries = queries
        self._schema = schema
        self._queries = _queries(schema)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        conn = await self._db.connect()
        try:
            yield conn
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def _one(self, conn: Connection, name: str, **params: Any) -> Any:
        cur = await conn.execute(self._queries[name], params)
        row = await cur.fetchone()
        return None if row is None else row[0]

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[_Source]:
        """A read-only REPEATABLE READ transaction over the schema, on its own connection."""
        async with self._connection() as conn:
            with translated():
                await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
                await conn.set_read_only(True)
            async with conn.transaction():
                with translated():
                    await conn.execute(self._queries["restore_settings"])
                    info = await self._source_info(conn)
                yield _Source(conn, self._queries, info)

    async def _source_info(self, conn: Connection) -> SourceInfo:
        status = await read_status(conn, self._store_queries, self._schema)
        check_usable(status, pending_allowed=False)
        cur = await conn.execute(self._queries["namespaces"])
        namespaces = tuple(row[0] for row in await cur.fetchall())
        counts = {s.name: await self._one(conn, f"count_{s.name}") for s in SECTIONS}
        return SourceInfo(
            engine=self.engine,
            schema_version=status.current,
            namespaces=namespaces,
            counts=counts,
            high_water=0,
        )

    async def inspect(self) -> TargetState:
        """Whether the schema exists and which archived tables hold rows."""
        async with self._connection() as conn:
            with translated():
                return await self._state(conn)

    async def _state(self, conn: Connection) -> TargetState:
        cur = await conn.execute(self._queries["tables"], {"schema": self._schema})
        tables = {row[0] for row in await cur.fetchall()}
        if "schema_migrations" not in tables:
            return TargetState(exists=False, rows={})
        rows = {
            s.name: await self._one(conn, f"count_{s.name}") for s in SECTIONS if s.name in tables
        }
        heads: dict[str, int] = {}
        if rows.get("events"):
            cur = await conn.execute(self._queries["heads"])
            heads = dict(await cur.fetchall())
        return TargetState(exists=True, rows=rows, heads=heads)

    async def load(self, plan: LoadPlan, sections: Iterator[SectionRows]) -> None:
        """Migrate the schema if needed, then write everything in one transaction."""
        async with self._connection() as conn:
            with translated():
                await apply_pending(conn, self._store_queries, self._schema)
                async with conn.transaction():
                    await conn.execute(self._queries["restore_settings"])
                    await conn.execute(self._queries["lock_restore"], {"schema": self._schema})
                    check_target(plan, await self._state(conn))
                    for part in sections:
                        await self._copy(conn, part)
                    await self._index_tags(conn, plan)
                    await self._raise_offset(conn, plan.floor)

    async def _copy(self, conn: Connection, part: SectionRows) -> None:
        convert = _import_converter(part.section)
        name = part.section.name
        try:
            async with conn.cursor() as cur, cur.copy(self._queries[f"import_{name}"]) as copy:
                for page in part.pages:
                    for row in convert(page):
                        await copy.write_row(row)
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or str(exc)
            raise ConflictError(
                f"cannot restore: a row of the archive's {name} collides with one the target "
                f"holds ({detail}); nothing was written"
            ) from None

    async def _index_tags(self, conn: Connection, plan: LoadPlan) -> None:
        """Rebuild event_tags for the restored events; refuse positions shared by two
        namespaces (possible only when merging)."""
        if not plan.lows or not any(s.name == "events" for s in plan.sections):
            return
        namespaces = sorted(plan.lows)
        params = {"namespaces": namespaces, "lows": [plan.lows[n] for n in namespaces]}
        await conn.execute(self._queries["event_tags"], params)
        if plan.merge:
            low, high = min(plan.lows.values()), plan.floor
            shared = await self._one(conn, "shared_position", low=low, high=high)
            if shared is not None:
                raise ConflictError(
                    f"cannot merge: position {shared} would be held by events of two "
                    "namespaces; nothing was written"
                )

    async def _raise_offset(self, conn: Connection, floor: int) -> None:
        """Make every later append's positions lie above ``floor``.

        A new position is ``(xid << 16) + offset`` with a transaction id above this one's,
        so ``(this xid << 16) + offset > floor`` suffices; one transaction's worth is added
        as a margin, and the offset never goes down.
        """
        base = await self._one(conn, "position_base")
        offset = await self._one(conn, "position_offset")
        if base + offset > floor:
            return
        needed = -(-(floor + 1 - base) // _STEP) * _STEP + _STEP
        await conn.execute(_set_offset_query(self._schema, max(offset, needed)))

    async def record_backup(self, record: BackupRecord) -> None:
        """Insert a finished backup into the ``backups`` table."""
        params = record.params(lambda moment: moment)
        async with self._connection() as conn:
            with translated():
                await conn.execute(self._queries["insert_backup"], params)

    async def mark_verified(self, sha256: str, at: datetime) -> int:
        """Set ``verified_at`` of the backups whose file has this SHA-256; how many."""
        async with self._connection() as conn:
            with translated():
                params = {"sha256": sha256, "verified_at": at}
                cur = await conn.execute(self._queries["mark_verified"], params)
                return cur.rowcount

    async def backup_history(self, limit: int | None) -> list[BackupRecord]:
        """The catalog, newest first."""
        async with self._connection() as conn:
            with translated():
                cur = await conn.execute(self._queries["select_backups"], {"limit": limit})
                rows = await cur.fetchall()
        return [BackupRecord.from_row(row, lambda moment: moment.astimezone(UTC)) for row in rows]
