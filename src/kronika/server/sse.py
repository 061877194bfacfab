"""Server-Sent Events: the global log and one stream, live, resumable with ``Last-Event-ID``.

Each frame is ``id: <position or version>``, ``event: event``, ``data: <event JSON>``; a
``: keep-alive`` comment goes out after ``sse_heartbeat`` seconds without one, so proxies
keep the connection and a vanished client is noticed.

Live events come from the server's :class:`~kronika.server.hub.Hub`: one store
subscription shared by every connection, each connection keeping only what its filter
passes. A connection attaches to the hub first, then catches up from the store on its own
(``read_all`` pages of the global log with its filters, or ``read_stream`` pages of one
stream, which applies truncation and retention) and then sends what the hub buffered for
it, skipping what the catch-up already sent (by position, or by version for one stream):
no event is sent twice and none is skipped. A connection that falls too far behind is
dropped by the hub; its response ends and the client resumes with ``Last-Event-ID``.

One response runs three tasks: the source pumping frames into a small queue (so a slow
client slows the source rather than buffering without bound), a watcher for the client's
disconnect, and the writer. The stream ends, and every task with it, when the client goes
away, when the server starts draining on shutdown, or when the source fails (after an
``event: error`` frame carrying the problem JSON, so the client reconnects and resumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence

import orjson
from starlette.types import Receive, Scope, Send

from kronika.domain import names
from kronika.domain.events import StreamState
from kronika.errors import KronikaError, StreamDeleted, StreamNotFound
from kronika.server.hub import Hub, Overflowed
from kronika.server.state import ServerState
from kronika.server.wire import event_json
from kronika.store.base import GlobalFilter
from kronika.store.protocol import EventStore

__all__ = ["EventStream", "global_frames", "stream_frames", "require_not_tombstoned"]

Frames = AsyncGenerator[bytes, None]
QUEUE_SIZE = 64
PAGE = 500
log = logging.getLogger("kronika.server.sse")


def frame(event_id: int, payload: dict[str, object]) -> bytes:
    """One SSE ``event`` frame."""
    return b"id: %d\nevent: event\ndata: %s\n\n" % (event_id, orjson.dumps(payload))


def _error_frame(error: KronikaError) -> bytes:
    body = {"type": "https://kronika.dev/problems/" + error.code, "status": error.status}
    body.update(error.to_dict())
    return b"event: error\ndata: %s\n\n" % orjson.dumps(body)


async def global_frames(
    store: EventStore,
    hub: Hub,
    from_position: int,
    *,
    types: Sequence[str] | None,
    categories: Sequence[str] | None,
    tags: Sequence[str] | None,
) -> Frames:
    """Frames of the global log from ``from_position`` on, filtered."""
    filters = GlobalFilter(
        names.check_filter(types, "types"),
        names.check_filter(categories, "categories"),
        names.check_filter(tags, "tags"),
    )
    subscriber = await hub.attach(store, filters.matches)
    try:
        next_position = from_position
        while True:  # catch up from the store until a short page: the hub has the rest
            page = await store.read_all(
                from_position=next_position,
                limit=PAGE,
                types=filters.types,
                categories=filters.categories,
                tags=filters.tags,
            )
            for event in page:
                yield frame(event.position, event_json(event))
            if page:
                next_position = page[-1].position + 1
            if subscriber.overflowed:  # live events piled up meanwhile: the store has them
                hub.detach(subscriber)
                subscriber = await hub.attach(store, filters.matches)
            elif len(page) < PAGE:  # caught up, and the hub holds every event since
                break
        while (live := await subscriber.get()) is not None:
            if live.event.position >= next_position:
                yield _live_frame(live.event.position, live.data)
                next_position = live.event.position + 1
    except Overflowed:
        log.info("an event stream fell %d events behind and was dropped", hub.buffer_size)
    finally:
        hub.detach(subscriber)


def _live_frame(event_id: int, data: bytes) -> bytes:
    return b"id: %d\nevent: event\ndata: %s\n\n" % (event_id, data)


async def require_not_tombstoned(store: EventStore, stream: str) -> None:
    """Refuse (410) to follow a tombstoned stream; a missing one may still be created."""
    try:
        info = await store.stream_info(stream)
    except StreamNotFound:
        return
    if info.state is StreamState.TOMBSTONED:
        raise StreamDeleted(stream)


async def stream_frames(store: EventStore, hub: Hub, stream: str, from_version: int) -> Frames:
    """Frames of one stream from ``from_version`` on: stored events, then live ones."""
    subscriber = await hub.attach(store, lambda event: event.stream == stream)
    try:
        next_version = from_version
        while True:
            page = await store.read_stream(stream, from_version=next_version, limit=PAGE)
            for event in page:
                yield frame(event.version, event_json(event))
                next_version = event.version + 1
            if subscriber.overflowed:  # live events piled up meanwhile: the store has them
                hub.detach(subscriber)
                subscriber = await hub.attach(store, lambda event: event.stream == stream)
            elif len(page) < PAGE:  # caught up, and the hub holds every event since
                break
        while (live := await subscriber.get()) is not None:
            if live.event.version >= next_version:
                yield _live_frame(live.event.version, live.data)
                next_version = live.event.version + 1
    except Overflowed:
        log.info("an event stream fell %d events behind and was dropped", hub.buffer_size)
    finally:
        hub.detach(subscriber)


class EventStream:
    """An ASGI response sending ``frames`` as ``text/event-stream`` until told to stop."""

    def __init__(self, frames: Frames, state: ServerState) -> None:
        self.frames = frames
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.state.open_streams += 1
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_SIZE)
        pump = asyncio.create_task(self._pump(queue), name="sse-pump")
        stop = asyncio.create_task(self._stop(receive), name="sse-stop")
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache, no-store"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await send(
                {"type": "http.response.body", "body": b": connected\n\n", "more_body": True}
            )
            await self._write(queue, stop, send)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away while we wrote
            pass
        finally:
            self.state.open_streams -= 1
            for task in (pump, stop):
                task.cancel()
            await asyncio.gather(pump, stop, return_exceptions=True)

    async def _pump(self, queue: asyncio.Queue[bytes | None]) -> None:
        try:
            async for item in self.frames:
                await queue.put(item)
        except KronikaError as exc:
            await queue.put(_error_frame(exc))
        except Exception:
            log.exception("event stream failed")
            await queue.put(_error_frame(KronikaError("the event stream failed")))
        finally:
            with contextlib.suppress(RuntimeError):  # already closed by a cancellation
                await self.frames.aclose()
        await queue.put(None)

    async def _stop(self, receive: Receive) -> None:
        """Return when the client disconnects or the server drains."""
        draining = asyncio.create_task(self.state.draining.wait())
        try:
            while not draining.done():
                message = asyncio.ensure_future(receive())
                await asyncio.wait({message, draining}, return_when=asyncio.FIRST_COMPLETED)
                if not message.done():
                    message.cancel()
                elif message.result()["type"] == "http.disconnect":
                    return
        finally:
            draining.cancel()

    async def _write(
        self, queue: asyncio.Queue[bytes | None], stop: asyncio.Task[None], send: Send
    ) -> None:
        heartbeat = self.state.settings.sse_heartbeat
        while not stop.done():
            if not queue.empty():  # the common case under load: no task, no wait
                if (ready := queue.get_nowait()) is None:
                    return
                await send({"type": "http.response.body", "body": ready, "more_body": True})
                continue
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait(
                {getter, stop}, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if not stop.done():
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b": keep-alive\n\n",
                            "more_body": True,
                        }
                    )
                continue
            item = getter.result()
            if item is None:
                return
            await send({"type": "http.response.body", "body": item, "more_body": True})
