"""``kronika doctor --server``: the remote checks against real ``kronika serve`` processes
(readiness, metrics, authentication, HTTPS and its certificate, processors over HTTP)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import kronika
from kronika.ops.doctor import CheckResult, DoctorOptions, Report, Status, run_doctor
from kronika.runtime import Worker
from kronika.server.security import generate_key
from kronika.store.processing import FailureState

KRONIKA = str(Path(sys.executable).with_name("kronika"))
StartServer = Callable[..., Any]

APP = """
from kronika import RecordedEvent
from kronika.domain.retry import RetryPolicy
from kronika.runtime import Context, Projection, on


class Ledger(Projection):
    name = "ledger"
    partitions = 2
    retry = RetryPolicy(max_attempts=1, initial_delay=0.05, max_delay=0.05, jitter=False)

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        if event.stream.startswith("bad-"):
            raise RuntimeError(f"cannot handle {event.stream}")
        await ctx.documents.put("ledger", event.stream, {"n": event.data["n"]})


PROCESSORS = [Ledger]
"""


async def remote(server: str, token: str | None = None, **options: Any) -> Report:
    """Run doctor against ``server`` only (no store of its own), in a clean environment."""
    return await run_doctor(DoctorOptions(environ={}, server=server, token=token, **options))


def result(report: Report, check_id: str) -> CheckResult:
    return next(r for r in report.results if r.check.id == check_id)


def found(report: Report, check_id: str) -> list[str]:
    checked = result(report, check_id)
    assert checked.status is not Status.ERROR, checked.reason
    return [f.severity.value for f in checked.findings]


@pytest.fixture
def admin_key() -> str:
    return generate_key().token


@pytest.fixture
def secured(start_server: StartServer, sqlite_url: str, admin_key: str) -> Any:
    """A server with authentication on and an admin key."""
    env = {"KRONIKA_AUTH_ENABLED": "true", "KRONIKA_BOOTSTRAP_ADMIN_KEY": admin_key}
    return start_server(sqlite_url, env)


async def test_a_healthy_secured_server_passes(secured: Any, admin_key: str) -> None:
    report = await remote(secured.url, admin_key)
    for check_id in ("DR-HTTP-REACH", "DR-HTTP-READY", "DR-HTTP-AUTH", "DR-HTTP-METRICS"):
        assert result(report, check_id).status is Status.OK, check_id
    assert result(report, "DR-PROC-QUARANTINED").status is Status.OK  # read over HTTP
    assert result(report, "DR-HTTP-TLS").status is Status.SKIPPED  # plain HTTP on loopback
    assert result(report, "DR-STORE-REACH").status is Status.SKIPPED
    assert not report.errors and not report.findings


async def test_a_refused_or_missing_token(secured: Any) -> None:
    wrong = await remote(secured.url, generate_key().token)
    assert found(wrong, "DR-HTTP-AUTH") == ["high"]
    assert result(wrong, "DR-PROC-LAG").status is Status.SKIPPED
    anonymous = await remote(secured.url)
    assert found(anonymous, "DR-HTTP-AUTH") == []
    skipped = result(anonymous, "DR-HTTP-METRICS")
    assert skipped.status is Status.SKIPPED and "--token" in (skipped.reason or "")
    assert "--token" in (result(anonymous, "DR-PROC-FAILING").reason or "")


async def test_a_server_in_maintenance_is_not_ready(secured: Any, admin_key: str) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=secured.url, headers=headers) as http:
        switched = await http.post("/v1/admin/maintenance", json={"enabled": True})
    assert switched.status_code == 200
    report = await remote(secured.url, admin_key)
    assert found(report, "DR-HTTP-READY") == ["critical"]
    assert "maintenance" in result(report, "DR-HTTP-READY").findings[0].found


async def test_an_unreachable_server_is_critical() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = await remote(f"http://127.0.0.1:{port}", timeout=3)
    assert found(report, "DR-HTTP-REACH") == ["critical"]
    assert result(report, "DR-HTTP-READY").status is Status.SKIPPED


def _outward_address() -> str | None:
    """This host's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address: str = sock.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_an_open_server_on_the_network_is_critical(
    start_server: StartServer, sqlite_url: str
) -> None:
    address = _outward_address()
    if address is None:
        pytest.skip("this host has no non-loopback address")
    server = start_server(sqlite_url, {}, "--host", "0.0.0.0")  # noqa: S104 - the bad setup
    report = await remote(f"http://{address}:{server.port}")
    assert found(report, "DR-HTTP-AUTH") == ["critical"]
    assert found(report, "DR-HTTP-TLS") == ["high"]
    local = await remote(server.url)
    assert found(local, "DR-HTTP-AUTH") == ["low"]  # on loopback: advice


