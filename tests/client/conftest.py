"""Real ``kronika serve`` processes for the client tests, each on a fresh database.

Two ways to start one, both running the real CLI command in a process of its own:

- :meth:`Server.start` runs the ``kronika`` script (about 1.7 s until ready here);
- :class:`Zygote` forks it from a process that has imported Kronika already (about 0.2 s),
  which keeps the conformance suite, with a fresh server per test, near a minute a backend.

A :class:`ServerPool` keeps spares booting while a test runs and stops servers without
waiting for them, dropping their databases once they have exited.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

KRONIKA = str(Path(sys.executable).with_name("kronika"))
ZYGOTE = Path(__file__).with_name("zygote.py")

SERVER_ENV = {
    "KRONIKA_RATE_LIMIT": "0",  # the suites append thousands of events from one "client"
    "KRONIKA_SSE_HEARTBEAT": "1",
    "KRONIKA_DRAIN_TIMEOUT": "1",
}
"""Settings every test server runs with (auth stays off: local mode on loopback)."""


def free_port() -> int:
    """A TCP port nothing listens on now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **SERVER_ENV, **extra}
    env.pop("KRONIKA_DATABASE_URL", None)
    return env


class Zygote:
    """A long-lived ``tests/client/zygote.py`` process that forks servers on request."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def spawn(self, argv: list[str], env: dict[str, str], log: Path) -> int:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {"argv": argv, "env": env, "log": str(log)}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(10)
        self.process.stdout.close()


@dataclass
class Server:
    """One ``kronika serve`` process."""

    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    pid: int | None = None
    popen: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        scheme = "https" if "KRONIKA_TLS_CERTFILE" in self.env else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def argv(self) -> list[str]:
        return ["kronika", "serve", "--port", str(self.port), "--database-url", self.database_url]

    def start(self, zygote: Zygote | None = None) -> Server:
        """Start it (forked from ``zygote``, else by the ``kronika`` script)."""
        self.log = Path(tempfile.mkstemp(prefix="kronika-serve-", suffix=".log")[1])
        env = _environment(self.env)
        if zygote is not None:
            self.pid = zygote.spawn(self.argv, env, self.log)
            return self
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [KRONIKA, *self.argv[1:]],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.pid = self.popen.pid
        return self

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid or 0, 0)
        except ProcessLookupError:
            return False
        return True

    def send(self, sig: int) -> None:
        if self.pid is not None and self.alive():
            os.kill(self.pid, sig)

    def wait_ready(self, timeout: float = 60.0) -> Server:
        deadline = time.monotonic() + timeout
        # Loopback, and the test's own certificate when TLS is on: no CA bundle to load.
        with httpx.Client(timeout=2, verify=False) as probe:  # noqa: S501
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"kronika serve exited early:\n{self.output()}")
                try:
                    if probe.get(f"{self.url}/readyz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        raise RuntimeError(f"kronika serve was not ready within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log else ""

    def wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.alive()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Signal it and wait until it has exited (SIGKILL after ``timeout``)."""
        self.send(sig)
        if not self.wait_exit(timeout):
            self.send(signal.SIGKILL)
            self.wait_exit(5)
        if self.log:
            self.log.unlink(missing_ok=True)


class ServerPool:
    """Hands out servers on fresh databases, keeping spares booting ahead of demand.

    Released servers get SIGTERM and are reaped later (their databases dropped then), so
    a test does not wait for the previous test's server to drain.
    """

    spares = 2

    def __init__(
        self, make_url: Callable[[], str], drop: Callable[[str], None] | None = None
    ) -> None:
        self._make_url = make_url
        self._drop = drop
        self._zygote = Zygote()
        self._ready: list[Server] = []
        self._dying: list[Server] = []

    def _new(self, env: dict[str, str] | None = None) -> Server:
        return Server(self._make_url(), env=dict(env or {})).start(self._zygote)

    def acquire(self, env: dict[str, str] | None = None) -> Server:
        """A running server; with ``env`` (extra settings) a new one, else a spare."""
        self._reap()
        if env:
            return self._new(env).wait_ready()
        server = self._ready.pop(0) if self._ready else self._new()
        server.wait_ready()
        while len(self._ready) < self.spares:
            self._ready.append(self._new())
        return server

    def release(self, server: Server) -> None:
        """Stop ``server`` without waiting; its database goes when it has exited."""
        server.send(signal.SIGTERM)
        self._dying.append(server)

    def _reap(self, wait: bool = False) -> None:
        for server in list(self._dying):
            if wait or not server.alive():
                server.stop()
                if self._drop is not None:
                    self._drop(server.database_url)
                self._dying.remove(server)

    def close(self) -> None:
        for server in self._ready:
            self.release(server)
        self._ready.clear()
        self._reap(wait=True)
        self._zygote.close()


@pytest.fixture(scope="session")
def sqlite_servers() -> Iterator[ServerPool]:
    """Servers on a new SQLite file each."""
    folder = Path(tempfile.mkdtemp(prefix="kronika-client-"))
    pool = ServerPool(lambda: f"sqlite:///{folder / uuid.uuid4().hex}.db")
    yield pool
    pool.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_servers(postgres_server: str) -> Iterator[ServerPool]:
    """Servers on a new PostgreSQL schema each (dropped when the server has exited)."""
    import psycopg

    separator = "&" if "?" in postgres_server else "?"

    def make_url() -> str:
        return f"{postgres_server}{separator}schema=kronika_http_{uuid.uuid4().hex[:12]}"

    def drop(url: str) -> None:
        schema = url.rsplit("schema=", 1)[1]
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    pool = ServerPool(make_url, drop)
    yield pool
    pool.close()


@pytest.fixture
def sqlite_server(sqlite_servers: ServerPool) -> Iterator[Server]:
    """A running server on a fresh SQLite database."""
    server = sqlite_servers.acquire()
    yield server
    sqlite_servers.release(server)


@pytest.fixture
def postgres_server_process(postgres_servers: ServerPool) -> Iterator[Server]:
    """A running server on a fresh PostgreSQL schema."""
    server = postgres_servers.acquire()
    yield server
    postgres_servers.release(server)
