"""The JSON shapes of the wire contract (docs/reference/http.md): bodies in, values out.

Request bodies are pydantic models, so a malformed body is refused with one field error
per problem (``events[0].type: Field required``) before the domain sees it; the domain's
own checks (names, tags, sizes) then run in the value constructors, and their errors are
re-labelled with the body path they came from. The same models describe the bodies in the
OpenAPI document.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC
from typing import Annotated, Any, TypeVar

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from kronika.domain.events import (
    AppendCondition,
    ExpectedVersionLike,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamAppend,
    StreamInfo,
    check_expected_version,
)
from kronika.errors import ValidationError

__all__ = [
    "AppendBody",
    "ConditionBody",
    "CreateKeyBody",
    "FailedKeyBody",
    "JSONResponse",
    "MaintenanceBody",
    "MetadataBody",
    "MultiAppendBody",
    "NewEventBody",
    "SnapshotBody",
    "TruncateBody",
    "event_json",
    "parse_body",
    "query_bool",
    "query_int",
    "query_list",
    "query_str",
    "read_body",
    "snapshot_json",
    "stream_info_json",
]

M = TypeVar("M", bound=BaseModel)
_SYMBOLS = ("any", "no_stream", "stream_exists")


def _expected_json(value: object) -> int | str:
    """One clear message for a bad expected version, not one per member of the union."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value in _SYMBOLS:
        return value
    raise ValueError(f"must be an integer >= 0 or one of {', '.join(_SYMBOLS)}; got {value!r}")


ExpectedVersionJSON = Annotated[
    int | str,
    PlainValidator(_expected_json),
    WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 0}, {"enum": list(_SYMBOLS)}], "default": "any"}
    ),
]


class JSONResponse(Response):
    """A JSON answer serialised with orjson (the hot path of reads)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewEventBody(_Body):
    """An event to append."""

    id: uuid.UUID | None = None
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] | None = None
    tags: list[str] = Field(default_factory=list)

    def to_event(self, path: str) -> NewEvent:
        try:  # not ``with _relabel(path)``: this runs for every event appended over HTTP
            return NewEvent(self.type, self.data, self.metadata, self.id, tuple(self.tags))
        except ValidationError as exc:
            raise _relabelled(exc, path) from None


class ConditionBody(_Body):
    """A consistency boundary: fail if a matching event was appended after ``after``."""

    types: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    after: int | None = Field(None, ge=0)

    def to_condition(self) -> AppendCondition:
        with _relabel(""):
            return AppendCondition(tuple(self.types), tuple(self.tags), self.after or 0)


def _condition(body: ConditionBody | None) -> AppendCondition | None:
    return None if body is None else body.to_condition()


def _expected(value: ExpectedVersionJSON, path: str) -> ExpectedVersionLike:
    return check_expected_version(value, path)


class AppendBody(_Body):
    """POST /v1/streams/{stream}."""

    expected_version: ExpectedVersionJSON = "any"
    events: list[NewEventBody] = Field(min_length=1)
    condition: ConditionBody | None = None

    def new_events(self) -> list[NewEvent]:
        return [event.to_event(f"events[{i}]") for i, event in enumerate(self.events)]

    def expected(self) -> ExpectedVersionLike:
        return _expected(self.expected_version, "expected_version")

    def append_condition(self) -> AppendCondition | None:
        return _condition(self.condition)


class StreamAppendBody(_Body):
    """One stream's part of a multi-stream append."""

    stream: str
    expected_version: ExpectedVersionJSON = "any"
    events: list[NewEventBody] = Field(default_factory=list)


class MultiAppendBody(_Body):
    """POST /v1/append."""

    streams: list[StreamAppendBody] = Field(min_length=1)
    condition: ConditionBody | None = None

    def appends(self) -> list[StreamAppend]:
        result = []
        for i, part in enumerate(self.streams):
            path = f"streams[{i}]"
            events = [e.to_event(f"{path}.events[{j}]") for j, e in enumerate(part.events)]
            with _relabel(path):
                result.append(
                    StreamAppend(
                        part.stream,
                        events,
                        _expected(part.expected_version, f"{path}.expected_version"),
                    )
                )
        return result

    def append_condition(self) -> AppendCondition | None:
        return _condition(self.condition)


class TruncateBody(_Body):
    """POST /v1/streams/{stream}/truncate."""

    before_version: int = Field(ge=0)


