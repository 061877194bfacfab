"""Row factories that build Kronika values straight from result rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.rows import RowMaker

from kronika.domain.events import RecordedEvent, StreamInfo, StreamState

__all__ = ["event_from", "event_rows", "stream_info_from", "stream_read_rows"]


def event_from(values: Sequence[Any]) -> RecordedEvent:
    """A recorded event from ``id, stream, version, position, type, data, metadata, tags,
    recorded_at``."""
    return RecordedEvent.from_row(
        values[0], values[1], values[2], values[3], values[4], values[5], values[6],
        tuple(values[7]), values[8],
    )  # fmt: skip


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
