"""Routes of the event store: streams, the global log, multi-stream appends, live events.

Each handler turns the request into one call of the :class:`EventStore` protocol and its
result into the wire shape of :mod:`kronika.server.wire`; errors travel as exceptions to
the problem+json handler.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kronika.domain import names
from kronika.errors import RateLimited, ValidationError
from kronika.observability import metrics
from kronika.server.principal import Permission, Principal, authorize
from kronika.server.problems import SnapshotNotFound
from kronika.server.routing import Access, Endpoint, Param
from kronika.server.sse import EventStream, global_frames, require_not_tombstoned, stream_frames
from kronika.server.state import state_of
from kronika.server.wire import (
    AppendBody,
    JSONResponse,
    MetadataBody,
    MultiAppendBody,
    SnapshotBody,
    TruncateBody,
    events_json,
    parse_body,
    query_bool,
    query_int,
    query_list,
    query_str,
    snapshot_json,
    stream_info_json,
)
from kronika.store.listing import PAGE_LIMIT

__all__ = ["DEFAULT_LIST_LIMIT", "ENDPOINTS"]

DEFAULT_LIST_LIMIT = 100
"""Streams in a page of ``GET /v1/streams`` when the caller gives no ``limit``."""

_INT = {"type": "integer", "minimum": 0}
_POSITIVE = {"type": "integer", "minimum": 1}
_LIST = {"type": "string"}
_TEXT = {"type": "string", "minLength": 1}
_BOOL = {"type": "boolean"}


def _stream(request: Request) -> str:
    return names.check_stream(request.path_params["stream"])


async def append(request: Request, principal: Principal) -> Response:
    """Append events to one stream with an expected version (and optional condition)."""
    body = await parse_body(request, AppendBody)
    result = await state_of(request).store.append(
        _stream(request),
        body.new_events(),
        expected_version=body.expected(),
        condition=body.append_condition(),
    )
    return JSONResponse(
        {"next_expected_version": result.next_expected_version, "position": result.position}
    )


async def read_stream(request: Request, principal: Principal) -> Response:
    """Read a stream forwards or backwards."""
    events = await state_of(request).store.read_stream(
        _stream(request),
        from_version=query_int(request, "from_version"),
        backwards=query_bool(request, "backwards"),
        limit=query_int(request, "limit", minimum=1),
    )
    return JSONResponse(events_json(events))


async def stream_info(request: Request, principal: Principal) -> Response:
    """A stream's version, state, retention and metadata."""
    info = await state_of(request).store.stream_info(_stream(request))
    return JSONResponse(stream_info_json(info))


async def delete_stream(request: Request, principal: Principal) -> Response:
    """Soft-delete (recreatable) or hard-delete (tombstone) a stream."""
    await state_of(request).store.delete_stream(_stream(request), hard=query_bool(request, "hard"))
    return Response(status_code=204)


async def truncate_stream(request: Request, principal: Principal) -> Response:
    """Drop a stream's events below a version."""
    body = await parse_body(request, TruncateBody)
    await state_of(request).store.truncate_stream(_stream(request), body.before_version)
    return Response(status_code=204)


async def set_metadata(request: Request, principal: Principal) -> Response:
    """Set a stream's retention limits and free-form metadata."""
    body = await parse_body(request, MetadataBody)
    info = await state_of(request).store.set_stream_metadata(
        _stream(request), max_age=body.max_age, max_count=body.max_count, metadata=body.metadata
    )
    return JSONResponse(stream_info_json(info))


async def read_snapshot(request: Request, principal: Principal) -> Response:
    """A stream's latest snapshot."""
    stream = _stream(request)
    snapshot = await state_of(request).store.read_snapshot(stream)
    if snapshot is None:
        raise SnapshotNotFound(f"stream {stream!r} has no snapshot")
    return JSONResponse(snapshot_json(snapshot))


async def write_snapshot(request: Request, principal: Principal) -> Response:
    """Keep a stream's snapshot."""
    body = await parse_body(request, SnapshotBody)
    await state_of(request).store.write_snapshot(
        _stream(request), body.version, body.state, schema_version=body.schema_version
    )
    return Response(status_code=204)


