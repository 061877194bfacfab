"""Processors: projections (read models), reactors (side effects) and their handlers.

    class OrderTotals(Projection):
        name = "order-totals"

        @on(OrderPlaced)                      # a registered event class: handlers get it typed
        async def placed(self, event: OrderPlaced, ctx: Context) -> None:
            await ctx.documents.put("totals", ctx.event.stream, {"total": event.total})

        @on("OrderCancelled")                 # a type name: handlers get the RecordedEvent
        async def cancelled(self, event: RecordedEvent, ctx: Context) -> None:
            await ctx.documents.delete("totals", event.stream)

A processor subscribes to the types its handlers name (narrowed by ``categories`` if set),
keys each event (by stream unless :meth:`Processor.key` says otherwise) and hashes the key to
one of ``partitions``. Order holds per key; partitions run concurrently.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from kronika.cqrs.registry import EventRegistry, default_registry
from kronika.domain.events import RecordedEvent
from kronika.domain.retry import RetryPolicy
from kronika.errors import ConfigurationError
from kronika.runtime.generations import scoped, table_name
from kronika.store.processing import Documents, ProcessingTransaction
from kronika.store.protocol import EventStore

__all__ = ["Context", "Processor", "ProcessorKind", "Projection", "Reactor", "on", "partition_of"]

F = TypeVar("F", bound=Callable[..., Any])
HANDLES = "__kronika_handles__"
"""The attribute ``on`` marks a handler with (processors and inline projections read it)."""


class ProcessorKind(enum.Enum):
    """What a processor is for."""

    PROJECTION = "projection"
    """Builds a read model; its writes commit with its checkpoint (exactly once)."""
    REACTOR = "reactor"
    """Causes side effects; handled at least once, one event per transaction by default."""
    SAGA = "saga"
    """Manages a long-running process: state per key, commands, compensation."""


def on(event_type: type | str) -> Callable[[F], F]:
    """Mark a method as the handler of one event type (a registered class or a name): async
    in processors, synchronous in inline projections."""

    def mark(method: F) -> F:
        setattr(method, HANDLES, event_type)
        return method

    return mark


def partition_of(key: str, partitions: int) -> int:
    """The partition a key belongs to: a stable hash, the same in every process."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


@dataclass(slots=True)
class Context:
    """What a handler gets besides the event."""

    event: RecordedEvent
    """The event as stored (ids, stream, position, metadata)."""
    transaction: ProcessingTransaction
    """The transaction the handler's writes commit in, with the checkpoint."""
    store: EventStore
    """The event store, e.g. for a reactor that appends follow-up events."""
    generation: int = 1
    """The read-model generation being built (a replay builds the next one)."""

    @property
    def documents(self) -> Documents:
        """The read-model document store of this generation, inside the transaction."""
        return scoped(self.transaction.documents, self.generation)

    def write(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Awaitable[None]:
        """Run a write whose row count the handler does not need, in the handler's
        transaction (``await ctx.write(...)``). Faster than :meth:`execute`: writes are
        batched and run before the transaction's next statement, checkpoint or commit (one
        ``executemany`` per run of one statement)."""
        return self.transaction.write(sql, params)  # its awaitable: no coroutine of our own

    def table(self, name: str) -> str:
        """The name of this generation's copy of a table the projection declared in
        :attr:`Projection.tables`; use it in ``execute`` so replays build beside live."""
        return table_name(name, self.generation)

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run SQL against the store's database in the handler's transaction."""
        return await self.transaction.execute(sql, params)


Handler = Callable[[Any, Any, Context], Awaitable[None]]


class Processor:
    """Base of every processor. Subclass :class:`Projection` or :class:`Reactor`."""

    kind: ClassVar[ProcessorKind]
    name: ClassVar[str] = ""
    """Stable, unique name: checkpoints and failures are stored under it."""
    categories: ClassVar[Sequence[str] | None] = None
    """Only events of streams in these categories (None: all)."""
    partitions: ClassVar[int] = 8
    """Partitions the work is split into; fixed once the processor has run."""
    batch_size: ClassVar[int] = 500
    """Most events handled in one transaction (while catching up, a partition waits for
    this many; live events are handled as they come)."""
    retry: ClassVar[RetryPolicy] = RetryPolicy(max_attempts=5, initial_delay=1.0, max_delay=300.0)
    """How a failing key is retried before it is quarantined."""
    events: ClassVar[EventRegistry] = default_registry
    """Where handlers' event classes are registered."""
    _handlers: ClassVar[dict[str, tuple[Handler, type | None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, tuple[Handler, type | None]] = {}
        for klass in reversed(cls.__mro__):
            for member in vars(klass).values():
                target = getattr(member, HANDLES, None)
                if target is not None:
                    handlers[cls._type_name(target)] = (
                        member,
                        target if isinstance(target, type) else None,
                    )
        cls._handlers = handlers
        if cls.__dict__.get("kind") is None and cls.name:
            cls._check()

    @classmethod
    def _type_name(cls, target: type | str) -> str:
        return target if isinstance(target, str) else cls.events.type_of(target).name

    @classmethod
    def _check(cls) -> None:
        if "~" in cls.name:
            raise ConfigurationError(f"{cls.__name__}.name must not contain '~' (kept for replays)")
        if not isinstance(cls.partitions, int) or not 1 <= cls.partitions <= 4096:
            raise ConfigurationError(f"{cls.__name__}.partitions must be an integer from 1 to 4096")
        if not cls._handlers:
            raise ConfigurationError(f"{cls.__name__} has no @on handlers")

    @property
    def types(self) -> tuple[str, ...]:
        """The event types this processor handles."""
        return tuple(self._handlers)

    def key(self, event: RecordedEvent) -> str:
        """The partition key of an event: order holds per key. Default: its stream."""
        return event.stream

    def partition(self, event: RecordedEvent) -> int:
        """The partition an event belongs to."""
        return partition_of(self.key(event), self.partitions)

    def handle(self, event: RecordedEvent, context: Context) -> Awaitable[None]:
        """Decode the event if its handler wants a class, and call the handler; the caller
        awaits what the handler returns (an override may be an ``async def``)."""
        handler, cls = self._handlers[event.type]
        payload = self.events.from_recorded(event) if cls is not None else event
        return handler(self, payload, context)

    def __repr__(self) -> str:
        return f"<{self.kind.value} {self.name!r}>"


class Projection(Processor):
    """Builds a read model; writes commit together with the checkpoint.

    A projection can be *replayed*: rebuilt from the first event into a new generation of
    its read model beside the live one, which takes over when it has caught up (see
    :mod:`kronika.runtime.replay`). For that, write through ``ctx.documents`` and
    ``ctx.table(...)``, and declare what the read model consists of, so replaced
    generations can be pruned.
    """

    kind = ProcessorKind.PROJECTION
    collections: ClassVar[Sequence[str]] = ()
    """Document collections the read model writes (pruned with a replaced generation)."""
    tables: ClassVar[Mapping[str, str]] = {}
    """SQL tables of the read model: name -> ``CREATE TABLE IF NOT EXISTS {table} (...)``.
    Each generation gets its own copy, created before its handlers run and dropped when
    the generation is pruned."""
    replayed_versions_to_keep: ClassVar[int] = 1
    """Replaced generations kept (for a rollback without replay) after a replay switches."""


class Reactor(Processor):
    """Causes side effects (emails, calls, follow-up events); at least once."""

    kind = ProcessorKind.REACTOR
    batch_size = 1
