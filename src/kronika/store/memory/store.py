"""The in-memory backend: for tests and experiments. Nothing survives the process.

It is also the reference for the semantics the other backends must match.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from kronika.domain.events import (
    ANY,
    AppendCondition,
    AppendResult,
    MultiAppendResult,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    StreamState,
)
from kronika.errors import ConditionFailed, InlineProjectionFailed, NotFound, StreamNotFound
from kronika.store.base import (
    GlobalFilter,
    Notifier,
    PreparedAppend,
    StoreBase,
    check_stream_expectation,
    decode_json,
    resolve_multi_retry,
)
from kronika.store.inline import (
    InlineGuard,
    InlineHandler,
    InlineHandlers,
    InlineRecord,
    report_registered,
)
from kronika.store.integrity import Checkpoint, append_digests, chain
from kronika.store.listing import StreamSelection
from kronika.store.memory.inline import (
    MemoryInlineOutput,
    Undo,
    apply_all,
    check_handlers,
    rebuilt,
    registered,
)
from kronika.store.memory.integrity import MemoryChains, before_purge
from kronika.store.memory.keys import MemoryKeys
from kronika.store.memory.processing import MemoryProcessing
from kronika.store.memory.retention import MemoryRetention
from kronika.store.options import parse_options

__all__ = ["OPTIONS", "MemoryEventStore"]

OPTIONS: dict[str, Callable[[Any], Any]] = {"namespace": str, "migrate": bool}
"""Store options this backend accepts (URL query or keywords): the common ones only.

``migrate`` is accepted for symmetry with the SQL backends and has nothing to do here.
"""


@dataclass
class _Stream:
    version: int | None = None
    state: StreamState = StreamState.ACTIVE
    truncated_before: int = 0
    max_age: float | None = None
    max_count: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    events: list[RecordedEvent] = field(default_factory=list)
    hash: bytes | None = None
    """The chain's head: the hash of the last event appended."""
    anchor: bytes | None = None
    """The chain hash just before the first stored event (set by purges)."""

    def info(self, name: str) -> StreamInfo:
        """What the store tells about this stream, named ``name``."""
        return StreamInfo(
            stream=name,
            version=self.version,
            state=self.state,
            truncated_before=self.truncated_before,
            max_age=self.max_age,
            max_count=self.max_count,
            metadata=dict(self.metadata),
        )


@dataclass
class _Log:
    """One process-wide log shared by every store opened on the same ``memory://name``."""

    events: dict[int, tuple[str, RecordedEvent]] = field(default_factory=dict)
    """position -> (namespace, event)"""
    streams: dict[tuple[str, str], _Stream] = field(default_factory=dict)
    ids: dict[tuple[str, UUID], int] = field(default_factory=dict)
    last_position: int = 0
    snapshots: dict[tuple[str, str], Snapshot] = field(default_factory=dict)
    snapshot_times: dict[tuple[str, str], datetime] = field(default_factory=dict)
    """When each snapshot was written (retention deletes old ones)."""
    processing: dict[str, MemoryProcessing] = field(default_factory=dict)
    """Runtime state per namespace."""
    keys: dict[str, MemoryKeys] = field(default_factory=dict)
    """API keys per namespace."""
    notifier: Notifier = field(default_factory=Notifier)
    """Wakes the subscriptions of every store object on this log."""
    hashes: dict[int, bytes] = field(default_factory=dict)
    """position -> chain hash (see kronika.store.integrity)"""
    checkpoints: dict[str, dict[int, Checkpoint]] = field(default_factory=dict)
    """The global chain's checkpoints per namespace, by position."""
    purges: dict[str, int] = field(default_factory=dict)
    """Purges (truncations, deletions) per namespace."""
    inline: dict[str, dict[str, InlineRecord]] = field(default_factory=dict)
    """Inline projections' records per namespace, by name."""


_LOGS: dict[str, _Log] = {}


