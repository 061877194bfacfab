"""What the writer thread's operations see: the group's transaction and the op interface."""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from kronika.domain.events import RecordedEvent
from kronika.store.inline import InlineHandlers, InlineOutput
from kronika.store.sqlite.gate import WriteGate
from kronika.store.sqlite.sql import QUERIES

__all__ = ["CallOp", "Transaction", "WriteOp"]

T = TypeVar("T")

_Mark = tuple[int | None, bool]


MAX_CACHED = 50_000
"""Entries the cache may hold before it is emptied at the start of a group."""


class Transaction:
    """The writer's connection and what it remembers between requests and groups.

    An operation may write on ``conn`` directly, or :meth:`defer` rows: deferred rows of
    many requests are written together, one ``executemany`` per statement. Appends add
    the events inline projections want to ``pending``: :meth:`write_deferred` applies them
    right after their rows are written, in the same transaction.

    ``cache`` (e.g. stream rows) and the next global position stay valid from one group to
    the next as long as no other connection commits, which ``PRAGMA data_version`` tells
    at the start of each group. So an append to a known stream costs no read at all.
    """

    __slots__ = (
        "_data_version",
        "_gate",
        "_inside",
        "_next_position",
        "_timeout",
        "cache",
        "conn",
        "deferred",
        "inline",
        "output",
        "pending",
        "wrote_events",
    )

    def __init__(
        self,
        conn: sqlite3.Connection,
        gate: WriteGate,
        timeout: float,
        inline: tuple[InlineHandlers, InlineOutput] | None = None,
    ) -> None:
        self.conn = conn
        self.inline: InlineHandlers | None = None if inline is None else inline[0]
        """The store's inline projections (None: none)."""
        self.output: InlineOutput | None = None if inline is None else inline[1]
        """Where their handlers write."""
        self.pending: list[RecordedEvent] = []
        """Stored events the inline projections still have to apply (after their rows)."""
        """The writer's connection."""
        self.wrote_events = False
        """Set by operations that wrote events: subscribers are woken after the commit."""
        self.deferred: dict[str, list[Any]] = {}
        """Statement -> parameter rows still to write."""
        self.cache: dict[Any, Any] = {}
        """State operations keep between requests, including their deferred changes.
        Emptied whenever a request writes directly, is rolled back, or a commit fails."""
        self._next_position: int | None = None
        self._data_version: int | None = None
        self._gate = gate
        self._timeout = timeout
        self._inside = False

    def begin(self) -> None:
        """Open the group's write transaction; forget the cache if others have written.

        It first waits its turn at the database's :class:`WriteGate`; :meth:`end` (after
        the ``COMMIT`` or ``ROLLBACK``) gives the turn to the next writer of this process.
        """
        self._gate.enter(self._timeout)
        self._inside = True
        self.conn.execute(QUERIES["begin_immediate"])
        version = self.conn.execute(QUERIES["data_version"]).fetchone()[0]
        if version != self._data_version or len(self.cache) > MAX_CACHED:
            self.invalidate()
            self._data_version = version
        self.wrote_events = False

    def end(self) -> None:
        """After the transaction's ``COMMIT`` or ``ROLLBACK``: let the next writer in."""
        if self._inside:
            self._inside = False
            self._gate.leave()

    def invalidate(self) -> None:
        """Forget everything remembered (after a rollback of the whole transaction)."""
        self.forget()
        self._next_position = None

    def allocate(self, count: int) -> int:
        """Reserve ``count`` consecutive global positions and return the first."""
        if self._next_position is None:
            row = self.conn.execute(QUERIES["last_position"]).fetchone()
            self._next_position = (row[0] if row else 0) + 1
        first = self._next_position
        self._next_position += count
        return first

    def defer(self, sql: str, rows: list[Any]) -> None:
        """Queue rows for ``executemany(sql, rows)`` at the next :meth:`write_deferred`."""
        self.deferred.setdefault(sql, []).extend(rows)

    def write_deferred(self) -> None:
        """Write every deferred row, in the order the statements were first deferred; then
        apply the pending events' inline projections (``InlineProjectionFailed`` if one fails)."""
        deferred, self.deferred = self.deferred, {}
        for sql, rows in deferred.items():
            self.conn.executemany(sql, rows)
        if self.pending:
            events, self.pending = self.pending, []
            assert self.inline is not None
            assert self.output is not None
            self.inline.run(events, self.output)

    def mark(self) -> _Mark:
        """State to restore when a request is undone."""
        return self._next_position, self.wrote_events

    def restore(self, mark: _Mark) -> None:
        """Go back to the state saved by :meth:`mark`."""
        self._next_position, self.wrote_events = mark

    def forget(self) -> None:
        """Drop deferred rows, pending events and cached state (after a rollback)."""
        self.deferred.clear()
        self.pending.clear()
        self.cache.clear()


class WriteOp(abc.ABC, Generic[T]):
    """One request to the writer."""

    weight: int = 1
    """Roughly how much it writes (events), to bound the size of a group."""
    defers_only: bool = False
    """True if :meth:`run` never writes directly, only through :meth:`Transaction.defer`
    (keeping ``Transaction.cache`` up to date itself). Otherwise the cache is emptied
    after the request."""
    batchable: bool = False
    """True if :meth:`run` defers only, needs no earlier request's rows to be written
    first, and raises (if at all) before it defers anything: consecutive batchable
    requests are then planned one after another and their rows written together."""

    @abc.abstractmethod
    def run(self, tx: Transaction) -> T:
        """Do the work inside the group's transaction; raise to undo this request only."""

    def recover(self, tx: Transaction, error: Exception) -> T:
        """After ``run`` raised and its writes were undone: answer anyway, or re-raise.

        It may only read. The default re-raises ``error``.
        """
        raise error


class CallOp(WriteOp[T]):
    """A write operation that calls ``function(connection)``."""

    def __init__(self, function: Callable[[sqlite3.Connection], T]) -> None:
        self._function = function

    def run(self, tx: Transaction) -> T:
        return self._function(tx.conn)
