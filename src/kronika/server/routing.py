"""The route table: every route names the permission it needs, and one guard enforces it.

A route is an :class:`Endpoint`: method, path, handler, :class:`Permission` (``None`` only
for the public probes and documents), and what the OpenAPI document says about it. The
guard runs before every handler: authenticate the ``Authorization`` header, take a token
from the caller's rate-limit bucket, then :func:`authorize` against the stream in the path
or the ``categories`` filter of a global read. Because the table is the only way routes are
made, a route without a permission cannot slip in unnoticed (a test walks the table).

Paths are matched on the raw, still percent-encoded path, so a stream name may contain
``/`` (sent as ``%2F``) without being mistaken for a sub-route such as ``/info``.
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
from starlette.types import ASGIApp, Scope

from kronika.domain import names
from kronika.errors import RateLimited, Unauthorized
from kronika.observability import metrics
from kronika.server.clientip import client_ip
from kronika.server.principal import Permission, Principal, authorize, lacking
from kronika.server.state import state_of
from kronika.server.wire import query_list

__all__ = ["Access", "Endpoint", "Param", "Handler", "build_routes", "guard"]

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
    ip = client_ip(request.scope, state.settings.trusted_proxies)
    try:
        principal = await state.authenticator.authenticate(request.headers.get("authorization"))
    except Unauthorized:
        _take(state.buckets.take(f"ip:{ip}"))  # failed guesses spend the address's budget
        raise
    key = f"ip:{ip}" if principal.kind == "anonymous" else f"{principal.kind}:{principal.name}"
    _take(state.buckets.take(key))
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


_RAW_PATH = "kronika.raw_path"
"""Scope key of the decoded raw path (the router tries every route in turn)."""


class RawPathRoute(Route):
    """A Starlette route matched on ``raw_path``, each parameter percent-decoded alone."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(
            endpoint.path, _endpoint_app(endpoint), methods=[endpoint.method], name=None
        )
        self.kronika = endpoint
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", endpoint.path)
        self.raw_regex = re.compile(f"^{pattern}$")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        raw = scope.get("raw_path")
        if scope["type"] != "http" or raw is None or scope.get("root_path"):
            return super().matches(scope)
        path = scope.get(_RAW_PATH)
        if path is None:  # decoded once per request, not once per route tried
            path = scope[_RAW_PATH] = bytes(raw).decode("latin-1").split("?", 1)[0]
        match = self.raw_regex.match(path)
        if match is None:
            return Match.NONE, {}
        params = {k: unquote(v, errors="surrogateescape") for k, v in match.groupdict().items()}
        child = {"endpoint": self.endpoint, "path_params": params}
        if self.methods and scope["method"] not in self.methods:
            return Match.PARTIAL, child
        return Match.FULL, child


def build_routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """Starlette routes for the table, in order."""
    return [RawPathRoute(endpoint) for endpoint in endpoints]
