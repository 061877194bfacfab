"""Waking subscribers: directly inside this process, with LISTEN/NOTIFY across processes.

NOTIFY is never sent inside an append transaction: PostgreSQL serialises the commits of all
transactions that notified on one global lock, which would cap concurrent appends. Instead,
after a successful append the store wakes its own subscribers at once and flags the
:class:`Announcer`, which sends ``pg_notify`` from a connection of its own (with
``synchronous_commit`` off: a lost notification only delays a wake-up until the fallback
poll), with at most one in flight, coalescing bursts. A :class:`Listener` holds a dedicated
``LISTEN`` connection outside the pool and reconnects when it drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable

import psycopg

from kronika.errors import KronikaError
from kronika.store.postgres.database import Connection, Database
from kronika.store.postgres.queries import Queries

__all__ = ["Announcer", "Listener", "channel_name"]

logger = logging.getLogger("kronika.store.postgres")

_MAX_CHANNEL = 63
_RETRY_MIN, _RETRY_MAX = 0.1, 5.0


def channel_name(schema: str, namespace: str) -> str:
    """The NOTIFY channel of one schema and namespace (at most 63 bytes)."""
    name = f"kronika.{schema}.{namespace}"
    if len(name.encode()) <= _MAX_CHANNEL:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:32]
    return f"kronika.{digest}"


async def _close_quietly(conn: Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg.Error):
            await conn.close()


class Announcer:
    """Tells other processes that new events were appended, coalescing bursts."""

    def __init__(self, db: Database, queries: Queries, channel: str, *, spacing: float = 0.025):
        self._db = db
        self._queries = queries
        self._channel = channel
        self._spacing = spacing
        self._pending = False
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None

    def announce(self) -> None:
        """Flag that events were appended; a notification follows shortly."""
        self._pending = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            self._pending = False
            sent = await self._send()
            await asyncio.sleep(self._spacing if sent else 1.0)

    async def _send(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await self._db.connect()
                await self._conn.execute(self._queries.relax_commit)
            await self._conn.execute(self._queries.notify, {"channel": self._channel})
        except (KronikaError, psycopg.Error) as exc:
            logger.warning("cannot send a notification: %s", exc, extra={"action": "notify"})
            conn, self._conn = self._conn, None
            await _close_quietly(conn)
            return False
        return True

    async def close(self) -> None:
        """Stop sending and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        conn, self._conn = self._conn, None
        await _close_quietly(conn)


class Listener:
    """Holds a ``LISTEN`` connection and calls ``wake`` on every notification."""

    def __init__(self, db: Database, queries: Queries, wake: Callable[[], None]) -> None:
        self._db = db
        self._queries = queries
        self._wake = wake
        self._task: asyncio.Task[None] | None = None
        self._listening = False

    def start(self) -> None:
        """Start listening in the background (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        delay = _RETRY_MIN
        while True:
            self._listening = False
            try:
                await self._listen()
            except (KronikaError, psycopg.Error) as exc:
                logger.warning("notification listener lost: %s", exc, extra={"action": "listen"})
            delay = _RETRY_MIN if self._listening else min(delay * 2, _RETRY_MAX)
            await asyncio.sleep(delay)

    async def _listen(self) -> None:
        conn = await self._db.connect()
        try:
            await conn.execute(self._queries.listen)
            self._listening = True
            self._wake()  # events appended while nobody listened are readable now
            async for _ in conn.notifies():
                self._wake()
        finally:
            await _close_quietly(conn)

    async def close(self) -> None:
        """Stop listening and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
