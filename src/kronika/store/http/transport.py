"""One place where requests go out: headers, the connection pools, and the error boundary.

Requests go through a bounded pool of keep-alive connections (see :class:`_Lanes`); live
subscriptions, which each hold a connection for as long as they run, through a client of
their own (so many subscribers never starve requests of connections, nor the reverse).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from kronika.domain.context import current_causation
from kronika.errors import KronikaError, Unavailable
from kronika.observability import tracing
from kronika.store.http.config import HttpConfig
from kronika.store.http.problems import error_from_response, translating_transport_errors

__all__ = ["LIVE_READ_TIMEOUT", "Transport", "ssl_context", "stream_path"]

LIVE_READ_TIMEOUT = 60.0
"""Seconds a live subscription waits for any byte (the server sends a heartbeat every 15 s
by default) before it takes the connection for dead and reconnects."""

Params = Mapping[str, str | int | list[str]]


def ssl_context(config: HttpConfig) -> ssl.SSLContext:
    """The TLS settings every connection shares (``verify``: CA file, on, or off)."""
    if isinstance(config.verify, str):
        return ssl.create_default_context(cafile=config.verify)
    if config.verify:
        return httpx.create_ssl_context()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _user_agent() -> str:
    try:
        return f"kronika/{version('kronika')}"
    except PackageNotFoundError:
        return "kronika"


_HEADER_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _context_headers() -> dict[str, str]:
    """``traceparent`` and ``X-Correlation-ID`` of the caller's span and causation block, so
    the server's span joins the caller's trace and its log lines carry the caller's id."""
    headers: dict[str, str] = {}
    traceparent = tracing.current_traceparent()
    if traceparent is not None:
        headers["traceparent"] = traceparent
    causation = current_causation()
    if causation is not None and _HEADER_SAFE.fullmatch(causation.correlation_id):
        headers["X-Correlation-ID"] = causation.correlation_id
    return headers


def stream_path(stream: str, suffix: str = "") -> str:
    """``/v1/streams/{stream}{suffix}`` with the name percent-encoded (``/`` included).

    The names ``.`` and ``..`` are encoded as ``%2E`` too: as path segments they would be
    resolved away (``/v1/streams/..`` is ``/v1``) before the request is sent.
    """
    name = quote(stream, safe="")
    if name in (".", ".."):
        name = name.replace(".", "%2E")
    return f"/v1/streams/{name}{suffix}"


class _Lanes:
    """A bounded pool of keep-alive connections: one single-connection httpx client each.

    httpcore's own pool re-examines every connection for every queued request on every
    request (quadratic in the concurrency: at 16 concurrent calls it cost more CPU than the
    request itself). Here each client holds one connection and serves one call at a time,
    and the queue of free clients is the pool. Clients are made on first use.
    """

    def __init__(self, size: int, timeout: float, make: Callable[[], httpx.AsyncClient]) -> None:
        self._free: asyncio.Queue[httpx.AsyncClient | None] = asyncio.Queue()
        for _ in range(size):
            self._free.put_nowait(None)
        self._made: list[httpx.AsyncClient] = []
        self._timeout = timeout
        self._make = make

    @asynccontextmanager
    async def lane(self, shown_url: str) -> AsyncIterator[httpx.AsyncClient]:
        """A client of its own for one call; Unavailable when none frees up in time."""
        try:
            async with asyncio.timeout(self._timeout):
                client = await self._free.get()
        except TimeoutError:
            raise Unavailable(
                f"no free connection to the Kronika server at {shown_url} within "
                f"{self._timeout:g} s (all {len(self._made)} busy; raise max_connections)"
            ) from None
        if client is None:
            client = self._make()
            self._made.append(client)
        try:
            yield client
        finally:
            self._free.put_nowait(client)

    async def aclose(self) -> None:
        for client in self._made:
            await client.aclose()
        self._made.clear()


class Transport:
    """Sends requests to one server and turns every failure into a Kronika error."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self.shown_url = config.base_url
        headers = {"Accept": "application/json", "User-Agent": _user_agent()}
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        verify = ssl_context(config)  # made once: loading a CA bundle costs ~20 ms

        def client(accept: str, timeout: httpx.Timeout, limits: httpx.Limits) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=config.base_url,
                headers={**headers, "Accept": accept},
                timeout=timeout,
                limits=limits,
                # Only failed connection attempts are retried: nothing was sent yet.
                transport=httpx.AsyncHTTPTransport(verify=verify, retries=1, limits=limits),
            )

        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._lanes = _Lanes(
            config.max_connections,
            config.timeout,
            lambda: client("application/json", httpx.Timeout(config.timeout), one),
        )
        self._live = client(
            "text/event-stream",
            httpx.Timeout(config.timeout, read=max(LIVE_READ_TIMEOUT, config.timeout)),
            httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    async def aclose(self) -> None:
        """Close every connection."""
        await self._lanes.aclose()
        await self._live.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: bytes | None = None,
        stream: str | None = None,
        allow: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send one request; a 2xx response (or one in ``allow``), else the Kronika error.

        ``stream`` names the stream the request concerns, for errors whose body omits it.
        """
        headers = {"Content-Type": "application/json"} if body is not None else {}
        headers.update(_context_headers())
        async with (
            self._lanes.lane(self.shown_url) as client,
            translating_transport_errors(self.shown_url),
        ):
            response = await client.request(
                method, path, params=params, content=body, headers=headers
            )
        if response.is_success or response.status_code in allow:
            return response
        raise error_from_response(response, stream=stream)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`call`, then the body parsed as JSON."""
        return self.decode(await self.call(method, path, **kwargs))

    def decode(self, response: httpx.Response) -> Any:
        """The response's JSON body; a KronikaError if it is not JSON."""
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            request = response.request
            raise KronikaError(
                f"the server at {self.shown_url} answered {request.method} {request.url.path} "
                "with a body that is not JSON"
            ) from None

    @asynccontextmanager
    async def live(
        self, path: str, params: Params, headers: Mapping[str, str]
    ) -> AsyncIterator[httpx.Response]:
        """Open a Server-Sent Events response (the caller checks its status and reads it).

        Transport errors while connecting or reading inside the block are left to the
        caller, which reconnects.
        """
        request = self._live.build_request("GET", path, params=params, headers=headers)
        response = await self._live.send(request, stream=True)
        try:
            yield response
        finally:
            await response.aclose()
