"""ASGI middleware counting and timing every HTTP request by route template and status.

It sits outermost, so refusals by the admission and body limits are counted too. The
route label is the matched route's template (``/v1/streams/{stream}``), never the raw
path, so label values stay bounded (E5); a path no route matches counts as ``unmatched``.
Event streams (SSE) are counted when their response starts, so a long stream's duration
does not swamp the latency histogram.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kronika.observability import metrics
from kronika.server.correlation import route_template

__all__ = ["HttpMetrics"]


class HttpMetrics:
    """Record method, route template, status and time to the response's start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        def record() -> None:
            route = route_template(scope) or "unmatched"
            metrics.http_request(scope["method"], route, status, time.perf_counter() - started)

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                record()
                scope["kronika.recorded"] = True
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if not scope.get("kronika.recorded"):  # failed before answering
                record()
