"""The JSON shapes of HTTP API v1 (docs/reference/api.md), to and from Kronika's values.

Requests are built from the backend's already validated and encoded input (event payloads
stay the bytes :mod:`kronika.store.base` serialised, embedded with ``orjson.Fragment``), so
nothing is serialised twice. Responses come from the server, so parsing trusts their shape
but still turns a malformed body into :class:`~kronika.errors.KronikaError`, never a
``KeyError``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import orjson

from kronika.domain.events import (
    AppendCondition,
    AppendResult,
    ExpectedVersion,
    ExpectedVersionLike,
    MultiAppendResult,
    RecordedEvent,
    Snapshot,
    StreamInfo,
    StreamState,
)
from kronika.errors import KronikaError
from kronika.store.base import EncodedEvent, GlobalFilter, PreparedAppend
from kronika.store.listing import StreamSelection

__all__ = [
    "append_body",
    "append_multi_body",
    "append_result",
    "event_from_json",
    "events_from_json",
    "expected_to_json",
    "filter_params",
    "list_params",
    "multi_result",
    "snapshot_from_json",
    "stream_info_from_json",
]


def filter_params(filters: GlobalFilter) -> dict[str, list[str]]:
    """The global-log filters that are set, as repeated query parameters."""
    return {
        name: list(values)
        for name in ("types", "categories", "tags")
        if (values := getattr(filters, name)) is not None
    }


def list_params(selection: StreamSelection, after: str | None, limit: int) -> dict[str, str | int]:
    """The query of one page of ``GET /v1/streams``: the filters that are set, the cursor."""
    params: dict[str, str | int] = {"limit": limit}
    filters = {"after": after, "prefix": selection.prefix, "category": selection.category}
    params.update({name: value for name, value in filters.items() if value is not None})
    return params


def expected_to_json(expected: ExpectedVersionLike) -> int | str:
    """``any``/``no_stream``/``stream_exists`` or the version number."""
    return expected.value if isinstance(expected, ExpectedVersion) else expected


def _event_json(event: EncodedEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": event.type,
        "data": orjson.Fragment(event.data),
        "metadata": orjson.Fragment(event.metadata),
        "tags": list(event.tags),
    }


def _condition_json(condition: AppendCondition) -> dict[str, Any]:
    return {"types": list(condition.types), "tags": list(condition.tags), "after": condition.after}


def append_body(append: PreparedAppend, condition: AppendCondition | None) -> bytes:
    """The body of ``POST /v1/streams/{stream}``."""
    body: dict[str, Any] = {
        "expected_version": expected_to_json(append.expected),
        "events": [_event_json(e) for e in append.events],
    }
    if condition is not None:
        body["condition"] = _condition_json(condition)
    return orjson.dumps(body)


def append_multi_body(appends: list[PreparedAppend], condition: AppendCondition | None) -> bytes:
    """The body of ``POST /v1/append``."""
    streams = [
        {
            "stream": a.stream,
            "expected_version": expected_to_json(a.expected),
            "events": [_event_json(e) for e in a.events],
        }
        for a in appends
    ]
    body: dict[str, Any] = {"streams": streams}
    if condition is not None:
        body["condition"] = _condition_json(condition)
    return orjson.dumps(body)


@contextmanager
def _parsing(what: str) -> Iterator[None]:
    """Turn a body of the wrong shape into a KronikaError naming what was being read."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise KronikaError(f"the server sent a malformed {what}: {exc!r}") from None


def append_result(body: Mapping[str, Any]) -> AppendResult:
    """``{"next_expected_version", "position"}``."""
    with _parsing("append result"):
        return AppendResult(int(body["next_expected_version"]), int(body["position"]))


def multi_result(body: Mapping[str, Any]) -> MultiAppendResult:
    """``{"streams": [{"stream", "next_expected_version", "position"?}], "position"}``."""
    with _parsing("multi-stream append result"):
        position = int(body["position"])
        streams = {
            s["stream"]: AppendResult(int(s["next_expected_version"]), int(s.get("position", 0)))
            for s in body["streams"]
        }
        return MultiAppendResult(streams=streams, position=position)


def event_from_json(item: Mapping[str, Any]) -> RecordedEvent:
    """One RecordedEvent JSON object."""
    with _parsing("event"):
        return RecordedEvent.from_row(
            uuid.UUID(item["id"]),
            item["stream"],
            int(item["version"]),
            int(item["position"]),
            item["type"],
            dict(item["data"]),
            dict(item.get("metadata") or {}),
            tuple(item.get("tags") or ()),
            datetime.fromisoformat(item["recorded_at"]),
        )


def events_from_json(body: Mapping[str, Any]) -> list[RecordedEvent]:
    """``{"events": [...]}``."""
    with _parsing("event list"):
        items = body["events"]
    return [event_from_json(item) for item in items]


def stream_info_from_json(body: Mapping[str, Any]) -> StreamInfo:
    """StreamInfo JSON: every field of :class:`StreamInfo`, ``state`` as its value."""
    with _parsing("stream info"):
        version = body.get("version")
        max_age = body.get("max_age")
        max_count = body.get("max_count")
        return StreamInfo(
            stream=body["stream"],
            version=None if version is None else int(version),
            state=StreamState(body["state"]),
            truncated_before=int(body.get("truncated_before") or 0),
            max_age=None if max_age is None else float(max_age),
            max_count=None if max_count is None else int(max_count),
            metadata=dict(body.get("metadata") or {}),
        )


def snapshot_from_json(body: Mapping[str, Any]) -> Snapshot:
    """Snapshot JSON ``{"stream", "version", "state", "schema_version"}``."""
    with _parsing("snapshot"):
        return Snapshot(
            stream=body["stream"],
            version=int(body["version"]),
            schema_version=int(body.get("schema_version", 1)),
            state=dict(body["state"]),
        )