class MemoryEventStore(StoreBase):
    """An event store held in a Python dict. ``memory://`` is private to the store object;
    ``memory://NAME`` is shared by every store in the process opened with the same name."""

    engine = "memory"

    def __init__(self, *, name: str = "", namespace: str = "default") -> None:
        super().__init__(namespace=namespace)
        self._name = name
        self._log = _LOGS.setdefault(name, _Log()) if name else _Log()
        self._notifier = self._log.notifier

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryEventStore:
        """Build from ``memory://`` or ``memory://NAME`` plus options (see :data:`OPTIONS`)."""
        rest, opts = parse_options(url, options, allowed=OPTIONS)
        opts.pop("migrate", None)
        parts = urlsplit(rest)
        name = (parts.netloc + parts.path).strip("/")
        return cls(name=name, **opts)

    @property
    def processing(self) -> MemoryProcessing:
        """The processing runtime's state for this store's namespace."""
        return self._log.processing.setdefault(self.namespace, MemoryProcessing())

    @property
    def keys(self) -> MemoryKeys:
        """The API keys of this store's namespace."""
        return self._log.keys.setdefault(self.namespace, MemoryKeys())

    @property
    def chains(self) -> MemoryChains:
        """Raw access to this namespace's hash chains, for ``kronika verify``."""
        return MemoryChains(self._log, self.namespace)

    @property
    def retention(self) -> MemoryRetention:
        """Retention's queries on this store's namespace."""
        return MemoryRetention(self._log, self.namespace)

    async def _open(self) -> None:
        records = self._log.inline.setdefault(self.namespace, {})
        if self._inline is not None:
            stored = list(self._own_events(1))
            head = stored[-1].position if stored else 0
            for handler in self._inline.handlers:
                record = registered(records.get(handler.name), handler, stored, head)
                records[handler.name] = record
            report_registered(records.values(), self._inline)
        self._inline_guard = InlineGuard.of(records.values(), self._inline)

    async def _close(self) -> None:
        pass

    # -- writes -----------------------------------------------------------------------

    def _stream(self, name: str) -> _Stream | None:
        return self._log.streams.get((self.namespace, name))

    def _existing(self, append: PreparedAppend) -> list[RecordedEvent]:
        found = (self._log.ids.get((self.namespace, e.id)) for e in append.events)
        return [self._log.events[p][1] for p in found if p is not None]

    def _own_events(self, from_position: int) -> Iterator[RecordedEvent]:
        for position in range(max(from_position, 1), self._log.last_position + 1):
            entry = self._log.events.get(position)
            if entry is not None and entry[0] == self.namespace:
                yield entry[1]

    def _verify_condition(self, condition: AppendCondition | None) -> None:
        if condition is None:
            return
        for event in self._own_events(condition.after + 1):
            if condition.matches(event.type, event.tags):
                raise ConditionFailed(
                    f"event {event.id} ({event.type}) at position {event.position} "
                    "matches the condition",
                    position=event.position,
                )

    async def _append(
        self, appends: list[PreparedAppend], condition: AppendCondition | None
    ) -> MultiAppendResult:
        inline = self._inline
        if inline is None or not inline.wants_any(e.type for a in appends for e in a.events):
            return self._append_now(appends, condition)
        undo = Undo.of(self._log, self.namespace, appends)
        result = self._append_now(appends, condition)
        output = MemoryInlineOutput()
        try:
            inline.run(undo.written(self._log), output)
        except InlineProjectionFailed:
            undo.restore(self._log)
            raise
        self.processing.apply_documents(output.documents)
        return result

    def _append_now(
        self, appends: list[PreparedAppend], condition: AppendCondition | None
    ) -> MultiAppendResult:
        results: dict[str, AppendResult] = {}
        retry = self._as_retry(appends)
        if retry is not None:
            return retry
        for append in appends:
            stream = self._stream(append.stream)
            check_stream_expectation(
                append.stream,
                append.expected,
                stream.version if stream else None,
                stream.state if stream else None,
            )
        self._verify_condition(condition)
        position = 0
        for append in appends:
            results[append.stream] = self._write(append)
            position = max(position, results[append.stream].position if append.events else 0)
        if position:
            self._notifier.notify()
        return MultiAppendResult(streams=results, position=position)

    def _as_retry(self, appends: list[PreparedAppend]) -> MultiAppendResult | None:
        """The first result if this append is a retry of a stored one."""
        results = resolve_multi_retry(appends, [self._existing(a) for a in appends])
        if results is None:
            return None
        for append in appends:
            if not append.events:
                results[append.stream] = self._write(append)
        ordered = {a.stream: results[a.stream] for a in appends}
        return MultiAppendResult(
            streams=ordered, position=max(r.position for r in results.values())
        )

    def _write(self, append: PreparedAppend) -> AppendResult:
        key = (self.namespace, append.stream)
        stream = self._log.streams.get(key)
        if not append.events:
            version = stream.version if stream and stream.state is StreamState.ACTIVE else None
            last = stream.events[-1].position if stream and stream.events else 0
            return AppendResult(-1 if version is None else version, last)
        if stream is None:
            stream = self._log.streams[key] = _Stream()
        if stream.state is StreamState.DELETED:
            stream.state = StreamState.ACTIVE
        now = datetime.now(UTC)
        version = -1 if stream.version is None else stream.version
        hashes = chain(stream.hash, append_digests(append))
        for event, hash_ in zip(append.events, hashes, strict=True):
            version += 1
            self._log.last_position += 1
            recorded = RecordedEvent(
                id=event.id,
                stream=append.stream,
                version=version,
                position=self._log.last_position,
                type=event.type,
                data=decode_json(event.data),
                metadata=decode_json(event.metadata),
                tags=event.tags,
                recorded_at=now,
            )
            self._log.events[recorded.position] = (self.namespace, recorded)
            self._log.ids[(self.namespace, event.id)] = recorded.position
            self._log.hashes[recorded.position] = hash_
            stream.events.append(recorded)
        stream.version, stream.hash = version, hashes[-1]
        return AppendResult(version, self._log.last_position)

    # -- inline projections -------------------------------------------------------------

    def _accept_inline(self, handlers: InlineHandlers) -> None:
        check_handlers(handlers)

    async def _rebuild_inline(self, handler: InlineHandler) -> InlineRecord:
        events = list(self._own_events(1))
        output = apply_all(handler, events)
        self.processing.apply_documents(output.documents, clear=handler.collections)
        records = self._log.inline.setdefault(self.namespace, {})
        head = events[-1].position if events else 0
        record = registered(records.get(handler.name), handler, (), head)
        records[handler.name] = rebuilt(record, head)
        return records[handler.name]

    async def _inline_records(self) -> list[InlineRecord]:
        records = self._log.inline.get(self.namespace, {})
        return [records[name] for name in sorted(records)]

    async def _drop_inline(self, name: str) -> None:
        if self._log.inline.get(self.namespace, {}).pop(name, None) is None:
            raise NotFound(f"no inline projection {name!r} is recorded in this store")

    def _forget(self, stream: _Stream, before_version: int) -> None:
        if before_version < 0:
            return
        before_purge(self._log, self.namespace, stream, before_version)
        keep: list[RecordedEvent] = []
        for event in stream.events:
            if event.version < before_version:
                del self._log.events[event.position]
                del self._log.ids[(self.namespace, event.id)]
                self._log.hashes.pop(event.position, None)
            else:
                keep.append(event)
        stream.events = keep
        stream.truncated_before = max(stream.truncated_before, before_version)

    async def _delete_stream(self, stream: str, *, hard: bool) -> None:
        found = self._stream(stream)
        if found is None:
            if not hard:
                raise StreamNotFound(stream)
            found = self._log.streams[(self.namespace, stream)] = _Stream()
        check_stream_expectation(stream, ANY, found.version, found.state)
        self._forget(found, -1 if found.version is None else found.version + 1)
        self._log.snapshots.pop((self.namespace, stream), None)
        self._log.snapshot_times.pop((self.namespace, stream), None)
        found.state = StreamState.TOMBSTONED if hard else StreamState.DELETED

    async def _truncate_stream(self, stream: str, before_version: int) -> None:
        found = self._require(stream)
        self._forget(found, before_version)

    async def _set_stream_metadata(
        self, stream: str, max_age: float | None, max_count: int | None, metadata: dict[str, Any]
    ) -> StreamInfo:
        found = self._stream(stream)
        if found is None:
            found = self._log.streams[(self.namespace, stream)] = _Stream()
        check_stream_expectation(stream, ANY, found.version, found.state)
        found.max_age, found.max_count, found.metadata = max_age, max_count, metadata
        return found.info(stream)

    async def _write_snapshot(
        self, stream: str, version: int, schema_version: int, state: bytes
    ) -> None:
        self._require(stream)
        self._log.snapshots[(self.namespace, stream)] = Snapshot(
            stream=stream, version=version, schema_version=schema_version, state=decode_json(state)
        )
        self._log.snapshot_times[(self.namespace, stream)] = datetime.now(UTC)

    async def _read_snapshot(self, stream: str) -> Snapshot | None:
        return self._log.snapshots.get((self.namespace, stream))

    def _require(self, stream: str) -> _Stream:
        found = self._stream(stream)
        if found is None:
            raise StreamNotFound(stream)
        check_stream_expectation(stream, ANY, found.version, found.state)
        return found

    # -- reads ------------------------------------------------------------------------

    async def _read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]:
        found = self._stream(stream)
        if found is None:
            return []
        check_stream_expectation(stream, ANY, found.version, found.state)
        events = visible_events(found.events, found.max_age, found.max_count)
        if backwards:
            start = found.version if from_version is None else from_version
            selected = [e for e in reversed(events) if start is not None and e.version <= start]
        else:
            selected = [e for e in events if e.version >= (from_version or 0)]
        return selected[:limit] if limit is not None else selected

    async def _read_all(
        self, from_position: int, limit: int | None, filters: GlobalFilter
    ) -> list[RecordedEvent]:
        result: list[RecordedEvent] = []
        for event in self._own_events(from_position):
            if filters.matches(event):
                result.append(event)
                if limit is not None and len(result) >= limit:
                    break
        return result

    async def _head_position(self) -> int:
        for position in range(self._log.last_position, 0, -1):
            entry = self._log.events.get(position)
            if entry is not None and entry[0] == self.namespace:
                return position
        return 0

    async def _stream_info(self, stream: str) -> StreamInfo:
        found = self._stream(stream)
        if found is None:
            raise StreamNotFound(stream)
        return found.info(stream)

    async def _list_streams(self, selection: StreamSelection) -> list[StreamInfo]:
        found = sorted(
            (
                (name, stream)
                for (namespace, name), stream in self._log.streams.items()
                if namespace == self.namespace and selection.matches(name)
            ),
            key=lambda item: item[0],
        )
        return [stream.info(name) for name, stream in found[: selection.limit]]


def visible_events(
    events: list[RecordedEvent], max_age: float | None, max_count: int | None
) -> list[RecordedEvent]:
    """Apply a stream's ``max_age`` and ``max_count`` to its events (oldest first)."""
    if max_count is not None:
        events = events[-max_count:] if max_count else []
    if max_age is not None:
        cutoff = time.time() - max_age
        events = [e for e in events if e.recorded_at.timestamp() >= cutoff]
    return events
