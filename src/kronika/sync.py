"""A blocking facade over the async store, for scripts, notebooks and sync web apps.

    with kronika.sync.open_store("sqlite:///kronika.db") as store:
        store.append("order-1", [NewEvent("OrderPlaced", {"total": 12})])

Each sync store runs its async store on an event loop in a private daemon thread; every
method submits a coroutine there and waits for it. The methods and their arguments are
exactly those of :class:`kronika.EventStore`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from kronika.cqrs.commands import CommandBus as AsyncCommandBus
from kronika.cqrs.repository import Repository as AsyncRepository
from kronika.domain.aggregate import Aggregate
from kronika.domain.events import (
    ANY,
    AppendCondition,
    AppendResult,
    ExpectedVersionLike,
    MultiAppendResult,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    StreamInfo,
)
from kronika.errors import ConfigurationError
from kronika.store import open_store as open_async_store
from kronika.store.base import StoreBase
from kronika.store.inline import InlineRecord
from kronika.store.protocol import EventStore

__all__ = ["CommandBus", "Repository", "SyncEventStore", "open_store"]

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)


class SyncEventStore:
    """The blocking twin of :class:`kronika.EventStore`."""

    def __init__(self, store: EventStore) -> None:
        self.async_store = store
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kronika-sync", daemon=True
        )
        self._thread.start()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def engine(self) -> str:
        """The backend's name."""
        return self.async_store.engine

    @property
    def namespace(self) -> str:
        """The namespace (tenant) this store reads and writes."""
        return self.async_store.namespace

    def open(self) -> None:
        """Connect; ``with`` calls it for you."""
        self._run(self.async_store.open())

    def close(self) -> None:
        """Release the store and stop its thread."""
        if self._loop.is_closed():
            return
        try:
            self._run(self.async_store.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersionLike = ANY,
        condition: AppendCondition | None = None,
    ) -> AppendResult:
        """See :meth:`kronika.EventStore.append`."""
        return self._run(
            self.async_store.append(
                stream, events, expected_version=expected_version, condition=condition
            )
        )

    def append_multi(
        self, appends: Sequence[StreamAppend], *, condition: AppendCondition | None = None
    ) -> MultiAppendResult:
        """See :meth:`kronika.EventStore.append_multi`."""
        return self._run(self.async_store.append_multi(appends, condition=condition))

    def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """See :meth:`kronika.EventStore.read_stream`."""
        return self._run(
            self.async_store.read_stream(
                stream, from_version=from_version, backwards=backwards, limit=limit
            )
        )

    def read_all(
        self,
        *,
        from_position: int = 0,
        limit: int | None = None,
        types: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[RecordedEvent]:
        """See :meth:`kronika.EventStore.read_all`."""
        return self._run(
            self.async_store.read_all(
                from_position=from_position,
                limit=limit,
                types=types,
                categories=categories,
                tags=tags,
            )
        )

    def subscribe(
        self,
        *,
        from_position: int = 0,
        types: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> Iterator[RecordedEvent]:
        """See :meth:`kronika.EventStore.subscribe`; blocks while waiting for new events."""
        iterator = self.async_store.subscribe(
            from_position=from_position, types=types, categories=categories, tags=tags
        )

        async def step() -> RecordedEvent | None:
            try:
                return await anext(iterator)
            except StopAsyncIteration:
                return None

        while (event := self._run(step())) is not None:
            yield event

    def head_position(self) -> int:
        """See :meth:`kronika.EventStore.head_position`."""
        return self._run(self.async_store.head_position())

    def stream_info(self, stream: str) -> StreamInfo:
        """See :meth:`kronika.EventStore.stream_info`."""
        return self._run(self.async_store.stream_info(stream))

    def list_streams(
        self,
        *,
        after: str | None = None,
        prefix: str | None = None,
        category: str | None = None,
        limit: int | None = None,
    ) -> list[StreamInfo]:
        """See :meth:`kronika.EventStore.list_streams`."""
        return self._run(
            self.async_store.list_streams(
                after=after, prefix=prefix, category=category, limit=limit
            )
        )

    def delete_stream(self, stream: str, *, hard: bool = False) -> None:
        """See :meth:`kronika.EventStore.delete_stream`."""
        self._run(self.async_store.delete_stream(stream, hard=hard))

    def truncate_stream(self, stream: str, before_version: int) -> None:
        """See :meth:`kronika.EventStore.truncate_stream`."""
        self._run(self.async_store.truncate_stream(stream, before_version))

    def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StreamInfo:
        """See :meth:`kronika.EventStore.set_stream_metadata`."""
        return self._run(
            self.async_store.set_stream_metadata(
                stream, max_age=max_age, max_count=max_count, metadata=metadata
            )
        )

    # -- inline projections (a store on a database; see docs/runtime.md) -------------------

    def rebuild_inline(self, name: str) -> InlineRecord:
        """Rebuild a registered inline projection's read model from the whole log (appends
        wait meanwhile); see :meth:`kronika.store.base.StoreBase.rebuild_inline`."""
        return self._run(self._database_store().rebuild_inline(name))

    def inline_status(self) -> list[InlineRecord]:
        """Every inline projection recorded in the store's database, by name."""
        return self._run(self._database_store().inline_status())

    def drop_inline(self, name: str) -> None:
        """Forget a removed inline projection's record (its tables and documents stay)."""
        self._run(self._database_store().drop_inline(name))

    def _database_store(self) -> StoreBase:
        if not isinstance(self.async_store, StoreBase):
            raise ConfigurationError(
                f"inline projections live in the database: this {self.engine} store has none"
            )
        return self.async_store


class Repository:
    """The blocking twin of :class:`kronika.Repository`, on a :class:`SyncEventStore`."""

    def __init__(self, store: SyncEventStore, **options: Any) -> None:
        self.store = store
        self.async_repository = AsyncRepository(store.async_store, **options)

    def get(self, cls: type[A], aggregate_id: str) -> A:
        """See :meth:`kronika.Repository.get`."""
        return self.store._run(self.async_repository.get(cls, aggregate_id))

    def find(self, cls: type[A], aggregate_id: str) -> A | None:
        """See :meth:`kronika.Repository.find`."""
        return self.store._run(self.async_repository.find(cls, aggregate_id))

    def save(self, *aggregates: Aggregate, read: Sequence[Aggregate] = ()) -> MultiAppendResult:
        """See :meth:`kronika.Repository.save`."""
        return self.store._run(self.async_repository.save(*aggregates, read=read))


class CommandBus:
    """A blocking front for a :class:`kronika.CommandBus` (handlers stay ``async def``)."""

    def __init__(self, bus: AsyncCommandBus, store: SyncEventStore) -> None:
        self.async_bus = bus
        self.store = store

    def dispatch(self, command: Any, payload: Mapping[str, Any] | None = None) -> Any:
        """See :meth:`kronika.CommandBus.dispatch`; blocks until handled."""
        if payload is None:
            return self.store._run(self.async_bus.dispatch(command))
        return self.store._run(self.async_bus.dispatch(command, payload))


def open_store(url: str | None = None, **options: Any) -> SyncEventStore:
    """The blocking twin of :func:`kronika.open_store`; use it in a ``with`` block."""
    return SyncEventStore(open_async_store(url, **options))
