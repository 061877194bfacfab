"""A pool of reader threads, each with its own connection (WAL lets them read concurrently)."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Concatenate, ParamSpec, TypeVar

from kronika.observability import metrics
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.connection import connect
from kronika.store.sqlite.errors import translating
from kronika.store.sqlite.sql import QUERIES

__all__ = ["ReaderPool"]

P = ParamSpec("P")
T = TypeVar("T")


class ReaderPool:
    """Runs read functions on ``config.readers`` threads, one connection per thread.

    A separate connection answers :meth:`data_version`, whose value is only comparable
    with itself.
    """

    def __init__(self, config: SQLiteConfig) -> None:
        self._config = config
        self._executor = ThreadPoolExecutor(
            config.readers, thread_name_prefix="kronika-sqlite-reader"
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._watch: sqlite3.Connection | None = None
        metrics.watch_pool(self)

    async def run(
        self,
        function: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``function(connection, *args, **kwargs)`` on a reader thread."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self._call, function, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def run_here(
        self,
        function: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``function(connection, *args, **kwargs)`` on the calling thread, on a connection
        of that thread's own: it blocks the caller (the event loop) while it runs."""
        return self._call(function, *args, **kwargs)

    def _call(
        self,
        function: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        with translating(self._config.path):
            return function(conn, *args, **kwargs)

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self._config, writer=False)
        with self._lock:
            self._connections.append(conn)
        return conn

    async def data_version(self) -> int:
        """A number that changes whenever another connection commits to the database."""
        return await self.run(self._data_version)

    def _data_version(self, _: sqlite3.Connection) -> int:
        if self._watch is None:
            self._watch = self._connect()
        value: int = self._watch.execute(QUERIES["data_version"]).fetchone()[0]
        return value

    def pool_stats(self) -> metrics.PoolStats:
        """The reader pool's size for /metrics (SQLite has no connection requests to wait)."""
        size = self._config.readers
        return metrics.PoolStats(
            engine="sqlite",
            size=size,
            max=size,
            in_use=0,
            waiting=0,
            acquire_timeouts=0,
            connection_errors=0,
        )

    def close(self) -> None:
        """Wait for running reads, then close every connection (blocking)."""
        metrics.unwatch_pool(self)
        self._executor.shutdown(wait=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
