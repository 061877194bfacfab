"""``kronika smoke``: one round trip through a running deployment, step by step (H3).

Against a server's HTTP API, as a client would:

1. ``ready``: ``GET /readyz`` answers 200;
2. ``append``: one ``SmokeTested`` event (a fresh id) to a new stream ``smoke-<uuid>``;
3. ``read``: ``GET`` the stream back and find the event, data intact;
4. ``project``: with a processor named, wait (up to the timeout) until it has handled
   everything up to the event: its position passed it, or nothing of its types is left
   unhandled below the head; without one the step is skipped;
5. ``metrics``: ``GET /metrics`` parses as Prometheus text and has ``kronika_*`` series.

With ``observability`` (E12) two more steps check what the server exposes about the
append: ``correlation`` (the ``X-Correlation-ID`` and W3C ``traceparent`` sent with the
append come back on the response and in the stored event's metadata) and
``metrics-moved`` (``kronika_events_appended_total`` and ``kronika_http_requests_total``
grew between a scrape before the append and one after). Spans reaching a collector and
the server's log format are outside what an API client can see.

Each step records whether it passed, how long it took and what it saw; a step that needs
an earlier one that failed is skipped. Smoke streams stay in the store (they are small);
retention or ``kronika streams delete`` can remove them.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kronika.ops.httpclient import answer_detail, server_client, server_config

__all__ = ["SMOKE_TYPE", "SmokeOptions", "SmokeRun", "Step", "run_smoke"]

SMOKE_TYPE = "SmokeTested"
"""The type of the event a smoke test appends (``--type`` chooses another)."""
POLL = 0.2
"""Seconds between looks at the processor while waiting for it."""
APPENDED = "kronika_events_appended_total"
REQUESTS = "kronika_http_requests_total"


@dataclass(frozen=True, slots=True, kw_only=True)
class SmokeOptions:
    """Where and what to test."""

    url: str
    """The server's base URL, ``http(s)://HOST:PORT``."""
    token: str | None = None
    """Bearer token (an API key or JWT with the append and read roles)."""
    cacert: str | None = None
    """A PEM file of CA certificates to trust (else the system's)."""
    processor: str | None = None
    """A processor that must see the event (the ``project`` step)."""
    event_type: str = SMOKE_TYPE
    """The type of the appended event."""
    timeout: float = 30.0
    """Seconds each request may take, and the wait for the processor."""
    observability: bool = False
    """Also check correlation ids and that the append moved the metrics."""


@dataclass(slots=True, kw_only=True)
class Step:
    """One step's outcome."""

    name: str
    """``ready``, ``append``, ``read``, ``project``, ``metrics``, ..."""
    ok: bool | None = None
    """True: passed; False: failed; None: skipped."""
    seconds: float = 0.0
    """How long it took."""
    detail: str = ""
    """What it saw, or why it failed or was skipped."""

    @property
    def status(self) -> str:
        """``ok``, ``fail`` or ``skipped``."""
        return "skipped" if self.ok is None else "ok" if self.ok else "fail"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "step": self.name,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


@dataclass(slots=True, kw_only=True)
class SmokeRun:
    """A smoke test's steps and what it appended."""

    url: str
    """The server tested."""
    stream: str
    """The smoke stream (``smoke-<uuid>``)."""
    event_id: str
    """The appended event's id."""
    correlation_id: str
    """The ``X-Correlation-ID`` sent with the append."""
    trace_id: str
    """The trace id of the ``traceparent`` sent with the append."""
    steps: list[Step] = field(default_factory=list)
    """In order."""
    position: int | None = None
    """The appended event's global position."""

    @property
    def ok(self) -> bool:
        """True when no step failed."""
        return all(step.ok is not False for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "url": self.url,
            "ok": self.ok,
            "stream": self.stream,
            "event_id": self.event_id,
            "position": self.position,
            "steps": [step.to_dict() for step in self.steps],
        }


class StepFailed(Exception):
    """A step's check failed; the message says what was seen."""


class StepSkipped(Exception):
    """A step does not apply; the message says why."""


