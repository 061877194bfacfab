"""The PostgreSQL backend: the production event store.

Global order without a table lock
---------------------------------
Each event's global position is ``(transaction id << 16) | index within the append``, taken
from ``pg_current_xact_id()`` when the append writes. Readers of the global log
(``read_all``, ``head_position``, ``subscribe``) return only events whose transaction id is
below the *visibility horizon*, the ``xmin`` of their snapshot: every transaction below it
has finished, so no transaction can still commit an event below a position a reader has
passed. Hence:

- positions are unique and increase in delivery order: a subscriber never skips an event
  that commits late and never sees one twice. They are **not dense** (expect large gaps);
- writers never wait for each other unless they write the same stream (or an append
  condition makes them), so appends scale with concurrent connections;
- any long-running transaction anywhere in the cluster holds the horizon back, so global
  readers see new events only once it ends (stream reads are not affected: they are
  strongly consistent). Keep transactions short and set ``idle_in_transaction_session_timeout``
  on the server (e.g. ``60s``);
- an append holds at most 65,535 events (the low 16 bits).

Appends are one round trip: a call of the ``kronika_append`` function (see ``schema.sql``)
on a pooled autocommit connection, a statement each connection prepares once, parameters
sent as binary arrays (:mod:`.arrays`, :mod:`.append_call`). Concurrent single-stream
appends of one store object share transactions (group commit, :mod:`.group_commit`).
Locking is described in :mod:`.appends`. Reads of the global log by this store object see
its own appends (they wait for the horizon to pass them, usually milliseconds).

Subscribers are woken directly in this process and by LISTEN/NOTIFY across processes
(:mod:`.notifier`), with a fallback poll every ``poll_interval`` seconds. After 20 ms
without a notification, a caught-up subscription asks whether committed events wait above
the horizon (which no notification announces when they become visible) and, if so, reads
again soon (from 20 ms, backing off).

Snapshots (:mod:`.snapshots`) and the processing runtime's state (:mod:`.processing`, the
``processing`` property) live in operational tables of the same schema. Processing
transactions are ordinary transactions on pooled connections: while one that has written
is open it holds the horizon back like any other, so keep handlers short.

Events are immutable: triggers reject UPDATE, DELETE and TRUNCATE of ``events`` and
``event_tags``. Stream deletion and truncation remove events through the one privileged
path: their own transaction sets ``kronika.purge = 'on'`` locally (``set_config(..., true)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar, cast

import orjson
import psycopg
from psycopg import errors as pgerrors
from psycopg.rows import AsyncRowFactory, tuple_row

from kronika.domain.events import (
    ANY,
    AppendCondition,
    AppendResult,
    MultiAppendResult,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    StreamState,
)
from kronika.errors import ConflictError, KronikaError, StreamDeleted, StreamNotFound, Unavailable
from kronika.store.base import GlobalFilter, PreparedAppend, StoreBase, check_stream_expectation
from kronika.store.inline import (
    InlineGuard,
    InlineHandler,
    InlineHandlers,
    InlineRecord,
    report_registered,
)
from kronika.store.listing import StreamSelection
from kronika.store.migrations import Migration, SchemaStatus
from kronika.store.postgres import appends as ap
from kronika.store.postgres.append_call import AppendCall
from kronika.store.postgres.archive import PostgresArchive
from kronika.store.postgres.database import Connection, Database, RawJson
from kronika.store.postgres.group_commit import GroupCommit
from kronika.store.postgres.inline import PostgresInline
from kronika.store.postgres.integrity import PostgresChains
from kronika.store.postgres.keys import PostgresKeys
from kronika.store.postgres.notifier import Announcer, Listener, channel_name
from kronika.store.postgres.processing import PostgresProcessing
from kronika.store.postgres.queries import queries_for
from kronika.store.postgres.retention import PostgresRetention
from kronika.store.postgres.rows import event_rows, stream_info_from, stream_read_rows
from kronika.store.postgres.schema import apply_pending, check_usable, read_status
from kronika.store.postgres.settings import parse_url
from kronika.store.postgres.snapshots import PostgresSnapshots

__all__ = ["PostgresEventStore"]

T = TypeVar("T")

_RETRYABLE = (pgerrors.UniqueViolation, pgerrors.DeadlockDetected)
_RECHECK_MIN = 0.02


class PostgresEventStore(StoreBase):
    """An event store in PostgreSQL (15 or newer), safe for many concurrent processes.

    Build it with ``open_store("postgresql://user:pass@host/db?schema=kronika")`` or
    ``PostgresEventStore(url, **options)``; options may be URL query parameters or keyword
    arguments (keywords win), libpq parameters (``sslmode``, ``connect_timeout``, ...) pass
    through to the driver:

    ``namespace`` (``default``)
        The tenant this store object reads and writes.
    ``schema`` (``kronika``)
        The PostgreSQL schema holding every Kronika table and function.
    ``migrate`` (``true``)
        Apply pending migrations on open. With ``false``, pending migrations make ``open()``
        fail (run ``kronika migrate``). A schema newer than the code is always refused.
    ``pool_min_size`` (1), ``pool_max_size`` (10)
        Pooled connections per store object. One append or read holds one connection for a
        round trip, so 10 serve far more than 10 concurrent requests; raise it towards the
        number of concurrent writers you expect, keeping the total over all processes
        below the server's ``max_connections``. Each store also uses one connection for
        notifications and, while subscriptions run, one for LISTEN.
    ``pool_timeout`` (10 s)
        How long an operation waits for a free connection before ``Unavailable``.
    ``pool_max_idle`` (300 s)
        Idle connections above the minimum are closed after this long.
    ``statement_timeout`` (server default)
        Seconds after which PostgreSQL cancels a statement (raised as ``Unavailable``).
    ``poll_interval`` (1 s)
        Fallback poll of live subscriptions when no notification arrives.
    ``append_transactions`` (2)
        Most append transactions this store object runs at once. Appends that arrive while
        that many run wait, then are committed together in one transaction (group commit),
        each still checked, written, reported and failed on its own. A lone writer never
        waits. Concurrent writers share round trips and commits: with 8 tasks appending,
        1.5 to 1.6 times the appends per second of one transaction each.
    """

    engine = "postgresql"

    def __init__(self, url: str = "postgresql://", **options: Any) -> None:
        settings = parse_url(url, options)
        super().__init__(namespace=settings.namespace)
        self._settings = settings
        self.poll_interval: float | None = settings.poll_interval
        self._queries = queries_for(settings.schema, channel_name(settings.schema, self.namespace))
        self._append_call = AppendCall(self._queries.append)
        self._db = Database(settings, self._queries, self._warm_up)
        self._scope = f"{settings.schema}\x00{self.namespace}"
        self._announcer = Announcer(
            self._db, self._queries, channel_name(settings.schema, self.namespace)
        )
        self._listener = Listener(self._db, self._queries, self._notifier.notify)
        self._snapshots = PostgresSnapshots(self._db, self._queries, self.namespace)
        self._processing = PostgresProcessing(self._db, self._queries, self.namespace)
        self._keys = PostgresKeys(self._db, self._queries, self.namespace)
        self._chains = PostgresChains(
            self._db, self._queries, self.namespace, self._await_own_writes
        )
        self._retention = PostgresRetention(self._db, self._queries, self.namespace)
        self._inline_db = PostgresInline(self._db, self._queries, settings.schema, self.namespace)
        self._group_commit = GroupCommit(
            self._append_alone, self._append_group, settings.append_transactions
        )
        self._stuck: tuple[int, float] | None = None
        self._written = 0
        """The highest position this store object has written."""
        self._horizon_seen = 0
        """The highest visibility horizon this store object has observed."""

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresEventStore:
        """Build from a ``postgresql://`` URL plus options (see the class docstring)."""
        return cls(url, **options)

    @property
    def schema(self) -> str:
        """The PostgreSQL schema this store uses."""
        return self._settings.schema

    @property
    def processing(self) -> PostgresProcessing:
        """The processing runtime's state for this store's namespace."""
        return self._processing

    @property
    def keys(self) -> PostgresKeys:
        """The API keys of this store's namespace."""
        return self._keys

    @property
    def chains(self) -> PostgresChains:
        """Raw access to this namespace's hash chains, for ``kronika verify``."""
        return self._chains

    @property
    def archive(self) -> PostgresArchive:
        """Backups of this store's schema: a consistent export, restores, the catalog.

        Works whether or not the store is open (it uses connections of its own)."""
        return PostgresArchive(self._db, self._queries, self.schema)

    @property
    def retention(self) -> PostgresRetention:
        """Retention's queries on this store's namespace."""
        return self._retention

    # -- lifecycle and schema -----------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _admin_connection(self) -> AsyncIterator[Connection]:
        conn = await self._db.connect()
        try:
            yield conn
        finally:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def schema_status(self) -> SchemaStatus:
        """How the database's schema compares with this code; works before ``open()``."""
        async with self._admin_connection() as conn:
            return await read_status(conn, self._queries, self.schema)

    async def migrate(self) -> list[Migration]:
        """Apply pending schema migrations and return them; works before ``open()``."""
        async with self._admin_connection() as conn:
            return await apply_pending(conn, self._queries, self.schema)

    async def _open(self) -> None:
        async with self._admin_connection() as conn:
            status = await read_status(conn, self._queries, self.schema)
            check_usable(status, pending_allowed=self._settings.migrate)
            if status.pending:
                await apply_pending(conn, self._queries, self.schema)
        await self._db.open()
        try:
            await self._start_inline()
        except BaseException:
            await self._db.close()
            raise

    async def _start_inline(self) -> None:
        """Register the inline projections (tables, records) and guard against those
        recorded in the database but not registered here."""
        if self._inline is None:
            records = await self._inline_db.records()
        else:
            records = await self._inline_db.register(self._inline)
            report_registered(records, self._inline)
        self._inline_guard = InlineGuard.of(records, self._inline)

    async def _warm_up(self, conn: Connection) -> None:
        """Prepare a new pooled connection for appends (compiled function, prepared query)."""
        await self._append_call.prepare(conn)
        await self._append_call(conn, ap.noop_params(self.namespace))

    async def _close(self) -> None:
        await self._group_commit.drain()
        await self._listener.close()
        await self._announcer.close()
        await self._db.close()

    # -- appends ------------------------------------------------------------------------

    async def _append(
        self, appends: list[PreparedAppend], condition: AppendCondition | None
    ) -> MultiAppendResult:
        inline = self._inline
        if inline is not None and not inline.wants_any(e.type for a in appends for e in a.events):
            inline = None  # no handler wants these events: the one-statement path
        if len(appends) == 1 and appends[0].events and condition is None and inline is None:
            return await self._group_commit.append(appends[0])
        return await self._append_now(appends, condition, inline)

    async def _append_alone(self, append: PreparedAppend) -> MultiAppendResult:
        return await self._append_now([append], None, None)

    async def _append_group(self, appends: list[PreparedAppend]) -> list[MultiAppendResult] | None:
        """Several single-stream appends in one transaction, as the parts of one call: their
        results in order, or None when it wrote nothing and each must run alone (an error
        other than ``Unavailable`` means the same)."""
        params = ap.append_params(self.namespace, appends, None, self._scope)
        row = await self._call_append(appends, params)
        if row is None or row[2]:  # event ids stored before, or concurrently
            return None
        result = self._wrote(ap.read_result(appends, row))
        parts = {a.stream: result.streams[a.stream] for a in appends}
        return [MultiAppendResult(streams={s: p}, position=p.position) for s, p in parts.items()]

    async def _append_now(
        self,
        appends: list[PreparedAppend],
        condition: AppendCondition | None,
        inline: InlineHandlers | None,
    ) -> MultiAppendResult:
        params = ap.append_params(self.namespace, appends, condition, self._scope)
        row = await self._call_append(appends, params, inline)
        if row is None:  # an id was stored concurrently: let the idempotency path answer
            row = await self._call_append(appends, {**params, "lookup": True}, inline)
        if row is None:
            raise ConflictError("concurrent appends used the same event ids; retry")
        if row[2]:  # some of the event ids are stored already
            return await self._retried(appends, row[2])
        return self._wrote(ap.read_result(appends, row))

    def _wrote(self, result: MultiAppendResult) -> MultiAppendResult:
        """Note an append's result: wake this process's subscribers, announce it to others."""
        if result.position:
            self._written = max(self._written, result.position)
            self._notifier.notify()
            self._announcer.announce()
        return result

    async def _call_append(
        self,
        appends: list[PreparedAppend],
        params: dict[str, Any],
        inline: InlineHandlers | None = None,
    ) -> tuple[Any, ...] | None:
        async with self._db.connection() as conn:
            try:
                if inline is not None:  # in a transaction with the inline projections
                    return await self._inline_db.append(conn, appends, params, inline)
                return await self._append_call(conn, params)
            except _RETRYABLE:
                if params["lookup"]:
                    raise
                return None
            except psycopg.Error as exc:
                error = _append_error(appends, exc)
                if error is None:
                    raise
                raise error from None

    async def _retried(self, appends: list[PreparedAppend], ids: list[Any]) -> MultiAppendResult:
        params = {"namespace": self.namespace, "ids": ids}
        stored = await self._fetch(self._queries.events_by_ids, params, event_rows)
        results = ap.resolve_stored(appends, stored)
        position = max(r.position for r in results.values())
        self._written = max(self._written, position)
        for append in appends:
            if append.stream not in results:
                results[append.stream] = await self._tail(append.stream)
        return MultiAppendResult(
            streams={a.stream: results[a.stream] for a in appends}, position=position
        )

    async def _tail(self, stream: str) -> AppendResult:
        rows = await self._fetch(self._queries.stream_tail, self._key(stream), tuple_row)
        return AppendResult(*rows[0]) if rows else AppendResult(-1, 0)

    # -- inline projections -------------------------------------------------------------

    def _accept_inline(self, handlers: InlineHandlers) -> None:
        pass  # SQL tables and documents, in the append's transaction

    async def _rebuild_inline(self, handler: InlineHandler) -> InlineRecord:
        return await self._inline_db.rebuild(handler)

    async def _inline_records(self) -> list[InlineRecord]:
        return await self._inline_db.records()

    async def _drop_inline(self, name: str) -> None:
        await self._inline_db.drop(name)

    # -- stream administration ----------------------------------------------------------

    def _key(self, stream: str, **more: Any) -> dict[str, Any]:
        return {"namespace": self.namespace, "stream": stream, **more}

    async def _locked_row(
        self, conn: Connection, stream: str
    ) -> tuple[int | None, StreamState] | None:
        await conn.execute(
            self._queries.lock_stream, {"key": ap.lock_key(self._scope, "stream", stream)}
        )
        cur = await conn.execute(self._queries.stream_row, self._key(stream))
        row = await cur.fetchone()
        if row is None:
            return None
        version, state = row[0], StreamState(row[1])
        check_stream_expectation(stream, ANY, version, state)
        return version, state

    async def _purge(self, conn: Connection, stream: str, before: int) -> None:
        """The documented purge path: remove the stream's events below ``before``.

        It counts the purge first (locking the namespace's counter), then keeps the chain
        hash of the last removed event as the stream's anchor and deletes the global
        chain's checkpoints from the lowest removed position (see kronika.store.integrity).
        """
        await conn.execute(self._queries.enable_purge)
        if before > 0:
            await conn.execute(self._queries.count_purge, {"namespace": self.namespace})
        await conn.execute(self._queries.purge_events, self._key(stream, before=before))

    async def _delete_stream(self, stream: str, *, hard: bool) -> None:
        async with self._db.transaction() as conn:
            row = await self._locked_row(conn, stream)
            if row is None:
                if not hard:
                    raise StreamNotFound(stream)
                await conn.execute(self._queries.insert_tombstone, self._key(stream))
                return
            before = 0 if row[0] is None else row[0] + 1
            await self._purge(conn, stream, before)
            state = StreamState.TOMBSTONED if hard else StreamState.DELETED
            await conn.execute(
                self._queries.mark_removed, self._key(stream, state=state.value, before=before)
            )
            await self._snapshots.delete(conn, stream)

    async def _truncate_stream(self, stream: str, before_version: int) -> None:
        async with self._db.transaction() as conn:
            row = await self._locked_row(conn, stream)
            if row is None:
                raise StreamNotFound(stream)
            await self._purge(conn, stream, before_version)
            params = self._key(stream, state=row[1].value, before=before_version)
            await conn.execute(self._queries.mark_removed, params)

    async def _set_stream_metadata(
        self, stream: str, max_age: float | None, max_count: int | None, metadata: dict[str, Any]
    ) -> StreamInfo:
        params = self._key(
            stream, max_age=max_age, max_count=max_count, metadata=RawJson(orjson.dumps(metadata))
        )
        rows = await self._fetch(self._queries.set_stream_metadata, params, tuple_row)
        if not rows:
            raise StreamDeleted(stream)
        return stream_info_from(stream, rows[0])

    # -- snapshots ----------------------------------------------------------------------

    async def _write_snapshot(
        self, stream: str, version: int, schema_version: int, state: bytes
    ) -> None:
        await self._snapshots.write(stream, version, schema_version, state)

    async def _read_snapshot(self, stream: str) -> Snapshot | None:
        return await self._snapshots.read(stream)

    # -- reads --------------------------------------------------------------------------

    async def _fetch(
        self, query: bytes, params: Mapping[str, Any], row_factory: AsyncRowFactory[T]
    ) -> list[T]:
        async with self._db.connection() as conn:
            cur = conn.cursor(row_factory=row_factory, binary=True)
            await cur.execute(query, params, prepare=True)
            return await cur.fetchall()

    async def _read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]:
        if backwards:
            query, start = self._queries.read_stream_backward, from_version
        else:
            query, start = self._queries.read_stream_forward, from_version or 0
        params = self._key(stream, from_version=start, limit=limit)
        rows = await self._fetch(query, params, stream_read_rows)
        if rows and isinstance(rows[0], str):
            if rows[0] == StreamState.TOMBSTONED.value:
                raise StreamDeleted(stream)
            return []
        return cast(list[RecordedEvent], rows)

    async def _read_all(
        self, from_position: int, limit: int | None, filters: GlobalFilter
    ) -> list[RecordedEvent]:
        if filters.types == () or filters.categories == ():
            return []
        query, params = self._global_query(filters)
        params.update(namespace=self.namespace, from_position=from_position, limit=limit)
        return await self._fetch(query, params, event_rows)

    def _global_query(self, filters: GlobalFilter) -> tuple[bytes, dict[str, Any]]:
        """The query that drives a global read by its most selective index, and its filters."""
        q = self._queries
        types = sorted(set(filters.types)) if filters.types else None
        categories = sorted(set(filters.categories)) if filters.categories else None
        if filters.tags:
            tags = list(filters.tags)
            params = {"tag": tags[0], "tags": tags, "types": types, "categories": categories}
            return q.read_all_tags, params
        if types and len(types) == 1:
            return q.read_all_type, {"type": types[0], "categories": categories}
        if types:
            return q.read_all_types, {"types": types, "categories": categories}
        if categories and len(categories) == 1:
            return q.read_all_category, {"category": categories[0]}
        if categories:
            return q.read_all_categories, {"categories": categories}
        return q.read_all, {}

    async def read_correlated(
        self, correlation_id: str, *, limit: int | None = None
    ) -> list[RecordedEvent]:
        """Events whose metadata carries ``correlation_id``, in global order (PostgreSQL only)."""
        self._check_open()
        params = {
            "namespace": self.namespace,
            "correlation_id": str(correlation_id),
            "limit": limit,
        }
        return await self._fetch(self._queries.read_correlated, params, event_rows)

    async def read_all(
        self,
        *,
        from_position: int = 0,
        limit: int | None = None,
        types: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[RecordedEvent]:
        """Events of the global log from ``from_position`` (inclusive), in global order.

        Reads your writes: the events this store object appended are included (it waits,
        usually a few milliseconds at most, until the visibility horizon passes them).
        """
        await self._await_own_writes()
        return await super().read_all(
            from_position=from_position, limit=limit, types=types, categories=categories, tags=tags
        )

    async def _await_own_writes(self) -> None:
        """Wait until global readers can see this store's own appends.

        Raises ``Unavailable`` if a long-running transaction holds the horizon back for
        longer than ``pool_timeout``.
        """
        if not self._opened or self._written < self._horizon_seen:
            return
        deadline = time.monotonic() + self._settings.pool_timeout
        delay = 0.001
        while True:
            rows = await self._fetch(self._queries.horizon, {}, tuple_row)
            self._horizon_seen = max(self._horizon_seen, int(rows[0][0]))
            if self._written < self._horizon_seen:
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    "a long-running transaction holds back the visibility horizon; "
                    "recent events are not readable yet (see idle_in_transaction_session_timeout)"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def _head_position(self) -> int:
        await self._await_own_writes()
        rows = await self._fetch(
            self._queries.head_position, {"namespace": self.namespace}, tuple_row
        )
        return int(rows[0][0])

    async def _stream_info(self, stream: str) -> StreamInfo:
        rows = await self._fetch(self._queries.stream_info, self._key(stream), tuple_row)
        if not rows:
            raise StreamNotFound(stream)
        return stream_info_from(stream, rows[0])

    async def _list_streams(self, selection: StreamSelection) -> list[StreamInfo]:
        params = {
            "namespace": self.namespace,
            "after": selection.after or "",
            "low": selection.low,
            "high": selection.high,
            "category": selection.category,
            "limit": selection.limit,
        }
        rows = await self._fetch(self._queries.list_streams, params, tuple_row)
        return [stream_info_from(row[0], row[1:]) for row in rows]

    # -- subscriptions ------------------------------------------------------------------

    async def _wait_for_events(self, token: int) -> None:
        if self._notifier.token() != token:
            return  # new events were announced while the batch was read: read again
        self._listener.start()
        # While events keep coming, a notification arrives first and the subscriber reads
        # again at once. Only after a quiet spell does it ask whether committed events wait
        # above the horizon, which no notification will announce when they become visible.
        ceiling = self.poll_interval or 1.0
        quiet = min(_RECHECK_MIN, ceiling)
        if await self._notified(token, quiet):
            return
        delay = await self._recheck_delay()
        wait = ceiling - quiet if delay is None else delay - quiet
        if wait > 0:
            await self._notified(token, wait)

    async def _notified(self, token: int, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a notification newer than ``token``."""
        # Not Notifier.wait's own timeout: asyncio.wait_for (Python 3.11) loses a cancellation
        # that arrives just as a notification does, and the subscription then never ends.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._notifier.wait(token, None)
        return self._notifier.token() != token

    async def _recheck_delay(self) -> float | None:
        """How soon to read again when committed events wait above the horizon (else None).

        Starts at 20 ms and backs off towards ``poll_interval`` while the horizon is stuck
        (a long transaction somewhere in the cluster)."""
        try:
            rows = await self._fetch(
                self._queries.pending_above_horizon, {"namespace": self.namespace}, tuple_row
            )
        except Unavailable:
            return None
        pending, horizon = rows[0]
        if not pending:
            self._stuck = None
            return None
        now = time.monotonic()
        if self._stuck is None or self._stuck[0] != horizon:
            self._stuck = (horizon, now)
        ceiling = self.poll_interval or 1.0
        return min(ceiling, _RECHECK_MIN + (now - self._stuck[1]) / 4)


def _append_error(appends: list[PreparedAppend], exc: psycopg.Error) -> KronikaError | None:
    """The Kronika error for the append function's own SQLSTATEs (None for others)."""
    diag = exc.diag
    if exc.sqlstate == "KRCON":
        return ap.expectation_error(appends, diag.message_detail or "", diag.message_hint or "")
    if exc.sqlstate == "KRCND":
        return ap.condition_error(diag.message_detail or "0", diag.message_hint or "")
    return None
