"""Routes for operating processors: state and lag, pause/resume, failed keys, dead letters.

The server does not run processors; it reads and changes the runtime's state in the store
through :mod:`kronika.runtime.admin`, as ``kronika processors`` does. Exact lag needs the
processor's event types and partition key, which only the application knows: with
``KRONIKA_APP`` set the server loads its processors; without it, a processor is described
from its stored record alone (lag then counts events of every type, keyed by stream).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from kronika.errors import NotFound
from kronika.runtime import admin
from kronika.runtime.processor import Processor
from kronika.runtime.worker import processing_of
from kronika.server.principal import Permission, Principal
from kronika.server.routing import Endpoint, Param
from kronika.server.state import ServerState, state_of
from kronika.server.wire import FailedKeyBody, JSONResponse, events_json, parse_body, query_str
from kronika.store.processing import ProcessorRecord

__all__ = ["ENDPOINTS", "processor_of", "processor_statuses"]


def _processor(state: ServerState, record: ProcessorRecord) -> Processor:
    return admin.described(record, state.processors)  # without KRONIKA_APP: from its record


async def processor_of(state: ServerState, name: str) -> Processor:
    """The application's processor of that name, or a stand-in made from its record."""
    return _processor(state, await _record(state, name))


async def _record(state: ServerState, name: str) -> ProcessorRecord:
    record = await processing_of(state.store).processor(name)
    if record is None:
        raise NotFound(f"processor {name!r} has never run")
    return record


async def processor_statuses(state: ServerState) -> list[dict[str, Any]]:
    """Every processor that has run, with state and lag."""
    found = await admin.statuses(state.store, state.processors)  # generations: /v1/replays
    return [admin.status_dict(s) for s in found]


async def list_processors(request: Request, principal: Principal) -> Response:
    """Every processor's state, position and lag."""
    return JSONResponse({"processors": await processor_statuses(state_of(request))})


async def _status_of(state: ServerState, name: str) -> Response:
    processor = _processor(state, await _record(state, name))
    return JSONResponse(admin.status_dict(await admin.status(state.store, processor)))


async def get_processor(request: Request, principal: Principal) -> Response:
    """One processor's state, position and lag."""
    return await _status_of(state_of(request), request.path_params["name"])


async def pause(request: Request, principal: Principal) -> Response:
    """Pause a processor: workers release its partitions."""
    state, name = state_of(request), request.path_params["name"]
    await admin.pause(state.store, name)
    return await _status_of(state, name)


async def resume(request: Request, principal: Principal) -> Response:
    """Resume a paused processor."""
    state, name = state_of(request), request.path_params["name"]
    await admin.resume(state.store, name)
    return await _status_of(state, name)


async def failed(request: Request, principal: Principal) -> Response:
    """The processor's parked and quarantined keys."""
    state, name = state_of(request), request.path_params["name"]
    await _record(state, name)
    failures = await admin.failed_keys(state.store, name)
    return JSONResponse({"failed": [admin.failure_dict(f) for f in failures]})


async def all_failed(request: Request, principal: Principal) -> Response:
    """Parked and quarantined keys of every processor and replay generation, oldest first
    (of one processor's live generation with ``?processor=``)."""
    failures = await admin.failed_keys(state_of(request).store, query_str(request, "processor"))
    return JSONResponse({"failed": [admin.failure_dict(f) for f in failures]})


async def dead_letters(request: Request, principal: Principal) -> Response:
    """The events failed keys hold back (of one key with ``?key=``), oldest first."""
    state, name = state_of(request), request.path_params["name"]
    processor = _processor(state, await _record(state, name))
    key = request.query_params.get("key")
    keys = [key] if key else [f.key for f in await admin.failed_keys(state.store, name)]
    events = [e for k in keys for e in await admin.dead_letters(state.store, processor, k)]
    return JSONResponse(events_json(sorted(events, key=lambda e: e.position)))


async def _request(request: Request, action: str) -> Response:
    body = await parse_body(request, FailedKeyBody)
    name = request.path_params["name"]
    operation = admin.request_retry if action == "retry" else admin.request_skip
    await operation(state_of(request).store, name, body.key)
    return JSONResponse(
        {"processor": name, "partition": body.partition, "key": body.key, "requested": action},
        status_code=202,
    )


async def retry(request: Request, principal: Principal) -> Response:
    """Ask the worker owning a failed key to retry it now."""
    return await _request(request, "retry")


async def skip(request: Request, principal: Principal) -> Response:
    """Ask the worker owning a failed key to skip its failing event."""
    return await _request(request, "skip")


_NAME = "/v1/processors/{name}"
ENDPOINTS = [
    Endpoint(
        method="GET",
        path="/v1/processors",
        handler=list_processors,
        permission=Permission.READ,
        summary="Every processor's state, position and lag.",
    ),
    Endpoint(
        method="GET",
        path=_NAME,
        handler=get_processor,
        permission=Permission.READ,
        summary="One processor's state, position and lag.",
    ),
    Endpoint(
        method="POST",
        path=f"{_NAME}/pause",
        handler=pause,
        permission=Permission.OPERATE,
        summary="Pause a processor.",
    ),
    Endpoint(
        method="POST",
        path=f"{_NAME}/resume",
        handler=resume,
        permission=Permission.OPERATE,
        summary="Resume a paused processor.",
    ),
    Endpoint(
        method="GET",
        path=f"{_NAME}/failed",
        handler=failed,
        permission=Permission.READ,
        summary="Parked and quarantined keys.",
    ),
    Endpoint(
        method="GET",
        path="/v1/failed",
        handler=all_failed,
        permission=Permission.READ,
        summary="Parked and quarantined keys of every processor.",
        query=(Param("processor", {"type": "string"}, "Only this processor's keys."),),
    ),
    Endpoint(
        method="GET",
        path=f"{_NAME}/dead-letters",
        handler=dead_letters,
        permission=Permission.READ,
        summary="Events held back by failed keys.",
        query=(Param("key", {"type": "string"}, "Only this failed key."),),
    ),
    Endpoint(
        method="POST",
        path=f"{_NAME}/failed/retry",
        handler=retry,
        permission=Permission.OPERATE,
        body=FailedKeyBody,
        status=202,
        summary="Retry a failed key now.",
    ),
    Endpoint(
        method="POST",
        path=f"{_NAME}/failed/skip",
        handler=skip,
        permission=Permission.OPERATE,
        body=FailedKeyBody,
        status=202,
        summary="Skip a failed key's failing event.",
    ),
]
