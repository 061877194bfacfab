"""What every backend shares: argument validation, JSON encoding, idempotency rules and the
catch-up-then-live subscription loop.

A backend subclasses :class:`StoreBase` and implements the ``_``-prefixed hooks. The public
methods validate everything first, so a backend only ever sees well-formed input.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson

from kronika.domain import names
from kronika.domain.context import CAUSATION_ID, CORRELATION_ID, current_causation
from kronika.domain.events import (
    ANY,
    AppendCondition,
    AppendResult,
    ExpectedVersion,
    ExpectedVersionLike,
    MultiAppendResult,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    StreamInfo,
    StreamState,
    check_events,
    check_expected_version,
)
from kronika.errors import (
    ConcurrencyError,
    ConfigurationError,
    DuplicateEventError,
    StoreClosed,
    StreamDeleted,
    ValidationError,
)
from kronika.observability import metrics, tracing
from kronika.store.inline import InlineGuard, InlineHandler, InlineHandlers, InlineRecord
from kronika.store.listing import StreamSelection
from kronika.store.migrations import Migration, SchemaStatus, status_of

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "EncodedEvent",
    "GlobalFilter",
    "Notifier",
    "PreparedAppend",
    "StoreBase",
    "check_stream_expectation",
    "decode_json",
    "encode_json",
    "resolve_multi_retry",
    "resolve_retry",
]

DEFAULT_BATCH_SIZE = 500
"""Events fetched per round trip when a subscription catches up."""


def encode_json(value: Any, field: str) -> bytes:
    """Serialise a JSON object, raising ``ValidationError`` naming ``field`` if it cannot be."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ValidationError(f"is not JSON-serialisable: {exc}", field) from None


def decode_json(raw: bytes | str) -> dict[str, Any]:
    """Parse a stored JSON object."""
    value: dict[str, Any] = orjson.loads(raw)
    return value


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """A validated new event with its JSON already serialised."""

    id: uuid.UUID
    type: str
    data: bytes
    metadata: bytes
    tags: tuple[str, ...]
    correlation_id: str | None
    source: NewEvent
    metadata_object: dict[str, Any]
    """The stamped metadata that ``metadata`` serialises (for the content digest)."""


@dataclass(frozen=True, slots=True)
class PreparedAppend:
    """One stream's validated part of an append, as a backend receives it."""

    stream: str
    expected: ExpectedVersionLike
    events: tuple[EncodedEvent, ...]


@dataclass(frozen=True, slots=True)
class GlobalFilter:
    """Validated filters of a global read."""

    types: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None

    def matches(self, event: RecordedEvent) -> bool:
        """Whether ``event`` passes every filter that is set."""
        if self.types is not None and event.type not in self.types:
            return False
        if self.categories is not None and event.category not in self.categories:
            return False
        return self.tags is None or set(self.tags).issubset(event.tags)

    @property
    def empty(self) -> bool:
        """True when no filter is set."""
        return self.types is None and self.categories is None and self.tags is None


def _stamp(event: NewEvent) -> dict[str, Any]:
    """The event's metadata with correlation and causation ids filled in (see domain.context),
    and the current span's W3C ``traceparent`` when there is one (see observability.tracing)."""
    metadata = dict(event.metadata) if event.metadata else {}
    if CORRELATION_ID not in metadata or CAUSATION_ID not in metadata:
        causation = current_causation()
        own = str(event.event_id)
        metadata.setdefault(CORRELATION_ID, causation.correlation_id if causation else own)
        metadata.setdefault(CAUSATION_ID, causation.causation_id if causation else own)
    if tracing.TRACEPARENT not in metadata and (parent := tracing.current_traceparent()):
        metadata[tracing.TRACEPARENT] = parent  # links the handlers' spans to this append
    return metadata


def _encode_event(event: NewEvent, field: str) -> EncodedEvent:
    metadata = _stamp(event)
    correlation = metadata.get(CORRELATION_ID)
    return EncodedEvent(
        id=event.event_id,
        type=event.type,
        data=encode_json(event.data, f"{field}.data"),
        metadata=encode_json(metadata, f"{field}.metadata"),
        tags=tuple(event.tags),
        correlation_id=None if correlation is None else str(correlation),
        source=event,
        metadata_object=metadata,
    )


def _prepare(append: StreamAppend, field: str) -> PreparedAppend:
    encoded = tuple(_encode_event(e, f"{field}[{i}]") for i, e in enumerate(append.events))
    return PreparedAppend(append.stream, append.expected_version, encoded)


