"""The route table: every route names the permission it needs, and one guard enforces it.

A route is an :class:`Endpoint`: method, path, handler, :class:`Permission` (``None`` only
for the public probes and documents), and what the OpenAPI document says about it. The
guard runs before every handler: authenticate the ``Authorization`` header, take a token
from the caller's rate-limit bucket, then :func:`authorize` against the stream in the path
or the ``categories`` filter of a global read. Because the table is the only way routes are
made, a route without a permission cannot slip in unnoticed (a test walks the table).

Paths are matched on the raw, still percent-encoded path, so a stream name may contain
``/`` (sent as ``%2F``) without being mistaken for a sub-route such as ``/info``. The
:class:`RouteTable` finds a request's route with one dict lookup (by method and exact path,
or by method and number of segments, then the few templates of that shape); what it does
not find goes to Starlette's router, which answers 404 and 405 and serves HEAD.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pydantic import BaseModel
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kronika.domain import names
from kronika.errors import RateLimited, Unauthorized
from kronika.observability import metrics
from kronika.server.clientip import client_ip
from kronika.server.principal import Permission, Principal, authorize, lacking
from kronika.server.state import ServerState, state_of
from kronika.server.wire import query_list

__all__ = [
    "Access",
    "Endpoint",
    "Found",
    "Handler",
    "Param",
    "RawPathRoute",
    "RouteTable",
    "build_routes",
    "guard",
    "raw_path",
]

Handler = Callable[[Request, Principal], Awaitable[ASGIApp]]
PublicHandler = Callable[[Request], Awaitable[ASGIApp]]


class Access(enum.Enum):
    """What a route's permission is checked against."""

    NONE = "none"
    """The permission alone (processors, status, head)."""
    STREAM = "stream"
    """The stream named in the path (category-limited callers)."""
    CATEGORIES = "categories"
    """The ``categories`` query filter of a global read."""
    CATEGORY = "category"
    """The ``category`` query filter of a stream listing."""
    BODY = "body"
    """Streams named in the body: the handler authorizes each (multi-stream append)."""


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter, for the OpenAPI document."""

    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One route of the API."""

    method: str
    path: str
    handler: Handler | PublicHandler
    permission: Permission | None
    """What the caller needs; ``None`` for public routes (probes, the OpenAPI document)."""
    summary: str
    access: Access = Access.NONE
    query: Sequence[Param] = ()
    body: type[BaseModel] | None = None
    status: int = 200
    """The success status, for the OpenAPI document."""
    response: str = "application/json"
    """The success media type, for the OpenAPI document."""

    @property
    def public(self) -> bool:
        return self.permission is None


async def guard(request: Request, endpoint: Endpoint) -> Principal:
    """Authenticate, rate-limit and authorize ``request`` for ``endpoint``."""
    state = state_of(request)
    buckets = state.buckets
    try:
        principal = await state.authenticator.authenticate(_authorization(request.scope))
    except Unauthorized:
        if buckets.enabled:  # failed guesses spend the address's budget
            _take(buckets.take(f"ip:{_ip(request, state)}"))
        raise
    if buckets.enabled:
        anonymous = principal.kind == "anonymous"
        key = f"ip:{_ip(request, state)}" if anonymous else f"{principal.kind}:{principal.name}"
        _take(buckets.take(key))
    assert endpoint.permission is not None
    if endpoint.access is Access.STREAM:
        stream = names.check_stream(request.path_params["stream"])
        authorize(principal, endpoint.permission, stream=stream)
    elif endpoint.access is Access.BODY:
        if not principal.may(endpoint.permission):
            raise lacking(principal, endpoint.permission)
    elif endpoint.access is Access.CATEGORIES:
        authorize(principal, endpoint.permission, categories=query_list(request, "categories"))
    elif endpoint.access is Access.CATEGORY:
        category = request.query_params.get("category")
        authorize(principal, endpoint.permission, categories=[category] if category else None)
    else:
        authorize(principal, endpoint.permission)
    return principal


