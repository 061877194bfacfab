"""The SQLite event store: the embedded default backend.

One writer thread commits concurrent writes in groups (see :mod:`.writer`); a pool of
reader threads serves reads (see :mod:`.readers`); subscriptions are woken directly by
this store's commits and, for other processes' commits, by ``PRAGMA data_version``.
"""

from __future__ import annotations

import asyncio
from dataclasses import fields
from pathlib import Path
from typing import Any

from kronika.domain import names
from kronika.domain.events import (
    AppendCondition,
    MultiAppendResult,
    RecordedEvent,
    Snapshot,
    StreamInfo,
)
from kronika.errors import StoreClosed
from kronika.store.base import GlobalFilter, PreparedAppend, StoreBase
from kronika.store.inline import (
    InlineGuard,
    InlineHandler,
    InlineHandlers,
    InlineRecord,
    report_registered,
)
from kronika.store.listing import StreamSelection
from kronika.store.migrations import Migration, SchemaStatus
from kronika.store.sqlite import reads, schema
from kronika.store.sqlite.archive import SQLiteArchive
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.inline import (
    DropInlineOp,
    RebuildInlineOp,
    RegisterInlineOp,
    read_records,
)
from kronika.store.sqlite.integrity import SQLiteChains
from kronika.store.sqlite.keys import SQLiteKeys
from kronika.store.sqlite.processing import SQLiteProcessing
from kronika.store.sqlite.processing_connection import refuse_nested_write
from kronika.store.sqlite.readers import ReaderPool
from kronika.store.sqlite.retention import SQLiteRetention
from kronika.store.sqlite.snapshots import SnapshotOp, read_snapshot
from kronika.store.sqlite.watch import ChangeWatcher
from kronika.store.sqlite.writer import Writer, WriterStats
from kronika.store.sqlite.writes import AppendOp, DeleteOp, SettingsOp, TruncateOp

__all__ = ["SQLiteEventStore"]


