"""Events as they go into the store and as they come out of it, and the append vocabulary.

Pure values: no I/O. Every constructor validates its input and raises
:class:`kronika.errors.ValidationError` naming the offending field, so a bad value is
caught where it is made, before anything reaches a database.
"""

from __future__ import annotations

import enum
import os
import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from kronika.domain import names
from kronika.errors import ValidationError

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendCondition",
    "AppendResult",
    "ExpectedVersion",
    "ExpectedVersionLike",
    "MultiAppendResult",
    "NewEvent",
    "RecordedEvent",
    "Snapshot",
    "StreamAppend",
    "StreamInfo",
    "StreamState",
    "category_of",
    "check_expected_version",
    "new_event_id",
]

JSONObject: TypeAlias = Mapping[str, Any]


class ExpectedVersion(enum.Enum):
    """The symbolic expectations an append can state about its stream."""

    ANY = "any"
    """No check: append whatever the stream's state (except tombstoned)."""
    NO_STREAM = "no_stream"
    """The stream must not exist yet (or was soft-deleted)."""
    STREAM_EXISTS = "stream_exists"
    """The stream must exist, at any version."""

    def __repr__(self) -> str:
        return self.name


ANY = ExpectedVersion.ANY
NO_STREAM = ExpectedVersion.NO_STREAM
STREAM_EXISTS = ExpectedVersion.STREAM_EXISTS

ExpectedVersionLike: TypeAlias = ExpectedVersion | int
"""An :class:`ExpectedVersion` or the exact version of the stream's last event (from 0)."""


def check_expected_version(
    value: object, field_name: str = "expected_version"
) -> ExpectedVersionLike:
    """Return ``value`` if it is a valid expectation, else raise ``ValidationError``."""
    if isinstance(value, ExpectedVersion):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return ExpectedVersion(value)
        except ValueError:
            pass
    raise ValidationError(
        f"must be ANY, NO_STREAM, STREAM_EXISTS or an integer >= 0, got {value!r}", field_name
    )


def category_of(stream: str) -> str:
    """The stream's category: its name before the first ``-`` (the whole name if none)."""
    return stream.partition("-")[0]


def _check_json_object(value: object, field_name: str) -> JSONObject:
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"must be a JSON object (a dict), got {type(value).__name__}", field_name
        )
    for key in value:
        if not isinstance(key, str):
            raise ValidationError(f"keys must be strings, got {key!r}", field_name)
    return value


_RANDOM = random.Random()  # noqa: S311 - ids must be unique, not unguessable
os.register_at_fork(after_in_child=_RANDOM.seed)


