"""The front layer of a real ``kronika serve``: admission, timeouts, headers, metrics, CORS.

Everything a request passes before its route runs in one layer
(:class:`kronika.server.middleware.Front`); these proofs pin what each of the separate
middlewares it replaced did. A request whose body is still arriving is in flight, so a raw
socket sending a chunked body and then pausing holds a slot for as long as a test needs.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

StartServer = Callable[..., Any]
SECURITY = ("x-content-type-options", "content-security-policy", "x-frame-options")
EVENT = b'{"events": [{"type": "Happened", "data": {}}]}'


class SlowUpload:
    """A POST whose chunked body arrives in two parts, the second when :meth:`finish` says."""

    def __init__(self, base_url: str, path: str) -> None:
        url = urlsplit(base_url)
        self.sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), 10)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        self.sock.sendall(head.encode() + _chunk(EVENT[:10]))

    def finish(self) -> None:
        """Send the rest of the body."""
        self.sock.sendall(_chunk(EVENT[10:]) + b"0\r\n\r\n")

    def answer(self, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        """The status, headers and body the server sent back."""
        self.sock.settimeout(timeout)
        data = b""
        while b"\r\n\r\n" not in data:
            data += self._recv()
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        while len(body) < int(headers.get("content-length", "0")):
            body += self._recv()
        return int(status_line.split()[1]), headers, body

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def __enter__(self) -> SlowUpload:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.sock.close()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _until_refused(http: httpx.Client, deadline: float = 10.0) -> httpx.Response:
    """GET /v1/head until the server refuses it (the slow upload has been admitted)."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        answer = http.get("/v1/head")
        if answer.status_code != 200:
            return answer
        time.sleep(0.02)
    raise AssertionError("the slow upload never took the only slot")


def _has_front_headers(answer: httpx.Response) -> bool:
    return all(name in answer.headers for name in (*SECURITY, "x-correlation-id"))


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of the sample of ``name`` with exactly these labels (0 if absent)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and dict(re.findall(r'(\w+)="([^"]*)"', match[1])) == labels:
            return float(match[2])
    return 0.0


def test_beyond_the_concurrency_limit_requests_get_429_at_once_but_probes_and_streams_pass(
    start_server: StartServer, sqlite_url: str
) -> None:
    server = start_server(sqlite_url, {"KRONIKA_MAX_CONCURRENCY": "1", "KRONIKA_RATE_LIMIT": "0"})
    with (
        httpx.Client(base_url=server.url, timeout=10) as http,
        http.stream("GET", "/v1/all/live") as live,  # long-lived: never counted
        SlowUpload(server.url, "/v1/streams/slow-1") as slow,
    ):
        assert live.status_code == 200
        began = time.monotonic()
        refused = _until_refused(http)
        assert refused.status_code == 429
        assert time.monotonic() - began < 5
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate_limited"
        assert "handling 1 requests" in refused.json()["detail"]
        assert _has_front_headers(refused)
        assert http.get("/livez").status_code == 200, "probes are never refused"
        assert http.get("/readyz").status_code == 200
        slow.finish()
        status, headers, _ = slow.answer()
        assert status == 200
        assert "x-correlation-id" in headers
        assert http.get("/v1/head").status_code == 200, "the slot is free again"
        metrics = http.get("/metrics").text
    assert _metric(metrics, "kronika_http_rejections_total", reason="concurrency_limit") >= 1
    head_429 = {"method": "GET", "route": "/v1/head", "status": "429"}
    assert _metric(metrics, "kronika_http_requests_total", **head_429) >= 1


def test_a_request_over_the_timeout_is_answered_503_but_event_streams_are_not_cut(
    start_server: StartServer, sqlite_url: str
) -> None:
    server = start_server(sqlite_url, {"KRONIKA_REQUEST_TIMEOUT": "0.5"})
    with httpx.Client(base_url=server.url, timeout=10) as http:
        with http.stream("GET", "/v1/streams/late-1/live") as live:
            lines = live.iter_lines()
            assert next(lines) == ": connected"
            with SlowUpload(server.url, "/v1/streams/slow-1") as slow:
                began = time.monotonic()
                status, headers, body = slow.answer()
                took = time.monotonic() - began
            assert status == 503
            assert 0.45 <= took < 3, took
            assert headers["retry-after"] == "1"
            problem = httpx.Response(503, content=body).json()
            assert problem["code"] == "unavailable"
            assert "took longer than 0.5 s" in problem["detail"]
            assert http.post("/v1/streams/late-1", content=EVENT).status_code == 200
            frame = next(line for line in lines if line.startswith("data:"))
        assert '"stream":"late-1"' in frame, "the stream outlived the request timeout"
        assert http.get("/v1/streams/slow-1").json() == {"events": []}, "nothing appended"


