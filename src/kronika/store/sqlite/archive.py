"""Backups of a SQLite database: a consistent export, restores, and the backups catalog.

The export reads every table in one read transaction on a connection of its own: in WAL
mode that is one snapshot of the whole database, and the store's writer goes on
committing while it is read. Restores are in :mod:`.archive_load`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson

from kronika.errors import ConfigurationError
from kronika.store.archive import (
    SECTIONS,
    BackupRecord,
    Converter,
    LoadPlan,
    Section,
    SectionRows,
    SourceInfo,
    TargetState,
    micros_of,
    time_of,
)
from kronika.store.sqlite import archive_load, schema
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.connection import connect
from kronika.store.sqlite.errors import translating
from kronika.store.sqlite.sql import QUERIES

__all__ = ["SQLiteArchive"]

ARCHIVE_QUERIES = archive_load.ARCHIVE_QUERIES

_FROM_SQLITE: dict[str, Converter] = {"list": orjson.Fragment, "bool": bool}
"""Per kind, how a stored value becomes an archive value (others are stored as archived).
A JSON array stored as text goes out as it is, without being parsed."""


def _export_converter(section: Section) -> Callable[[list[Any]], list[Any]]:
    """Convert fetched rows of ``section`` to archive values, in place."""
    fixes = [
        (i, _FROM_SQLITE[c.kind]) for i, c in enumerate(section.columns) if c.kind in _FROM_SQLITE
    ]

    def convert(rows: list[Any]) -> list[Any]:
        if not fixes:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for i, fix in fixes:
                if values[i] is not None:
                    values[i] = fix(values[i])
            converted.append(values)
        return converted

    return convert


class _Source:
    """An open read transaction: the snapshot that a backup exports."""

    def __init__(self, conn: sqlite3.Connection, config: SQLiteConfig, info: SourceInfo) -> None:
        self._conn = conn
        self._config = config
        self.info = info
        self._lock = threading.Lock()
        """Held while the connection is used: an interrupted backup closes it from another
        thread while a fetch may still run."""

    async def pages(self, section: Section, size: int) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """The section's rows in archive values, ``size`` at a time."""
        convert = _export_converter(section)
        query = ARCHIVE_QUERIES[f"export_{section.name}"]
        cursor = await asyncio.to_thread(self._call, self._conn.execute, query)
        while True:
            page = await asyncio.to_thread(self._call, cursor.fetchmany, size)
            if not page:
                return
            yield convert(page)

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        with self._lock, translating(self._config.path):
            return function(*args)

    def close(self) -> None:
        """End the read transaction and close the connection (blocking)."""
        with self._lock:
            try:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute(QUERIES["rollback"])
            finally:
                self._conn.close()


def _open_snapshot(config: SQLiteConfig) -> _Source:
    """Begin the read transaction and take the snapshot's facts (blocking)."""
    if not config.path.exists():
        raise ConfigurationError(f"there is no SQLite database at {config.path}")
    conn = connect(config, writer=False)
    try:
        with translating(config.path):
            conn.execute(QUERIES["begin_deferred"])
            status = schema.check(conn, allow_pending=False)
            counts = {
                s.name: conn.execute(ARCHIVE_QUERIES[f"count_{s.name}"]).fetchone()[0]
                for s in SECTIONS
            }
            info = SourceInfo(
                engine="sqlite",
                schema_version=status.current,
                namespaces=tuple(r[0] for r in conn.execute(ARCHIVE_QUERIES["namespaces"])),
                counts=counts,
                high_water=conn.execute(ARCHIVE_QUERIES["high_water"]).fetchone()[0],
            )
    except BaseException:
        conn.close()
        raise
    return _Source(conn, config, info)


class SQLiteArchive:
    """The backup hooks of one SQLite database file (see :class:`StoreArchive`)."""

    engine = "sqlite"

    def __init__(self, config: SQLiteConfig) -> None:
        self._config = config

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[_Source]:
        """A read transaction over the whole database, on a connection of its own."""
        source = await asyncio.to_thread(_open_snapshot, self._config)
        try:
            yield source
        finally:
            await asyncio.to_thread(source.close)

    async def inspect(self) -> TargetState:
        """Whether the file exists and which archived tables hold rows."""
        return await asyncio.to_thread(archive_load.inspect, self._config)

    async def load(self, plan: LoadPlan, sections: Iterator[SectionRows]) -> None:
        """Restore into this file: a new file renamed into place, or a merge in place."""
        await asyncio.to_thread(archive_load.load, self._config, plan, sections)

    async def record_backup(self, record: BackupRecord) -> None:
        """Insert a finished backup into the ``backups`` table."""
        params = record.params(micros_of)
        await asyncio.to_thread(self._write, ARCHIVE_QUERIES["insert_backup"], params)

    async def backup_history(self, limit: int | None) -> list[BackupRecord]:
        """The catalog, newest first (empty when the database file does not exist)."""
        if not self._config.path.exists():
            return []
        rows = await asyncio.to_thread(self._read, ARCHIVE_QUERIES["select_backups"], limit)
        return [BackupRecord.from_row(row, time_of) for row in rows]

    async def mark_verified(self, sha256: str, at: datetime) -> int:
        """Set ``verified_at`` of the backups whose file has this SHA-256; how many."""
        params = {"sha256": sha256, "verified_at": micros_of(at)}
        return await asyncio.to_thread(self._write, ARCHIVE_QUERIES["mark_verified"], params)

    def _write(self, query: str, params: dict[str, Any]) -> int:
        if not self._config.path.exists():
            raise ConfigurationError(f"there is no SQLite database at {self._config.path}")
        conn = connect(self._config, writer=True)
        try:
            with translating(self._config.path):
                return conn.execute(query, params).rowcount
        finally:
            conn.close()

    def _read(self, query: str, limit: int | None) -> list[tuple[Any, ...]]:
        conn = connect(self._config, writer=False)
        try:
            with translating(self._config.path):
                return conn.execute(query, {"limit": -1 if limit is None else limit}).fetchall()
        finally:
            conn.close()
