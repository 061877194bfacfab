"""The ASGI application: :func:`create_app` wires settings, store, routes and middleware.

The store is opened in the app's lifespan (so a server that cannot reach its database
fails at start, visibly) and closed after the last request. Layers, outermost first:
security headers, CORS, admission (concurrency limit and timeout), body size limit,
Starlette's exception handling (problem+json), then the route table, whose guard
authenticates, rate-limits and authorizes each request.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from kronika.errors import KronikaError, Unavailable
from kronika.server import health, keys, processors, replays, streams
from kronika.server.correlation import RequestContext
from kronika.server.health import Readiness
from kronika.server.httpmetrics import HttpMetrics
from kronika.server.middleware import Admission, BodyLimit, SecurityHeaders
from kronika.server.openapi import openapi_document
from kronika.server.principal import Authenticator, Principal
from kronika.server.problems import handle_http_exception, handle_kronika_error, handle_unexpected
from kronika.server.ratelimit import TokenBuckets
from kronika.server.routing import Endpoint, build_routes
from kronika.server.settings import ServerSettings
from kronika.server.state import ServerState
from kronika.server.wire import JSONResponse
from kronika.store import open_store

__all__ = ["create_app", "endpoints_for"]

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
    settings: ServerSettings | None = None, *, authenticator: Authenticator | None = None
) -> Starlette:
    """The Kronika HTTP API for ``settings`` (default: from ``KRONIKA_*`` variables).

    ``authenticator`` replaces the one the settings describe (API keys and JWT when
    ``KRONIKA_AUTH_ENABLED``, everyone an anonymous admin otherwise); tests and embedders
    use it.
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
            yield

    app = Starlette(
        routes=[
            *build_routes(endpoints),
            *build_routes([_openapi_endpoint(openapi)]),
        ],
        middleware=_middleware(state),
        exception_handlers={
            KronikaError: handle_kronika_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.kronika = state
    return app


def _openapi_endpoint(handler: Any) -> Endpoint:
    return Endpoint(
        method="GET",
        path="/openapi.json",
        handler=handler,
        permission=None,
        summary="This API's OpenAPI 3.1 document.",
    )


def _middleware(state: ServerState) -> list[Middleware]:
    layers = [
        Middleware(HttpMetrics),
        Middleware(RequestContext),
        Middleware(SecurityHeaders, state=state),
    ]
    if state.settings.cors_origins:
        layers.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(state.settings.cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Last-Event-ID",
                    "X-Correlation-ID",
                    "traceparent",
                ],
                expose_headers=["Retry-After", "X-Correlation-ID"],
                max_age=600,
            )
        )
    layers += [Middleware(Admission, state=state), Middleware(BodyLimit, state=state)]
    return layers


@contextlib.asynccontextmanager
async def _running(state: ServerState, *, given: Authenticator | None) -> AsyncIterator[None]:
    """Open the store, start authentication and load processors; undo on the way out."""
    settings = state.settings
    store = open_store(settings.url)
    await store.open()
    try:
        if given is None:
            from kronika.server.security import start_authentication

            state.authenticator = await start_authentication(store, settings.security)
        if settings.app:
            from kronika.runtime.loading import load_processors

            state.processors = load_processors(settings.app)
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