class MetadataBody(_Body):
    """PUT /v1/streams/{stream}/metadata."""

    max_age: float | None = Field(None, gt=0)
    max_count: int | None = Field(None, ge=1)
    metadata: dict[str, Any] | None = None


class SnapshotBody(_Body):
    """PUT /v1/streams/{stream}/snapshot."""

    version: int = Field(ge=0)
    state: dict[str, Any]
    schema_version: int = Field(1, ge=1)


class FailedKeyBody(_Body):
    """POST /v1/processors/{name}/failed/retry and /skip."""

    partition: int | None = Field(None, ge=0, description="Echoed back; the key decides.")
    key: str = Field(min_length=1)


class CreateKeyBody(_Body):
    """POST /v1/keys."""

    roles: list[str] = Field(min_length=1)
    categories: list[str] | None = None
    name: str = ""
    expires_in: int | None = Field(None, ge=1, description="Lifetime in seconds.")


class MaintenanceBody(_Body):
    """POST /v1/admin/maintenance."""

    enabled: bool


@contextmanager
def _relabel(path: str) -> Iterator[None]:
    """Prefix the fields of a domain ValidationError with where they sit in the body."""
    try:
        yield
    except ValidationError as exc:
        if not path:
            raise
        raise _relabelled(exc, path) from None


def _relabelled(error: ValidationError, path: str) -> ValidationError:
    return ValidationError([(_join(path, f), m) for f, m in error.errors])


def _join(path: str, field: str) -> str:
    if not path:
        return field
    return f"{path}.{field}" if field else path


async def parse_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``, or ``ValidationError`` with a line per field."""
    raw = await read_body(request)
    try:
        return model.model_validate_json(raw or b"null")
    except pydantic.ValidationError as exc:
        raise ValidationError([_field_error(e) for e in exc.errors()]) from None


async def read_body(request: Request) -> bytes:
    """The whole request body, read straight from ``receive`` (most bodies are one message).

    For the handlers that read their body once, through :func:`parse_body`; Starlette's
    ``request.body()`` does the same through an async generator, at several times the cost.
    """
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _field_error(error: Any) -> tuple[str, str]:
    path = ""
    for part in error["loc"]:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, str(part))
    if error["type"] == "json_invalid":
        return "body", f"is not valid JSON: {error['msg']}"
    if error["type"] == "model_type" or (not path and error["type"].endswith("_type")):
        return "body", "must be a JSON object"
    return path or "body", error["msg"]


def query_int(request: Request, name: str, *, minimum: int = 0) -> int | None:
    """An optional integer query parameter."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValidationError(f"must be an integer, got {value!r}", name) from None
    if number < minimum:
        raise ValidationError(f"must be at least {minimum}, got {number}", name)
    return number


def query_bool(request: Request, name: str) -> bool:
    """An optional boolean query parameter (``true``/``false``); absent means false."""
    value = request.query_params.get(name, "false").strip().lower()
    if value in {"true", "1", "yes"}:
        return True
    if value in {"false", "0", "no", ""}:
        return False
    raise ValidationError(f"must be true or false, got {value!r}", name)


def query_str(request: Request, name: str) -> str | None:
    """An optional text query parameter; absent or empty means ``None``."""
    value = request.query_params.get(name)
    return value or None


def query_list(request: Request, name: str) -> list[str] | None:
    """A list query parameter: comma-separated, repeated, or both; absent means no filter."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    return [part for value in values for part in value.split(",") if part]


def event_json(event: RecordedEvent) -> dict[str, Any]:
    """A recorded event on the wire."""
    return {
        "id": str(event.id),
        "stream": event.stream,
        "version": event.version,
        "position": event.position,
        "type": event.type,
        "data": event.data,
        "metadata": event.metadata,
        "tags": list(event.tags),
        "recorded_at": event.recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }


def events_json(events: Sequence[RecordedEvent]) -> dict[str, Any]:
    """``{"events": [...]}``."""
    return {"events": [event_json(e) for e in events]}


def stream_info_json(info: StreamInfo) -> dict[str, Any]:
    """A stream's version, state, retention and metadata."""
    return {
        "stream": info.stream,
        "version": info.version,
        "state": info.state.value,
        "truncated_before": info.truncated_before,
        "max_age": info.max_age,
        "max_count": info.max_count,
        "metadata": info.metadata,
    }


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    """A stream's latest snapshot."""
    return {
        "stream": snapshot.stream,
        "version": snapshot.version,
        "schema_version": snapshot.schema_version,
        "state": snapshot.state,
    }
