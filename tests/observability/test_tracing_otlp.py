"""One trace over real OTLP/HTTP from ``kronika serve`` and ``kronika worker`` processes, and
their logs: JSON lines with the correlation id, never a secret or a marked personal value.

The test runs its own OTLP receiver (a small HTTP server collecting ``POST /v1/traces`` and
decoding the protobuf), points both processes at it with ``OTEL_EXPORTER_OTLP_ENDPOINT`` and
checks that the request's span, the append's span and the projection's span share one trace.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import kronika
from kronika.observability import tracing

KRONIKA = str(Path(sys.executable).with_name("kronika"))
DB_PASSWORD = "db-Pa55w0rd-never-logged"
ADMIN_KEY = "kr_0123456789abcdef_" + "K" * 43
JWT_SECRET = "jwt-secret-that-is-long-enough-0123456789"
STOLEN = "kr_fedcba9876543210_" + "S" * 43
EMAIL = "ann.person@example.org"
SECRETS = (DB_PASSWORD, ADMIN_KEY, JWT_SECRET, STOLEN, EMAIL)

APP = """
from kronika import RecordedEvent
from kronika.domain.retry import RetryPolicy
from kronika.runtime import Context, Projection, on


class Orders(Projection):
    name = "orders"

    @on("Placed")
    async def placed(self, event: RecordedEvent, ctx: Context) -> None:
        await ctx.documents.put("orders", event.stream, {"placed": True})


class Welcome(Projection):
    name = "welcome"
    retry = RetryPolicy(max_attempts=1, initial_delay=0.01, max_delay=0.01, jitter=False)

    @on("Registered")
    async def registered(self, event: RecordedEvent, ctx: Context) -> None:
        raise ValueError(f"cannot send a welcome mail to {event.data['email']}")


PROCESSORS = [Orders(), Welcome()]
"""


class Receiver:
    """An OTLP/HTTP trace receiver: every span POSTed to /v1/traces, with its service."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/traces":
                    receiver.collect(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def collect(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    with self.lock:
                        self.spans.append(
                            {
                                "service": service,
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attributes": attributes,
                            }
                        )

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["name"] == name]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.1)