async def run_smoke(options: SmokeOptions) -> SmokeRun:
    """Run every step against ``options.url``; never raises for a failing server
    (``ValidationError`` for an unreadable ``cacert``)."""
    hex_id = uuid.uuid4().hex
    smoke = SmokeRun(
        url=options.url,
        stream=f"smoke-{hex_id}",
        event_id=str(uuid.uuid4()),
        correlation_id=f"smoke-{hex_id}",
        trace_id=secrets.token_hex(16),
    )
    config = server_config(
        options.url, token=options.token, timeout=options.timeout, cacert=options.cacert
    )
    async with server_client(config) as http:
        await _steps(smoke, _Probe(http, options, smoke))
    return smoke


async def _steps(smoke: SmokeRun, probe: _Probe) -> None:
    before = await probe.counters() if probe.options.observability else None
    await _step(smoke, "ready", probe.ready)
    appended = await _step(smoke, "append", probe.append)
    if appended:
        await _step(smoke, "read", probe.read)
        await _step(smoke, "project", probe.project)
    else:
        _skip(smoke, "read", "project", reason="the append failed")
    await _step(smoke, "metrics", probe.metrics)
    if not probe.options.observability:
        return
    if not appended:
        _skip(smoke, "correlation", "metrics-moved", reason="the append failed")
        return
    await _step(smoke, "correlation", probe.correlation)
    await _step(smoke, "metrics-moved", lambda: probe.moved(before))


async def _step(smoke: SmokeRun, name: str, action: Callable[[], Awaitable[str]]) -> bool:
    """Run one step; True when it passed (a skipped step returns False)."""
    step = Step(name=name)
    smoke.steps.append(step)
    started = time.perf_counter()
    try:
        detail = await action()
    except StepSkipped as exc:
        step.detail = str(exc)
    except StepFailed as exc:
        step.ok, step.detail = False, str(exc)
    except httpx.HTTPError as exc:
        step.ok, step.detail = False, f"{type(exc).__name__}: {exc}"
    else:
        step.ok, step.detail = True, detail
    step.seconds = time.perf_counter() - started
    return step.ok is True


def _skip(smoke: SmokeRun, *names: str, reason: str) -> None:
    smoke.steps.extend(Step(name=name, detail=reason) for name in names)