def check_stream_expectation(
    stream: str, expected: ExpectedVersionLike, version: int | None, state: StreamState | None
) -> None:
    """Raise if a stream at ``version`` in ``state`` does not meet ``expected``.

    ``version`` is the last event's version (``None`` if the stream never had one) and
    ``state`` is ``None`` when the stream does not exist. A soft-deleted stream counts as
    absent. A tombstoned stream fails every expectation with ``StreamDeleted``.
    """
    if state is StreamState.TOMBSTONED:
        raise StreamDeleted(stream)
    exists = state is StreamState.ACTIVE and version is not None
    if expected is ANY:
        return
    if expected is ExpectedVersion.NO_STREAM:
        if exists:
            raise ConcurrencyError(stream, "no_stream", version)
        return
    if expected is ExpectedVersion.STREAM_EXISTS:
        if not exists:
            raise ConcurrencyError(stream, "stream_exists", None)
        return
    assert isinstance(expected, int)
    if not exists or version != expected:
        raise ConcurrencyError(stream, expected, version if exists else None)


def resolve_retry(append: PreparedAppend, stored: Sequence[RecordedEvent]) -> AppendResult | None:
    """Decide what to do when some of an append's event ids are already stored.

    ``stored`` holds the stored events with any of the append's ids. Returns ``None`` when
    none is stored (append normally), the first result when the whole append is stored
    already (a retry), and raises ``DuplicateEventError`` otherwise.
    """
    if not stored:
        return None
    by_id = {e.id: e for e in stored}
    previous: RecordedEvent | None = None
    for new in append.events:
        old = by_id.get(new.id)
        if old is None:
            raise DuplicateEventError(
                str(next(iter(by_id))), "and this append mixes stored and new event ids"
            )
        if old.stream != append.stream:
            raise DuplicateEventError(str(new.id), f"in another stream ({old.stream!r})")
        if old.type != new.type or old.data != decode_json(new.data):
            raise DuplicateEventError(str(new.id), "with a different type or data")
        if previous is not None and old.version != previous.version + 1:
            raise DuplicateEventError(str(new.id), "in a different order")
        previous = old
    assert previous is not None
    return AppendResult(previous.version, previous.position)


def resolve_multi_retry(
    appends: Sequence[PreparedAppend], stored: Sequence[Sequence[RecordedEvent]]
) -> dict[str, AppendResult] | None:
    """Apply :func:`resolve_retry` to a multi-stream append (``stored`` is per append).

    Returns the first results of the streams that carry events when the whole append is a
    retry (streams that were only checked are left for the caller to report), ``None`` when
    nothing of it is stored, and raises ``DuplicateEventError`` when only part of it is.
    """
    results: dict[str, AppendResult] = {}
    fresh: PreparedAppend | None = None
    for append, found in zip(appends, stored, strict=True):
        if not append.events:
            continue
        result = resolve_retry(append, found)
        if result is None:
            fresh = append
        else:
            results[append.stream] = result
    if not results:
        return None
    if fresh is not None:
        first = next(iter(results))
        raise DuplicateEventError(
            first, f"in stream {first!r}, but stream {fresh.stream!r} of this append is new"
        )
    return results


