"""One store subscription for every live event stream of a server: the broadcast hub.

Without it each ``/live`` connection would run its own store subscription, so 100
subscribers would read every new event from the database 100 times. The hub runs a single
subscription to the whole global log (started when the first subscriber arrives, stopped
when the last one leaves) and hands each event to every subscriber whose filter it passes,
in memory, with its JSON encoded once.

Each subscriber has a bounded buffer. The hub never waits for a subscriber: one whose buffer
is full is *overflowed* and dropped, so a slow client cannot slow the others down nor grow
the server's memory; its SSE response ends and the client resumes with ``Last-Event-ID``
(the Kronika client does so by itself).

A subscriber that starts behind the live tail catches up from the store on its own
(:mod:`kronika.server.sse` reads pages of the log or the stream) while already attached, so
nothing that happens during the catch-up is missed; the overlap is removed by position (or
version) and an overflow during catch-up only means reading on from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from kronika.domain.events import RecordedEvent
from kronika.errors import KronikaError
from kronika.server.wire import event_json
from kronika.store.protocol import EventStore

__all__ = ["BUFFER_SIZE", "Hub", "Live", "Overflowed"]

BUFFER_SIZE = 1024
"""Events a subscriber may have waiting before it is dropped."""
log = logging.getLogger("kronika.server.hub")


@dataclass(frozen=True, slots=True)
class Live:
    """An event as the hub delivers it: the event and its JSON, encoded once for everyone."""

    event: RecordedEvent
    data: bytes


class Overflowed(Exception):
    """The subscriber fell more than its buffer behind and was dropped by the hub."""


@dataclass(eq=False)
class Subscriber:
    """One attached live stream: its filter, its buffer and why it ended, if it did."""

    accepts: Callable[[RecordedEvent], bool]
    limit: int
    buffer: deque[Live] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    overflowed: bool = False
    ended: bool = False
    """The hub's store subscription ended (the store closed on shutdown)."""
    failure: KronikaError | None = None
    """The error that stopped the hub's store subscription."""

    async def get(self) -> Live | None:
        """The next event, ``None`` at the end; :class:`Overflowed` or the hub's failure."""
        while not self.buffer:
            if self.overflowed:
                raise Overflowed
            if self.failure is not None:
                raise self.failure
            if self.ended:
                return None
            self.ready.clear()
            await self.ready.wait()
        return self.buffer.popleft()


class Hub:
    """The shared live subscription of one server process (``ServerState.hub``)."""

    def __init__(self, buffer_size: int = BUFFER_SIZE) -> None:
        self.buffer_size = buffer_size
        self._subscribers: set[Subscriber] = set()
        self._store: EventStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.reads = 0
        """Events the hub has read from the store (for tests: one read per event)."""

    @property
    def subscribers(self) -> int:
        """Subscribers attached now."""
        return len(self._subscribers)

    async def running(self) -> None:
        """Return once the store subscription has taken its starting position."""
        await self._started.wait()

    async def attach(
        self, store: EventStore, accepts: Callable[[RecordedEvent], bool]
    ) -> Subscriber:
        """A new subscriber: every event the hub reads from now on that ``accepts`` passes.

        Returns once the hub's subscription is running, so an event appended after this
        call returns reaches the subscriber (older ones are the caller's catch-up).
        """
        subscriber = Subscriber(accepts, self.buffer_size)
        self._subscribers.add(subscriber)
        if self._task is None or self._task.done() or self._store is not store:
            await self._restart(store)
        await self._started.wait()
        return subscriber

    def detach(self, subscriber: Subscriber) -> None:
        """Forget ``subscriber``; the last one to leave stops the store subscription."""
        self._subscribers.discard(subscriber)
        if not self._subscribers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        """Stop the store subscription (on shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _restart(self, store: EventStore) -> None:
        await self.close()
        self._store = store
        self._started = asyncio.Event()
        self._task = asyncio.create_task(self._run(store, self._started), name="sse-hub")

    async def _run(self, store: EventStore, started: asyncio.Event) -> None:
        try:
            head = await store.head_position()
            subscription = store.subscribe(from_position=head + 1)
            started.set()
            try:
                async for event in subscription:
                    self.reads += 1
                    self._dispatch(event)
            finally:
                close = getattr(subscription, "aclose", None)
                if close is not None:
                    await close()
            failure: KronikaError | None = None
        except KronikaError as exc:
            failure = exc
        except Exception:
            log.exception("the live event subscription failed")
            failure = KronikaError("the event stream failed")
        finally:
            started.set()  # never leave an attach() waiting
        if self._task is asyncio.current_task():
            self._task = None
        for subscriber in list(self._subscribers):
            subscriber.failure = failure
            subscriber.ended = True
            subscriber.ready.set()

    def _dispatch(self, event: RecordedEvent) -> None:
        data: bytes | None = None
        for subscriber in list(self._subscribers):
            if subscriber.overflowed or not subscriber.accepts(event):
                continue
            if len(subscriber.buffer) >= subscriber.limit:
                subscriber.overflowed = True
                subscriber.buffer.clear()
                self._subscribers.discard(subscriber)
            else:
                if data is None:
                    data = orjson.dumps(event_json(event))
                subscriber.buffer.append(Live(event, data))
            subscriber.ready.set()
