"""Sagas (process managers): long-running processes driven by events.

A saga instance lives per *key*: by default the event's correlation id, so every event of
one business process (and every event its commands cause, which inherit the correlation
id) reaches the same instance. Each instance has persisted state, sends commands as events
to other streams, records the steps it completed with how to undo them, and compensates
them in reverse order when the process fails::

    class Checkout(Saga):
        name = "checkout"

        @on(OrderPlaced)
        async def placed(self, event: OrderPlaced, saga: SagaContext) -> None:
            saga.state["order"] = event.order_id
            await saga.send(f"stock-{event.sku}", NewEvent("StockReserved", {...}))
            release = NewEvent("StockReleased", {...})
            saga.step("reserve", compensate=(f"stock-{event.sku}", release))

        @on(PaymentDeclined)
        async def declined(self, event: PaymentDeclined, saga: SagaContext) -> None:
            await saga.compensate("payment declined")   # StockReleased, in reverse step order

Exactly once, with an event store: a handler's commands are appended with ids derived
from the saga, the key, the triggering event and the command's place in the handler, so a
handler run again after a crash (or a failed commit) appends nothing new: the store treats
the repeat as a retry of the same append. The state is read before the handler runs and
written, with the partition's checkpoint, after its commands were appended.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from kronika.domain.context import caused_by
from kronika.domain.events import ANY, ExpectedVersionLike, NewEvent, RecordedEvent
from kronika.errors import ConfigurationError
from kronika.observability import metrics
from kronika.runtime.processor import Context, Processor, ProcessorKind, on
from kronika.runtime.progress import processing_of
from kronika.store.protocol import EventStore

__all__ = ["TIMED_OUT", "TIMEOUTS", "Saga", "SagaContext", "SagaStatus", "on_timeout"]

_IDS = uuid.UUID("5b1a7c0e-3f52-4c8e-9a51-7d2f0e6b4c11")
"""Namespace of the deterministic ids of commands that sagas send."""


TIMED_OUT = "SagaTimedOut"
"""The type of the events that deliver a saga's timeouts."""
TIMEOUTS = "sagatimeouts"
"""The category of the streams those events are appended to (one stream per saga)."""
_TIMEOUT_HANDLER = "__kronika_saga_timeout__"

F = TypeVar("F", bound=Callable[..., Awaitable[None]])


def on_timeout(timeout: str) -> Callable[[F], F]:
    """Mark an async method ``(self, saga: SagaContext)`` as the handler of a timeout."""

    def mark(method: F) -> F:
        setattr(method, _TIMEOUT_HANDLER, timeout)
        return method

    return mark


class SagaStatus:
    """Where a saga instance stands (stored as text in its state document)."""

    ACTIVE = "active"
    COMPLETED = "completed"
    COMPENSATED = "compensated"


class SagaContext:
    """One saga instance while a handler runs: its state, and what it may do."""

    def __init__(self, saga: Saga, key: str, document: dict[str, Any], context: Context) -> None:
        self.saga = saga
        self.key = key
        """The instance's key (the correlation id unless the saga keys otherwise)."""
        self.event = context.event
        """The event being handled, as stored."""
        self.state: dict[str, Any] = document["state"]
        """The instance's own data: read before the handler, saved after it (JSON)."""
        self._document = document
        self._context = context
        self._sent = 0

    @property
    def status(self) -> str:
        """``active``, ``completed`` or ``compensated``."""
        return str(self._document["status"])

    @property
    def steps(self) -> list[str]:
        """Names of the completed steps that can still be compensated, in order."""
        return [step["name"] for step in self._document["steps"]]

    async def send(
        self,
        stream: str,
        events: NewEvent | Sequence[NewEvent],
        *,
        expected_version: ExpectedVersionLike = ANY,
    ) -> None:
        """Append a command (events) to ``stream`` now, idempotently (see the module)."""
        batch = [events] if isinstance(events, NewEvent) else list(events)
        stamped = [
            NewEvent(e.type, e.data, e.metadata, id=self._next_id(), tags=e.tags) for e in batch
        ]
        await self._context.store.append(stream, stamped, expected_version=expected_version)

    def _next_id(self) -> uuid.UUID:
        self._sent += 1
        return uuid.uuid5(_IDS, f"{self.saga.name}/{self.key}/{self.event.id}/{self._sent}")

    def step(self, name: str, *, compensate: tuple[str, NewEvent] | None = None) -> None:
        """Record a completed step and, optionally, the command that undoes it."""
        undo = None
        if compensate is not None:
            stream, event = compensate
            undo = {
                "stream": stream,
                "type": event.type,
                "data": event.data,
                "metadata": event.metadata,
                "tags": list(event.tags),
            }
        self._document["steps"].append({"name": name, "compensate": undo})

    async def compensate(self, reason: str) -> None:
        """Undo the completed steps, newest first, and end the instance as compensated."""
        for step in reversed(self._document["steps"]):
            undo = step["compensate"]
            if undo is not None:
                await self.send(
                    undo["stream"],
                    NewEvent(undo["type"], undo["data"], undo["metadata"], tags=undo["tags"]),
                )
        self._document["steps"] = []
        self._document["status"] = SagaStatus.COMPENSATED
        self._document["reason"] = reason

    def complete(self) -> None:
        """End the instance: later events of its key are ignored."""
        self._document["status"] = SagaStatus.COMPLETED

    def schedule(self, timeout: str, after: float | timedelta) -> None:
        """Call the saga's ``@on_timeout(timeout)`` handler after ``after`` seconds unless
        cancelled, rescheduled or the instance ends first (replaces an earlier schedule)."""
        delay = after if isinstance(after, timedelta) else timedelta(seconds=after)
        self._document["deadlines"][timeout] = (datetime.now(UTC) + delay).isoformat()

    def cancel(self, timeout: str) -> None:
        """Cancel a scheduled timeout (nothing happens if none is scheduled)."""
        self._document["deadlines"].pop(timeout, None)

    @property
    def deadlines(self) -> dict[str, str]:
        """Scheduled timeouts: name -> when it is due (ISO 8601, UTC)."""
        return dict(self._document["deadlines"])


