"""Row factories that build Kronika values straight from result rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from psycopg.rows import RowMaker

from kronika.domain.events import RecordedEvent, StreamInfo, StreamState

__all__ = ["event_from", "event_rows", "stream_info_from", "stream_read_rows"]


_FIELDS = ("id", "stream", "version", "position", "type", "data", "metadata", "tags", "recorded_at")
if tuple(f.name for f in dataclasses.fields(RecordedEvent)) != _FIELDS:  # pragma: no cover
    raise ImportError("RecordedEvent changed: update kronika.store.postgres.rows")
# Reads build thousands of events per query. Filling the slots of a new instance directly
# costs a third of the frozen dataclass's __init__ (which has no checks to skip).
_SETTERS = tuple(getattr(RecordedEvent, name).__set__ for name in _FIELDS)
_new = object.__new__


def event_from(values: Sequence[Any]) -> RecordedEvent:
    """A recorded event from ``id, stream, version, position, type, data, metadata, tags,
    recorded_at``."""
    event: RecordedEvent = _new(RecordedEvent)
    s_id, s_stream, s_version, s_position, s_type, s_data, s_meta, s_tags, s_at = _SETTERS
    s_id(event, values[0])
    s_stream(event, values[1])
    s_version(event, values[2])
    s_position(event, values[3])
    s_type(event, values[4])
    s_data(event, values[5])
    s_meta(event, values[6])
    s_tags(event, tuple(values[7]))
    s_at(event, values[8])
    return event


def event_rows(cursor: Any) -> RowMaker[RecordedEvent]:
    """Row factory of the global reads."""
    return event_from


def _stream_read(values: Sequence[Any]) -> RecordedEvent | str:
    if values[1] is None:
        return str(values[0])
    return event_from(values[1:])


def stream_read_rows(cursor: Any) -> RowMaker[RecordedEvent | str]:
    """Row factory of stream reads: events, or the stream's state when it has none."""
    return _stream_read


def stream_info_from(stream: str, values: Sequence[Any]) -> StreamInfo:
    """A :class:`StreamInfo` from ``version, state, truncated_before, max_age, max_count,
    metadata``."""
    version, state, truncated_before, max_age, max_count, metadata = values
    return StreamInfo(
        stream=stream,
        version=version,
        state=StreamState(state),
        truncated_before=truncated_before,
        max_age=max_age,
        max_count=max_count,
        metadata=metadata,
    )
