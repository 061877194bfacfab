"""Inline projections on the memory backend: documents only, applied with the append.

An append is synchronous from its checks to its last write, so nothing else runs in
between: the events are written, the handlers write into a buffer, and the buffer is
applied to the documents. If a handler fails, the append's writes are undone (a trivial
transaction) before anything else can see them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kronika.domain.events import RecordedEvent, StreamState
from kronika.errors import ConfigurationError
from kronika.store.base import PreparedAppend, decode_json, encode_json
from kronika.store.inline import (
    InlineHandler,
    InlineHandlers,
    InlineOutput,
    InlineRecord,
    Params,
    apply_one,
    sorted_types,
    unseen_types,
)

if TYPE_CHECKING:
    from kronika.store.memory.store import _Log

__all__ = ["MemoryInlineOutput", "Undo", "apply_all", "check_handlers", "rebuilt", "registered"]


class MemoryInlineOutput(InlineOutput):
    """Buffers an append's document writes; SQL is refused (the memory store has none)."""

    def __init__(self) -> None:
        self.documents: dict[tuple[str, str], dict[str, Any] | None] = {}
        """(collection, key) -> the document, or None for a delete: the last write wins."""

    def write(self, sql: str, params: Params) -> None:
        raise ConfigurationError("the memory store has no SQL; write documents instead")

    def put_document(self, collection: str, key: str, value: dict[str, Any]) -> None:
        self.documents[collection, key] = decode_json(encode_json(value, "document"))

    def delete_document(self, collection: str, key: str) -> None:
        self.documents[collection, key] = None


def check_handlers(handlers: InlineHandlers) -> None:
    """Refuse projections that keep SQL tables: the memory store has no SQL."""
    for handler in handlers.handlers:
        if handler.tables:
            raise ConfigurationError(
                f"inline projection {handler.name!r} keeps SQL tables, which the memory store "
                "does not have: use SQLite or PostgreSQL, or write documents only"
            )


_SavedStream = tuple[int | None, StreamState, bytes | None, int]


@dataclass(frozen=True, slots=True)
class Undo:
    """What an append changes in a log, to put it back if its inline projections fail."""

    position: int
    """The log's last position before the append."""
    streams: dict[tuple[str, str], _SavedStream | None]
    """Per stream key: version, state, chain head and event count before (None: new)."""

    @classmethod
    def of(cls, log: _Log, namespace: str, appends: Sequence[PreparedAppend]) -> Undo:
        """Remember the state the append may change."""
        saved: dict[tuple[str, str], _SavedStream | None] = {}
        for append in appends:
            stream = log.streams.get((namespace, append.stream))
            saved[(namespace, append.stream)] = (
                None
                if stream is None
                else (stream.version, stream.state, stream.hash, len(stream.events))
            )
        return cls(log.last_position, saved)

    def written(self, log: _Log) -> list[RecordedEvent]:
        """The events the append wrote (none for a retry), in order."""
        return [log.events[p][1] for p in range(self.position + 1, log.last_position + 1)]

    def restore(self, log: _Log) -> None:
        """Remove what the append wrote."""
        for position in range(self.position + 1, log.last_position + 1):
            namespace, event = log.events.pop(position)
            log.ids.pop((namespace, event.id), None)
            log.hashes.pop(position, None)
        log.last_position = self.position
        for key, saved in self.streams.items():
            if saved is None:
                log.streams.pop(key, None)
                continue
            stream = log.streams[key]
            stream.version, stream.state, stream.hash, count = saved
            del stream.events[count:]


def _now() -> datetime:
    return datetime.now(UTC)


def registered(
    record: InlineRecord | None,
    handler: InlineHandler,
    stored: Iterable[RecordedEvent],
    head: int,
) -> InlineRecord:
    """The record of ``handler`` after registering it on a log holding ``stored``."""
    types = sorted_types(handler)
    if record is not None and record.types == types:
        return record
    unseen = unseen_types(record, handler)
    missed = unseen is not None and any(
        unseen[0] is None or (e.type in unseen[0]) == unseen[1] for e in stored
    )
    if record is not None:
        return replace(record, types=types, needs_rebuild=record.needs_rebuild or missed)
    return InlineRecord(
        name=handler.name,
        types=types,
        registered_at=_now(),
        registered_position=head,
        needs_rebuild=missed,
    )


def rebuilt(record: InlineRecord, head: int) -> InlineRecord:
    """``record`` after a rebuild at ``head``."""
    return replace(record, needs_rebuild=False, rebuilt_at=_now(), rebuilt_position=head)


def apply_all(handler: InlineHandler, events: Iterable[RecordedEvent]) -> MemoryInlineOutput:
    """Apply every event of the handler's types (a rebuild), into a fresh buffer."""
    output = MemoryInlineOutput()
    for event in events:
        if handler.types is None or event.type in handler.types:
            apply_one(handler, event, output)
    return output
