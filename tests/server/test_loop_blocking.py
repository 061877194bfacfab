"""C7: nothing blocks the event loop while the server and a worker share it.

The server app (under uvicorn) and a :class:`Worker` running a projection run in the
test's event loop, on SQLite and on PostgreSQL, while client threads append, read and
follow ``/v1/all/live`` over real HTTP. A watchdog times every callback the loop runs; one
that holds the loop longer than :data:`THRESHOLD` is an *offender*, and a second thread
samples the loop thread's stack while it is stuck, so the report names the blocking call,
not just the task that made it.

The threshold is generous (a normal callback takes well under a millisecond; SQLite's
processing transactions run their short statements on the loop on purpose), so a loaded
machine does not make the test flaky: it fails when a callback repeatedly blocks, or once
for a long time. The last test checks that the watchdog itself sees a blocking projection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn

import kronika
from kronika import RecordedEvent
from kronika.runtime import Context, Projection, Worker, on
from kronika.server.app import create_app
from kronika.server.settings import ServerSettings

THRESHOLD = 0.15
"""A callback holding the loop longer than this is an offender (seconds)."""
LONG = 0.6
"""One offender this long fails the test on its own."""
EVENTS = 150
SUBSCRIBERS = 3


@dataclass
class Offender:
    """A callback that held the loop too long, and where the loop thread was meanwhile."""

    callback: str
    seconds: float
    stack: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        where = " <- ".join(reversed(self.stack[-4:])) or "?"
        return f"{self.callback} held the loop {self.seconds * 1000:.0f} ms at {where}"


class LoopWatchdog:
    """Times every ``Handle._run`` of the loop thread; samples its stack when one is slow."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.offenders: list[Offender] = []
        self.callbacks = 0
        self._current: tuple[object, float] | None = None
        self._stacks: dict[int, list[str]] = {}
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()

    @contextlib.contextmanager
    def watching(self) -> Iterator[LoopWatchdog]:
        original = asyncio.events.Handle._run
        watchdog = self

        def timed_run(handle: asyncio.Handle) -> None:
            if threading.get_ident() != watchdog._loop_thread:
                original(handle)
                return
            began = time.perf_counter()
            watchdog._current = (handle, began)
            try:
                original(handle)
            finally:
                watchdog._current = None
                watchdog.callbacks += 1
                took = time.perf_counter() - began
                if took > watchdog.threshold:
                    stack = watchdog._stacks.pop(id(handle), [])
                    watchdog.offenders.append(Offender(describe(handle), took, stack))

        sampler = threading.Thread(target=self._sample, name="loop-watchdog", daemon=True)
        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
        sampler.start()
        try:
            yield self
        finally:
            asyncio.events.Handle._run = original  # type: ignore[method-assign]
            self._stop.set()
            sampler.join()

    def _sample(self) -> None:
        """While one callback runs past half the threshold, note where the loop thread is."""
        while not self._stop.wait(self.threshold / 5):
            current = self._current
            if current is None or time.perf_counter() - current[1] < self.threshold / 2:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is not None and id(current[0]) not in self._stacks:
                self._stacks[id(current[0])] = [
                    f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})"
                    for f in traceback.extract_stack(frame)
                ]

    def verdict(self) -> list[str]:
        """Why the run failed: a callback that blocked twice, or once for long."""
        counts = Counter(o.callback for o in self.offenders)
        return [str(o) for o in self.offenders if counts[o.callback] > 1 or o.seconds > LONG]


def describe(handle: asyncio.Handle) -> str:
    """The task (by its coroutine) or the function a loop callback runs."""
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        return f"task {getattr(coro, '__qualname__', coro)!s}"
    return getattr(callback, "__qualname__", repr(callback))


