"""A live subscription over Server-Sent Events that survives dropped connections.

A reader task holds the ``GET /v1/all/live`` response and puts events into a bounded queue
(so a slow consumer slows the TCP stream down instead of growing memory). When the
connection drops, the task reconnects with ``Last-Event-ID`` set to the last position it
delivered, which the server reads as "continue after this one": the subscriber neither
misses nor repeats an event. Reconnection backs off exponentially with jitter; errors that
retrying cannot fix (401, 403, 422, ...) end the subscription with the Kronika error; an
``event: error`` frame from a failing server (5xx) is a reason to reconnect, like a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import httpx
import orjson

from kronika.domain.events import RecordedEvent
from kronika.errors import KronikaError, RateLimited, Unavailable
from kronika.store.base import GlobalFilter
from kronika.store.http.problems import error_from_problem, error_from_response
from kronika.store.http.sse import FrameParser
from kronika.store.http.transport import Params, Transport
from kronika.store.http.wire import event_from_json, filter_params

__all__ = ["Backoff", "LiveFeed", "live_params"]

_END = object()
"""Queue item that ends the subscription."""


class Backoff:
    """Exponential delays with full jitter: ``first``, doubling, capped at ``cap`` seconds."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first, self.cap = first, cap
        self.attempt = 0

    def next_delay(self, at_least: float = 0.0) -> float:
        """The delay before the next attempt (never below ``at_least``, e.g. Retry-After)."""
        ceiling = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        return max(at_least, random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter

    def reset(self) -> None:
        """Start again from ``first`` (after a connection that worked)."""
        self.attempt = 0


def live_params(from_position: int, filters: GlobalFilter) -> dict[str, str | int | list[str]]:
    """Query parameters of ``/v1/all/live`` (filters as repeated parameters)."""
    params: dict[str, str | int | list[str]] = {"from_position": from_position}
    params.update(filter_params(filters))
    return params


class LiveFeed:
    """One subscription: iterate it for events; :meth:`aclose` ends it."""

    def __init__(
        self, transport: Transport, from_position: int, filters: GlobalFilter, buffer: int
    ) -> None:
        self._transport = transport
        self._params: Params = live_params(from_position, filters)
        self._last: int | None = None
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max(1, buffer))
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.backoff = Backoff()
        self.connections = 0
        """How many times the feed connected (1 + reconnections); for tests and metrics."""

    async def events(self) -> AsyncIterator[RecordedEvent]:
        """The events, in global order, until :meth:`aclose` or an unrecoverable error."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="kronika-http-live")
        while not self._closed:
            item = await self._queue.get()
            if self._closed or item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, RecordedEvent)
            yield item

    async def aclose(self) -> None:
        """Stop reading and end the iteration (pending events are dropped)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # A full queue means the consumer is not waiting: it sees _closed on its next get.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_END)

    async def _run(self) -> None:
        try:
            while not self._closed:
                delay = await self._connect_once()
                if delay is None:
                    return
                await asyncio.sleep(delay)
        except Exception as exc:  # a KronikaError, or a bug: either must reach the consumer
            await self._queue.put(exc)

    async def _connect_once(self) -> float | None:
        """Read one connection to its end; the delay before reconnecting, None to stop."""
        headers = {} if self._last is None else {"Last-Event-ID": str(self._last)}
        try:
            async with self._transport.live("/v1/all/live", self._params, headers) as response:
                if not response.is_success:
                    await response.aread()
                    return self._delay_after(error_from_response(response))
                self.connections += 1
                await self._read(response)
        except httpx.HTTPError:
            pass  # dropped or refused: reconnect below
        return self.backoff.next_delay()

    def _delay_after(self, error: KronikaError) -> float:
        """Wait and retry on 429/503 (as told by Retry-After); raise anything else."""
        if isinstance(error, RateLimited | Unavailable):
            return self.backoff.next_delay(at_least=error.retry_after)
        raise error

    @staticmethod
    def _raise_unless_retryable(problem: dict[str, object]) -> None:
        """An ``event: error`` frame: reconnect after a server-side failure (5xx, 429),
        end the subscription with the error otherwise (a 4xx will not get better)."""
        status = problem.get("status")
        error = error_from_problem(status if isinstance(status, int) else 500, problem, {})
        if error.status < 500 and not isinstance(error, RateLimited):
            raise error

    async def _read(self, response: httpx.Response) -> None:
        parser = FrameParser()
        async for line in response.aiter_lines():
            frame = parser.feed(line.rstrip("\r\n"))
            if frame is None:
                continue
            if frame.event == "error":
                self._raise_unless_retryable(orjson.loads(frame.data))
                return  # the server ends the stream after an error frame: reconnect
            if frame.event != "event":
                continue
            event = event_from_json(orjson.loads(frame.data))
            if self._last is not None and event.position <= self._last:
                continue  # already delivered before a reconnection
            await self._queue.put(event)
            self._last = event.position
            self.backoff.reset()