class _Probe:
    """The requests of each step; each returns what it saw, or raises :class:`StepFailed`
    (or :class:`StepSkipped`)."""

    def __init__(self, http: httpx.AsyncClient, options: SmokeOptions, smoke: SmokeRun) -> None:
        self.http, self.options, self.smoke = http, options, smoke
        self.appended_headers: httpx.Headers | None = None

    async def _get(self, path: str, **params: Any) -> httpx.Response:
        answer = await self.http.get(path, params=params or None)
        if answer.status_code != 200:
            raise StepFailed(f"GET {path} answered {answer.status_code}: {answer_detail(answer)}")
        return answer

    async def ready(self) -> str:
        answer = await self.http.get("/readyz")
        if answer.status_code != 200:
            raise StepFailed(f"GET /readyz answered {answer.status_code}: {answer_detail(answer)}")
        return "GET /readyz answered 200"

    async def append(self) -> str:
        smoke = self.smoke
        body = {
            "expected_version": "no_stream",
            "events": [
                {
                    "id": smoke.event_id,
                    "type": self.options.event_type,
                    "data": {"smoke": smoke.stream, "sent_at": time.time()},
                }
            ],
        }
        headers = {
            "X-Correlation-ID": smoke.correlation_id,
            "traceparent": f"00-{smoke.trace_id}-{secrets.token_hex(8)}-01",
        }
        path = f"/v1/streams/{quote(smoke.stream, safe='')}"
        answer = await self.http.post(path, json=body, headers=headers)
        if answer.status_code != 200:
            raise StepFailed(f"POST {path} answered {answer.status_code}: {answer_detail(answer)}")
        self.appended_headers = answer.headers
        smoke.position = int(answer.json()["position"])
        return f"{self.options.event_type} appended to {smoke.stream} at position {smoke.position}"

    async def read(self) -> str:
        smoke = self.smoke
        answer = await self._get(f"/v1/streams/{quote(smoke.stream, safe='')}")
        event = self._event(answer.json())
        if event.get("data", {}).get("smoke") != smoke.stream:
            raise StepFailed(f"the event read back has other data: {event.get('data')}")
        return f"read back {smoke.stream}@{event.get('version')}"

    def _event(self, body: Any) -> dict[str, Any]:
        events = body.get("events", []) if isinstance(body, dict) else []
        found = next((e for e in events if e.get("id") == self.smoke.event_id), None)
        if found is None:
            raise StepFailed(f"{self.smoke.stream} does not hold event {self.smoke.event_id}")
        return dict(found)

    async def project(self) -> str:
        name = self.options.processor
        if name is None:
            raise StepSkipped("no --processor named to wait for")
        assert self.smoke.position is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout
        path = f"/v1/processors/{quote(name, safe='')}"
        while True:
            state = (await self._get(path)).json()
            if _seen(state, self.smoke.position):
                return f"{name} is at position {state['position']} (lag {state['lag_events']})"
            if loop.time() >= deadline:
                raise StepFailed(
                    f"{name} did not reach position {self.smoke.position} within "
                    f"{self.options.timeout:g} s: it is {state.get('state')} at "
                    f"{state.get('position')} with {state.get('lag_events')} event(s) waiting"
                )
            await asyncio.sleep(POLL)

    async def metrics(self) -> str:
        families, _ = await self._scrape()
        ours = sorted(name for name in families if name.startswith("kronika_"))
        if not ours:
            raise StepFailed(f"GET /metrics has {len(families)} families, none named kronika_*")
        return f"{len(ours)} kronika_* metric families"

    async def _scrape(self) -> tuple[set[str], dict[str, float]]:
        """The metric families' names, and each sample name's sum over its labels."""
        text = (await self._get("/metrics")).text
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as exc:
            raise StepFailed(f"GET /metrics is not the Prometheus text format: {exc}") from None
        sums: dict[str, float] = {}
        for family in families:
            for sample in family.samples:
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
        return {f.name for f in families}, sums

    async def counters(self) -> dict[str, float] | None:
        """The counters ``metrics-moved`` compares, before the append (None if unreadable)."""
        try:
            return (await self._scrape())[1]
        except (StepFailed, httpx.HTTPError):
            return None

    async def correlation(self) -> str:
        smoke = self.smoke
        echoed = (self.appended_headers or httpx.Headers()).get("x-correlation-id")
        if echoed != smoke.correlation_id:
            raise StepFailed(f"the append's answer carried X-Correlation-ID {echoed!r}")
        answer = await self._get(f"/v1/streams/{quote(smoke.stream, safe='')}")
        metadata = self._event(answer.json()).get("metadata") or {}
        if metadata.get("correlation_id") != smoke.correlation_id:
            raise StepFailed(f"the event's correlation_id is {metadata.get('correlation_id')!r}")
        traceparent = str(metadata.get("traceparent", ""))
        if smoke.trace_id not in traceparent:
            raise StepFailed(
                f"the event's traceparent {traceparent!r} is not in trace {smoke.trace_id}"
            )
        return f"correlation id and trace {smoke.trace_id} reached the stored event"

    async def moved(self, before: dict[str, float] | None) -> str:
        if before is None:
            raise StepFailed("the metrics could not be read before the append")
        _, after = await self._scrape()
        for name in (APPENDED, REQUESTS):
            if name not in after:
                raise StepFailed(f"GET /metrics has no {name}")
        if after[APPENDED] <= before.get(APPENDED, 0.0):
            raise StepFailed(f"{APPENDED} did not grow after the append")
        if after[REQUESTS] <= before.get(REQUESTS, 0.0):
            raise StepFailed(f"{REQUESTS} did not grow after the requests")
        grew = after[APPENDED] - before.get(APPENDED, 0.0)
        return f"{APPENDED} grew by {grew:g}, {REQUESTS} moved too"


def _seen(state: dict[str, Any], position: int) -> bool:
    """Whether a processor has handled everything up to ``position``: its checkpoint is
    there, or nothing of its types is unhandled below a head that is there."""
    if int(state.get("position", 0)) >= position:
        return True
    caught_up = state.get("lag_events") == 0 and not state.get("lag_capped")
    return caught_up and int(state.get("head", 0)) >= position