def test_every_answer_has_the_headers_and_is_counted_by_route_template(
    start_server: StartServer, sqlite_url: str
) -> None:
    server = start_server(sqlite_url, {"KRONIKA_MAX_BODY_BYTES": "2048"})
    big = b'{"events": [{"type": "A", "data": {"blob": "%s"}}]}' % (b"x" * 4096)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        answers = {
            "append": http.post("/v1/streams/front-1", content=EVENT),
            "read": http.get("/v1/streams/front-1", headers={"X-Correlation-ID": "order:42"}),
            "invalid": http.post("/v1/streams/front-1", content=b"{nope"),
            "too large": http.post("/v1/streams/front-1", content=big),
            "no route": http.get("/v1/nothing-here"),
            "wrong method": http.request("PATCH", "/v1/streams/front-1"),
            "head": http.head("/livez"),
            "slash": http.get("/v1/head/"),
        }
        metrics = http.get("/metrics").text
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "append": 200,
        "read": 200,
        "invalid": 422,
        "too large": 413,
        "no route": 404,
        "wrong method": 405,
        "head": 200,
        "slash": 404,  # routes match the raw path exactly: no trailing-slash redirects
    }
    for name, answer in answers.items():
        assert _has_front_headers(answer), name
        assert "strict-transport-security" not in answer.headers, "HSTS only over TLS"
    assert answers["read"].headers["x-correlation-id"] == "order:42"
    assert answers["wrong method"].json()["code"] == "method_not_allowed"
    assert answers["wrong method"].headers["allow"]
    assert answers["no route"].json()["code"] == "not_found"
    stream = "/v1/streams/{stream}"
    for method, route, status in [
        ("POST", stream, "200"),
        ("GET", stream, "200"),
        ("POST", stream, "422"),
        ("POST", stream, "413"),  # refused before the route ran: still counted under it
        ("GET", "unmatched", "404"),
        ("PATCH", stream, "405"),
    ]:
        labels = {"method": method, "route": route, "status": status}
        expected = 2 if route == "unmatched" else 1
        assert _metric(metrics, "kronika_http_requests_total", **labels) == expected, labels
    assert "front-1" not in metrics, "stream names never become label values"


def test_cors_answers_preflights_before_admission_with_the_headers(
    start_server: StartServer, sqlite_url: str
) -> None:
    origin = "https://app.example"
    server = start_server(sqlite_url, {"KRONIKA_CORS_ORIGINS": origin})
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        allowed = http.options("/v1/streams/c-1", headers=preflight)
        foreign = http.options("/v1/streams/c-1", headers={**preflight, "Origin": "https://x"})
        simple = http.post("/v1/streams/c-1", content=EVENT, headers={"Origin": origin})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == origin
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert _has_front_headers(allowed)
    assert foreign.status_code == 400
    assert "access-control-allow-origin" not in foreign.headers
    assert simple.status_code == 200
    assert simple.headers["access-control-allow-origin"] == origin
    assert "X-Correlation-ID" in simple.headers["access-control-expose-headers"]
    assert _has_front_headers(simple)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_an_unexpected_error_is_a_500_problem_with_the_headers_and_reaches_the_server(
    memory_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from kronika.server.app import create_app
    from kronika.server.principal import Principal
    from kronika.server.settings import ServerSettings

    class Broken:
        async def authenticate(self, authorization: str | None) -> Principal:
            raise RuntimeError("a bug")

    app = create_app(ServerSettings.checked(database_url=memory_url), authenticator=Broken())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://kronika") as http:
            answer = await http.get("/v1/head")
        with pytest.raises(RuntimeError, match="a bug"):  # re-raised, for the server to log
            await app(_scope("/v1/head"), _no_body, _ignore)
    assert answer.status_code == 500
    assert answer.json()["code"] == "internal_error"
    assert "a bug" not in answer.text, "nothing about the internals"
    assert _has_front_headers(answer)
    assert "unexpected error in GET /v1/head" in caplog.text


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _ignore(message: dict[str, Any]) -> None:
    return None


def test_the_route_table_finds_what_the_router_would() -> None:
    from starlette.routing import Match

    from kronika.server.app import create_app
    from kronika.server.routing import RawPathRoute, RouteTable
    from kronika.server.settings import ServerSettings

    app = create_app(ServerSettings.checked(metrics_public=True))
    routes = [route for route in app.routes if isinstance(route, RawPathRoute)]
    table = RouteTable(routes)
    values = ["order-1", "odd%2Fname%20x", "info", "live", "failed", "snapshot"]
    paths = {"/v1/nothing", "/v1/head/", "/openapiXjson", "/v1/streams/a/b"}
    for route in routes:
        template = route.kronika.path
        paths |= {re.sub(r"\{\w+\}", value, template) for value in values}
    checked = 0
    for path in sorted(paths):
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"):
            scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode()}
            full = [r for r in routes if r.matches(dict(scope))[0] is Match.FULL]
            found = table.find(method, path)
            if method == "HEAD":
                assert found is None, "HEAD is left to the router (it answers GET routes)"
            elif not full:
                assert found is None, (method, path)
            else:
                assert found is not None, (method, path)
                assert found[0] is full[0], (method, path)
                assert found[1] == full[0].matches(dict(scope))[1]["path_params"]
                checked += 1
    assert checked > len(routes)


