"""Connections to PostgreSQL: the pool, the adapters every connection shares, and one-off
connections for migrations and notifications.

Every connection is in autocommit mode: an append (or a group of them, see
:mod:`.group_commit`) is one function call, so it is its own transaction. Multi-statement
work (deletes, truncations) opens an explicit transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import orjson
import psycopg
from psycopg import postgres
from psycopg.adapt import AdaptersMap, Dumper
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from kronika.errors import StoreClosed
from kronika.observability import metrics
from kronika.store.postgres.arrays import register_array_dumpers
from kronika.store.postgres.errors import translated
from kronika.store.postgres.queries import Queries
from kronika.store.postgres.settings import PostgresSettings

__all__ = ["ADAPTERS", "Connection", "Database", "RawJson"]

Connection = psycopg.AsyncConnection[Any]

_SPARE_MAX_IDLE = 10.0
"""Seconds the spare connection may sit idle before it goes back to the pool."""


class RawJson:
    """JSON already serialised by orjson, sent as ``jsonb`` without being encoded again."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _RawJsonDumper(Dumper):
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: RawJson) -> bytes:
        return obj.data


ADAPTERS = AdaptersMap(psycopg.adapters)
"""Adapters of every Kronika connection: orjson for ``jsonb`` in; :class:`RawJson` and the
binary arrays of :mod:`.arrays` out."""
ADAPTERS.register_dumper(RawJson, _RawJsonDumper)
register_array_dumpers(ADAPTERS)
set_json_loads(orjson.loads, ADAPTERS)


class Database:
    """The connection pool of one store, with errors translated at its edge."""

    def __init__(
        self,
        settings: PostgresSettings,
        queries: Queries,
        warm_up: Callable[[Connection], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self._queries = queries
        self._warm_up = warm_up
        self._pool: AsyncConnectionPool | None = None
        self._check: asyncio.Task[None] | None = None
        self._active = 0
        """Operations holding or waiting for a connection right now."""
        self._spare: tuple[Connection, float] | None = None
        """The last connection returned while nothing else ran, and when: see borrow()."""

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of every connection (pooled or not)."""
        kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "context": ADAPTERS}
        if not self._settings.application_name_given:
            kwargs["application_name"] = "kronika"
        return kwargs

    async def connect(self) -> Connection:
        """A new connection outside the pool (the caller closes it)."""
        with translated():
            conn = await psycopg.AsyncConnection.connect(
                self._settings.conninfo, **self.connect_kwargs()
            )
        try:
            await self._configure(conn)
        except BaseException:  # including cancellation: never leak an open connection
            await conn.close()
            raise
        return conn

    async def _configure(self, conn: Connection) -> None:
        with translated():
            await conn.execute(
                self._queries.configure_session, {"schema": self._settings.schema}, prepare=False
            )
            timeout = self._settings.statement_timeout
            if timeout is not None:
                milliseconds = str(max(1, round(timeout * 1000)))
                await conn.execute(
                    self._queries.set_statement_timeout,
                    {"milliseconds": milliseconds},
                    prepare=False,
                )

    async def _configure_pooled(self, conn: Connection) -> None:
        await self._configure(conn)
        if self._warm_up is not None:
            with translated():
                await self._warm_up(conn)

    async def open(self) -> None:
        """Open the pool and wait for its first connections."""
        s = self._settings
        pool = AsyncConnectionPool(
            s.conninfo,
            kwargs=self.connect_kwargs(),
            min_size=s.pool_min_size,
            max_size=s.pool_max_size,
            timeout=s.pool_timeout,
            max_idle=s.pool_max_idle,
            configure=self._configure_pooled,
            name=f"kronika-{s.schema}",
            open=False,
        )
        try:
            with translated():
                await pool.open(wait=True, timeout=s.pool_timeout)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        metrics.watch_pool(self)

    async def close(self) -> None:
        """Close every connection of the pool."""
        await self._drop_spare()
        pool, self._pool = self._pool, None
        metrics.unwatch_pool(self)
        if self._check is not None:
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._check
        if pool is not None:
            await pool.close()

    def pool_stats(self) -> metrics.PoolStats:
        """The pool's figures for /metrics, from psycopg_pool's own bookkeeping."""
        stats: dict[str, int] = self._pool.get_stats() if self._pool is not None else {}
        size = stats.get("pool_size", 0)
        return metrics.PoolStats(
            engine="postgresql",
            size=size,
            max=self._settings.pool_max_size,
            in_use=max(0, size - stats.get("pool_available", 0)),
            waiting=stats.get("requests_waiting", 0),
            acquire_timeouts=stats.get("requests_errors", 0),
            connection_errors=stats.get("connections_errors", 0),
        )

    def connection(self) -> _Lease:
        """A pooled connection (autocommit) for the duration of an ``async with`` block."""
        return _Lease(self)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside a transaction, committed when the block ends."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def borrow(self) -> Connection:
        """A connection for one operation; give it back with :meth:`give_back`.

        Sequential use (nothing else running) keeps reusing one connection without a trip
        through the pool: the pool's bookkeeping costs about as much as a small query's
        client-side work. Concurrent operations go through the pool as usual.
        """
        pool = self._pool
        if pool is None:
            raise StoreClosed()
        self._active += 1
        spare, self._spare = self._spare, None
        if spare is not None and time.monotonic() - spare[1] < _SPARE_MAX_IDLE:
            return spare[0]
        try:
            with translated(self.connection_lost):
                if spare is not None:
                    await pool.putconn(spare[0])
                return await _getconn(pool)
        except BaseException:
            self._active -= 1
            raise

    async def give_back(self, conn: Connection, *, healthy: bool) -> None:
        """Return a connection from :meth:`borrow` (to the pool, or kept as the spare)."""
        self._active -= 1
        idle = conn.info.transaction_status == TransactionStatus.IDLE
        if healthy and idle and not self._active and self._spare is None and self._pool:
            self._spare = (conn, time.monotonic())
            return
        pool = self._pool
        if pool is None:
            await conn.close()
            return
        with translated(self.connection_lost):
            await pool.putconn(conn)

    async def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None and self._pool is not None:
            await self._pool.putconn(spare[0])

    def connection_lost(self) -> None:
        """Verify the idle connections in the background, dropping the broken ones."""
        if self._pool is not None and (self._check is None or self._check.done()):
            self._check = asyncio.get_running_loop().create_task(self._verify_pool())

    async def _verify_pool(self) -> None:
        with contextlib.suppress(psycopg.Error):
            await self._drop_spare()
            if self._pool is not None:
                await self._pool.check()


async def _getconn(pool: AsyncConnectionPool) -> Connection:
    """``pool.getconn()``, without losing a cancellation.

    The pool waits for a free connection with ``asyncio.wait_for``, which on Python 3.11
    drops a cancellation that arrives as the connection is handed over: the caller would
    go on as if never cancelled (a subscription would then never end).
    """
    task = asyncio.current_task()
    requested = task.cancelling() if task is not None else 0
    conn: Connection = await pool.getconn()
    if task is not None and task.cancelling() > requested:
        await pool.putconn(conn)
        raise asyncio.CancelledError()
    return conn


class _Lease:
    """``async with db.connection() as conn``: borrow a connection, translating driver
    errors raised while it is held (a class: this is on every operation's path)."""

    __slots__ = ("_conn", "_db")

    def __init__(self, db: Database) -> None:
        self._db = db

    async def __aenter__(self) -> Connection:
        self._conn = await self._db.borrow()
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._db.give_back(self._conn, healthy=exc is None)
        if isinstance(exc, psycopg.Error):
            with translated(self._db.connection_lost):
                raise exc
