"""Noticing writes made by other connections and processes, for waiting subscriptions.

Writes by this store's own writer wake subscriptions directly. Commits by any other
connection change ``PRAGMA data_version``; while at least one subscription waits, a poller
checks it every ``poll_interval`` seconds and wakes them when it changes. The check is a
single pragma on an idle connection: it reads no table.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from kronika.errors import KronikaError
from kronika.store.base import Notifier
from kronika.store.sqlite.readers import ReaderPool

__all__ = ["ChangeWatcher"]


class ChangeWatcher:
    """Wakes the notifier's waiters when another connection commits."""

    def __init__(
        self, readers: ReaderPool, notifier: Notifier, interval: float, is_open: Callable[[], bool]
    ) -> None:
        self._readers = readers
        self._notifier = notifier
        self._interval = interval
        self._is_open = is_open
        self._waiters = 0
        self._task: asyncio.Task[None] | None = None

    async def wait(self, token: int) -> None:
        """Return when anything was written after ``token`` (by anyone), or on close."""
        self._waiters += 1
        try:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._poll(), name="kronika-sqlite-watch")
            await self._notifier.wait(token, None)
        finally:
            self._waiters -= 1

    async def _poll(self) -> None:
        last = await self._version()
        # A commit between the waiter's read and that first look would go unnoticed: wake
        # the waiters once, so they read again with the poller's baseline in place.
        self._notifier.notify()
        while self._waiters and self._is_open():
            await asyncio.sleep(self._interval)
            current = await self._version()
            if current != last:
                last = current
                self._notifier.notify()

    async def _version(self) -> int | None:
        try:
            return await self._readers.data_version()
        except KronikaError:
            self._notifier.notify()  # let the subscriptions meet the error in their read
            return None

    async def close(self) -> None:
        """Stop polling."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