async def test_deadlines_stop_only_the_requests_past_their_time() -> None:
    import asyncio

    from kronika.server.middleware import Deadlines

    deadlines = Deadlines(0.05)

    async def request(seconds: float) -> str:
        task, cancelling = deadlines.enter()
        expired = False
        try:
            try:
                await asyncio.sleep(seconds)
            finally:
                expired = deadlines.leave(task, cancelling)
        except asyncio.CancelledError:
            if not expired:
                raise
            return "timed out"
        return "done"

    began = asyncio.get_running_loop().time()
    slow, quick = asyncio.create_task(request(5)), asyncio.create_task(request(0.001))
    assert await quick == "done"
    assert await slow == "timed out"
    assert asyncio.get_running_loop().time() - began < 1
    cancelled = asyncio.create_task(request(5))
    await asyncio.sleep(0.01)
    cancelled.cancel()  # a cancellation from elsewhere (a client gone) is not a timeout
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert deadlines.running == {}
    assert deadlines.expired == set()


class _Recording:
    """A transport that records what reaches it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", b""))

    def abort(self) -> None:
        self.calls.append(("abort", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


async def test_the_transport_writes_what_one_turn_of_the_loop_wrote_in_one_call() -> None:
    import asyncio

    from kronika.server.protocol import CoalescingTransport

    real = _Recording()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    transport.writelines([b"{", b"}"])
    assert real.calls == []
    assert transport.get_write_buffer_size() == 21
    await asyncio.sleep(0)
    assert real.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\n{}")]
    transport.write(b"last")
    transport.close()  # what was held goes out before the connection closes
    assert real.calls[1:] == [("write", b"last"), ("close", b"")]
    transport.write(b"too late")
    await asyncio.sleep(0)
    assert real.calls[3:] == [], "nothing is written to a closing transport"
    dropped = CoalescingTransport(_Recording(), asyncio.get_running_loop())  # type: ignore[arg-type]
    dropped.write(b"x")
    dropped.abort()
    assert dropped.transport.calls == [("abort", b"")]  # type: ignore[attr-defined]
    assert transport.get_extra_info("peername") == "info:peername"


def test_the_server_answers_pipelined_and_closing_requests_whole_and_in_order(
    start_server: StartServer, sqlite_url: str
) -> None:
    server = start_server(sqlite_url)
    url = urlsplit(server.url)
    post = (
        b"POST /v1/streams/pipe-1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(EVENT), EVENT)
    )
    last = b"GET /v1/streams/pipe-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection((url.hostname, url.port), 10) as sock:
        sock.sendall(post + post + last)  # three requests in one segment
        data = b""
        while chunk := sock.recv(65536):  # until the server closes, after the last answer
            data += chunk
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert [answer.split(b" ", 1)[0] for answer in answers] == [b"200", b"200", b"200"]
    assert b'"next_expected_version":0' in answers[0]
    assert b'"next_expected_version":1' in answers[1]
    assert answers[2].count(b'"type":"Happened"') == 2, "the closing answer arrived whole"


async def test_an_embedders_middleware_wraps_the_front_layer(memory_url: str) -> None:
    from kronika.server.app import create_app
    from kronika.server.settings import ServerSettings

    class Stamp:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            async def stamped(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message["headers"], (b"x-embedder", b"yes")]
                await send(message)

            await self.app(scope, receive, stamped)

    app = create_app(ServerSettings.checked(database_url=memory_url))
    app.add_middleware(Stamp)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kronika") as http:
            answer = await http.get("/v1/head")
    assert answer.status_code == 200
    assert answer.headers["x-embedder"] == "yes"
    assert _has_front_headers(answer)


@pytest.mark.parametrize("freeze", [False, True])
async def test_the_server_can_freeze_its_start_up_heap(memory_url: str, freeze: bool) -> None:
    import gc

    from kronika.server.app import create_app
    from kronika.server.settings import ServerSettings

    gc.unfreeze()
    app = create_app(ServerSettings.checked(database_url=memory_url), freeze_heap=freeze)
    try:
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kronika") as http:
                assert (await http.get("/v1/head")).status_code == 200
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
    assert (frozen > 10_000) is freeze, frozen


@pytest.mark.parametrize("url", ["memory://", "sqlite://"])
def test_the_asgi_benchmark_times_requests_through_the_app(url: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    command = [sys.executable, "-m", "benchmarks.asgi", "--url", url, "--requests", "200"]
    done = subprocess.run(
        [*command, "--repeats", "1", "--loop", "asyncio"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = dict(re.findall(r"^  (app|store|server)\s+(-?[\d.]+) µs", done.stdout, re.M))
    assert set(figures) == {"app", "store", "server"}, done.stdout
    assert float(figures["app"]) > 0
