"""Live push, readiness against a broken database, shutdown, and fuzzing: real processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

StartServer = Callable[..., Any]
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


def _append(http: httpx.Client, stream: str, count: int) -> None:
    events = [{"type": "Numbered", "data": {"n": i}} for i in range(count)]
    answer = http.post(f"/v1/streams/{stream}", json={"events": events})
    assert answer.status_code == 200, answer.text


def _frames(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """SSE frames (comments as {"comment": ...}) from a response's lines."""
    frame: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif not line:
            if frame:
                yield frame
            frame = {}
        else:
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")


def _take(frames: Iterator[dict[str, str]], count: int) -> list[dict[str, str]]:
    got = []
    for frame in frames:
        if "comment" not in frame:
            got.append(frame)
            if len(got) == count:
                break
    return got


@pytest.mark.parametrize(
    ("path", "key"), [("/v1/streams/live-1/live", "version"), ("/v1/all/live", "position")]
)
def test_sse_resumes_after_a_dropped_connection_without_losing_events(
    start_server: StartServer, store_url: str, path: str, key: str
) -> None:
    server = start_server(store_url, {"KRONIKA_SSE_HEARTBEAT": "0.5"})
    timeout = httpx.Timeout(10.0)
    import orjson

    with httpx.Client(base_url=server.url, timeout=timeout) as http:
        _append(http, "live-1", 3)
        _append(http, "other-1", 1)  # not part of the stream; part of the global log
        seen: list[dict[str, Any]] = []
        with http.stream("GET", path) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            frames = _frames(answer.iter_lines())
            first = _take(frames, 3)
            _append(http, "live-1", 2)
            first += _take(frames, 2 if key == "version" else 3)
            heartbeat = next(frames)
            assert heartbeat == {"comment": "keep-alive"}
        seen += [orjson.loads(f["data"]) for f in first]
        for frame, event in zip(first, seen, strict=True):
            assert frame["event"] == "event"
            assert int(frame["id"]) == event[key]
        last_id = first[-1]["id"]

        _append(http, "live-1", 4)  # while nobody listens
        with http.stream("GET", path, headers={"Last-Event-ID": last_id}) as answer:
            frames = _frames(answer.iter_lines())
            resumed = [orjson.loads(f["data"]) for f in _take(frames, 4)]
        everything = seen + resumed
        ids = [e["id"] for e in everything]
        assert len(ids) == len(set(ids)), "no event twice"
        stream_events = [e for e in everything if e["stream"] == "live-1"]
        assert [e["version"] for e in stream_events] == list(range(9)), "none lost, in order"


def test_sse_refuses_a_tombstoned_stream_and_bad_last_event_id(
    start_server: StartServer, sqlite_url: str
) -> None:
    server = start_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        _append(http, "dead-1", 1)
        http.delete("/v1/streams/dead-1", params={"hard": "true"})
        assert http.get("/v1/streams/dead-1/live").status_code == 410
        bad = http.get("/v1/all/live", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "Last-Event-ID"


class TcpProxy:
    """A TCP proxy in a thread that can cut every connection and refuse new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.restore()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._start())

    async def _cancel_all(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        self.cut()
        self._call(self._cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def _wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_readyz_is_503_while_postgresql_is_unreachable_and_recovers(
    start_server: StartServer, postgres_url: str
) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432))
    try:
        url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}", 1)
        assert url != postgres_url, "the test server must be on 127.0.0.1:5432"
        env = {"KRONIKA_READYZ_TIMEOUT": "1", "KRONIKA_READYZ_CACHE": "0.05"}
        server = start_server(f"{url}&pool_timeout=1&connect_timeout=1", env)
        ready = f"{server.url}/readyz"
        assert httpx.get(ready, timeout=10).status_code == 200

        proxy.cut()
        _wait_for(lambda: httpx.get(ready, timeout=10).status_code == 503)
        down = httpx.get(ready, timeout=10)
        assert down.status_code == 503
        assert "database" in down.json()["failing"]
        assert int(down.headers["retry-after"]) >= 1
        assert httpx.get(f"{server.url}/livez").status_code == 200, "alive while not ready"
        failed = httpx.get(f"{server.url}/v1/head", timeout=10)
        assert failed.status_code == 503
        assert "retry-after" in failed.headers

        proxy.restore()
        _wait_for(lambda: httpx.get(ready, timeout=10).status_code == 200)
        assert httpx.get(f"{server.url}/v1/head", timeout=10).status_code == 200
    finally:
        proxy.close()


async def _append_until_refused(url: str, writer: int, acked: list[str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        while True:
            event_id = str(uuid.uuid4())
            body = {"events": [{"id": event_id, "type": "Load", "data": {"w": writer}}]}
            try:
                answer = await http.post(f"/v1/streams/load-{writer}", json=body)
            except httpx.TransportError:
                return
            if answer.status_code == 200:
                acked.append(event_id)
            elif answer.status_code != 503:
                raise AssertionError(answer.text)


def test_sigterm_during_appends_loses_no_acknowledged_event(
    start_server: StartServer, store_url: str
) -> None:
    env = {"KRONIKA_RATE_LIMIT": "0"}
    server = start_server(store_url, env)
    acked: list[str] = []

    async def load() -> None:
        writers = [
            asyncio.create_task(_append_until_refused(server.url, w, acked)) for w in range(8)
        ]
        while len(acked) < 50:  # noqa: ASYNC110 - polling a list the writers fill
            await asyncio.sleep(0.01)
        server.sigterm()
        await asyncio.wait_for(asyncio.gather(*writers), 30)

    asyncio.run(load())
    assert server.terminate() == 0, server.output()
    assert "Traceback" not in server.output()

    restarted = start_server(store_url, env)
    stored: set[str] = set()
    with httpx.Client(base_url=restarted.url, timeout=10) as http:
        position = 0
        while page := http.get("/v1/all", params={"from_position": position}).json()["events"]:
            stored |= {e["id"] for e in page}
            position = page[-1]["position"] + 1
    assert len(acked) >= 50
    assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged events lost"


def test_sigterm_ends_open_event_streams_and_exits_zero(
    start_server: StartServer, sqlite_url: str
) -> None:
    server = start_server(sqlite_url, {"KRONIKA_DRAIN_TIMEOUT": "20"})
    with httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("GET", "/v1/all/live") as answer:
            lines = answer.iter_lines()
            assert next(lines) == ": connected"
            started = time.monotonic()
            server.sigterm()
            rest = list(lines)  # ends when the server closes the stream
        assert not [line for line in rest if line.startswith("data:")]
    assert server.terminate() == 0
    assert time.monotonic() - started < 15, "streams end at once, not at the drain timeout"


def test_schemathesis_finds_no_server_error(start_server: StartServer, sqlite_url: str) -> None:
    env = {"KRONIKA_RATE_LIMIT": "0", "KRONIKA_REQUEST_TIMEOUT": "5"}
    server = start_server(sqlite_url, env)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        _append(http, "order-1", 2)
    done = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "10",
            "--phases",
            "coverage,fuzzing",
            "--request-timeout",
            "5",
            "--seed",
            "1",
            # live streams never end by themselves; maintenance makes /readyz 503 on purpose
            "--exclude-path-regex",
            "(/live$|/v1/admin/maintenance)",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=server.log.parent,
    )
    assert done.returncode == 0, done.stdout[-5000:]
    assert "Traceback" not in server.output()
