"""The ASGI application: :func:`create_app` wires settings, store, routes and middleware.

The store is opened in the app's lifespan (so a server that cannot reach its database
fails at start, visibly) and closed after the last request. A request passes one layer,
:class:`~kronika.server.middleware.Front` (metrics, correlation id and span, security
headers, CORS, admission, body size limit, errors as problem+json, and the route lookup),
in place of Starlette's middleware stack, then its route, whose guard authenticates,
rate-limits and authorizes it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Lifespan

from kronika.errors import Unavailable
from kronika.server import health, keys, processors, replays, streams
from kronika.server.health import Readiness
from kronika.server.middleware import Front
from kronika.server.openapi import openapi_document
from kronika.server.principal import Authenticator, Principal
from kronika.server.ratelimit import TokenBuckets
from kronika.server.routing import Endpoint, RawPathRoute, RouteTable, build_routes
from kronika.server.settings import ServerSettings
from kronika.server.state import ServerState
from kronika.server.wire import JSONResponse
from kronika.store import open_store

__all__ = ["KronikaApp", "create_app", "endpoints_for"]

log = logging.getLogger("kronika.server")


def endpoints_for(settings: ServerSettings) -> list[Endpoint]:
    """Every route of the API with these settings (``/metrics`` may be public)."""
    return [
        *health.endpoints(metrics_public=settings.metrics_public),
        *streams.ENDPOINTS,
        *processors.ENDPOINTS,
        *replays.ENDPOINTS,
        *keys.ENDPOINTS,
    ]


def create_app(
    settings: ServerSettings | None = None,
    *,
    authenticator: Authenticator | None = None,
    freeze_heap: bool = False,
) -> KronikaApp:
    """The Kronika HTTP API for ``settings`` (default: from ``KRONIKA_*`` variables).

    ``authenticator`` replaces the one the settings describe (API keys and JWT when
    ``KRONIKA_AUTH_ENABLED``, everyone an anonymous admin otherwise); tests and embedders
    use it.

    ``freeze_heap`` (``kronika serve`` sets it) moves every object that exists once the app
    has started (the imported modules, the app, the open store: some 70,000) into the
    garbage collector's permanent generation (:func:`gc.freeze`). Under load a full
    collection runs every second or so; scanning those objects took up to 60 ms each time,
    stalling every request in flight, which made most of the HTTP p99. Frozen objects are
    still freed when nothing refers to them; only a reference cycle among them would never
    be collected. An embedder's own process is left alone unless it asks.
    """
    if settings is None:
        settings = ServerSettings.from_env(os.environ)
    state = ServerState(
        settings=settings,
        authenticator=authenticator or _NotStarted(),
        buckets=TokenBuckets(settings.rate_limit, settings.rate_burst),
        readiness=Readiness(settings.readyz_cache, settings.readyz_timeout),
    )
    endpoints = endpoints_for(settings)
    document = openapi_document(endpoints)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with _running(state, given=authenticator):
            if freeze_heap:
                gc.freeze()  # start-up is over: what exists now lives as long as the process
            yield

    routes = [*build_routes(endpoints), *build_routes([_openapi_endpoint(openapi)])]
    return KronikaApp(state, routes, lifespan)


class KronikaApp(Starlette):
    """Starlette's app (routes, lifespan, ``app.state``) with one front layer as its stack.

    Starlette would wrap the router in its error and exception middlewares plus each user
    middleware, every one a frame and a ``send`` wrapper per request; :class:`Front` does
    all of their work in one.
    """

    def __init__(
        self,
        state: ServerState,
        routes: list[RawPathRoute],
        lifespan: Lifespan[Starlette],
    ) -> None:
        super().__init__(routes=list(routes), lifespan=lifespan)
        self.state.kronika = state
        self.front = Front(self.router, state, RouteTable(routes))

    def build_middleware_stack(self) -> ASGIApp:
        """The front layer around the router, inside whatever an embedder added with
        ``add_middleware`` (Starlette's own error and exception layers are not used)."""
        app: ASGIApp = self.front
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app


def _openapi_endpoint(handler: Any) -> Endpoint:
    return Endpoint(
        method="GET",
        path="/openapi.json",
        handler=handler,
        permission=None,
        summary="This API's OpenAPI 3.1 document.",
    )


@contextlib.asynccontextmanager
async def _running(state: ServerState, *, given: Authenticator | None) -> AsyncIterator[None]:
    """Load the application's processors, open the store (running the app's inline
    projections in its appends), start authentication; undo on the way out."""
    settings = state.settings
    inline: list[Any] = []
    if settings.app:
        from kronika.runtime.loading import load_app

        state.processors, inline = load_app(settings.app)
    store = open_store(settings.url, inline=inline) if inline else open_store(settings.url)
    await store.open()
    try:
        if given is None:
            from kronika.server.security import start_authentication

            state.authenticator = await start_authentication(store, settings.security)
        state.store_ = store
        yield
    finally:
        state.draining.set()
        state.store_ = None
        await state.hub.close()
        await store.close()


class _NotStarted:
    """The authenticator before the lifespan has built the real one: refuse everyone."""

    async def authenticate(self, authorization: str | None) -> Principal:
        raise Unavailable("the server is starting", retry_after=1)
