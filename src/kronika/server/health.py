"""Health and status: /livez, /readyz, /status, /metrics and the maintenance switch.

``/livez`` says only that the process answers (a restart would not help anything else).
``/readyz`` says whether this replica should get traffic: the store answers
``head_position`` and its schema is current, each within ``readyz_timeout``; the verdict is
cached for ``readyz_cache`` seconds so a load balancer probing every replica often does not
turn into database load, and concurrent probes share one check. Draining on shutdown and
the operator's maintenance switch make it 503 at once, without waiting for the cache.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

import kronika
from kronika.errors import KronikaError
from kronika.observability import metrics as telemetry
from kronika.runtime.gauges import GaugeRefresher
from kronika.server.principal import Permission, Principal
from kronika.server.problems import retry_after_header
from kronika.server.processors import processor_statuses
from kronika.server.routing import Endpoint
from kronika.server.state import ServerState, state_of
from kronika.server.wire import JSONResponse, MaintenanceBody, parse_body
from kronika.store.options import redact_url

__all__ = ["ENDPOINTS", "Readiness", "Verdict"]

NOT_READY_RETRY_AFTER = 5.0
"""Seconds a load balancer or client is told to wait when this replica is not ready."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One readiness check's outcome."""

    checks: dict[str, dict[str, Any]]
    """Per check: ``{"ok": bool, "detail"?: str}``."""
    at: float
    """When it was made (monotonic seconds)."""

    @property
    def failing(self) -> list[str]:
        return sorted(name for name, check in self.checks.items() if not check["ok"])

    @property
    def ready(self) -> bool:
        return not self.failing


class Readiness:
    """The cached readiness verdict of the store."""

    def __init__(self, cache: float, timeout: float) -> None:
        self.cache = cache
        self.timeout = timeout
        self.last: Verdict | None = None
        self._lock = asyncio.Lock()

    async def verdict(self, state: ServerState) -> Verdict:
        """The store's verdict, at most ``cache`` seconds old, plus the instant switches."""
        async with self._lock:
            last = self.last
            if last is None or time.monotonic() - last.at >= self.cache:
                last = self.last = await self._check(state)
        checks = dict(last.checks)
        checks["maintenance"] = _ok(not state.maintenance, "an operator forced not-ready")
        checks["shutdown"] = _ok(not state.draining.is_set(), "the server is shutting down")
        verdict = Verdict(checks, last.at)
        telemetry.set_ready(verdict.ready)
        return verdict

    def known_unready(self) -> bool:
        """Whether the last verdict said not ready (for the overload answer: 503, not 429)."""
        return self.last is not None and not self.last.ready

    async def _check(self, state: ServerState) -> Verdict:
        database, schema = await asyncio.gather(
            self._timed(_database(state)), self._timed(_schema(state))
        )
        return Verdict({"database": database, "schema": schema}, time.monotonic())

    async def _timed(self, check: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeout):
                result: dict[str, Any] = await check
                return result
        except TimeoutError:
            return _ok(False, f"no answer within {self.timeout:g} s")
        except KronikaError as exc:
            return _ok(False, exc.message)


def _ok(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": True} if ok else {"ok": False, "detail": detail}


async def _database(state: ServerState) -> dict[str, Any]:
    await state.store.head_position()
    return {"ok": True}


async def _schema(state: ServerState) -> dict[str, Any]:
    status = await state.store.schema_status()
    if status.too_new:
        return _ok(False, f"schema {status.current} is newer than this Kronika ({status.latest})")
    if not status.up_to_date:
        return _ok(False, f"{status.latest - status.current} migrations pending: kronika migrate")
    return {"ok": True, "version": status.current}


async def livez(request: Request) -> Response:
    """The process is alive (nothing else is checked)."""
    return JSONResponse({"status": "alive"})


async def readyz(request: Request) -> Response:
    """Whether this replica should get traffic; 503 naming the failing checks otherwise."""
    state = state_of(request)
    verdict = await state.readiness.verdict(state)
    body = {
        "status": "ready" if verdict.ready else "not_ready",
        "failing": verdict.failing,
        "checks": verdict.checks,
    }
    if verdict.ready:
        return JSONResponse(body)
    headers = {"Retry-After": retry_after_header(NOT_READY_RETRY_AFTER)}
    return JSONResponse(body, status_code=503, headers=headers)


async def status(request: Request, principal: Principal) -> Response:
    """Version, store, schema, readiness and processors (secrets redacted)."""
    state = state_of(request)
    verdict = await state.readiness.verdict(state)
    body: dict[str, Any] = {
        "version": kronika.__version__,
        "mode": state.settings.mode,
        "auth": "on" if state.settings.auth_enabled else "off",
        "engine": state.store.engine,
        "namespace": state.store.namespace,
        "database_url": redact_url(state.settings.url),
        "uptime_seconds": round(time.time() - state.started, 3),
        "ready": verdict.ready,
        "failing": verdict.failing,
        "maintenance": state.maintenance,
        "event_streams": state.open_streams,
    }
    try:
        schema = await state.store.schema_status()
        body["schema"] = {"current": schema.current, "latest": schema.latest}
        body["head_position"] = await state.store.head_position()
        body["processors"] = await processor_statuses(state)
    except KronikaError as exc:
        body["error"] = exc.message
    return JSONResponse(body)


async def maintenance(request: Request, principal: Principal) -> Response:
    """Force /readyz to 503 (or back) on this replica, for maintenance."""
    body = await parse_body(request, MaintenanceBody)
    state_of(request).maintenance = body.enabled
    return JSONResponse({"maintenance": body.enabled})


async def metrics(request: Request, *_: Principal) -> Response:
    """Prometheus metrics of this process."""
    await _refresh_gauges(state_of(request))
    return Response(telemetry.exposition(), media_type=telemetry.CONTENT_TYPE)


async def _refresh_gauges(state: ServerState) -> None:
    """Update the gauges that need a query (at most every few seconds; bounded in time)."""
    telemetry.set_sse_subscribers(state.open_streams)
    try:
        if state.gauges is None:
            state.gauges = GaugeRefresher(state.store, state.processors)
        async with asyncio.timeout(state.settings.readyz_timeout):
            await state.gauges.maybe_refresh()
    except (TimeoutError, KronikaError):  # the scrape still answers, with older figures
        return


def endpoints(*, metrics_public: bool) -> list[Endpoint]:
    """The health routes; /metrics needs ``read`` unless ``metrics_public``."""
    return [
        Endpoint(
            method="GET",
            path="/livez",
            handler=livez,
            permission=None,
            summary="Liveness: the process answers.",
        ),
        Endpoint(
            method="GET",
            path="/readyz",
            handler=readyz,
            permission=None,
            summary="Readiness: the store is reachable and its schema current.",
        ),
        Endpoint(
            method="GET",
            path="/status",
            handler=status,
            permission=Permission.READ,
            summary="Version, store, schema, readiness and processors.",
        ),
        Endpoint(
            method="GET",
            path="/metrics",
            handler=metrics,
            permission=None if metrics_public else Permission.READ,
            response="text/plain",
            summary="Prometheus metrics.",
        ),
        Endpoint(
            method="POST",
            path="/v1/admin/maintenance",
            handler=maintenance,
            permission=Permission.ADMIN,
            body=MaintenanceBody,
            summary="Force readiness off (or on again) on this replica.",
        ),
    ]


ENDPOINTS = endpoints(metrics_public=False)