def _authorization(scope: Scope) -> str | None:
    """The ``Authorization`` header (ASGI header names are lower-case), without a
    ``Headers`` object (its ``get`` raises and catches a ``KeyError`` when it is absent)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    return None


def _ip(request: Request, state: ServerState) -> str:
    return client_ip(request.scope, state.settings.trusted_proxies)


def _take(wait: float | None) -> None:
    if wait is not None:
        metrics.rejected("rate_limit")
        raise RateLimited(f"rate limit exceeded: try again in {wait:.2f} s", retry_after=wait)


def _endpoint_app(endpoint: Endpoint) -> PublicHandler:
    if endpoint.public:
        return endpoint.handler  # type: ignore[return-value]
    handler: Handler = endpoint.handler  # type: ignore[assignment]

    async def guarded(request: Request) -> ASGIApp:
        return await handler(request, await guard(request, endpoint))

    guarded.__name__ = getattr(handler, "__name__", "endpoint")
    guarded.__doc__ = endpoint.summary
    return guarded


def _asgi(handler: PublicHandler) -> ASGIApp:
    """``handler`` as an ASGI app; its errors propagate to the front layer, which answers them.

    (Starlette's own wrapper looks up exception handlers per request: the front layer
    already catches everything a route raises.)
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)

    return app


_RAW_PATH = "kronika.raw_path"
"""Scope key of the decoded raw path (looked up once per request)."""


def raw_path(scope: Scope) -> str | None:
    """The request's raw path (still percent-encoded, no query), or ``None`` if not usable.

    ``None`` when the server gave no ``raw_path`` or the app is mounted under a
    ``root_path``: then routes match Starlette's decoded path instead.
    """
    path: str | None = scope.get(_RAW_PATH)
    if path is None:
        raw = scope.get("raw_path")
        if raw is None or scope.get("root_path"):
            return None
        path = scope[_RAW_PATH] = bytes(raw).decode("latin-1").split("?", 1)[0]
    return path


def _raw_pattern(template: str) -> re.Pattern[str]:
    """``/v1/streams/{stream}`` -> ``^/v1/streams/(?P<stream>[^/]+)$`` (literals escaped)."""
    parts = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
    )
    return re.compile(f"^{pattern}$")


class RawPathRoute(Route):
    """A Starlette route matched on ``raw_path``, each parameter percent-decoded alone."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(
            endpoint.path, _endpoint_app(endpoint), methods=[endpoint.method], name=None
        )
        self.app = _asgi(self.endpoint)
        self.kronika = endpoint
        self.raw_regex = _raw_pattern(endpoint.path)

    def params(self, path: str) -> dict[str, str] | None:
        """The decoded path parameters if ``path`` (raw) is this route's, else ``None``."""
        match = self.raw_regex.match(path)
        if match is None:
            return None
        return {k: unquote(v, errors="surrogateescape") for k, v in match.groupdict().items()}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return super().matches(scope)
        path = raw_path(scope)
        if path is None:
            return super().matches(scope)
        params = self.params(path)
        if params is None:
            return Match.NONE, {}
        child = {"endpoint": self.endpoint, "path_params": params}
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child
        return Match.FULL, child


def build_routes(endpoints: Sequence[Endpoint]) -> list[RawPathRoute]:
    """Starlette routes for the table, in order."""
    return [RawPathRoute(endpoint) for endpoint in endpoints]


Found = tuple[RawPathRoute, dict[str, str]]
"""A route and the path parameters it matched."""


class RouteTable:
    """The routes by method and path shape, for a dict lookup instead of trying each in turn.

    It finds what Starlette's router would (the first route in table order matching the
    method and raw path), or nothing: HEAD, a wrong method, an unknown path and a ``root_path``
    are left to the router, which answers them as it always has.
    """

    def __init__(self, routes: Sequence[RawPathRoute]) -> None:
        self._exact: dict[tuple[str, str], RawPathRoute] = {}
        self._shaped: dict[tuple[str, int], list[RawPathRoute]] = {}
        for route in routes:
            method, path = route.kronika.method, route.kronika.path
            shaped = self._shaped.setdefault((method, path.count("/")), [])
            if "{" in path or any(earlier.params(path) is not None for earlier in shaped):
                shaped.append(route)
            else:
                self._exact.setdefault((method, path), route)

    def find(self, method: str, path: str) -> Found | None:
        """The route for ``method`` on the raw ``path`` and its parameters, if any matches."""
        route = self._exact.get((method, path))
        if route is not None:
            return route, {}
        for route in self._shaped.get((method, path.count("/")), ()):
            params = route.params(path)
            if params is not None:
                return route, params
        return None
