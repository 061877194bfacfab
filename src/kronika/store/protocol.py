"""The async ``EventStore`` protocol every backend (memory, SQLite, PostgreSQL, HTTP) follows.

The conformance suite in :mod:`kronika.testing.contract` checks a backend against it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from kronika.domain.events import (
    AppendCondition,
    AppendResult,
    ExpectedVersionLike,
    MultiAppendResult,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    StreamInfo,
)
from kronika.store.migrations import Migration, SchemaStatus

__all__ = ["EventStore"]


@runtime_checkable
class EventStore(Protocol):
    """An append-only event log with per-stream versions and a global order."""

    @property
    def engine(self) -> str:
        """The backend's name: ``memory``, ``sqlite``, ``postgresql`` or ``http``."""
        ...

    @property
    def namespace(self) -> str:
        """The namespace (tenant) this store object reads and writes."""
        ...

    async def open(self) -> None:
        """Connect (and migrate, if enabled). ``async with`` calls it for you."""

    async def close(self) -> None:
        """Release connections and threads; pending subscriptions end."""

    async def schema_status(self) -> SchemaStatus:
        """How the database's schema compares with this code; works before ``open()``."""
        ...

    async def migrate(self) -> list[Migration]:
        """Apply pending schema migrations and return them; works before ``open()``."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersionLike = ...,
        condition: AppendCondition | None = None,
    ) -> AppendResult:
        """Append events to one stream atomically: all of them or none."""
        ...

    async def append_multi(
        self, appends: Sequence[StreamAppend], *, condition: AppendCondition | None = None
    ) -> MultiAppendResult:
        """Append to several streams in one transaction, each with its own expected version.

        A :class:`StreamAppend` without events only takes part in the version check.
        """
        ...

    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version`` (inclusive); empty if it does not exist.

        ``from_version`` defaults to the start (forwards) or the end (``backwards=True``).
        Soft-deleted streams read as empty; tombstoned ones raise ``StreamDeleted``.
        """
        ...

    async def read_all(
        self,
        *,
        from_position: int = 0,
        limit: int | None = None,
        types: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[RecordedEvent]:
        """Events of the global log from ``from_position`` (inclusive), in global order."""
        ...

    def subscribe(
        self,
        *,
        from_position: int = 0,
        types: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        batch_size: int = ...,
    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``from_position`` (inclusive), then stay live, yielding new events."""
        ...

    async def head_position(self) -> int:
        """The global position of the newest readable event (0 when the log is empty)."""
        ...

    async def stream_info(self, stream: str) -> StreamInfo:
        """Version, state and metadata of a stream; ``StreamNotFound`` if it never existed."""
        ...

    async def list_streams(
        self,
        *,
        after: str | None = None,
        prefix: str | None = None,
        category: str | None = None,
        limit: int | None = None,
    ) -> list[StreamInfo]:
        """Streams in name order, deleted and tombstoned ones included (see their state).

        ``after`` is an exclusive cursor (the last name of the previous page); ``prefix``
        keeps names starting with it; ``category`` keeps streams of that category (the name
        before its first ``-``); ``limit`` caps how many come back (``None``: all).
        """
        ...

    async def delete_stream(self, stream: str, *, hard: bool = False) -> None:
        """Soft-delete (may be recreated) or hard-delete (tombstone) a stream."""
        ...

    async def truncate_stream(self, stream: str, before_version: int) -> None:
        """Remove the events of a stream with a version lower than ``before_version``."""
        ...

    async def write_snapshot(
        self, stream: str, version: int, state: dict[str, Any], *, schema_version: int = 1
    ) -> None:
        """Keep ``state`` as the stream's latest snapshot at ``version`` (replacing older ones)."""
        ...

    async def read_snapshot(self, stream: str) -> Snapshot | None:
        """The stream's latest snapshot, or ``None``. Deleting a stream deletes its snapshot."""
        ...

    async def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StreamInfo:
        """Set retention limits (enforced on stream reads) and free-form metadata."""
        ...
