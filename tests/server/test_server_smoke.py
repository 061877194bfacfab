"""``kronika smoke URL`` against real ``kronika serve`` processes: a passing round trip
through a projection, and the failures an operator must see (H3, E12)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import kronika
from kronika.runtime import Worker
from kronika.runtime.worker import processing_of
from kronika.server.security import generate_key

KRONIKA = str(Path(sys.executable).with_name("kronika"))
StartServer = Callable[..., Any]

APP = """
from kronika import RecordedEvent
from kronika.runtime import Context, Projection, on


class SmokeCounter(Projection):
    name = "smoke-counter"
    partitions = 2

    @on("SmokeTested")
    async def tested(self, event: RecordedEvent, ctx: Context) -> None:
        doc = await ctx.documents.get("smoke", "count") or {"count": 0}
        doc["count"] += 1
        await ctx.documents.put("smoke", "count", doc)


PROCESSORS = [SmokeCounter]
"""


def smoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``kronika smoke ARGS`` in a clean environment plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    return subprocess.run(
        [KRONIKA, "smoke", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "COLUMNS": "200", **(env or {})},
        check=False,
    )


def steps(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    report = json.loads(result.stdout)
    return {step["step"]: step for step in report["steps"]}


@pytest.fixture
def app(tmp_path: Path) -> ModuleType:
    (tmp_path / "smokeapp.py").write_text(APP, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("smokeapp", tmp_path / "smokeapp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server(start_server: StartServer, sqlite_url: str, tmp_path: Path, app: ModuleType) -> Any:
    """A server that knows the application's processors (``KRONIKA_APP``)."""
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return start_server(sqlite_url, {"KRONIKA_APP": "smokeapp:PROCESSORS", "PYTHONPATH": path})


@pytest.fixture
async def worker(app: ModuleType, sqlite_url: str) -> AsyncIterator[Worker]:
    """The application's worker, on the server's database."""
    async with kronika.open_store(sqlite_url) as store:
        running = Worker(store, [app.SmokeCounter()], lease_ttl=1.0, drain_timeout=5)
        task = asyncio.create_task(running.run())
        yield running
        running.stop()
        await asyncio.wait_for(task, 15)


async def test_a_round_trip_through_a_projection_passes(server: Any, worker: Worker) -> None:
    args = (server.url, "--processor", "smoke-counter", "--observability", "--json")
    result = await asyncio.to_thread(smoke, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["stream"].startswith("smoke-")
    seen = steps(result)
    assert list(seen) == [
        "ready", "append", "read", "project", "metrics", "correlation", "metrics-moved"
    ]  # fmt: skip
    assert {s["status"] for s in seen.values()} == {"ok"}, seen
    assert "smoke-counter is at position" in seen["project"]["detail"]
    async with kronika.open_store(server.url) as store:  # through the HTTP client
        [event] = await store.read_stream(report["stream"])
    assert str(event.id) == report["event_id"] and event.type == "SmokeTested"


async def test_the_table_shows_each_step(server: Any, worker: Worker) -> None:
    result = await asyncio.to_thread(smoke, server.url)
    assert result.returncode == 0, result.stdout
    for step in ("ready", "append", "read", "project", "metrics"):
        assert step in result.stdout
    assert "no --processor named" in result.stdout  # the skipped step says why
    assert result.stdout.strip().splitlines()[-1].startswith("PASS: stream smoke-")


async def test_a_processor_that_never_catches_up_fails_the_run(
    server: Any, sqlite_url: str
) -> None:
    async with kronika.open_store(sqlite_url) as store:  # it ran once; no worker runs it now
        await processing_of(store).register_processor("smoke-counter", 2)
    args = (server.url, "--processor", "smoke-counter", "--timeout", "1", "--json")
    result = await asyncio.to_thread(smoke, *args)
    assert result.returncode == 1
    seen = steps(result)
    assert seen["append"]["status"] == "ok" and seen["read"]["status"] == "ok"
    assert seen["project"]["status"] == "fail"
    assert "did not reach position" in seen["project"]["detail"]
    assert seen["metrics"]["status"] == "ok"


async def test_a_server_with_authentication_refuses_a_smoke_test_without_token(
    start_server: StartServer, sqlite_url: str
) -> None:
    key = generate_key().token
    env = {"KRONIKA_AUTH_ENABLED": "true", "KRONIKA_BOOTSTRAP_ADMIN_KEY": key}
    secured = start_server(sqlite_url, env)
    refused = await asyncio.to_thread(smoke, secured.url, "--json")
    assert refused.returncode == 1
    seen = steps(refused)
    assert seen["ready"]["status"] == "ok"  # /readyz is public
    assert seen["append"]["status"] == "fail" and "401" in seen["append"]["detail"]
    assert seen["read"]["status"] == "skipped" and seen["project"]["status"] == "skipped"
    assert seen["metrics"]["status"] == "fail"
    allowed = await asyncio.to_thread(
        smoke, secured.url, "--json", "--observability", env={"KRONIKA_TOKEN": key}
    )
    assert allowed.returncode == 0, allowed.stdout
    assert steps(allowed)["metrics-moved"]["status"] == "ok"


def test_bad_input_exits_2() -> None:
    missing = smoke()
    assert missing.returncode == 2 and "URL" in missing.stderr
    assert smoke("ftp://example.com").returncode == 2
    empty = smoke("http://127.0.0.1:9", "--type", " ")
    assert empty.returncode == 2 and "--type" in empty.stderr
    unreadable = smoke("https://127.0.0.1:9", "--cacert", "/nonexistent/ca.pem")
    assert unreadable.returncode == 2 and "--cacert" in unreadable.stderr


def test_an_unreachable_server_fails_every_step() -> None:
    result = smoke("http://127.0.0.1:9", "--timeout", "2", "--json")
    assert result.returncode == 1
    seen = steps(result)
    assert seen["ready"]["status"] == "fail" and "ConnectError" in seen["ready"]["detail"]
    assert seen["read"]["status"] == "skipped"
