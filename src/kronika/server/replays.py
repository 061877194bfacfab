"""Routes for blue/green replays: start, follow, stop, resume, delete, and roll back.

The server does not run replays; workers do. These routes record and move replay jobs
through :mod:`kronika.runtime.replay`, as ``kronika replay`` does. Starting or deleting a
replay needs the projection itself (its partitions, declared collections and tables), so
the server must be started with ``KRONIKA_APP``; following and moving jobs does not.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from kronika.errors import ValidationError
from kronika.runtime import replay
from kronika.runtime.processor import Projection
from kronika.runtime.worker import processing_of
from kronika.server.principal import Permission, Principal
from kronika.server.processors import processor_of
from kronika.server.routing import Endpoint
from kronika.server.state import ServerState, state_of
from kronika.server.wire import JSONResponse
from kronika.store.processing import Job

__all__ = ["ENDPOINTS"]

DELETE_WAIT = 15.0
"""Seconds a delete waits for workers to let an unfinished replay go (then 409)."""


def _projection(state: ServerState, name: str) -> Projection:
    for processor in state.processors:
        if processor.name == name and isinstance(processor, Projection):
            return processor
        if processor.name == name:
            raise ValidationError(f"{name!r} is not a projection; only projections are replayed")
    raise ValidationError(
        f"the server does not know processor {name!r}: start it with KRONIKA_APP naming the "
        "application's processors to start or delete replays",
        "processor",
    )


async def _described(state: ServerState, job: Job) -> dict[str, Any]:
    processor = await processor_of(state, job.processor)
    return replay.status_dict(await replay.replay_status(state.store, processor, job))


async def list_replays(request: Request, principal: Principal) -> Response:
    """Every replay job with its progress, oldest first."""
    state = state_of(request)
    jobs = await processing_of(state.store).jobs()
    return JSONResponse(
        {"replays": [await _described(state, j) for j in jobs if j.kind == replay.REPLAY]}
    )


async def get_replay(request: Request, principal: Principal) -> Response:
    """One replay job with its progress."""
    state = state_of(request)
    found = await replay.job(state.store, request.path_params["id"])
    return JSONResponse(await _described(state, found))


async def start(request: Request, principal: Principal) -> Response:
    """Start rebuilding a projection's read model beside the live one."""
    state = state_of(request)
    projection = _projection(state, request.path_params["name"])
    started = await replay.start_replay(state.store, projection)
    return JSONResponse(replay.job_dict(started), status_code=202)


async def stop(request: Request, principal: Principal) -> Response:
    """Stop a running replay; what it built is kept."""
    state = state_of(request)
    return JSONResponse(
        replay.job_dict(await replay.stop_replay(state.store, request.path_params["id"]))
    )


async def resume(request: Request, principal: Principal) -> Response:
    """Resume a stopped replay."""
    state = state_of(request)
    moved = await replay.resume_replay(state.store, request.path_params["id"])
    return JSONResponse(replay.job_dict(moved))


async def delete(request: Request, principal: Principal) -> Response:
    """Delete a replay job; an unfinished one's generation is dropped."""
    state = state_of(request)
    found = await replay.job(state.store, request.path_params["id"])
    projection = _projection(state, found.processor)
    await replay.delete_replay(state.store, projection, found.id, wait=DELETE_WAIT)
    return Response(status_code=204)


async def generations(request: Request, principal: Principal) -> Response:
    """The kept generations of a projection's read model, newest first."""
    state = state_of(request)
    found = await replay.generations(state.store, request.path_params["name"])
    return JSONResponse({"generations": [replay.generation_dict(g) for g in found]})


async def activate(request: Request, principal: Principal) -> Response:
    """Make a kept generation live again without a replay (roll back)."""
    state = state_of(request)
    projection = _projection(state, request.path_params["name"])
    try:
        generation = int(request.path_params["generation"])
    except ValueError:
        raise ValidationError("must be an integer", "generation") from None
    await replay.activate(state.store, projection, generation)
    return await generations(request, principal)


_NAME = "/v1/processors/{name}"
_JOB = "/v1/replays/{id}"
ENDPOINTS = [
    Endpoint(
        method="GET",
        path="/v1/replays",
        handler=list_replays,
        permission=Permission.READ,
        summary="Every replay job with its progress.",
    ),
    Endpoint(
        method="GET",
        path=_JOB,
        handler=get_replay,
        permission=Permission.READ,
        summary="One replay job with its progress.",
    ),
    Endpoint(
        method="POST",
        path=f"{_NAME}/replay",
        handler=start,
        permission=Permission.OPERATE,
        status=202,
        summary="Start a blue/green replay of a projection.",
    ),
    Endpoint(
        method="POST",
        path=f"{_JOB}/stop",
        handler=stop,
        permission=Permission.OPERATE,
        summary="Stop a running replay.",
    ),
    Endpoint(
        method="POST",
        path=f"{_JOB}/resume",
        handler=resume,
        permission=Permission.OPERATE,
        summary="Resume a stopped replay.",
    ),
    Endpoint(
        method="DELETE",
        path=_JOB,
        handler=delete,
        permission=Permission.OPERATE,
        status=204,
        summary="Delete a replay job (dropping an unfinished generation).",
    ),
    Endpoint(
        method="GET",
        path=f"{_NAME}/generations",
        handler=generations,
        permission=Permission.READ,
        summary="Kept generations of a projection's read model.",
    ),
    Endpoint(
        method="POST",
        path=f"{_NAME}/generations/{{generation}}/activate",
        handler=activate,
        permission=Permission.OPERATE,
        summary="Make a kept generation live again (roll back a replay).",
    ),
]