async def append_multi(request: Request, principal: Principal) -> Response:
    """Append to several streams atomically."""
    body = await parse_body(request, MultiAppendBody)
    appends = body.appends()
    for part in appends:  # the route's guard saw no stream: check each one here
        authorize(principal, Permission.WRITE, stream=part.stream)
    result = await state_of(request).store.append_multi(appends, condition=body.append_condition())
    return JSONResponse(
        {
            "streams": [
                {
                    "stream": name,
                    "next_expected_version": r.next_expected_version,
                    "position": r.position,
                }
                for name, r in result.streams.items()
            ],
            "position": result.position,
        }
    )


async def list_streams(request: Request, principal: Principal) -> Response:
    """Streams in name order, a page at a time (``next``: the cursor of the next page)."""
    limit = query_int(request, "limit", minimum=1) or DEFAULT_LIST_LIMIT
    if limit > PAGE_LIMIT:
        raise ValidationError(f"must be at most {PAGE_LIMIT}, got {limit}", "limit")
    found = await state_of(request).store.list_streams(
        after=query_str(request, "after"),
        prefix=query_str(request, "prefix"),
        category=query_str(request, "category"),
        limit=limit,
    )
    cursor = found[-1].stream if len(found) == limit else None
    return JSONResponse({"streams": [stream_info_json(i) for i in found], "next": cursor})


def _filters(request: Request) -> dict[str, tuple[str, ...] | None]:
    """The types/categories/tags filters of a global read, each checked like a tag."""
    return {
        name: names.check_filter(query_list(request, name), name)
        for name in ("types", "categories", "tags")
    }


async def read_all(request: Request, principal: Principal) -> Response:
    """Read the global log, filtered."""
    events = await state_of(request).store.read_all(
        from_position=query_int(request, "from_position") or 0,
        limit=query_int(request, "limit", minimum=1),
        **_filters(request),
    )
    return JSONResponse(events_json(events))


async def head(request: Request, principal: Principal) -> Response:
    """The newest readable global position."""
    return JSONResponse({"position": await state_of(request).store.head_position()})


def _last_event_id(request: Request) -> int | None:
    value = request.headers.get("last-event-id")
    if value is None or not value.strip():
        return None
    try:
        number = int(value)
    except ValueError:
        raise ValidationError(f"must be an integer, got {value!r}", "Last-Event-ID") from None
    if number < 0:
        raise ValidationError(f"must be at least 0, got {number}", "Last-Event-ID")
    return number


def _admit_stream(request: Request) -> None:
    state = state_of(request)
    if state.open_streams >= state.settings.max_streams:
        metrics.rejected("stream_limit")
        raise RateLimited(
            f"{state.open_streams} event streams are open, the most this server allows",
            retry_after=5,
        )


async def live_all(request: Request, principal: Principal) -> EventStream:
    """Server-Sent Events of the global log from a position, filtered."""
    state = state_of(request)
    _admit_stream(request)
    last = _last_event_id(request)
    start = last + 1 if last is not None else query_int(request, "from_position") or 0
    frames = global_frames(state.store, state.hub, start, **_filters(request))
    return EventStream(frames, state)


async def live_stream(request: Request, principal: Principal) -> EventStream:
    """Server-Sent Events of one stream from a version."""
    state = state_of(request)
    _admit_stream(request)
    stream = _stream(request)
    last = _last_event_id(request)
    start = last + 1 if last is not None else query_int(request, "from_version") or 0
    await require_not_tombstoned(state.store, stream)
    return EventStream(stream_frames(state.store, state.hub, stream, start), state)


_STREAM = "/v1/streams/{stream}"
_FILTERS = (
    Param("types", _LIST, "Only these event types (comma-separated or repeated)."),
    Param("categories", _LIST, "Only streams of these categories."),
    Param("tags", _LIST, "Only events carrying all of these tags."),
)