def with_password(url: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{DB_PASSWORD}@{host}"))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


class Process:
    """A kronika command with stdout and stderr in files."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, name: str) -> None:
        self.out = cwd / f"{name}.out"
        self.err = cwd / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                [KRONIKA, *args], stdout=out, stderr=err, env=env, cwd=cwd
            )

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def everything(self) -> str:
        return self.stdout() + self.err.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout().splitlines() if line.startswith("{")]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"no exit after SIGTERM:\n{self.everything()}") from None


def base_env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KRONIKA_", "OTEL_"))}
    return {**clean, "OTEL_BSP_SCHEDULE_DELAY": "100", **extra}


def start_server(tmp_path: Path, url: str, env: dict[str, str]) -> tuple[Process, str]:
    port = free_port()
    server = Process(["serve", "--port", str(port), "--database-url", url], env, tmp_path, "serve")
    base = f"http://127.0.0.1:{port}"

    def live() -> bool:
        assert server.process.poll() is None, f"serve exited:\n{server.everything()}"
        try:
            return httpx.get(f"{base}/livez", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    until(live, what="kronika serve up")
    return server, base


@pytest.mark.postgres
def test_one_trace_spans_request_append_and_projection_over_otlp(
    tmp_path: Path, postgres_url: str, receiver: Receiver
) -> None:
    url = with_password(postgres_url)
    (tmp_path / "telemetryapp.py").write_text(APP, encoding="utf-8")
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, KRONIKA_LOG_LEVEL="debug")
    migrate = subprocess.run(
        [KRONIKA, "--url", url, "migrate"], env=env, capture_output=True, text=True, check=False
    )
    assert migrate.returncode == 0, migrate.stderr
    server_env = {
        **env,
        "KRONIKA_AUTH_ENABLED": "true",
        "KRONIKA_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "KRONIKA_JWT_SECRET": JWT_SECRET,
        "KRONIKA_JWT_ISSUER": "tests",
        "KRONIKA_JWT_AUDIENCE": "kronika",
    }
    server, base = start_server(tmp_path, url, server_env)
    worker = Process(
        ["--url", url, "worker", "--app", "telemetryapp:PROCESSORS", "--lease-ttl", "2"],
        env,
        tmp_path,
        "worker",
    )
    try:
        auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
        placed = httpx.post(
            f"{base}/v1/streams/order-1",
            json={"events": [{"type": "Placed", "data": {"total": 3}}]},
            headers={**auth, "X-Correlation-ID": "checkout-1"},
        )
        assert placed.status_code == 200, placed.text
        assert placed.headers["x-correlation-id"] == "checkout-1"
        registered = httpx.post(
            f"{base}/v1/streams/customer-1",
            json={
                "events": [
                    {
                        "type": "Registered",
                        "data": {"email": EMAIL},
                        "metadata": {"kronika.pii": ["email"]},
                    }
                ]
            },
            headers={**auth, "X-Correlation-ID": "signup-7"},
        )
        assert registered.status_code == 200, registered.text
        refused = httpx.get(f"{base}/v1/head", headers={"Authorization": f"Bearer {STOLEN}"})
        assert refused.status_code == 401

        def handled() -> bool:
            orders = [
                s
                for s in receiver.named("kronika.handle")
                if s["attributes"].get("kronika.processor") == "orders"
            ]
            return bool(orders)

        until(handled, what="the projection's span at the receiver")
        until(lambda: "handler failed" in worker.stdout(), what="the failure logged")
    finally:
        assert server.stop() == 0, server.everything()
        assert worker.stop() == 0, worker.everything()

    # One trace: request -> append (server) -> projection (worker).
    [request] = [
        s
        for s in receiver.named("POST /v1/streams/{stream}")
        if s["attributes"].get("kronika.correlation_id") == "checkout-1"
    ]
    assert request["service"] == "kronika-server"
    assert request["attributes"]["http.route"] == "/v1/streams/{stream}"
    [append] = [s for s in receiver.named("kronika.append") if s["parent"] == request["span_id"]]
    assert append["trace_id"] == request["trace_id"]
    assert append["attributes"]["db.system.name"] == "postgresql"
    [handle] = [
        s
        for s in receiver.named("kronika.handle")
        if s["attributes"].get("kronika.processor") == "orders"
    ]
    assert handle["service"] == "kronika-worker"
    assert handle["trace_id"] == request["trace_id"]
    assert handle["parent"] == append["span_id"]

    # Logs: JSON lines with the correlation ids; no secret, no personal value anywhere.
    server_lines, worker_lines = server.lines(), worker.lines()
    [answered] = [
        line
        for line in server_lines
        if line["event"] == "request" and line.get("correlation_id") == "checkout-1"
    ]
    assert answered["route"] == "/v1/streams/{stream}"
    assert answered["trace_id"] == request["trace_id"]
    [failed] = [line for line in worker_lines if line["event"] == "handler failed"]
    assert failed["correlation_id"] == "signup-7"
    assert failed["service"] == "kronika-worker"
    assert "[redacted]" in failed["error"]
    for process in (server, worker):
        text = process.everything()
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into the logs:\n{text}"


def test_an_unreachable_collector_neither_fails_nor_slows_requests(
    tmp_path: Path, sqlite_url: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT=closed)
    server, base = start_server(tmp_path, sqlite_url, env)
    try:
        slowest = 0.0
        with httpx.Client(base_url=base) as http:
            for i in range(60):
                started = time.perf_counter()
                answer = http.post(
                    f"/v1/streams/order-{i}", json={"events": [{"type": "Placed", "data": {}}]}
                )
                slowest = max(slowest, time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
                time.sleep(0.02)  # let the exporter try (and fail) between requests
            ready = http.get("/readyz")
        assert ready.status_code == 200
        # A blocked exporter would hold requests for its 10 s timeout; a generous bound.
        assert slowest < 2.0
    finally:
        assert server.stop() == 0, server.everything()
    lines = [json.loads(line) for line in server.stdout().splitlines() if line.startswith("{")]
    exporter = [line for line in lines if str(line.get("logger", "")).startswith("opentelemetry")]
    assert exporter, "the export failure was not logged"
    assert len(exporter) <= 5, exporter  # rate-limited: one line per message per minute


def test_the_http_client_store_carries_its_trace_and_correlation_to_the_server(
    tmp_path: Path, sqlite_url: str, receiver: Receiver
) -> None:
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, KRONIKA_LOG_LEVEL="debug")
    server, base = start_server(tmp_path, sqlite_url, env)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)

    async def append() -> None:
        async with kronika.open_store(base) as remote:
            with kronika.caused_by("cmd-1", "client-corr-5"):
                await remote.append("order-9", [kronika.NewEvent(type="Placed", data={})])

    try:
        asyncio.run(append())
        [client] = [s for s in exporter.get_finished_spans() if s.name == "kronika.append"]
        assert client.attributes is not None
        assert client.attributes["db.system.name"] == "http"
        until(
            lambda: bool(receiver.named("POST /v1/streams/{stream}")),
            what="the server's request span",
        )
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()
        assert server.stop() == 0, server.everything()
    [request] = receiver.named("POST /v1/streams/{stream}")
    assert request["trace_id"] == f"{client.context.trace_id:032x}"
    assert request["parent"] == f"{client.context.span_id:016x}"
    assert request["attributes"]["kronika.correlation_id"] == "client-corr-5"
    [answered] = [
        line
        for line in server.lines()
        if line["event"] == "request" and line["route"] == "/v1/streams/{stream}"
    ]
    assert answered["correlation_id"] == "client-corr-5"