class SQLiteEventStore(StoreBase):
    """An event store in one SQLite file: ``sqlite:///relative.db`` or ``sqlite:////abs.db``.

    Options (keyword arguments, or the URL's query string):

    ``namespace`` (default ``"default"``)
        The namespace (tenant) this store reads and writes; every table is keyed by it.
    ``migrate`` (default ``true``)
        Apply pending schema migrations on open. With ``false``, a pending migration makes
        ``open()`` raise ``SchemaError`` (run ``kronika migrate``). A database migrated by
        a newer Kronika is always refused.
    ``synchronous`` (default ``"full"``)
        ``full``: every commit is fsynced, so an acknowledged append survives power loss.
        ``normal``: faster; after a power loss the newest commits may be missing, but the
        database is never corrupt (WAL mode).
    ``readers`` (default ``4``)
        Reader threads, each with its own connection.
    ``busy_timeout`` (default ``5.0``)
        Seconds to wait for another process that holds the write lock; then ``Unavailable``.
    ``poll_interval`` (default ``0.05``)
        Seconds between checks for other processes' writes while a subscription waits.

    The database runs in WAL mode. Events are immutable: a trigger rejects ``UPDATE`` on
    the events table; deleting and truncating streams physically removes their events.

    Writes are handed to one writer thread that commits whatever is queued in one
    transaction (group commit); each request still succeeds or fails on its own. A write
    whose caller is cancelled while waiting may still be committed: retry it with the same
    event ids to find out (a retry of a stored append returns its first result).
    """

    engine = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        namespace: str = names.DEFAULT_NAMESPACE,
        migrate: bool = True,
        synchronous: str = "full",
        readers: int = 4,
        busy_timeout: float = 5.0,
        poll_interval: float = 0.05,
    ) -> None:
        config = SQLiteConfig(
            path=Path(path).absolute(),
            namespace=namespace,
            migrate=migrate,
            synchronous=synchronous,
            readers=readers,
            busy_timeout=busy_timeout,
            poll_interval=poll_interval,
        )
        super().__init__(namespace=config.namespace)
        self._config = config
        self._writer: Writer | None = None
        self._readers: ReaderPool | None = None
        self._watcher: ChangeWatcher | None = None
        self._processing = SQLiteProcessing(config, self._active_writer, self._active_readers)
        self._keys = SQLiteKeys(config.namespace, self._active_writer, self._active_readers)
        self._chains = SQLiteChains(config.namespace, self._active_writer, self._active_readers)
        self._retention = SQLiteRetention(
            config.namespace, self._active_writer, self._active_readers
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteEventStore:
        """Build from a ``sqlite:///PATH`` URL and options, without touching the file."""
        config = SQLiteConfig.from_url(url, **options)
        settings = {f.name: getattr(config, f.name) for f in fields(config)}
        return cls(**settings)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._config.path

    @property
    def processing(self) -> SQLiteProcessing:
        """The processing runtime's state, in this database and namespace."""
        return self._processing

    @property
    def keys(self) -> SQLiteKeys:
        """The API keys of this store's namespace."""
        return self._keys

    @property
    def retention(self) -> SQLiteRetention:
        """Retention's queries on this database and namespace."""
        return self._retention

    @property
    def archive(self) -> SQLiteArchive:
        """Backups of this database: a consistent export, restores, the backups catalog.

        Works whether or not the store is open (it uses connections of its own)."""
        return SQLiteArchive(self._config)

    @property
    def chains(self) -> SQLiteChains:
        """Raw access to this namespace's hash chains, for ``kronika verify``."""
        return self._chains

    @property
    def writer_stats(self) -> WriterStats:
        """Counters of the writer thread (requests, commits, largest group)."""
        return self._writer.stats if self._writer else WriterStats()

    # -- lifecycle ------------------------------------------------------------------------

    async def _open(self) -> None:
        writer = Writer(self._config, on_commit=self._notifier.notify, inline=self._inline)
        await writer.start()
        try:
            allow = self._config.migrate
            await writer.call(lambda conn: schema.prepare(conn, migrate_pending=allow))
            readers = ReaderPool(self._config)
        except BaseException:
            await writer.stop()
            raise
        try:
            await self._start_inline(writer, readers)
        except BaseException:
            await writer.stop()
            await asyncio.to_thread(readers.close)
            raise
        self._writer = writer
        self._readers = readers
        self._watcher = ChangeWatcher(
            self._readers, self._notifier, self._config.poll_interval, lambda: self._opened
        )

    async def _start_inline(self, writer: Writer, readers: ReaderPool) -> None:
        """Register the inline projections (tables, records) and guard against those
        recorded in the database but not registered here."""
        namespace = self.namespace
        if self._inline is None:
            records = await readers.run(read_records, namespace)
        else:
            records = await writer.submit(RegisterInlineOp(namespace, self._inline))
            report_registered(records, self._inline)
        self._inline_guard = InlineGuard.of(records, self._inline)

    async def _close(self) -> None:
        writer, readers, watcher = self._writer, self._readers, self._watcher
        self._writer = self._readers = self._watcher = None
        await self._processing.close()
        if watcher is not None:
            await watcher.close()
        if writer is not None:
            await writer.stop()
        if readers is not None:
            await asyncio.to_thread(readers.close)

    async def schema_status(self) -> SchemaStatus:
        """How the database's schema compares with this code; works before ``open()``."""
        if self._readers is not None:
            return await self._readers.run(schema.status)
        return await asyncio.to_thread(schema.status_of_file, self._config)

    async def migrate(self) -> list[Migration]:
        """Apply pending schema migrations and return them; works before ``open()``."""
        if self._writer is not None:
            return await self._writer.call(schema.migrate)
        return await asyncio.to_thread(schema.migrate_file, self._config)

    # -- hooks ------------------------------------------------------------------------------

    def _active_writer(self) -> Writer:
        if self._writer is None:
            raise StoreClosed()
        refuse_nested_write(self._config.path)
        return self._writer

    def _active_readers(self) -> ReaderPool:
        if self._readers is None:
            raise StoreClosed()
        return self._readers

    async def _append(
        self, appends: list[PreparedAppend], condition: AppendCondition | None
    ) -> MultiAppendResult:
        return await self._active_writer().submit(AppendOp(self.namespace, appends, condition))

    async def _delete_stream(self, stream: str, *, hard: bool) -> None:
        await self._active_writer().submit(DeleteOp(self.namespace, stream, hard=hard))

    async def _truncate_stream(self, stream: str, before_version: int) -> None:
        await self._active_writer().submit(TruncateOp(self.namespace, stream, before_version))

    async def _set_stream_metadata(
        self, stream: str, max_age: float | None, max_count: int | None, metadata: dict[str, Any]
    ) -> StreamInfo:
        op = SettingsOp(self.namespace, stream, max_age, max_count, metadata)
        return await self._active_writer().submit(op)

    async def _write_snapshot(
        self, stream: str, version: int, schema_version: int, state: bytes
    ) -> None:
        op = SnapshotOp(self.namespace, stream, version, schema_version, state)
        await self._active_writer().submit(op)

    def _accept_inline(self, handlers: InlineHandlers) -> None:
        pass  # SQL tables and documents, on the writer's connection

    async def _rebuild_inline(self, handler: InlineHandler) -> InlineRecord:
        return await self._active_writer().submit(RebuildInlineOp(self.namespace, handler))

    async def _inline_records(self) -> list[InlineRecord]:
        return await self._active_readers().run(read_records, self.namespace)

    async def _drop_inline(self, name: str) -> None:
        await self._active_writer().submit(DropInlineOp(self.namespace, name))

    async def _read_snapshot(self, stream: str) -> Snapshot | None:
        return await self._active_readers().run(read_snapshot, self.namespace, stream)

    async def _read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]:
        return await self._active_readers().run(
            reads.read_stream,
            self.namespace,
            stream,
            from_version=from_version,
            backwards=backwards,
            limit=limit,
        )

    async def _read_all(
        self, from_position: int, limit: int | None, filters: GlobalFilter
    ) -> list[RecordedEvent]:
        return await self._active_readers().run(
            reads.read_all, self.namespace, from_position, limit, filters
        )

    async def _read_for_processing(
        self, from_position: int, limit: int | None, filters: GlobalFilter
    ) -> list[RecordedEvent]:
        """A worker's catch-up reads run on the event loop's thread, like its processing
        statements (:mod:`.processing_connection`). On a reader thread, ``sqlite3`` lets go
        of the GIL for every row it steps, and the reader and the loop (routing, handlers,
        their ``executemany`` rows) then hand the GIL back and forth per row: catch-up ran
        about 20 % slower. A page of events blocks the loop for a few milliseconds, which a
        worker can afford; other reads (``subscribe`` included) stay on the reader threads.
        """
        return self._active_readers().run_here(
            reads.read_all, self.namespace, from_position, limit, filters
        )

    async def _head_position(self) -> int:
        return await self._active_readers().run(reads.head_position, self.namespace)

    async def _stream_info(self, stream: str) -> StreamInfo:
        return await self._active_readers().run(reads.stream_info, self.namespace, stream)

    async def _list_streams(self, selection: StreamSelection) -> list[StreamInfo]:
        return await self._active_readers().run(reads.list_streams, self.namespace, selection)

    async def _wait_for_events(self, token: int) -> None:
        if self._watcher is not None:
            await self._watcher.wait(token)