class Notifier:
    """Wakes subscriptions when new events may be readable.

    ``token()`` before reading and ``wait(token)`` after: if anything was notified in
    between, ``wait`` returns at once, so no wake-up is lost.
    """

    def __init__(self) -> None:
        self._counter = 0
        self._event = asyncio.Event()

    def token(self) -> int:
        """The current generation."""
        return self._counter

    def notify(self) -> None:
        """Signal that new events may be readable."""
        self._counter += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, token: int, timeout: float | None) -> bool:
        """Wait until a notification after ``token`` or ``timeout``; True if notified."""
        if self._counter != token:
            return True
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that arrives as the wait completes, and the subscription would never end.
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class StoreBase(abc.ABC):
    """Validation and shared behaviour in front of a backend's hooks."""

    engine: str = "abstract"
    poll_interval: float | None = None
    """Fallback poll of a live subscription when no notification arrives (None: never)."""

    def __init__(self, *, namespace: str = names.DEFAULT_NAMESPACE) -> None:
        self._namespace = names.check_namespace(namespace)
        self._notifier = Notifier()
        self._opened = False
        self._inline: InlineHandlers | None = None
        """The inline projections registered on this store (see kronika.store.inline)."""
        self._inline_guard: InlineGuard | None = None
        """Types recorded projections handle that this store did not register (set on open)."""

    # -- lifecycle --------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The namespace (tenant) this store reads and writes."""
        return self._namespace

    async def open(self) -> None:
        """Connect and prepare the store; idempotent."""
        if not self._opened:
            await self._open()
            self._opened = True

    async def close(self) -> None:
        """Release resources; idempotent."""
        if self._opened:
            self._opened = False
            self._notifier.notify()
            await self._close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def schema_status(self) -> SchemaStatus:
        """How the database's schema compares with this code; works before ``open()``."""
        return status_of(0, ())

    async def migrate(self) -> list[Migration]:
        """Apply pending schema migrations and return them; works before ``open()``."""
        return []

    def _check_open(self) -> None:
        if not self._opened:
            raise StoreClosed()

    # -- writes -----------------------------------------------------------------------

    @tracing.traced_store_call("append")
    async def append(
        self,
        stream: str,
        events: Sequence[NewEvent],
        *,
        expected_version: ExpectedVersionLike = ANY,
        condition: AppendCondition | None = None,
    ) -> AppendResult:
        """Append events to one stream atomically: all of them or none."""
        names.check_stream(stream)
        prepared = PreparedAppend(
            stream,
            check_expected_version(expected_version),
            tuple(_encode_event(e, f"events[{i}]") for i, e in enumerate(check_events(events))),
        )
        self._check_condition(condition)
        self._check_open()
        if self._inline_guard is not None:
            self._inline_guard.check(e.type for e in prepared.events)
        call = self._append([prepared], condition)
        result = await metrics.timed_append(self.engine, len(prepared.events), call)
        return result.streams[stream]

    @tracing.traced_store_call("append_multi")
    async def append_multi(
        self, appends: Sequence[StreamAppend], *, condition: AppendCondition | None = None
    ) -> MultiAppendResult:
        """Append to several streams in one transaction, each with its own expected version."""
        if isinstance(appends, StreamAppend) or not isinstance(appends, Sequence) or not appends:
            raise ValidationError("must be a non-empty sequence of StreamAppend", "appends")
        prepared: list[PreparedAppend] = []
        seen: set[str] = set()
        for i, append in enumerate(appends):
            if not isinstance(append, StreamAppend):
                raise ValidationError(
                    f"must be a StreamAppend, got {type(append).__name__}", f"appends[{i}]"
                )
            if append.stream in seen:
                raise ValidationError(
                    f"stream {append.stream!r} appears twice", f"appends[{i}].stream"
                )
            seen.add(append.stream)
            prepared.append(_prepare(append, f"appends[{i}].events"))
        total = sum(len(p.events) for p in prepared)
        if total > names.MAX_EVENTS_PER_APPEND:
            raise ValidationError(
                f"at most {names.MAX_EVENTS_PER_APPEND} events per append", "appends"
            )
        ids = [e.id for p in prepared for e in p.events]
        if len(set(ids)) != len(ids):
            raise ValidationError("the same event id appears twice", "appends")
        self._check_condition(condition)
        self._check_open()
        if self._inline_guard is not None:
            self._inline_guard.check(e.type for p in prepared for e in p.events)
        return await metrics.timed_append(self.engine, total, self._append(prepared, condition))

    @staticmethod
    def _check_condition(condition: object) -> None:
        if condition is not None and not isinstance(condition, AppendCondition):
            raise ValidationError(
                f"must be an AppendCondition, got {type(condition).__name__}", "condition"
            )

    async def delete_stream(self, stream: str, *, hard: bool = False) -> None:
        """Soft-delete (the stream may be recreated) or hard-delete (tombstone) a stream."""
        names.check_stream(stream)
        self._check_open()
        await self._delete_stream(stream, hard=bool(hard))

    async def truncate_stream(self, stream: str, before_version: int) -> None:
        """Remove a stream's events with a version lower than ``before_version``."""
        names.check_stream(stream)
        names.check_version(before_version, "before_version")
        self._check_open()
        await self._truncate_stream(stream, before_version)

    async def set_stream_metadata(
        self,
        stream: str,
        *,
        max_age: float | None = None,
        max_count: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StreamInfo:
        """Set retention limits (enforced on stream reads) and free-form metadata."""
        names.check_stream(stream)
        age = names.check_max_age(max_age)
        count = names.check_limit(max_count, "max_count")
        if metadata is not None and not isinstance(metadata, dict):
            raise ValidationError("must be a JSON object (a dict)", "metadata")
        # A round trip through JSON both checks it is serialisable and detaches a copy.
        copy = decode_json(encode_json(metadata or {}, "metadata"))
        self._check_open()
        return await self._set_stream_metadata(stream, age, count, copy)

    async def write_snapshot(
        self, stream: str, version: int, state: dict[str, Any], *, schema_version: int = 1
    ) -> None:
        """Keep ``state`` as the stream's latest snapshot at ``version`` (replacing older ones)."""
        names.check_stream(stream)
        names.check_version(version, "version")
        names.check_version(schema_version, "schema_version")
        if not isinstance(state, dict):
            raise ValidationError("must be a JSON object (a dict)", "state")
        raw = encode_json(state, "state")
        self._check_open()
        await self._write_snapshot(stream, version, schema_version, raw)

    async def read_snapshot(self, stream: str) -> Snapshot | None:
        """The stream's latest snapshot, or ``None``."""
        names.check_stream(stream)
        self._check_open()
        return await self._read_snapshot(stream)

    # -- inline projections --------------------------------------------------------------

    def register_inline(self, handlers: Iterable[InlineHandler]) -> None:
        """Run these inline projections in every append's transaction (before ``open()``).

        ``open_store(url, inline=[...])`` calls it. On open each projection's tables are
        created and its record kept in the database; see :mod:`kronika.store.inline`.
        """
        if self._opened:
            raise ConfigurationError("register inline projections before the store is opened")
        earlier = self._inline.handlers if self._inline else ()
        added = InlineHandlers([*earlier, *InlineHandlers.listed(handlers)])
        self._accept_inline(added)
        self._inline = added or None

    async def rebuild_inline(self, name: str) -> InlineRecord:
        """Rebuild a registered inline projection's read model from the whole log.

        Appends wait while it runs (it is one transaction); returns the updated record.
        """
        self._check_open()
        if self._inline is None:
            raise ConfigurationError(
                f"inline projection {name!r} is not registered on this store: open it with "
                "open_store(url, inline=[...]) (kronika inline rebuild --app)"
            )
        return await self._rebuild_inline(self._inline.named(name))

    async def inline_status(self) -> list[InlineRecord]:
        """Every inline projection recorded in this store's database (namespace), by name."""
        self._check_open()
        return await self._inline_records()

    async def drop_inline(self, name: str) -> None:
        """Forget a removed inline projection's record (its tables and documents stay).

        ``NotFound`` if there is none; refused while this store registers it."""
        self._check_open()
        if self._inline is not None and name in {h.name for h in self._inline.handlers}:
            raise ConfigurationError(
                f"inline projection {name!r} is registered on this store: remove it from the "
                "application before dropping its record"
            )
        await self._drop_inline(name)
        records = await self._inline_records()
        self._inline_guard = InlineGuard.of(records, self._inline)

    def _accept_inline(self, handlers: InlineHandlers) -> None:
        """Refuse inline projections this backend cannot run (the default: all)."""
        raise ConfigurationError(f"the {self.engine} backend cannot run inline projections")

    async def _rebuild_inline(self, handler: InlineHandler) -> InlineRecord:
        raise ConfigurationError(f"the {self.engine} backend has no inline projections")

    async def _inline_records(self) -> list[InlineRecord]:
        raise ConfigurationError(f"the {self.engine} backend has no inline projections")

    async def _drop_inline(self, name: str) -> None:
        raise ConfigurationError(f"the {self.engine} backend has no inline projections")

    # -- reads ------------------------------------------------------------------------

    @tracing.traced_store_call("read_stream")
    async def read_stream(
        self,
        stream: str,
        *,
        from_version: int | None = None,
        backwards: bool = False,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events of one stream from ``from_version`` (inclusive); empty if it does not exist."""
        names.check_stream(stream)
        if from_version is not None:
            names.check_version(from_version)
        names.check_limit(limit)
        self._check_open()
        return await self._read_stream(stream, from_version, bool(backwards), limit)

    @tracing.traced_store_call("read_all")
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
        names.check_position(from_position)
        names.check_limit(limit)
        filters = self._filters(types, categories, tags)
        self._check_open()
        return await self._read_all(from_position, limit, filters)

    @staticmethod
    def _filters(types: object, categories: object, tags: object) -> GlobalFilter:
        return GlobalFilter(
            names.check_filter(types, "types"),
            names.check_filter(categories, "categories"),
            names.check_filter(tags, "tags"),
        )

    async def head_position(self) -> int:
        """The global position of the newest readable event (0 when the log is empty)."""
        self._check_open()
        return await self._head_position()

    async def stream_info(self, stream: str) -> StreamInfo:
        """Version, state and metadata of a stream; ``StreamNotFound`` if it never existed."""
        names.check_stream(stream)
        self._check_open()
        return await self._stream_info(stream)

    async def list_streams(
        self,
        *,
        after: str | None = None,
        prefix: str | None = None,
        category: str | None = None,
        limit: int | None = None,
    ) -> list[StreamInfo]:
        """Streams in name order after ``after``, optionally by ``prefix`` and ``category``."""
        selection = StreamSelection.checked(
            after=after, prefix=prefix, category=category, limit=limit
        )
        self._check_open()
        if selection.low >= selection.high:  # e.g. prefix "a" and category "b"
            return []
        return await self._list_streams(selection)

    async def subscribe(
        self,
        *,
        from_position: int = 0,
        types: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``from_position`` (inclusive), then stay live, yielding new events.

        The iterator ends when the store is closed.
        """
        pages = self.subscribe_pages(
            from_position=from_position,
            types=types,
            categories=categories,
            tags=tags,
            batch_size=batch_size,
        )
        async with contextlib.aclosing(pages):
            async for page in pages:
                for event in page:
                    yield event

    async def subscribe_pages(
        self,
        *,
        from_position: int = 0,
        types: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        processing: bool = False,
    ) -> AsyncGenerator[list[RecordedEvent], None]:
        """What :meth:`subscribe` yields, a page (at most ``batch_size`` events, in order)
        at a time: for consumers that take events in bulk. Pages are never empty, unless
        ``processing``.

        ``processing=True`` is for the processing runtime's catch-up (a worker's router):
        a backend may read differently there. SQLite then reads on the calling thread,
        which blocks the event loop for the page's read (a few milliseconds) but spares
        the GIL hand-over per row between a reader thread and the loop (see
        :meth:`_read_for_processing`). And a read that finds nothing yields an empty page
        before waiting: the router learns that it has caught up.
        """
        position = names.check_position(from_position)
        names.check_limit(batch_size, "batch_size")
        filters = self._filters(types, categories, tags)
        self._check_open()
        read = self._read_for_processing if processing else self._read_all
        while self._opened:
            token = self._notifier.token()
            batch = await read(position, batch_size, filters)
            if batch or processing:
                yield batch
            if batch:
                position = batch[-1].position + 1
            if len(batch) < batch_size and self._opened:
                await self._wait_for_events(token)

    async def _wait_for_events(self, token: int) -> None:
        """Return when new events may be readable. Backends may poll here as well."""
        await self._notifier.wait(token, self.poll_interval)

    # -- backend hooks ----------------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _append(
        self, appends: list[PreparedAppend], condition: AppendCondition | None
    ) -> MultiAppendResult:
        """Append atomically; results keyed by stream, in the order of ``appends``."""

    @abc.abstractmethod
    async def _read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]: ...

    @abc.abstractmethod
    async def _read_all(
        self, from_position: int, limit: int | None, filters: GlobalFilter
    ) -> list[RecordedEvent]: ...

    async def _read_for_processing(
        self, from_position: int, limit: int | None, filters: GlobalFilter
    ) -> list[RecordedEvent]:
        """``_read_all`` for the processing runtime's catch-up (see :meth:`subscribe_pages`)."""
        return await self._read_all(from_position, limit, filters)

    @abc.abstractmethod
    async def _head_position(self) -> int: ...

    @abc.abstractmethod
    async def _stream_info(self, stream: str) -> StreamInfo: ...

    @abc.abstractmethod
    async def _list_streams(self, selection: StreamSelection) -> list[StreamInfo]: ...

    @abc.abstractmethod
    async def _delete_stream(self, stream: str, *, hard: bool) -> None: ...

    @abc.abstractmethod
    async def _truncate_stream(self, stream: str, before_version: int) -> None: ...

    async def _write_snapshot(
        self, stream: str, version: int, schema_version: int, state: bytes
    ) -> None:
        raise ConfigurationError(f"the {self.engine} backend does not store snapshots yet")

    async def _read_snapshot(self, stream: str) -> Snapshot | None:
        return None

    @abc.abstractmethod
    async def _set_stream_metadata(
        self, stream: str, max_age: float | None, max_count: int | None, metadata: dict[str, Any]
    ) -> StreamInfo: ...
