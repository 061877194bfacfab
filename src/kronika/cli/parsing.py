"""Turning command-line text into domain values, with errors that name the offending input.

Every function raises :class:`kronika.errors.ValidationError`; the CLI prints it as
``error: <field>: <message>`` and exits with status 2.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from kronika.domain.events import ExpectedVersion, ExpectedVersionLike, NewEvent
from kronika.errors import ValidationError

__all__ = ["events_from_ndjson", "make_event", "parse_expected_version", "parse_json_object"]

LINE_KEYS = frozenset({"type", "data", "metadata", "id", "tags"})
"""Keys an NDJSON event line may have."""


def parse_expected_version(text: str, field: str = "--expected-version") -> ExpectedVersionLike:
    """``any``, ``no_stream``, ``stream_exists`` (any case, ``-`` or ``_``) or a version >= 0."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        return ExpectedVersion(value.lower().replace("-", "_"))
    except ValueError:
        raise ValidationError(
            f"must be any, no_stream, stream_exists or a version >= 0, got {text!r}", field
        ) from None


def parse_json_object(text: str, field: str) -> dict[str, Any]:
    """Parse ``text`` as a JSON object."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"is not valid JSON ({exc})", field) from None
    if not isinstance(value, dict):
        raise ValidationError(f"must be a JSON object, got {type(value).__name__}", field)
    return value


def make_event(
    event_type: str,
    data: Mapping[str, Any],
    *,
    metadata: Mapping[str, Any] | None = None,
    event_id: object = None,
    tags: Sequence[str] = (),
    prefix: str = "",
) -> NewEvent:
    """Build a :class:`NewEvent`; field names in errors get ``prefix`` in front."""
    try:
        return NewEvent(event_type, data, metadata, _uuid(event_id, "id"), tags)
    except ValidationError as exc:
        raise ValidationError(
            [(prefix + field, message) for field, message in exc.errors]
        ) from None


def _uuid(value: object, field: str) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValidationError(f"must be a UUID, got {value!r}", field) from None


def event_from_line(line: str, number: int, extra_tags: Sequence[str] = ()) -> NewEvent:
    """One NDJSON line ``{"type", "data", "metadata"?, "id"?, "tags"?}`` as a new event."""
    where = f"stdin line {number}"
    obj = parse_json_object(line, where)
    unknown = sorted(set(obj) - LINE_KEYS)
    if unknown:
        raise ValidationError(f"unknown keys {unknown}; allowed: {sorted(LINE_KEYS)}", where)
    for key in ("type", "data"):
        if key not in obj:
            raise ValidationError("is required", f"{where}: {key}")
    tags = obj.get("tags", [])
    if not isinstance(tags, list):
        raise ValidationError("must be a list of strings", f"{where}: tags")
    return make_event(
        obj["type"],
        obj["data"],
        metadata=obj.get("metadata"),
        event_id=obj.get("id"),
        tags=[*tags, *extra_tags],
        prefix=f"{where}: ",
    )


def events_from_ndjson(lines: Iterable[str], extra_tags: Sequence[str] = ()) -> list[NewEvent]:
    """Events from NDJSON lines; blank lines are skipped, at least one event is required."""
    events = [
        event_from_line(line, number, extra_tags)
        for number, line in enumerate(lines, start=1)
        if line.strip()
    ]
    if not events:
        raise ValidationError("no events were given (one JSON object per line)", "stdin")
    return events
