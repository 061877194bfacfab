"""The store's one writer thread, which commits concurrent writes in groups.

Every write (appends, deletes, settings, migrations) is a :class:`WriteOp` handed to
:meth:`Writer.submit`. The thread takes everything queued and opens one transaction
(``BEGIN IMMEDIATE``). Plain appends are checked one after another against the state the
earlier ones leave, and their rows are written together; any other request runs in its own
savepoint. A request that fails gets its own exception and leaves no trace; the others
are unaffected. One ``COMMIT`` (one fsync) then makes the group durable, and each caller's
future is resolved on its event loop. If the commit fails, every request of the group
fails and nothing of it is written.

Inline projections (:mod:`.inline`) run when an append's rows are written: for the planned
appends of a group, right after their rows; if a handler fails, the rows are rolled back to
the savepoint and the appends run one by one, each in its own savepoint, so only the
append whose handler fails gets ``InlineProjectionFailed``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kronika.errors import InlineProjectionFailed, StoreClosed, Unavailable
from kronika.store.inline import InlineHandlers
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.connection import connect
from kronika.store.sqlite.errors import too_large, translate
from kronika.store.sqlite.gate import gate_for
from kronika.store.sqlite.inline import SQLiteInlineOutput
from kronika.store.sqlite.sql import QUERIES
from kronika.store.sqlite.transaction import CallOp, Transaction, WriteOp

__all__ = ["Writer", "WriterStats"]

T = TypeVar("T")

MAX_GROUP_REQUESTS = 1_000
"""Most requests committed together."""
MAX_GROUP_EVENTS = 100_000
"""Most events committed together (a single larger request still runs alone)."""

_COMMIT, _ROLLBACK = QUERIES["commit"], QUERIES["rollback"]
_SAVEPOINT, _RELEASE = QUERIES["savepoint"], QUERIES["release_savepoint"]
_ROLLBACK_TO = QUERIES["rollback_to_savepoint"]


@dataclass
class WriterStats:
    """Counters for tests and metrics."""

    requests: int = 0
    """Requests executed (successful or not)."""
    commits: int = 0
    """Transactions committed: with group commit, fewer than requests under load."""
    largest_group: int = 0
    """Most requests committed by one transaction."""


@dataclass(slots=True)
class _Request:
    op: WriteOp[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


_Outcome = tuple[bool, Any]
"""(True, result) or (False, exception)."""


class _TransactionLostError(Exception):
    """SQLite rolled the whole transaction back (e.g. disk full): the group fails."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class Writer:
    """Owns the writing connection and the thread that uses it."""

    def __init__(
        self,
        config: SQLiteConfig,
        on_commit: Callable[[], None],
        inline: InlineHandlers | None = None,
    ) -> None:
        self._config = config
        self._on_commit = on_commit
        self._inline = inline
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._crowded = False
        """The last group had more than one request: wait a moment before cutting the next."""
        self._carried: list[_Request | None] = []
        self._lock = threading.Lock()
        self._accepting = False
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._main, name="kronika-sqlite-writer", daemon=True
        )
        self.stats = WriterStats()
        """Counters, updated by the writer thread."""

    # -- the caller's side ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the thread and wait until its connection is open."""
        self._thread.start()
        await asyncio.wrap_future(self._ready)

    async def submit(self, op: WriteOp[T]) -> T:
        """Run ``op`` in the next group and return its result (or raise its error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if not self._accepting:
                raise StoreClosed()
            self._queue.put(_Request(op, future, loop))
        return await future

    async def call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function(connection)`` in the writer's transaction."""
        return await self.submit(CallOp(function))

    async def stop(self) -> None:
        """Finish the queued requests, then close the connection and end the thread."""
        with self._lock:
            if self._accepting:
                self._accepting = False
                self._queue.put(None)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    # -- the thread: groups ------------------------------------------------------------------

    def _main(self) -> None:
        try:
            conn = connect(self._config, writer=True)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        with self._lock:
            self._accepting = True
        self._ready.set_result(None)
        inline = None
        if self._inline is not None:
            inline = (self._inline, SQLiteInlineOutput(conn, self._config.namespace))
        tx = Transaction(conn, gate_for(self._config.path), self._config.busy_timeout, inline)
        try:
            while (group := self._next_group()) is not None:
                self._run_guarded(tx, group)
        finally:
            conn.close()
            self._refuse_the_rest()

    def _refuse_the_rest(self) -> None:
        """After the thread's loop ends (normally only by stop()), fail what is queued."""
        with self._lock:
            self._accepting = False
        left = [item for item in self._carried if item is not None]
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                left.append(item)
        if left:
            self._fail(left, StoreClosed("the SQLite writer stopped"))

    def _next_group(self) -> list[_Request] | None:
        first = self._carried.pop() if self._carried else self._queue.get()
        if first is None:
            return None
        # Under concurrency, let the event loop thread (woken by the previous commit) finish
        # queueing its requests before the group is cut: without this, groups alternate
        # 1, n-1, 1, ... A lone writer gains nothing from the yield and pays a reschedule.
        if self._crowded:
            time.sleep(0)
        group, weight = [first], first.op.weight
        while len(group) < MAX_GROUP_REQUESTS:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None or weight + item.op.weight > MAX_GROUP_EVENTS:
                self._carried.append(item)
                break
            group.append(item)
            weight += item.op.weight
        self._crowded = len(group) > 1
        return group

    def _run_guarded(self, tx: Transaction, group: list[_Request]) -> None:
        """Run a group; a bug in the writer fails the group instead of killing the thread."""
        try:
            self._run_group(tx, group)
        except Exception as exc:
            self._abandon(tx)
            self._fail(group, exc)

    def _run_group(self, tx: Transaction, group: list[_Request]) -> None:
        self.stats.requests += len(group)
        try:
            tx.begin()
        except sqlite3.Error as exc:
            self._abandon(tx)
            self._fail(group, translate(exc, self._config.path))
            return
        try:
            outcomes = _Group(self, tx, group).run()
        except _TransactionLostError as lost:
            self._abandon(tx)
            self._fail(group, lost.error)
            return
        if self._commit(tx, group):
            self._deliver(group, outcomes, wrote=tx.wrote_events)

    def public(self, error: Exception) -> Exception:
        """The error a caller sees: ``sqlite3`` errors translated."""
        if isinstance(error, sqlite3.Error):
            return translate(error, self._config.path)
        if isinstance(error, OverflowError):
            return too_large(error)
        return error

    def _commit(self, tx: Transaction, group: list[_Request]) -> bool:
        try:
            tx.conn.execute(_COMMIT)
        except sqlite3.Error as exc:
            self._abandon(tx)
            cause = translate(exc, self._config.path)
            failed = Unavailable(f"nothing was written: the commit failed: {cause.message}")
            self._fail(group, failed)
            return False
        tx.end()
        self.stats.commits += 1
        self.stats.largest_group = max(self.stats.largest_group, len(group))
        return True

    @staticmethod
    def _abandon(tx: Transaction) -> None:
        """Roll back whatever is left of the transaction and forget what it remembered."""
        tx.invalidate()
        if tx.conn.in_transaction:
            # If even this fails, the connection is beyond help; the next BEGIN will say why.
            with contextlib.suppress(sqlite3.Error):
                tx.conn.execute(_ROLLBACK)
        tx.end()

    def _fail(self, group: list[_Request], error: Exception) -> None:
        self._deliver(group, [(False, error)] * len(group), wrote=False)

    def _deliver(self, group: list[_Request], outcomes: list[_Outcome], *, wrote: bool) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
        for request, outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(request.loop, []).append((request.future, outcome))
        on_commit = self._on_commit if wrote else None
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items, on_commit)
            except RuntimeError:
                continue  # that event loop is closed: nobody is waiting any more
            on_commit = None


