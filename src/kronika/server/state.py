"""What one server process holds while it runs: the store, the caller checks, the switches."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from kronika.errors import StoreClosed
from kronika.server.hub import Hub
from kronika.server.principal import Authenticator
from kronika.server.ratelimit import TokenBuckets
from kronika.server.settings import ServerSettings
from kronika.store.protocol import EventStore

if TYPE_CHECKING:
    from kronika.runtime.gauges import GaugeRefresher
    from kronika.runtime.processor import Processor
    from kronika.server.health import Readiness

__all__ = ["STATE_KEY", "ServerState", "state_of"]

STATE_KEY = "kronika.state"
"""Scope key of the request's :class:`ServerState` (the front layer sets it first)."""


@dataclass(kw_only=True)
class ServerState:
    """Shared by every request of one app; ``app.state.kronika``."""

    settings: ServerSettings
    """The settings the app was made with."""
    authenticator: Authenticator
    """Turns an Authorization header into a principal."""
    buckets: TokenBuckets
    """Per-credential rate limits."""
    readiness: Readiness
    """The cached readiness verdict."""
    processors: list[Processor] = field(default_factory=list)
    """The application's processors (``KRONIKA_APP``), for exact lag figures."""
    store_: EventStore | None = None
    """The open store (set by the lifespan)."""
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on shutdown: event streams end, /readyz answers 503."""
    maintenance: bool = False
    """An operator forced /readyz to 503 (this process only)."""
    started: float = field(default_factory=time.time)
    """Unix time the app started."""
    open_streams: int = 0
    """Server-Sent Event streams open now."""
    hub: Hub = field(default_factory=Hub)
    """The one store subscription every live event stream shares."""
    gauges: GaugeRefresher | None = None
    """Refreshes the metric gauges that need a query (made at the first scrape)."""

    @property
    def store(self) -> EventStore:
        """The open store; ``StoreClosed`` (503) before start-up or after shutdown."""
        if self.store_ is None:
            raise StoreClosed("the server is starting or stopping")
        return self.store_


def state_of(connection: HTTPConnection) -> ServerState:
    """The server state of the app handling ``connection``."""
    scope = connection.scope
    state = scope.get(STATE_KEY)
    if state is None:  # looked up once per request (guard, handler and body all ask)
        state = scope[STATE_KEY] = connection.app.state.kronika
    assert isinstance(state, ServerState)
    return state
