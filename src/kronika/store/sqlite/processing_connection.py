"""The connection that processing transactions run on: one connection, one thread.

A processing transaction spans awaits (the handlers run between its statements), so it
cannot share the writer thread's group transaction. It runs on a connection of its own,
owned by a single thread; statements are queued to that thread and run in order. One
transaction at a time holds the connection: from its first statement (``BEGIN
IMMEDIATE``, which takes SQLite's write lock) to its ``COMMIT`` or ``ROLLBACK``. Meanwhile
the store's writer thread waits for its turn (see :mod:`.gate`, at most ``busy_timeout``);
processing transactions are short.

Because the thread runs statements in the order they were queued, a transaction lets the
next one in as soon as its ``COMMIT`` or ``ROLLBACK`` is queued: that is safe even when
the caller is cancelled while waiting for it.

Only ``BEGIN IMMEDIATE`` (which may wait for the lock) and ``COMMIT`` (which waits for the
disk) go to the thread. The statements in between (a handler's SQL, documents, the fenced
checkpoint) run on the caller's thread (:meth:`ProcessingConnection.run_here`): a hop to
the thread and back costs about 100-170 µs, the statement itself a few, and a projection
that writes one row per event would spend nearly all its time hopping. That is safe
because the holder of the connection is the only one queueing work for its thread, and it
waits for ``BEGIN`` before its first statement; its ``COMMIT`` is queued after the last.
Inside a write transaction those statements never wait for a lock, so they do not stall
the event loop for longer than their own work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from kronika.errors import ConfigurationError, StoreClosed
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.connection import connect
from kronika.store.sqlite.errors import too_large, translate, translating
from kronika.store.sqlite.gate import gate_for
from kronika.store.sqlite.sql import QUERIES

__all__ = ["ProcessingConnection", "refuse_nested_write"]

P = ParamSpec("P")
T = TypeVar("T")

_HOLDING: ContextVar[frozenset[Path]] = ContextVar("kronika_sqlite_holding", default=frozenset())
"""The databases whose write lock the current task's processing transactions hold."""


def refuse_nested_write(path: Path) -> None:
    """Raise instead of deadlocking when a handler writes to the store behind its own lock.

    A handler whose transaction holds the write lock (from its first statement on) cannot
    append to the same database: the append would wait for that lock until
    ``busy_timeout`` runs out.
    """
    if path in _HOLDING.get():
        raise ConfigurationError(
            f"cannot write to the SQLite store ({path}) from inside a processing transaction "
            "that has run a statement: SQLite has one writer, and this transaction holds it. "
            "Append before the transaction's first statement, e.g. from a reactor"
        )


class ProcessingConnection:
    """One connection on one thread, held by one processing transaction at a time."""

    def __init__(self, config: SQLiteConfig) -> None:
        self._config = config
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kronika-sqlite-processing")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._gate = gate_for(config.path)
        self._inside = False
        """Whether this connection has its turn at the gate (used on its thread only)."""

    async def run(
        self,
        function: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``function(connection, *args, **kwargs)`` on the connection's thread."""
        return await asyncio.wrap_future(self._submit(function, *args, **kwargs))

    def run_here(
        self,
        function: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``function(connection, *args, **kwargs)`` on the calling thread.

        Only for the transaction that holds the connection, between :meth:`begin` and
        :meth:`end` (its thread is idle then).
        """
        conn = self._conn
        if conn is None:  # closed under the transaction's feet
            raise StoreClosed()
        try:  # what translating() does, without a context manager per statement
            return function(conn, *args, **kwargs)
        except sqlite3.Error as exc:
            raise translate(exc, self._config.path) from exc
        except OverflowError as exc:
            raise too_large(exc) from exc

    def _submit(
        self,
        function: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> concurrent.futures.Future[T]:
        try:
            return self._executor.submit(functools.partial(self._call, function, *args, **kwargs))
        except RuntimeError:  # the executor was shut down: the store is closed
            raise StoreClosed() from None

    def _call(
        self,
        function: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        with translating(self._config.path):
            if self._conn is None:
                self._conn = connect(self._config, writer=True)
            return function(self._conn, *args, **kwargs)

    async def begin(self) -> None:
        """Wait for the connection, then open a write transaction on it."""
        await self._lock.acquire()
        try:
            await self.run(self._begin)
        except BaseException:
            self._abandon()
            raise
        _HOLDING.set(_HOLDING.get() | {self._config.path})

    def _abandon(self) -> None:
        """After a failed or cancelled BEGIN (which may still run): undo it, let others in."""
        with contextlib.suppress(StoreClosed):  # closing the connection rolls back
            self._submit(self._leave)
        self._lock.release()

    async def end(self, *, commit: bool) -> None:
        """Commit or roll back, and let the next transaction in."""
        _HOLDING.set(_HOLDING.get() - {self._config.path})
        try:
            future = self._submit(self._commit if commit else self._leave)
        finally:
            self._lock.release()
        await asyncio.shield(asyncio.wrap_future(future))

    async def close(self) -> None:
        """Close the connection once the queued statements have run, and end the thread."""
        try:
            future = self._executor.submit(self._close)
        except RuntimeError:
            return  # closed already
        self._executor.shutdown(wait=False)
        await asyncio.shield(asyncio.wrap_future(future))

    # -- on the connection's thread ------------------------------------------------------------

    def _begin(self, conn: sqlite3.Connection) -> None:
        self._leave(conn)  # whatever a cancelled caller may have left open
        self._gate.enter(self._config.busy_timeout)
        self._inside = True
        try:
            conn.execute(QUERIES["begin_immediate"])
        except BaseException:
            self._leave(conn)
            raise

    def _commit(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute(QUERIES["commit"])
        finally:
            self._leave(conn)  # after a failed COMMIT: roll back what is left

    def _leave(self, conn: sqlite3.Connection) -> None:
        """Roll back an open transaction, if any, and give up this process's write turn."""
        try:
            if conn.in_transaction:
                conn.execute(QUERIES["rollback"])
        finally:
            if self._inside:
                self._inside = False
                self._gate.leave()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._leave(conn)  # a closing store may leave a transaction open
            conn.close()
