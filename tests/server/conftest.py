"""``kronika serve`` as a subprocess on a free port, on SQLite and on PostgreSQL.

Each proof in this directory talks HTTP to a real server process, as a user's client
would; the servers are stopped with SIGTERM (and killed only if that fails).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

KRONIKA = str(Path(sys.executable).with_name("kronika"))


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One ``kronika serve`` process with its log file."""

    def __init__(self, database_url: str, log: Path, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.signalled = False
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
        command = [KRONIKA, "serve", "--port", str(self.port), "--database-url", database_url]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**clean, "KRONIKA_DRAIN_TIMEOUT": "5", **env},
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_live(self, timeout: float = 60.0) -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"kronika serve exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/livez", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"kronika serve did not start:\n{self.output()}")

    def sigterm(self) -> None:
        """Send SIGTERM once (a second one during shutdown could find the default handler)."""
        if not self.signalled and self.process.poll() is None:
            self.signalled = True
            self.process.send_signal(signal.SIGTERM)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit status."""
        self.sigterm()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"no exit {timeout} s after SIGTERM:\n{self.output()}") from None


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(url, env={...}, *args)``: a live server; all are stopped afterwards."""
    started: list[ServerProcess] = []

    def start(url: str, env: dict[str, str] | None = None, *args: str) -> ServerProcess:
        log = tmp_path / f"serve-{len(started)}.log"
        server = ServerProcess(url, log, env or {}, *args)
        started.append(server)
        return server.wait_live()

    yield start
    for server in started:
        if server.process.poll() is None:
            server.terminate()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh store URL on each backend the server runs on."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url
