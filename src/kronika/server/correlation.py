"""ASGI middleware giving every request a correlation id, a server span and a log line.

The caller's ``X-Correlation-ID`` is kept when it is a sane token (letters, digits and
``._:-``, at most 128 characters), else a new one is made; it is answered in the same
header, bound to every log line of the request, set on its span and handed to
:func:`kronika.caused_by`, so events appended by the request carry it as their
``correlation_id`` (unless the client stamped its own). A W3C ``traceparent`` header makes
the request's span a child of the caller's; with tracing off it is still passed on into the
events' metadata, so a caller's trace reaches the processors.

The span is named by the matched route's template (``POST /v1/streams/{stream}``), never
by the raw path, so stream ids stay out of span names.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kronika.domain.context import caused_by
from kronika.observability import tracing
from kronika.observability.logging import log_context

__all__ = ["HEADER", "RequestContext", "correlation_id_from"]

HEADER = b"x-correlation-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
log = logging.getLogger("kronika.server")
SERVER_ERROR = 500
QUIET = frozenset({"/livez", "/readyz", "/metrics"})
"""Probes and scrapes: no span, and their log line at debug level (they come every few
seconds and would bury the requests that matter)."""
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


def correlation_id_from(value: bytes | None) -> str:
    """The caller's correlation id if it is a sane token, else a new random one."""
    if value:
        text = value.decode("latin-1")
        if _SANE.fullmatch(text):
            return text
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str | None:
    """The template of the route that matched (``/v1/streams/{stream}``), if any did."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    endpoint = scope.get("endpoint")
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        if endpoint is not None and getattr(candidate, "endpoint", None) is endpoint:
            return str(candidate.path)
    return None


class RequestContext:
    """Correlation id, trace context, server span and one log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        correlation = correlation_id_from(headers.get(HEADER))
        traceparent = headers.get(b"traceparent")
        method = scope["method"]
        status = SERVER_ERROR
        started = time.perf_counter()

        async def answering_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [
                    *message.get("headers", []),
                    (HEADER, correlation.encode()),
                ]
            await send(message)

        remote = traceparent.decode("latin-1") if traceparent else None
        attributes = {"http.request.method": method, "kronika.correlation_id": correlation}
        quiet = scope["path"] in QUIET
        server_span = _NO_SPAN if quiet else tracing.span(method, attributes, kind=SpanKind.SERVER)
        with (
            tracing.remote_parent(remote),
            server_span as span,
            log_context({"correlation_id": correlation}),
            caused_by(correlation, correlation),
        ):
            try:
                await self.app(scope, receive, answering_send)
            finally:
                route = route_template(scope)
                _finish(span, method, route, status)
                _log(method, route, status, time.perf_counter() - started)


def _finish(span: Any, method: str, route: str | None, status: int) -> None:
    if span is None:
        return
    if route is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= SERVER_ERROR:
        span.set_status(Status(StatusCode.ERROR))


def _log(method: str, route: str | None, status: int, seconds: float) -> None:
    # One line per request costs a fifth of the server's loop under load (the formatter and
    # the redactor): requests that went well, and overload answers that metrics count
    # anyway, are DEBUG; refusals are INFO, server errors WARNING.
    if status >= SERVER_ERROR:
        level = logging.WARNING
    elif status < 400 or status == 429 or route in QUIET:
        level = logging.DEBUG
    else:
        level = logging.INFO
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "request",
        extra={
            "action": "http_request",
            "method": method,
            "route": route or "unmatched",
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        },
    )