class Ledger(Projection):
    """Keeps a document per stream; ``pause`` makes each event block the loop (a control)."""

    name = "ledger"
    partitions = 2
    batch_size = 20

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause

    @on("Tick")
    async def tick(self, event: RecordedEvent, ctx: Context) -> None:
        doc = await ctx.documents.get("ledger", event.stream) or {"n": 0}
        doc["n"] += 1
        await ctx.documents.put("ledger", event.stream, doc)
        if self.pause:
            time.sleep(self.pause)  # noqa: ASYNC251 - the bug the watchdog must catch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(url: str) -> AsyncIterator[str]:
    """The Kronika app under uvicorn in this event loop; yields its base URL."""
    settings = ServerSettings.from_env(
        {"KRONIKA_DATABASE_URL": url, "KRONIKA_RATE_LIMIT": "0", "KRONIKA_SSE_HEARTBEAT": "1"}
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def working(url: str, projection: Projection) -> AsyncIterator[kronika.EventStore]:
    """A worker running ``projection`` in this event loop; yields its store."""
    async with kronika.open_store(url) as store:
        worker = Worker(store, [projection], lease_ttl=2.0, drain_timeout=5)
        task = asyncio.create_task(worker.run())
        try:
            yield store
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)


def appender(base: str, events: int) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for i in range(events):
            body = {"events": [{"type": "Tick", "data": {"i": i}}]}
            client.post(f"/v1/streams/tick-{i % 10}", json=body).raise_for_status()


def reader(base: str, until: threading.Event) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        while not until.is_set():
            client.get("/v1/all", params={"limit": 100}).raise_for_status()
            client.get("/v1/streams/tick-3").raise_for_status()
            client.get("/v1/streams/tick-3/info")
            client.get("/v1/head").raise_for_status()


def subscriber(base: str, events: int, received: list[int]) -> None:
    """Follow ``/v1/all/live`` from the start until ``events`` events have arrived."""
    with (
        httpx.Client(base_url=base, timeout=30) as client,
        client.stream("GET", "/v1/all/live", params={"from_position": 1}) as response,
    ):
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("id: "):
                received.append(int(line[4:]))
                if len(received) >= events:
                    return


async def in_thread(function: Callable[..., None], *args: Any) -> None:
    await asyncio.to_thread(function, *args)


async def exercise(url: str, projection: Projection, events: int) -> LoopWatchdog:
    """Appends, reads, live streams and a worker, under the watchdog."""
    watchdog = LoopWatchdog(THRESHOLD)
    with watchdog.watching():
        async with serving(url) as base, working(url, projection) as store:
            received: list[list[int]] = [[] for _ in range(SUBSCRIBERS)]
            done = threading.Event()
            followers = [
                asyncio.create_task(in_thread(subscriber, base, events, r)) for r in received
            ]
            reads = asyncio.create_task(in_thread(reader, base, done))
            try:
                await in_thread(appender, base, events)
                await asyncio.wait_for(asyncio.gather(*followers), 60)
                await wait_caught_up(store)
            finally:
                done.set()
                await reads
            positions = [e.position for e in await store.read_all(limit=events + 1)]
            assert all(r == positions for r in received)  # each event once, in order
    return watchdog


async def wait_caught_up(store: kronika.EventStore) -> None:
    """Until every partition of the projection has handled the whole log."""
    deadline = time.monotonic() + 60
    head = await store.head_position()
    while time.monotonic() < deadline:
        record = await store.processing.processor("ledger")
        if (
            record is not None
            and len(record.checkpoints) == Ledger.partitions
            and min(record.checkpoints.values()) >= head
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the projection did not catch up")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_appends_reads_live_streams_and_a_worker_never_block_the_loop(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    watchdog = await exercise(url, Ledger(), EVENTS)
    assert watchdog.callbacks > 1000, "the watchdog saw too little to judge"
    assert watchdog.verdict() == [], "\n".join(str(o) for o in watchdog.offenders)


async def test_the_watchdog_names_a_projection_that_blocks_the_loop(sqlite_url: str) -> None:
    watchdog = await exercise(sqlite_url, Ledger(pause=THRESHOLD * 1.5), 12)
    blamed = watchdog.verdict()
    assert blamed, "a projection sleeping on the loop went unnoticed"
    assert any("tick (test_loop_blocking.py" in line for line in blamed), blamed
