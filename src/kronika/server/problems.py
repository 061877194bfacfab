"""Errors as ``application/problem+json`` (RFC 9457), the one shape every error answer takes.

The body carries ``code`` (the stable :class:`~kronika.errors.KronikaError` code) so the
HTTP client backend can raise the same exception class a local store would, with the
fields of ``to_dict()`` (expected/actual versions, field errors) next to it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from kronika.errors import KronikaError, NotFound, RateLimited, Unavailable, ValidationError

__all__ = [
    "PROBLEM_TYPE",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "SnapshotNotFound",
    "handle_http_exception",
    "handle_kronika_error",
    "handle_unexpected",
    "problem_response",
    "retry_after_header",
]

PROBLEM_TYPE = "https://kronika.dev/problems/"
MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("kronika.server")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Payload too large",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class PayloadTooLarge(KronikaError):
    """The request body is larger than ``max_body_bytes``: an HTTP-only error."""

    status = 413
    code = "payload_too_large"


class SnapshotNotFound(NotFound):
    """The stream has no snapshot."""

    code = "snapshot_not_found"


class MethodNotAllowed(KronikaError):
    """The route exists but not with this method."""

    status = 405
    code = "method_not_allowed"


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up, never below 1: a client must not retry at once."""
    return str(max(1, math.ceil(seconds)))


def problem_response(error: KronikaError, headers: dict[str, str] | None = None) -> Response:
    """The problem+json answer for ``error``."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + error.code,
        "title": _TITLES.get(error.status, "Error"),
        "status": error.status,
    }
    body.update(error.to_dict())
    headers = dict(headers or {})
    if isinstance(error, (RateLimited, Unavailable)):
        headers["Retry-After"] = retry_after_header(error.retry_after)
        body["retry_after"] = error.retry_after
    return Response(
        orjson.dumps(body), status_code=error.status, headers=headers, media_type=MEDIA_TYPE
    )


async def handle_kronika_error(request: Request, exc: Exception) -> Response:
    """Every :class:`KronikaError` a route raises, mapped by its own status and code."""
    assert isinstance(exc, KronikaError)
    if exc.status >= 500 and not isinstance(exc, Unavailable):
        log.error("request failed: %s %s: %s", request.method, request.url.path, exc)
    return problem_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no such route) in the same problem shape."""
    assert isinstance(exc, HTTPException)
    error: KronikaError
    if exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        return problem_response(error, dict(exc.headers or {}))
    if exc.status_code == 404:
        return problem_response(NotFound(f"no route {request.url.path}"))
    return problem_response(ValidationError(str(exc.detail)))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: log it with its traceback, answer 500 without a word about the internals."""
    log.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(KronikaError("the server failed to handle the request"))