ENDPOINTS = [
    Endpoint(
        method="GET",
        path="/v1/streams",
        handler=list_streams,
        permission=Permission.READ,
        access=Access.CATEGORY,
        summary="List streams in name order, a page at a time.",
        query=(
            Param("prefix", _TEXT, "Only streams whose name starts with this."),
            Param("category", _TEXT, "Only streams of this category (name before '-')."),
            Param("after", _TEXT, "The cursor: only names after this one (the last `next`)."),
            Param("limit", {**_POSITIVE, "maximum": PAGE_LIMIT}, "Page size (default 100)."),
        ),
    ),
    Endpoint(
        method="POST",
        path="/v1/append",
        handler=append_multi,
        permission=Permission.WRITE,
        access=Access.BODY,
        body=MultiAppendBody,
        summary="Append to several streams in one transaction.",
    ),
    Endpoint(
        method="GET",
        path="/v1/all",
        handler=read_all,
        permission=Permission.READ,
        access=Access.CATEGORIES,
        summary="Read the global log.",
        query=(
            Param("from_position", _INT, "First global position (inclusive)."),
            Param("limit", _POSITIVE, "Most events to return."),
            *_FILTERS,
        ),
    ),
    Endpoint(
        method="GET",
        path="/v1/all/live",
        handler=live_all,
        permission=Permission.READ,
        access=Access.CATEGORIES,
        response="text/event-stream",
        summary="Server-Sent Events of the global log (Last-Event-ID: a position).",
        query=(Param("from_position", _INT, "First global position (inclusive)."), *_FILTERS),
    ),
    Endpoint(
        method="GET",
        path="/v1/head",
        handler=head,
        permission=Permission.READ,
        summary="The newest readable global position.",
    ),
    Endpoint(
        method="POST",
        path=_STREAM,
        handler=append,
        permission=Permission.WRITE,
        access=Access.STREAM,
        body=AppendBody,
        summary="Append events to a stream.",
    ),
    Endpoint(
        method="GET",
        path=_STREAM,
        handler=read_stream,
        permission=Permission.READ,
        access=Access.STREAM,
        summary="Read a stream.",
        query=(
            Param("from_version", _INT, "First version (default: start, or end if backwards)."),
            Param("backwards", _BOOL, "Read from newest to oldest."),
            Param("limit", _POSITIVE, "Most events to return."),
        ),
    ),
    Endpoint(
        method="DELETE",
        path=_STREAM,
        handler=delete_stream,
        permission=Permission.WRITE,
        access=Access.STREAM,
        status=204,
        summary="Delete a stream (hard=true: tombstone).",
        query=(Param("hard", _BOOL, "Tombstone: the stream can never be used again."),),
    ),
    Endpoint(
        method="GET",
        path=f"{_STREAM}/info",
        handler=stream_info,
        permission=Permission.READ,
        access=Access.STREAM,
        summary="A stream's version, state and metadata.",
    ),
    Endpoint(
        method="POST",
        path=f"{_STREAM}/truncate",
        handler=truncate_stream,
        permission=Permission.WRITE,
        access=Access.STREAM,
        body=TruncateBody,
        status=204,
        summary="Remove a stream's events below a version.",
    ),
    Endpoint(
        method="PUT",
        path=f"{_STREAM}/metadata",
        handler=set_metadata,
        permission=Permission.WRITE,
        access=Access.STREAM,
        body=MetadataBody,
        summary="Set a stream's retention limits and metadata.",
    ),
    Endpoint(
        method="GET",
        path=f"{_STREAM}/snapshot",
        handler=read_snapshot,
        permission=Permission.READ,
        access=Access.STREAM,
        summary="A stream's latest snapshot.",
    ),
    Endpoint(
        method="PUT",
        path=f"{_STREAM}/snapshot",
        handler=write_snapshot,
        permission=Permission.WRITE,
        access=Access.STREAM,
        body=SnapshotBody,
        status=204,
        summary="Keep a snapshot of a stream's state.",
    ),
    Endpoint(
        method="GET",
        path=f"{_STREAM}/live",
        handler=live_stream,
        permission=Permission.READ,
        access=Access.STREAM,
        response="text/event-stream",
        summary="Server-Sent Events of one stream (Last-Event-ID: a version).",
        query=(Param("from_version", _INT, "First version (inclusive)."),),
    ),
]
