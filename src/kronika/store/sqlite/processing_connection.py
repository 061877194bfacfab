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

Group commit
------------
Each ``COMMIT`` waits for the disk (an fsync with ``synchronous=full``), and a worker
catching up runs several partitions, each committing a batch at a time. Transactions that
queue for the connection while one holds it therefore share one SQLite transaction, as
the store's writer does for appends: each runs inside a ``SAVEPOINT`` (so its rollback
undoes only its own work) and, when it ends, the SQLite transaction stays open for the
next in line; a committer task queued behind them commits it once for all. A transaction's
``end`` returns only when that commit is done (or raises its error), so nothing is
reported committed before it is on disk. If the SQLite transaction is lost under a member
(SQLite rolls back a whole transaction on a full disk, for instance) every member of the
group fails, and the runtime handles their events again. A group stays open at most
``GROUP_WINDOW`` seconds (the store's appends wait for it), and a lone transaction commits
at once. Handlers' SQL is denied ``BEGIN``, ``COMMIT`` and ``ROLLBACK`` (by an SQLite
authorizer): ending the shared transaction would commit or drop other members' work.

So a transaction's commit may wait for the transactions queued behind it (at most
``GROUP_WINDOW`` seconds' worth, plus the last one's own time): a handler must not wait,
inside a processing transaction that has run a statement, for another processing
transaction to finish (it could not before either: it held the connection).
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

from kronika.errors import ConfigurationError, StoreClosed, Unavailable
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.connection import connect
from kronika.store.sqlite.errors import too_large, translate, translating
from kronika.store.sqlite.gate import gate_for

__all__ = ["GROUP_WINDOW", "ProcessingConnection", "refuse_nested_write"]

P = ParamSpec("P")
T = TypeVar("T")

GROUP_WINDOW = 0.02
"""Seconds, at most, that one SQLite transaction takes in transactions queued behind the
first (the store's appends wait for the write lock meanwhile)."""
_BEGIN = "BEGIN IMMEDIATE /* kronika processing */"
_COMMIT = "COMMIT /* kronika processing */"
_ROLLBACK = "ROLLBACK /* kronika processing */"
"""Kronika's own transaction statements: texts no handler writes, so their prepared copies
(which the authorizer allowed) are never run for a handler's statement."""
_SAVEPOINT = "SAVEPOINT kronika_processing"
_RELEASE = "RELEASE kronika_processing"
_ROLLBACK_TO = "ROLLBACK TO kronika_processing"

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


class _Group:
    """One SQLite transaction, shared by the processing transactions that queued for it."""

    __slots__ = ("committed", "done", "opened_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        """Its outcome: set when its ``COMMIT`` is done (or failed)."""
        self.done.add_done_callback(_retrieved)
        self.committed = 0
        """Members whose work it holds."""
        self.opened_at = loop.time()


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a group's error as seen: members that were cancelled no longer wait for it."""
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[None], outcome: BaseException | None) -> None:
    if not future.done():
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)


