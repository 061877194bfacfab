"""The client against a real ``kronika serve``: what the conformance suite does not cover.

Errors crossing the wire as the same classes, credentials, rate limits, a server that goes
away and comes back under a live subscription, the blocking facade, awkward stream names.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

import kronika
import kronika.sync
from kronika import NO_STREAM, NewEvent
from kronika.errors import (
    ConcurrencyError,
    ConfigurationError,
    RateLimited,
    StreamDeleted,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from kronika.testing.contract import collect


def ev(i: int = 0) -> NewEvent:
    return NewEvent("Happened", {"i": i})


async def test_errors_cross_the_wire_as_the_same_classes(sqlite_server: Any) -> None:
    async with kronika.open_store(sqlite_server.url) as store:
        await store.append("order-1", [ev(), ev(1)], expected_version=NO_STREAM)
        with pytest.raises(ConcurrencyError) as info:
            await store.append("order-1", [ev()], expected_version=0)
        assert (info.value.stream, info.value.expected, info.value.actual) == ("order-1", 0, 1)
        with pytest.raises(ConcurrencyError) as info:
            await store.append("order-1", [ev()], expected_version=NO_STREAM)
        assert (info.value.expected, info.value.actual) == ("no_stream", 1)
        await store.delete_stream("order-1", hard=True)
        with pytest.raises(StreamDeleted) as deleted:
            await store.read_stream("order-1")
        assert deleted.value.stream == "order-1"


async def test_a_body_over_the_servers_limit_is_a_validation_error(
    sqlite_servers: Any,
) -> None:
    server = sqlite_servers.acquire({"KRONIKA_MAX_BODY_BYTES": "2000"})
    try:
        async with kronika.open_store(server.url) as store:
            with pytest.raises(ValidationError):
                await store.append("s-1", [NewEvent("Big", {"blob": "x" * 5000})])
            assert await store.head_position() == 0
    finally:
        sqlite_servers.release(server)


@pytest.mark.parametrize("stream", ["a/b", "with space", "q?x=1&y#z", "100%", "žluť-🐎", "..", "."])
async def test_any_valid_stream_name_round_trips(sqlite_server: Any, stream: str) -> None:
    async with kronika.open_store(sqlite_server.url) as store:
        await store.append(stream, [ev()], expected_version=NO_STREAM)
        [got] = await store.read_stream(stream)
        assert got.stream == stream
        assert (await store.stream_info(stream)).version == 0
        await store.write_snapshot(stream, 0, {"n": 1})
        snapshot = await store.read_snapshot(stream)
        assert snapshot is not None
        assert snapshot.state == {"n": 1}


def _key() -> str:
    return f"kr_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


async def test_credentials_from_the_option_or_the_environment(
    sqlite_servers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _key()
    server = sqlite_servers.acquire({"KRONIKA_AUTH": "on", "KRONIKA_BOOTSTRAP_ADMIN_KEY": key})
    try:
        monkeypatch.delenv("KRONIKA_TOKEN", raising=False)
        async with kronika.open_store(server.url) as anonymous:
            with pytest.raises(Unauthorized):
                await anonymous.head_position()
        async with kronika.open_store(server.url, token="kr_0000000000000000_" + "x" * 43) as bad:
            with pytest.raises(Unauthorized) as info:
                await bad.append("s-1", [ev()])
            assert "x" * 43 not in str(info.value)
        async with kronika.open_store(server.url, token=key) as store:
            await store.append("s-1", [ev()])
        monkeypatch.setenv("KRONIKA_TOKEN", key)
        async with kronika.open_store(server.url) as store:
            assert len(await store.read_all()) == 1
            with pytest.raises(Unauthorized):  # live subscriptions check credentials too
                async with kronika.open_store(server.url, token="nope") as other:
                    await collect(other, 1, timeout=10)
    finally:
        sqlite_servers.release(server)


async def test_rate_limits_come_back_with_retry_after(sqlite_servers: Any) -> None:
    server = sqlite_servers.acquire({"KRONIKA_RATE_LIMIT": "1", "KRONIKA_RATE_BURST": "2"})
    try:
        async with kronika.open_store(server.url) as store:

            async def burst() -> None:
                for _ in range(10):
                    await store.head_position()

            with pytest.raises(RateLimited) as info:
                await burst()
            assert info.value.retry_after >= 1
    finally:
        sqlite_servers.release(server)


async def test_a_subscription_survives_a_server_restart_without_loss_or_repeats(
    sqlite_servers: Any,
) -> None:
    """Kill the server under a live subscription, start another on the same database and
    port: the subscriber resumes after its last event (Last-Event-ID)."""
    server = sqlite_servers.acquire()
    replacement = None
    try:
        async with kronika.open_store(server.url) as store:
            reader = asyncio.create_task(collect(store, 60, timeout=90))
            for i in range(30):
                await store.append(f"s-{i % 3}", [ev(i)])
            await asyncio.sleep(0.3)
            server.stop(signal.SIGKILL)
            with pytest.raises(Unavailable, match=server.url):
                await store.append("s-0", [ev(-1)])
            replacement = type(server)(server.database_url, port=server.port).start()
            await asyncio.to_thread(replacement.wait_ready)
            for i in range(30, 60):
                await store.append(f"s-{i % 3}", [ev(i)])
            got = await reader
        assert [e.data["i"] for e in got] == list(range(60))
        positions = [e.position for e in got]
        assert positions == sorted(set(positions))
    finally:
        if replacement is not None:
            replacement.stop()
        sqlite_servers.release(server)


class CuttingProxy:
    """A TCP proxy in front of the server whose connections the test can cut, as a load
    balancer or a flaky network would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


