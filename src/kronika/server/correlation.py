"""Every request's correlation id, server span and log line (the front layer applies them).

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

import logging
import os
import random
import re
from typing import Any

from opentelemetry.trace import Status, StatusCode

__all__ = [
    "HEADER",
    "QUIET",
    "SERVER_ERROR",
    "correlation_id_from",
    "finish_span",
    "log_request",
]

HEADER = b"x-correlation-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
log = logging.getLogger("kronika.server")
SERVER_ERROR = 500
QUIET = frozenset({"/livez", "/readyz", "/metrics"})
"""Probes and scrapes: no span, and their log line at debug level (they come every few
seconds and would bury the requests that matter)."""
_RANDOM = random.Random()  # noqa: S311 - correlation ids must be unique, not unguessable
os.register_at_fork(after_in_child=_RANDOM.seed)


def correlation_id_from(value: bytes | None) -> str:
    """The caller's correlation id if it is a sane token, else a new random one."""
    if value:
        text = value.decode("latin-1")
        if _SANE.fullmatch(text):
            return text
    return f"{_RANDOM.getrandbits(128):032x}"


def finish_span(span: Any, method: str, route: str | None, status: int) -> None:
    """Name the server span by the route template and set its status (no-op without one)."""
    if span is None:
        return
    if route is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= SERVER_ERROR:
        span.set_status(Status(StatusCode.ERROR))


def log_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """The request's log line: DEBUG if it went well (or was an overload 429), else louder."""
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