class ProcessingConnection:
    """One connection on one thread, held by one processing transaction at a time."""

    def __init__(self, config: SQLiteConfig) -> None:
        self._config = config
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kronika-sqlite-processing")
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._queued = 0
        """Transactions (and the committer) waiting for the lock."""
        self._group: _Group | None = None
        """The open SQLite transaction, between its BEGIN and its COMMIT's submission."""
        self._committer: asyncio.Task[None] | None = None
        self._gate = gate_for(config.path)
        self._inside = False
        """Whether this connection has its turn at the gate (used on its thread only)."""
        self._own_statement = False
        """True while Kronika runs one of its transaction statements (see _authorize)."""
        self.commits = 0
        """SQLite transactions committed (or submitted to commit) so far."""

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
                self._conn.set_authorizer(self._authorize)
            return function(self._conn, *args, **kwargs)

    def _authorize(self, action: int, *_: object) -> int:
        """Deny transaction statements but Kronika's own (checked when a statement is
        prepared: handlers' SQL cannot end a transaction other transactions share)."""
        if action == sqlite3.SQLITE_TRANSACTION and not self._own_statement:
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    async def begin(self) -> None:
        """Wait for the connection, then open a write transaction on it (or join the open
        one as a savepoint)."""
        self._queued += 1
        try:
            await self._lock.acquire()
        finally:
            self._queued -= 1
        try:
            if self._group is None:
                await self.run(self._begin)
                self._group = _Group(asyncio.get_running_loop())
            self.run_here(_execute, _SAVEPOINT)
        except BaseException as exc:
            self._abandon(exc)
            raise
        _HOLDING.set(_HOLDING.get() | {self._config.path})

    def _abandon(self, error: BaseException) -> None:
        """After a failed or cancelled BEGIN (which may still run) or SAVEPOINT: roll back,
        fail the members of the open group, if any, and let others in."""
        group, self._group = self._group, None
        with contextlib.suppress(StoreClosed):  # closing the connection rolls back
            self._submit(self._leave)
        if group is not None:
            _settle(group.done, _group_failed(error))
        self._lock.release()

    async def end(self, *, commit: bool) -> None:
        """Release (or roll back) this transaction's savepoint and let the next one in; with
        ``commit``, return once the SQLite transaction holding it has committed."""
        _HOLDING.set(_HOLDING.get() - {self._config.path})
        group = self._group
        if group is None:  # close() ended it under the transaction's feet
            self._lock.release()
            raise StoreClosed()
        try:
            self.run_here(_execute, _RELEASE if commit else _ROLLBACK_TO)
            if not commit:
                self.run_here(_execute, _RELEASE)
        except BaseException as exc:  # the SQLite transaction is lost: so is the group
            self._abandon(exc)
            raise
        group.committed += commit
        loop = asyncio.get_running_loop()
        if self._queued and loop.time() - group.opened_at < GROUP_WINDOW:
            self._start_committer()  # after those queued now: they join the group
        else:
            self._finish()
        self._lock.release()
        if commit:
            await asyncio.shield(group.done)

    def _start_committer(self) -> None:
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued(), name="kronika-commit")

    async def _commit_queued(self) -> None:
        """Take the connection after the transactions queued now, and commit their group."""
        self._queued += 1
        try:
            await self._lock.acquire()
        finally:
            self._queued -= 1
        try:
            self._finish()
        finally:
            self._lock.release()

    def _finish(self) -> None:
        """Commit the open group (roll it back if no member kept work in it), without
        waiting: its members wait for ``group.done``. The caller holds the lock."""
        group, self._group = self._group, None
        if group is None:
            return
        try:
            future = self._submit(self._commit if group.committed else self._leave)
        except StoreClosed as exc:
            _settle(group.done, exc)
            return
        self.commits += bool(group.committed)
        asyncio.wrap_future(future).add_done_callback(
            lambda outcome: _settle(
                group.done, None if outcome.cancelled() else outcome.exception()
            )
        )

    async def close(self) -> None:
        """Close the connection once the queued statements have run, and end the thread."""
        if self._committer is not None:
            self._committer.cancel()
        group, self._group = self._group, None
        if group is not None:
            _settle(group.done, StoreClosed())
        try:
            future = self._executor.submit(self._close)
        except RuntimeError:
            return  # closed already
        self._executor.shutdown(wait=False)
        await asyncio.shield(asyncio.wrap_future(future))

    # -- on the connection's thread ------------------------------------------------------------

    def _own(self, conn: sqlite3.Connection, statement: str) -> None:
        self._own_statement = True
        try:
            conn.execute(statement)
        finally:
            self._own_statement = False

    def _begin(self, conn: sqlite3.Connection) -> None:
        self._leave(conn)  # whatever a cancelled caller may have left open
        self._gate.enter(self._config.busy_timeout)
        self._inside = True
        try:
            self._own(conn, _BEGIN)
        except BaseException:
            self._leave(conn)
            raise

    def _commit(self, conn: sqlite3.Connection) -> None:
        try:
            self._own(conn, _COMMIT)
        except sqlite3.Error as exc:
            cause = translate(exc, self._config.path)
            raise Unavailable(f"nothing was written: the commit failed: {cause.message}") from exc
        finally:
            self._leave(conn)  # after a failed COMMIT: roll back what is left

    def _leave(self, conn: sqlite3.Connection) -> None:
        """Roll back an open transaction, if any, and give up this process's write turn."""
        try:
            if conn.in_transaction:
                self._own(conn, _ROLLBACK)
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


def _execute(conn: sqlite3.Connection, statement: str) -> None:
    conn.execute(statement)


def _group_failed(cause: BaseException) -> Unavailable:
    """What the other members of a lost group see."""
    detail = "it was cancelled" if isinstance(cause, asyncio.CancelledError) else cause
    return Unavailable(
        "nothing was written: the SQLite transaction this processing transaction shared "
        f"with others was rolled back ({detail})"
    )
