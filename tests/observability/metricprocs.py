"""Real processes for the metrics proofs: ``kronika serve``, ``kronika worker``, Prometheus.

Prometheus and promtool come from the Debian package ``prometheus``
(``scripts/install-system-deps`` installs it); without them these tests skip, or fail
under ``KRONIKA_REQUIRE_SERVICES=1``. Every process gets its own free port and directory,
so a Prometheus the package may have started as a service (port 9090) is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from kronika.testing.services import require_service

KRONIKA = str(Path(sys.executable).with_name("kronika"))

APP = """
from kronika import RecordedEvent
from kronika.runtime import Context, Projection, on


class Ledger(Projection):
    name = "ledger"
    partitions = 2

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        await ctx.documents.put("ledger", event.stream, {"n": event.data["n"]})


PROCESSORS = [Ledger]
"""


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tool(name: str) -> str:
    """The path of a Prometheus tool, or skip (fail in CI) when it is not installed."""
    found = shutil.which(name)
    if found is None:
        require_service(name, f"{name} is not installed (run scripts/install-system-deps)")
    return found


def until(check: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.25)


class Process:
    """A subprocess with its log file, stopped with SIGTERM (killed only if that fails)."""

    def __init__(self, command: list[str], log: Path, cwd: Path, env: dict[str, str]) -> None:
        self.log = log
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env={**clean, **env}
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        def answers() -> bool:
            assert self.process.poll() is None, f"exited early:\n{self.output()}"
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        until(answers, timeout, f"{url} answering")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def pid(self) -> int:
        return self.process.pid


class Deployment:
    """A SQLite store with a ``kronika serve`` and a ``kronika worker``, each with /metrics."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "metricsapp.py").write_text(APP, encoding="utf-8")
        self.db_url = f"sqlite:///{root / 'kronika.db'}"
        subprocess.run(
            [KRONIKA, "--url", self.db_url, "migrate"], check=True, capture_output=True, cwd=root
        )
        self.server_port, self.worker_port = free_port(), free_port()
        self.server_url = f"http://127.0.0.1:{self.server_port}"
        self.worker_url = f"http://127.0.0.1:{self.worker_port}"
        env = {"KRONIKA_APP": "metricsapp:PROCESSORS", "KRONIKA_METRICS_PUBLIC": "true"}
        self.server = Process(
            [KRONIKA, "serve", "--port", str(self.server_port), "--database-url", self.db_url],
            root / "server.log",
            root,
            env,
        )
        self.worker = Process(
            [KRONIKA, "--url", self.db_url, "worker", "--lease-ttl", "2"],
            root / "worker.log",
            root,
            {**env, "KRONIKA_WORKER_METRICS_PORT": str(self.worker_port)},
        )
        self.server.wait_http(f"{self.server_url}/livez")
        self.worker.wait_http(f"{self.worker_url}/metrics")

    def append(self, stream: str, n: int) -> None:
        answer = httpx.post(
            f"{self.server_url}/v1/streams/{stream}",
            json={"events": [{"type": "Numbered", "data": {"n": n}}]},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

    def stop(self) -> None:
        self.worker.stop()
        self.server.stop()
