"""Server-Sent Events: the global log and one stream, live, resumable with ``Last-Event-ID``.

Each frame is ``id: <position or version>``, ``event: event``, ``data: <event JSON>``; a
``: keep-alive`` comment goes out after ``sse_heartbeat`` seconds without one, so proxies
keep the connection and a vanished client is noticed.

The global stream is :meth:`EventStore.subscribe` with the request's filters. A single
stream is followed in two steps: first its stored events with ``read_stream`` (which
applies truncation and retention), then a subscription to the stream's *category* from
the head position seen before that read, keeping only the stream's events with a version
above the last one sent. The overlap between the two steps is removed by that version
check, so no event is sent twice and none is skipped.

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
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import orjson
from starlette.types import Receive, Scope, Send

from kronika.domain.events import StreamState, category_of
from kronika.errors import KronikaError, StreamDeleted, StreamNotFound
from kronika.server.state import ServerState
from kronika.server.wire import event_json
from kronika.store.protocol import EventStore

__all__ = ["EventStream", "global_frames", "stream_frames", "require_not_tombstoned"]

Frames = AsyncGenerator[bytes, None]
QUEUE_SIZE = 64
STREAM_PAGE = 500
log = logging.getLogger("kronika.server.sse")


def frame(event_id: int, payload: dict[str, object]) -> bytes:
    """One SSE ``event`` frame."""
    return b"id: %d\nevent: event\ndata: %s\n\n" % (event_id, orjson.dumps(payload))


def _error_frame(error: KronikaError) -> bytes:
    body = {"type": "https://kronika.dev/problems/" + error.code, "status": error.status}
    body.update(error.to_dict())
    return b"event: error\ndata: %s\n\n" % orjson.dumps(body)


async def _aclose(iterator: AsyncIterator[object]) -> None:
    """End a subscription now rather than when the garbage collector finds it."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def global_frames(
    store: EventStore,
    from_position: int,
    types: Sequence[str] | None,
    categories: Sequence[str] | None,
    tags: Sequence[str] | None,
) -> Frames:
    """Frames of the global log from ``from_position`` on, filtered."""
    subscription = store.subscribe(
        from_position=from_position, types=types, categories=categories, tags=tags
    )
    try:
        async for event in subscription:
            yield frame(event.position, event_json(event))
    finally:
        await _aclose(subscription)


async def require_not_tombstoned(store: EventStore, stream: str) -> None:
    """Refuse (410) to follow a tombstoned stream; a missing one may still be created."""
    try:
        info = await store.stream_info(stream)
    except StreamNotFound:
        return
    if info.state is StreamState.TOMBSTONED:
        raise StreamDeleted(stream)


async def stream_frames(store: EventStore, stream: str, from_version: int) -> Frames:
    """Frames of one stream from ``from_version`` on: stored events, then live ones."""
    head = await store.head_position()
    next_version = from_version
    while True:
        page = await store.read_stream(stream, from_version=next_version, limit=STREAM_PAGE)
        for event in page:
            yield frame(event.version, event_json(event))
            next_version = event.version + 1
        if len(page) < STREAM_PAGE:
            break
    subscription = store.subscribe(from_position=head + 1, categories=[category_of(stream)])
    try:
        async for event in subscription:
            if event.stream == stream and event.version >= next_version:
                yield frame(event.version, event_json(event))
                next_version = event.version + 1
    finally:
        await _aclose(subscription)


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