async def test_cut_connections_resume_after_the_last_event(sqlite_server: Any) -> None:
    proxy = CuttingProxy(sqlite_server.port)
    async with proxy as url, kronika.open_store(url) as store:
        await store.append("s-1", [ev(i) for i in range(5)])
        subscription = store.subscribe()
        seen = [await anext(subscription) for _ in range(5)]
        [feed] = store._feeds  # type: ignore[attr-defined]
        for i in range(5, 8):
            proxy.cut()  # every connection: the subscription's and the request pool's
            await asyncio.sleep(0.05)
            await store.append("s-1", [ev(i)])
            seen.append(await asyncio.wait_for(anext(subscription), 20))
        await subscription.aclose()
    assert [e.data["i"] for e in seen] == list(range(8))
    assert feed.connections >= 4


async def test_schema_status_comes_from_the_server_and_migrate_is_refused(
    sqlite_server: Any,
) -> None:
    store = kronika.open_store(sqlite_server.url)
    status = await store.schema_status()
    assert status.up_to_date
    assert status.current >= 1
    with pytest.raises(ConfigurationError, match="kronika migrate"):
        await store.migrate()


def test_the_blocking_facade_works_over_http(sqlite_server: Any) -> None:
    with kronika.sync.open_store(sqlite_server.url) as store:
        assert store.engine == "http"
        result = store.append("s-1", [ev()], expected_version=NO_STREAM)
        assert store.read_stream("s-1")[0].position == result.position
        with pytest.raises(ConcurrencyError):
            store.append("s-1", [ev()], expected_version=NO_STREAM)
        assert next(store.subscribe()).data == {"i": 0}


async def test_a_server_that_answers_slowly_times_out_as_unavailable(sqlite_server: Any) -> None:
    sqlite_server.send(signal.SIGSTOP)
    try:
        async with kronika.open_store(sqlite_server.url, timeout=0.5) as store:
            with pytest.raises(Unavailable, match="did not answer in time"):
                await store.head_position()
    finally:
        sqlite_server.send(signal.SIGCONT)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_https_checks_the_certificate_as_configured(
    sqlite_servers: Any, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server = sqlite_servers.acquire(
        {"KRONIKA_TLS_CERTFILE": str(cert), "KRONIKA_TLS_KEYFILE": str(key)}
    )
    try:
        assert server.url.startswith("https://")
        async with kronika.open_store(server.url) as store:  # not signed by a known CA
            with pytest.raises(Unavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
                await store.head_position()
        async with kronika.open_store(server.url, verify=str(cert)) as store:
            await store.append("s-1", [ev()])
            assert len(await collect(store, 1, timeout=10)) == 1
        async with kronika.open_store(f"{server.url}?verify=false") as store:
            assert await store.head_position() > 0
    finally:
        sqlite_servers.release(server)


async def test_a_busy_pool_fails_with_unavailable_after_the_timeout(sqlite_server: Any) -> None:
    sqlite_server.send(signal.SIGSTOP)
    try:
        async with kronika.open_store(sqlite_server.url, max_connections=1, timeout=0.5) as s:
            outcomes = await asyncio.gather(
                s.head_position(), s.head_position(), return_exceptions=True
            )
        assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
        first, second = (str(o) for o in outcomes)
        assert "did not answer in time" in first
        assert "no free connection" in second
    finally:
        sqlite_server.send(signal.SIGCONT)