def new_event_id() -> uuid.UUID:
    """A time-ordered UUID (version 7): 48 bits of Unix milliseconds, then 74 random bits.

    New ids sort after older ones, so they land at the end of an index on event ids instead
    of at random places in it.
    """
    milliseconds = time.time_ns() // 1_000_000
    bits = _RANDOM.getrandbits(74)
    value = (milliseconds & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (bits >> 62) << 64
    return uuid.UUID(int=value | 0b10 << 62 | bits & 0x3FFF_FFFF_FFFF_FFFF)


def _check_uuid(value: object, field_name: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise ValidationError(f"must be a UUID, got {value!r}", field_name)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. ``id`` is generated when absent; reusing it makes retries safe."""

    type: str
    """The event type name, e.g. ``"OrderPlaced"``."""
    data: JSONObject
    """The payload: a JSON object."""
    metadata: JSONObject | None = None
    """Optional JSON object: correlation and causation ids, trace context, user data."""
    id: uuid.UUID | str | None = None
    """A UUID identifying the event; the same id in a retried append writes nothing twice."""
    tags: Sequence[str] = ()
    """Tags for consistency-boundary conditions and filtered reads, e.g. ``("customer:7",)``."""

    def __post_init__(self) -> None:
        names.check_name(self.type, "type", max_length=names.MAX_TYPE_LENGTH)
        _check_json_object(self.data, "data")
        if self.metadata is not None:
            _check_json_object(self.metadata, "metadata")
        event_id = new_event_id() if self.id is None else _check_uuid(self.id, "id")
        object.__setattr__(self, "id", event_id)
        object.__setattr__(self, "tags", names.check_tags(self.tags, "tags"))

    @property
    def event_id(self) -> uuid.UUID:
        """The event's id (always a UUID after construction)."""
        assert isinstance(self.id, uuid.UUID)
        return self.id


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedEvent:
    """An event as stored: its place in its stream and in the global log."""

    id: uuid.UUID
    """The event's unique id."""
    stream: str
    """The stream it belongs to."""
    version: int
    """Its position in the stream, from 0, without gaps."""
    position: int
    """Its position in the global log: unique and increasing in delivery order."""
    type: str
    """The event type name."""
    data: dict[str, Any]
    """The payload."""
    metadata: dict[str, Any]
    """The metadata (an empty dict when none was given)."""
    tags: tuple[str, ...]
    """The event's tags."""
    recorded_at: datetime
    """When the store recorded it (UTC)."""

    @property
    def category(self) -> str:
        """The category of the event's stream."""
        return category_of(self.stream)

    @classmethod
    def from_row(  # noqa: PLR0917 - positional, in column order: the read path's hot call
        cls,
        id: uuid.UUID,
        stream: str,
        version: int,
        position: int,
        type: str,
        data: dict[str, Any],
        metadata: dict[str, Any],
        tags: tuple[str, ...],
        recorded_at: datetime,
    ) -> RecordedEvent:
        """Build an event from trusted, already-typed column values (backends' read path).

        Reads build thousands of events per query; filling the slots directly costs a third
        of the frozen dataclass's ``__init__``, which has no checks to skip anyway.
        """
        event = object.__new__(cls)
        s_id, s_stream, s_version, s_position, s_type, s_data, s_meta, s_tags, s_at = _SLOTS
        s_id(event, id)
        s_stream(event, stream)
        s_version(event, version)
        s_position(event, position)
        s_type(event, type)
        s_data(event, data)
        s_meta(event, metadata)
        s_tags(event, tags)
        s_at(event, recorded_at)
        return event


_SLOTS = tuple(
    getattr(RecordedEvent, name).__set__
    for name in (
        "id",
        "stream",
        "version",
        "position",
        "type",
        "data",
        "metadata",
        "tags",
        "recorded_at",
    )
)
"""The slot setters of RecordedEvent, in the order of ``from_row``'s parameters."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append reports back."""

    next_expected_version: int
    """The stream's version after the append: pass it as ``expected_version`` next time."""
    position: int
    """Global position of the last event written (or already stored, for a retried append)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MultiAppendResult:
    """What a multi-stream append reports back, per stream in the order given."""

    streams: dict[str, AppendResult]
    """Result per stream name; streams that were only checked report their current version."""
    position: int
    """Global position of the last event written (0 if none was written)."""


@dataclass(frozen=True, slots=True)
class AppendCondition:
    """A dynamic consistency boundary: fail if a matching event was appended after ``after``.

    An event matches when its type is one of ``types`` (if any are given) and it carries every
    one of ``tags`` (if any are given). At least one of the two must be given.
    """

    types: Sequence[str] = ()
    """Event types that match; empty means any type."""
    tags: Sequence[str] = ()
    """Tags that a matching event must all carry; empty means no tag restriction."""
    after: int = 0
    """The global position the decision was made at: events at or below it are fine."""

    def __post_init__(self) -> None:
        if isinstance(self.types, str) or isinstance(self.tags, str):
            raise ValidationError(
                "types and tags must be sequences of strings, not a string", "condition"
            )
        types = tuple(
            names.check_name(t, f"condition.types[{i}]", names.MAX_TYPE_LENGTH)
            for i, t in enumerate(self.types)
        )
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "tags", names.check_tags(self.tags, "condition.tags"))
        if not self.types and not self.tags:
            raise ValidationError("give at least one of types or tags", "condition")
        names.check_position(self.after, "condition.after")

    def matches(self, event_type: str, event_tags: Iterable[str]) -> bool:
        """Whether an event with this type and these tags falls inside the boundary."""
        if self.types and event_type not in self.types:
            return False
        return not self.tags or set(self.tags).issubset(event_tags)


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of a multi-stream append. No events means "only check the version"."""

    stream: str
    """The stream name."""
    events: Sequence[NewEvent] = ()
    """Events to append to it; empty to only take part in the version check."""
    expected_version: ExpectedVersionLike = ANY
    """What the stream's version must be for the whole append to go through."""

    def __post_init__(self) -> None:
        names.check_stream(self.stream)
        object.__setattr__(self, "events", check_events(self.events))
        object.__setattr__(self, "expected_version", check_expected_version(self.expected_version))


def check_events(events: object, field_name: str = "events") -> tuple[NewEvent, ...]:
    """Validate a sequence of :class:`NewEvent` and return it as a tuple."""
    if isinstance(events, NewEvent):
        return (events,)
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise ValidationError(
            f"must be a sequence of NewEvent, got {type(events).__name__}", field_name
        )
    result = tuple(events)
    for i, event in enumerate(result):
        if not isinstance(event, NewEvent):
            raise ValidationError(
                f"must be a NewEvent, got {type(event).__name__}", f"{field_name}[{i}]"
            )
    if len(result) > names.MAX_EVENTS_PER_APPEND:
        raise ValidationError(
            f"at most {names.MAX_EVENTS_PER_APPEND} events per append, got {len(result)}",
            field_name,
        )
    seen: set[uuid.UUID] = set()
    for i, event in enumerate(result):
        if event.event_id in seen:
            raise ValidationError(
                f"duplicate event id {event.event_id} in one append", f"{field_name}[{i}].id"
            )
        seen.add(event.event_id)
    return result


class StreamState(enum.Enum):
    """The lifecycle state of a stream."""

    ACTIVE = "active"
    """Has events (or had them and was truncated); can be appended to."""
    DELETED = "deleted"
    """Soft-deleted: reads return nothing; an append recreates it, versions continue."""
    TOMBSTONED = "tombstoned"
    """Hard-deleted: can never be read or written again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    """What the store knows about one stream."""

    stream: str
    """The stream name."""
    version: int | None
    """The version of its last event, or ``None`` if it never had one."""
    state: StreamState
    """Active, soft-deleted or tombstoned."""
    truncated_before: int = 0
    """Events with a lower version are no longer readable."""
    max_age: float | None = None
    """Events older than this many seconds are hidden from stream reads."""
    max_count: int | None = None
    """Only the newest this many events are returned by stream reads."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Free-form stream metadata set by users."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The saved state of one stream's entity up to a version, to load without a full replay."""

    stream: str
    """The stream the state was built from."""
    version: int
    """The version of the last event folded into ``state``."""
    schema_version: int
    """The shape of ``state``; a reader expecting another shape ignores the snapshot."""
    state: dict[str, Any]
    """The state, as a JSON object."""
