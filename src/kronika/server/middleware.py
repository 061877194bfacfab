"""Plain ASGI middleware, one concern each: headers, admission (concurrency and time), body size.

They sit outside routing and authentication, so an overloaded server refuses work before
it spends anything on it: beyond ``max_concurrency`` requests in flight a request is
answered 429 at once (503 when the last readiness verdict was "not ready"), never queued.
Event streams are long-lived by design and are counted separately (``max_streams``), and
the probes are never refused, so an orchestrator does not restart a merely busy replica.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kronika.errors import RateLimited, Unavailable
from kronika.observability import metrics
from kronika.server.clientip import is_https
from kronika.server.problems import PayloadTooLarge, problem_response
from kronika.server.state import ServerState

__all__ = ["Admission", "BodyLimit", "SecurityHeaders"]

EXEMPT = frozenset({"/livez", "/readyz"})
HSTS = b"max-age=63072000; includeSubDomains"
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def _is_stream(scope: Scope) -> bool:
    raw = scope.get("raw_path") or scope["path"].encode()
    return scope["method"] == "GET" and bytes(raw).split(b"?", 1)[0].endswith(b"/live")


class SecurityHeaders:
    """Headers every API answer carries; HSTS only when the client came over TLS."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(_HEADERS)
        if is_https(scope, self.state.settings.trusted_proxies):
            extra.append((b"strict-transport-security", HSTS))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in extra if k not in names),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Admission:
    """The global concurrency limit and the request timeout."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT or _is_stream(scope):
            await self.app(scope, receive, send)
            return
        settings = self.state.settings
        if self.in_flight >= settings.max_concurrency:
            await self._refuse(scope, receive, send)
            return
        self.in_flight += 1
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(settings.request_timeout):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            if started:
                raise
            error = Unavailable(
                f"the request took longer than {settings.request_timeout:g} s", retry_after=1
            )
            await problem_response(error)(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.state.settings.max_concurrency
        metrics.rejected("concurrency_limit")
        if self.state.readiness.known_unready():
            error: RateLimited | Unavailable = Unavailable("the server is not ready", retry_after=5)
        else:
            error = RateLimited(
                f"the server is handling {limit} requests, its limit", retry_after=1
            )
        await problem_response(error)(scope, receive, send)


class BodyLimit:
    """Refuse bodies over ``max_body_bytes`` with 413, counting what actually arrives."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.limit = state.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await problem_response(self._error())(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._error()
            return message

        await self.app(scope, counting_receive, send)

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is larger than {self.limit} bytes")