class _Group:
    """Runs one group's requests inside the open transaction."""

    def __init__(self, writer: Writer, tx: Transaction, requests: list[_Request]) -> None:
        self._writer = writer
        self._tx = tx
        self._requests = requests
        self._outcomes: list[_Outcome] = []
        self._planned: list[int] = []
        """Requests whose rows are deferred and not yet written."""

    def run(self) -> list[_Outcome]:
        """Each request's outcome, in order."""
        for index, request in enumerate(self._requests):
            if request.op.batchable:
                self._plan(index, request)
            else:
                self._flush()
                self._outcomes.append(self._run_alone(request))
        self._flush()
        return self._outcomes

    def _plan(self, index: int, request: _Request) -> None:
        mark = self._tx.mark()
        try:
            self._outcomes.append((True, request.op.run(self._tx)))
        except Exception as exc:  # this request's own error; nothing of it was deferred
            self._check_alive(exc)
            self._tx.restore(mark)
            self._flush()  # its recovery must see the earlier requests' events
            self._outcomes.append(self._recover(request, exc))
            return
        self._planned.append(index)

    def _flush(self) -> None:
        """Write the planned requests' rows; if that fails, run them one by one instead."""
        if not self._planned:
            return
        planned, self._planned = self._planned, []
        try:
            self._tx.conn.execute(_SAVEPOINT)
            self._tx.write_deferred()
            self._tx.conn.execute(_RELEASE)
        except (sqlite3.Error, InlineProjectionFailed) as exc:
            self._undo(exc)
            self._tx.invalidate()  # positions are re-read from the rolled-back state
            for index in planned:
                self._outcomes[index] = self._run_alone(self._requests[index])

    def _run_alone(self, request: _Request) -> _Outcome:
        tx, mark = self._tx, self._tx.mark()
        try:
            tx.conn.execute(_SAVEPOINT)
            result = request.op.run(tx)
            tx.write_deferred()
            tx.conn.execute(_RELEASE)
        except Exception as exc:  # each request gets its own error, whatever it is
            self._undo(exc)
            tx.forget()
            tx.restore(mark)
            return self._recover(request, exc)
        if not request.op.defers_only:
            tx.cache.clear()  # it wrote directly: what the cache remembers may be stale
        return True, result

    def _check_alive(self, error: Exception) -> None:
        """Give up the group if SQLite rolled the whole transaction back."""
        if not self._tx.conn.in_transaction:
            raise _TransactionLostError(self._writer.public(error))

    def _undo(self, error: Exception) -> None:
        """Roll back to the savepoint, or give up the group if the transaction is gone."""
        conn = self._tx.conn
        self._check_alive(error)
        try:
            conn.execute(_ROLLBACK_TO)
            conn.execute(_RELEASE)
        except sqlite3.Error as exc:
            raise _TransactionLostError(self._writer.public(exc)) from exc

    def _recover(self, request: _Request, error: Exception) -> _Outcome:
        try:
            return True, request.op.recover(self._tx, error)
        except Exception as exc:  # delivered to the caller, not raised here
            self._check_alive(exc)
            return False, self._writer.public(exc)


def _resolve(
    items: list[tuple[asyncio.Future[Any], _Outcome]], on_commit: Callable[[], None] | None
) -> None:
    """Runs on the caller's event loop: set each future's result or exception."""
    for future, (ok, value) in items:
        if future.done():
            continue  # the caller was cancelled; the write happened anyway
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
    if on_commit is not None:
        on_commit()
