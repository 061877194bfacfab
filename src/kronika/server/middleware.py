"""The front layer: everything a request passes before its route, in one plain ASGI layer.

In order, outermost first (as separate middlewares each wrapped ``send`` again and cost a
frame per message; one layer with one ``send`` wrapper costs a fraction of that):

1. **metrics**: method, route template and status of every answer, refusals included, and
   the time to the response's start (an event stream is counted when it starts);
2. **request context**: the correlation id (the caller's, if sane, answered in
   ``X-Correlation-ID``), the caller's ``traceparent``, the server span (none for probes and
   scrapes, and none at all while tracing is off), the log context and one log line;
3. **security headers** on every answer (HSTS only when the client came over TLS);
4. **errors as problem+json**: whatever the layers below or a route raise is answered in
   the problem shape (:mod:`kronika.server.problems`); an unexpected error is logged,
   answered 500 and re-raised for the server;
5. **CORS** from the allowlist, when one is configured (preflights are answered here);
6. **the route**: the :class:`~kronika.server.routing.RouteTable` finds it with a dict
   lookup (so refusals below are counted under their route too); what it does not know
   (404, 405, HEAD) goes to Starlette's router at the end;
7. **admission**: beyond ``max_concurrency`` requests in flight a request is answered 429
   at once (503 when the last readiness verdict was "not ready"), never queued, and a
   request taking longer than ``request_timeout`` is answered 503 (see :class:`Deadlines`).
   Event streams are long-lived by design and are counted separately (``max_streams``), and
   the probes are never refused, so an orchestrator does not restart a merely busy replica;
8. **body limit**: a declared ``Content-Length`` over ``max_body_bytes`` is refused with 413
   before anything is read; a body without one is counted as it arrives (the HTTP parser
   already holds a declared length to its word);
9. **dispatch** to the route found, whose guard authenticates, rate-limits and authorizes.

Admission comes before authentication, so an overloaded server refuses work before it
spends anything on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, NoReturn

from opentelemetry.trace import SpanKind
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kronika.domain.context import caused_by
from kronika.errors import KronikaError, RateLimited, Unavailable
from kronika.observability import metrics, tracing
from kronika.observability.logging import log_context
from kronika.server.clientip import is_https
from kronika.server.correlation import (
    HEADER,
    QUIET,
    SERVER_ERROR,
    correlation_id_from,
    finish_span,
    log_request,
)
from kronika.server.problems import (
    PayloadTooLarge,
    handle_http_exception,
    handle_kronika_error,
    handle_unexpected,
    problem_response,
)
from kronika.server.routing import Found, RouteTable, raw_path
from kronika.server.state import STATE_KEY, ServerState

__all__ = ["CORS_HEADERS", "EXEMPT", "HSTS", "SECURITY_HEADERS", "Deadlines", "Front"]

EXEMPT = frozenset({"/livez", "/readyz"})
"""Probes: never refused by the concurrency limit."""
HSTS = b"max-age=63072000; includeSubDomains"
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
"""Headers every answer carries (unless the route set its own)."""
CORS_HEADERS = ("Authorization", "Content-Type", "Last-Event-ID", "X-Correlation-ID", "traceparent")
"""Request headers a cross-origin caller may send."""
_EXCHANGE = "kronika.exchange"
_NO_CONTEXT: contextlib.nullcontext[None] = contextlib.nullcontext()


class Deadlines:
    """Request timeouts by one sweeping timer instead of a timer (``asyncio.timeout``) each.

    A request's task is noted with its deadline on the way in and forgotten on the way out
    (two dict operations); while any request is in flight a timer runs every tenth of the
    timeout (between 10 ms and 1 s) and cancels the tasks past their deadline, so a request
    is stopped at most that tick after its timeout. :meth:`leave` tells whether the sweep
    cancelled the task (and takes that cancellation back, as ``asyncio.timeout`` does).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.tick = min(max(timeout / 10, 0.01), 1.0)
        self.running: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self) -> tuple[asyncio.Task[Any] | None, int]:
        """Start the clock for the current task: ``(task, its cancel requests so far)``."""
        task = asyncio.current_task()
        if task is None:
            return None, 0
        loop = task.get_loop()
        self.running[task] = loop.time() + self.timeout
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(self.tick, self._sweep)
        return task, task.cancelling()

    def leave(self, task: asyncio.Task[Any] | None, cancelling: int) -> bool:
        """Stop the clock; True if the task ran out of time (its cancellation is undone)."""
        if task is None:
            return False
        self.running.pop(task, None)
        if task not in self.expired:
            return False
        self.expired.discard(task)
        return task.uncancel() <= cancelling

    def _sweep(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        for task, deadline in list(self.running.items()):
            if deadline <= now and task not in self.expired and not task.done():
                self.expired.add(task)
                task.cancel()
        self._timer = loop.call_later(self.tick, self._sweep) if self.running else None


class _Exchange:
    """One request's answer as the front layer sees it: status, start, the route it took."""

    __slots__ = (
        "answered",
        "correlation",
        "extra",
        "method",
        "recorded",
        "scope",
        "send",
        "started",
        "status",
    )

    def __init__(self, scope: Scope, send: Send, correlation: str, extra: list[Any]) -> None:
        self.scope = scope
        self.send = send
        self.method: str = scope["method"]
        self.correlation = correlation
        self.extra = extra
        self.status = SERVER_ERROR
        self.started = time.perf_counter()
        self.answered = False
        self.recorded = False

    async def answer(self, message: Message) -> None:
        """The one ``send`` wrapper: headers on the way out, metrics at the response's start."""
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            headers = list(message.get("headers", ()))
            names = {name.lower() for name, _ in headers}
            headers.extend(item for item in self.extra if item[0] not in names)
            headers.append((HEADER, self.correlation.encode()))
            message["headers"] = headers
            self.answered = True
            self.record()
        await self.send(message)

    def record(self) -> None:
        """Count and time the request (once: at the response's start, or when it failed)."""
        if not self.recorded:
            self.recorded = True
            elapsed = time.perf_counter() - self.started
            metrics.http_request(self.method, self.route() or "unmatched", self.status, elapsed)

    def route(self) -> str | None:
        """The template of the route that matched (``/v1/streams/{stream}``), if any did."""
        route = self.scope.get("route")
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else None


class Front:
    """The one layer in front of the routes (see the module docstring for what it does)."""

    def __init__(self, router: ASGIApp, state: ServerState, table: RouteTable) -> None:
        self.router = router
        self.state = state
        self.table = table
        settings = state.settings
        self.max_concurrency = settings.max_concurrency
        self.timeout = settings.request_timeout
        self.limit = settings.max_body_bytes
        self.proxies = settings.trusted_proxies
        self.in_flight = 0
        self.deadlines = Deadlines(settings.request_timeout)
        self.plain = list(SECURITY_HEADERS)
        self.tls = [*SECURITY_HEADERS, (b"strict-transport-security", HSTS)]
        self.inner: ASGIApp = self._admit
        if settings.cors_origins:
            self.inner = CORSMiddleware(
                self._admit,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=list(CORS_HEADERS),
                expose_headers=["Retry-After", "X-Correlation-ID"],
                max_age=600,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # the lifespan
            await self.router(scope, receive, send)
            return
        correlation = traceparent = None
        for name, value in scope["headers"]:
            if name == HEADER:
                correlation = value
            elif name == b"traceparent":
                traceparent = value
        scope[STATE_KEY] = self.state
        extra = self.tls if is_https(scope, self.proxies) else self.plain
        exchange = _Exchange(scope, send, correlation_id_from(correlation), extra)
        scope[_EXCHANGE] = exchange
        remote = traceparent.decode("latin-1") if traceparent else None
        span = (
            _NO_CONTEXT
            if scope["path"] in QUIET
            else tracing.span(
                exchange.method,
                {
                    "http.request.method": exchange.method,
                    "kronika.correlation_id": exchange.correlation,
                },
                kind=SpanKind.SERVER,
            )
        )
        with (
            tracing.remote_parent(remote) if remote else _NO_CONTEXT,
            span as server_span,
            log_context({"correlation_id": exchange.correlation}),
            caused_by(exchange.correlation, exchange.correlation),
        ):
            try:
                await self._answer_errors(scope, receive, exchange)
            finally:
                del scope[_EXCHANGE]  # the two refer to each other: freed without the GC
                exchange.record()
                route = exchange.route()
                finish_span(server_span, exchange.method, route, exchange.status)
                seconds = time.perf_counter() - exchange.started
                log_request(exchange.method, route, exchange.status, seconds)

    async def _answer_errors(self, scope: Scope, receive: Receive, exchange: _Exchange) -> None:
        """Run the request; answer what it raises as problem+json if nothing was sent yet."""
        try:
            await self.inner(scope, receive, exchange.answer)
        except Exception as exc:
            if exchange.answered:  # too late for another answer
                raise
            request = Request(scope, receive)
            response: Response
            if isinstance(exc, KronikaError):
                response = await handle_kronika_error(request, exc)
            elif isinstance(exc, HTTPException):
                response = await handle_http_exception(request, exc)
            else:
                await (await handle_unexpected(request, exc))(scope, receive, exchange.answer)
                raise
            await response(scope, receive, exchange.answer)

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Find the route, then the concurrency limit and the request timeout around it."""
        path = raw_path(scope)
        route = None if path is None else self.table.find(scope["method"], path)
        if route is not None:  # known before admission: refusals are counted by route too
            scope["route"], scope["path_params"] = route
            scope["endpoint"] = route[0].endpoint
        if scope["path"] in EXEMPT or _is_stream(scope, path):
            await self._dispatch(scope, receive, send, route)
            return
        if self.in_flight >= self.max_concurrency:
            await self._refuse(scope, receive, send)
            return
        self.in_flight += 1
        task, cancelling = self.deadlines.enter()
        expired = False
        try:
            try:
                await self._dispatch(scope, receive, send, route)
            finally:
                expired = self.deadlines.leave(task, cancelling)
        except asyncio.CancelledError:
            if not expired:
                raise
            self._timed_out(scope)
        except TimeoutError:  # a timeout inside the route counts as the request's own
            self._timed_out(scope)
        finally:
            self.in_flight -= 1

    def _timed_out(self, scope: Scope) -> NoReturn:
        """503 if nothing was answered yet, else let the server cut the answer short."""
        if scope[_EXCHANGE].answered:  # too late for a 503: the answer is cut short
            raise TimeoutError(f"the request took longer than {self.timeout:g} s")
        raise Unavailable(f"the request took longer than {self.timeout:g} s", retry_after=1)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics.rejected("concurrency_limit")
        if self.state.readiness.known_unready():
            error: RateLimited | Unavailable = Unavailable("the server is not ready", retry_after=5)
        else:
            error = RateLimited(
                f"the server is handling {self.max_concurrency} requests, its limit",
                retry_after=1,
            )
        await problem_response(error)(scope, receive, send)

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, route: Found | None
    ) -> None:
        """The body limit, then the route the table found (else Starlette's router)."""
        receive = self._limited(scope, receive)
        if route is None:
            await self.router(scope, receive, send)
        else:
            scope.setdefault("router", self.router)
            await route[0].app(scope, receive, send)

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        """``receive``, refusing a body over the limit (413) as it arrives if not declared."""
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
                break
        if declared is not None and declared.isdigit():
            if int(declared) > self.limit:
                raise PayloadTooLarge(f"the request body is larger than {self.limit} bytes")
            return receive
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLarge(f"the request body is larger than {self.limit} bytes")
            return message

        return counting_receive


def _is_stream(scope: Scope, path: str | None) -> bool:
    """An event stream (``GET .../live``): long-lived, counted by ``max_streams`` instead."""
    if scope["method"] != "GET":
        return False
    return (scope["path"] if path is None else path).endswith("/live")