class Saga(Processor):
    """A process manager: state per key, commands, compensation in reverse order.

    Handlers take ``(self, event, saga: SagaContext)``. A saga handles one event per
    transaction (``batch_size`` 1) and, like a reactor, is never replayed.
    """

    kind = ProcessorKind.SAGA
    batch_size: ClassVar[int] = 1
    _timeouts: ClassVar[dict[str, Callable[..., Awaitable[None]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._timeouts = {
            getattr(member, _TIMEOUT_HANDLER): member
            for klass in reversed(cls.__mro__)
            for member in vars(klass).values()
            if getattr(member, _TIMEOUT_HANDLER, None) is not None
        }
        if cls.categories is not None and TIMEOUTS not in cls.categories:
            cls.categories = [*cls.categories, TIMEOUTS]

    @on(TIMED_OUT)
    async def _timed_out(self, event: RecordedEvent, saga: SagaContext) -> None:
        """Deliver a timeout, unless it was cancelled or rescheduled since it fell due."""
        name = event.data["timeout"]
        if saga.deadlines.get(name) != event.data["due"]:
            return
        saga.cancel(name)
        handler = self._timeouts.get(name)
        if handler is not None:
            await handler(self, saga)

    @property
    def timeouts_stream(self) -> str:
        """Where this saga's timeout events are appended."""
        return f"{TIMEOUTS}-{self.name}"

    @property
    def collection(self) -> str:
        """The document collection its instances' state is kept in."""
        return f"saga.{self.name}"

    def key(self, event: RecordedEvent) -> str:
        """The instance an event belongs to (a timeout's own instance, or
        :meth:`instance_key`)."""
        if event.type == TIMED_OUT and event.data.get("saga") == self.name:
            return str(event.data["key"])
        return self.instance_key(event)

    def instance_key(self, event: RecordedEvent) -> str:
        """The instance an event belongs to: its correlation id (its stream if it has none).
        Override to key instances otherwise."""
        correlation = event.metadata.get("correlation_id")
        return correlation if isinstance(correlation, str) else event.stream

    async def handle(self, event: RecordedEvent, context: Context) -> None:
        """Load the instance, run the handler, send its commands, save the instance."""
        if self.batch_size != 1:
            raise ConfigurationError(f"{type(self).__name__}.batch_size must be 1 for a saga")
        handler, cls = self._handlers[event.type]
        key = self.key(event)
        # Read outside the transaction: it must not hold SQLite's write lock while the
        # handler appends. Only this partition's owner writes the instance, so it is current.
        async with processing_of(context.store).documents_reader() as reader:
            stored = await reader.get(self.collection, key)
        document = stored or {"state": {}, "status": SagaStatus.ACTIVE, "steps": []}
        document.setdefault("deadlines", {})
        if document["status"] != SagaStatus.ACTIVE:
            return  # the process is over; late events change nothing
        before = dict(document["deadlines"])
        saga = SagaContext(self, key, document, context)
        payload = self.events.from_recorded(event) if cls is not None else event
        with metrics.saga_execution(self.name):
            await handler(self, payload, saga)  # type: ignore[arg-type]  # sagas get a SagaContext
        if document["status"] != SagaStatus.ACTIVE:
            document["deadlines"] = {}
        await context.documents.put(self.collection, key, document)
        if document["deadlines"] != before:
            await self._index(context, key, document["deadlines"])

    async def _index(self, context: Context, key: str, deadlines: dict[str, str]) -> None:
        """Keep the partition's index of scheduled timeouts (what the timer scans)."""
        collection, partition = f"{self.collection}.timeouts", str(self.partition(context.event))
        index = await context.documents.get(collection, partition) or {}
        if deadlines:
            index[key] = deadlines
        else:
            index.pop(key, None)
        await context.documents.put(collection, partition, index)

    async def fire_due(self, store: EventStore, partitions: Iterable[int]) -> int:
        """Append the timeout events that are due in ``partitions``; returns how many.

        A timeout event's id comes from the saga, the instance, the timeout and its due
        time, so firing one twice (two workers around a lease hand-over, or a timer that
        runs again before the event is handled) appends it once.
        """
        now, fired = datetime.now(UTC), 0
        collection = f"{self.collection}.timeouts"
        async with processing_of(store).documents_reader() as reader:
            indexes = [await reader.get(collection, str(p)) for p in partitions]
        for index in indexes:
            for key, deadlines in (index or {}).items():
                for name, due in deadlines.items():
                    if datetime.fromisoformat(due) > now:
                        continue
                    event_id = uuid.uuid5(_IDS, f"{self.name}/{key}/timeout/{name}/{due}")
                    data = {"saga": self.name, "key": key, "timeout": name, "due": due}
                    with caused_by(event_id, key):
                        await store.append(
                            self.timeouts_stream, [NewEvent(TIMED_OUT, data, id=event_id)]
                        )
                    fired += 1
        return fired

    async def instance(self, store: EventStore, key: str) -> dict[str, Any] | None:
        """The stored document of one instance (state, status, steps), or ``None``."""
        async with processing_of(store).documents_reader() as reader:
            return await reader.get(self.collection, key)