# -- HTTPS ------------------------------------------------------------------------------------


@pytest.fixture
def https_server(tmp_path: Path, sqlite_url: str) -> Iterator[Callable[[Path, Path], str]]:
    """``start(cert, key)``: a ``kronika serve`` over HTTPS; its URL. Stopped afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(cert: Path, key: Path) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
        env |= {"KRONIKA_TLS_CERTFILE": str(cert), "KRONIKA_TLS_KEYFILE": str(key)}
        with (tmp_path / f"https-{port}.log").open("wb") as log:
            process = subprocess.Popen(
                [KRONIKA, "serve", "--port", str(port), "--database-url", sqlite_url],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        started.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / f"https-{port}.log").read_text()
            try:
                # Only liveness: the certificate may be expired on purpose.
                httpx.get(f"https://127.0.0.1:{port}/livez", verify=False, timeout=2)  # noqa: S501
            except httpx.TransportError:
                time.sleep(0.1)
            else:
                return f"https://127.0.0.1:{port}"
        raise AssertionError("the HTTPS server did not start")

    yield start
    for process in started:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize(
    ("days_left", "tls", "reach"),
    [(90, [], []), (5, ["high"], []), (-1, ["critical"], ["critical"])],
    ids=["valid", "expiring", "expired"],
)
async def test_the_served_certificate_is_checked(
    https_server: Callable[[Path, Path], str],
    make_certificate: Callable[..., tuple[Path, Path]],
    days_left: float,
    tls: list[str],
    reach: list[str],
) -> None:
    cert, key = make_certificate(days_left=days_left, days_valid=400)
    url = https_server(cert, key)
    report = await remote(url, cacert=str(cert))
    assert found(report, "DR-HTTP-TLS") == tls, result(report, "DR-HTTP-TLS").findings
    assert found(report, "DR-HTTP-REACH") == reach
    if reach:
        assert "expired" in result(report, "DR-HTTP-REACH").findings[0].found


# -- something that is not Kronika ------------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    metrics = b""

    def do_GET(self) -> None:
        body, status = {
            "/livez": (b'{"status": "alive"}', 200),
            "/readyz": (b'{"status": "ready"}', 200),
            "/metrics": (self.metrics, 200),
        }.get(self.path, (b'{"detail": "boom"}', 500))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def stub() -> Iterator[Callable[[bytes], str]]:
    """``stub(metrics_text)``: an HTTP server that is not Kronika; its URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(metrics: bytes) -> str:
        handler = type("Stub", (_Stub,), {"metrics": metrics})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


async def test_metrics_must_parse_and_be_kronikas(stub: Callable[[bytes], str]) -> None:
    garbage = await remote(stub(b"this is { not prometheus\n"))
    assert found(garbage, "DR-HTTP-METRICS") == ["high"]
    other = await remote(stub(b"# TYPE up gauge\nup 1\n"))
    assert found(other, "DR-HTTP-METRICS") == ["medium"]
    # The processor routes answer 500: doctor cannot vouch for them, and says so.
    failed = result(other, "DR-PROC-LAG")
    assert failed.status is Status.ERROR and "500" in (failed.reason or "")
    assert other.errors


# -- processors over HTTP ---------------------------------------------------------------------


def _app_module(tmp_path: Path) -> ModuleType:
    (tmp_path / "doctorapp.py").write_text(APP, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("doctorapp", tmp_path / "doctorapp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_processor_checks_read_a_servers_routes(
    tmp_path: Path, start_server: StartServer, sqlite_url: str
) -> None:
    module = _app_module(tmp_path)
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    server = start_server(sqlite_url, {"KRONIKA_APP": "doctorapp:PROCESSORS", "PYTHONPATH": path})
    async with kronika.open_store(sqlite_url) as store:
        worker = Worker(store, [module.Ledger()], lease_ttl=1.0, drain_timeout=5)
        task = asyncio.create_task(worker.run())
        try:
            await store.append("bad-1", [kronika.NewEvent("Numbered", {"n": 1})])
            await store.append("good-1", [kronika.NewEvent("Numbered", {"n": 1})])
            processing = store.processing  # type: ignore[attr-defined]

            async def quarantined() -> bool:
                return any(f.state is FailureState.QUARANTINED for f in await processing.failures())

            deadline = asyncio.get_running_loop().time() + 20
            while not await quarantined():
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
            report = await remote(server.url)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)
    assert found(report, "DR-PROC-QUARANTINED") == ["high"]
    [finding] = result(report, "DR-PROC-QUARANTINED").findings
    assert finding.subject == "ledger" and "bad-1" in finding.found
