"""Remote administration (H1, F4): the ``kronika`` command against a real ``kronika serve``
with authentication on, as an operator runs it with ``KRONIKA_SERVER`` and ``KRONIKA_TOKEN``.

A worker subprocess runs the application's projection on the server's database; one of its
keys fails until the handler is "fixed". Every command goes through the server's HTTP API;
where the same command can run on the database, its output is compared with the local one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kronika.server.security import generate_key

KRONIKA = str(Path(sys.executable).with_name("kronika"))
StartServer = Callable[..., Any]

APP = """
import pathlib

from kronika import RecordedEvent
from kronika.domain.retry import RetryPolicy
from kronika.runtime import Context, Projection, on

FIXED = pathlib.Path(__file__).with_name("fixed")


class Ledger(Projection):
    name = "ledger"
    partitions = 2
    collections = ("ledger",)
    retry = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.05, jitter=False)

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        if event.stream == "bad-1" and not FIXED.exists():
            raise RuntimeError("cannot handle bad-1")
        doc = await ctx.documents.get("ledger", event.stream) or {"seen": []}
        doc["seen"].append(event.data["n"])
        await ctx.documents.put("ledger", event.stream, doc)


PROCESSORS = [Ledger]
"""


class Cli:
    """Runs ``kronika`` in a subprocess with a clean environment plus ``env``."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.cwd = cwd
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
        self.env = {**clean, "COLUMNS": "200", **env}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KRONIKA, *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.cwd,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout

    def lines(self, *args: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.ok(*args, "--json").splitlines() if line]

    def refused(self, code: int, *args: str) -> str:
        """Run a command that must fail with ``code`` and one clean ``error:`` line."""
        done = self.run(*args)
        assert done.returncode == code, f"{args}: exit {done.returncode}\n{done.stderr}"
        assert done.stderr.startswith("error: "), done.stderr
        assert "Traceback" not in done.stderr
        return done.stderr


def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


@pytest.fixture
def deployment(tmp_path: Path, start_server: StartServer, sqlite_url: str) -> dict[str, Any]:
    """A server with authentication on, the app loaded, and its bootstrap admin key."""
    (tmp_path / "ledgerapp.py").write_text(APP, encoding="utf-8")
    admin = generate_key().token
    env = {
        "KRONIKA_AUTH_ENABLED": "true",
        "KRONIKA_BOOTSTRAP_ADMIN_KEY": admin,
        "KRONIKA_AUTH_KEY_CACHE_TTL": "1",
        "KRONIKA_APP": "ledgerapp:PROCESSORS",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "KRONIKA_RATE_LIMIT": "0",
    }
    server = start_server(sqlite_url, env)
    return {"server": server.url, "admin": admin, "url": sqlite_url, "dir": tmp_path}


def _worker(deployment: dict[str, Any]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    env["KRONIKA_APP"] = "ledgerapp:PROCESSORS"
    return subprocess.Popen(
        [KRONIKA, "--url", deployment["url"], "worker", "--lease-ttl", "1"],
        cwd=deployment["dir"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(worker: subprocess.Popen[str]) -> None:
    worker.send_signal(signal.SIGTERM)
    _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors


def test_an_operator_administers_a_server_remotely(deployment: dict[str, Any]) -> None:
    where, folder = deployment["server"], deployment["dir"]
    admin = Cli(folder, KRONIKA_SERVER=where, KRONIKA_TOKEN=deployment["admin"])
    local = Cli(folder, KRONIKA_DATABASE_URL=deployment["url"])

    # Keys: an admin creates least-privilege keys through the server.
    operator_key = admin.lines("keys", "create", "--role", "operator", "--name", "on-call")[0]
    reader_key = admin.lines("keys", "create", "--role", "reader", "--expires-in", "1d")[0]
    assert reader_key["key"].startswith("kr_") and reader_key["expires_at"]
    listed = admin.lines("keys", "list")
    assert [k["name"] for k in listed] == ["bootstrap-admin", "on-call", ""]
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    operator = Cli(folder, KRONIKA_SERVER=where, KRONIKA_TOKEN=operator_key["key"])
    reader = Cli(folder, KRONIKA_SERVER=where, KRONIKA_TOKEN=reader_key["key"])

    # Streams: append, list, read and tail through the server.
    for stream in ("good-1", "bad-1", "other-1"):
        admin.ok("streams", "append", stream, "Numbered", '{"n": 1}')
    assert [s["stream"] for s in reader.lines("streams", "list")] == ["bad-1", "good-1", "other-1"]
    assert reader.lines("streams", "list", "--category", "good") == local.lines(
        "streams", "list", "--category", "good"
    )
    page = reader.run("streams", "list", "--limit", "2")
    assert "more may follow: --after good-1" in page.stderr
    assert reader.ok("streams", "read", "good-1") == local.ok("streams", "read", "good-1")
    tailed = reader.lines(
        "events", "tail", "--from-position", "0", "--category", "bad", "--limit", "1"
    )
    assert [e["stream"] for e in tailed] == ["bad-1"]

    worker = _worker(deployment)
    try:
        _processors(reader, operator, local, folder)
        _replays(operator, local)
    finally:
        _stop(worker)
    _unfinished_replay(operator, local)

    # Revoking the reader's key locks it out within the key cache time.
    admin.ok("keys", "revoke", reader_key["id"])
    until(lambda: reader.run("streams", "list").returncode != 0)
    assert "revoked" in reader.refused(2, "streams", "list")


def _processors(reader: Cli, operator: Cli, local: Cli, folder: Path) -> None:
    def quarantined() -> bool:
        failed = reader.lines("processors", "failed")
        return any(f["key"] == "bad-1" and f["state"] == "quarantined" for f in failed)

    until(quarantined)
    [failure] = reader.lines("processors", "failed", "--processor", "ledger")
    assert "RuntimeError: cannot handle bad-1" in failure["error"]
    # The same rows as on the database, in the table and in JSON.
    assert reader.ok("processors", "failed") == local.ok("processors", "failed")
    assert reader.lines("processors", "failed") == local.lines("processors", "failed")
    [state] = reader.lines("processors", "status")
    assert (state["name"], state["state"], state["quarantined"]) == ("ledger", "degraded", 1)
    dead = reader.lines("processors", "dead-letters", "ledger", "bad-1")
    assert dead == local.lines("processors", "dead-letters", "ledger", "bad-1")
    assert [e["stream"] for e in dead] == ["bad-1"]

    refused = reader.refused(2, "processors", "retry", "ledger", "bad-1")
    assert "lacks the 'operate' permission (roles with it: operator, admin)" in refused
    (folder / "fixed").touch()
    operator.ok("processors", "retry", "ledger", "bad-1")
    until(lambda: not reader.lines("processors", "failed"))
    assert "not failed" in operator.refused(1, "processors", "skip", "ledger", "good-1")
    operator.ok("processors", "pause", "ledger")
    until(lambda: reader.lines("processors", "status")[0]["state"] == "paused")
    operator.ok("processors", "resume", "ledger")
    until(lambda: reader.lines("processors", "status")[0]["state"] == "running")


def _replays(operator: Cli, local: Cli) -> None:
    def generations() -> dict[int, bool]:
        return {
            g["generation"]: g["live"] for g in operator.lines("replay", "generations", "ledger")
        }

    [job] = operator.lines("replay", "start", "ledger")
    assert (job["generation"], job["state"]) == (2, "running")

    def completed() -> bool:
        states = operator.lines("replay", "status")
        return bool(states[-1]["state"] == "completed" and states[-1]["progress"] == 1.0)

    until(completed)
    assert generations() == {2: True, 1: False}
    operator.ok("replay", "activate", "ledger", "1")
    assert generations() == {2: False, 1: True}
    assert operator.ok("replay", "generations", "ledger") == local.ok(
        "replay", "generations", "ledger"
    )


def _unfinished_replay(operator: Cli, local: Cli) -> None:
    """With no worker running a job waits; stopped, resumed and deleted, it goes away."""
    [job] = operator.lines("replay", "start", "ledger")
    assert job["generation"] == 3
    operator.ok("replay", "stop", job["id"])
    assert operator.lines("replay", "status")[-1]["state"] == "stopped"
    operator.ok("replay", "resume", job["id"])
    operator.ok("replay", "stop", job["id"])
    operator.ok("replay", "delete", job["id"])
    assert [j["generation"] for j in local.lines("replay", "status")] == [2]
    refused = local.refused(2, "replay", "start", "ledger")
    assert "--app" in refused and "--server" in refused


def test_the_maintenance_switch_and_credential_errors(deployment: dict[str, Any]) -> None:
    where, folder = deployment["server"], deployment["dir"]
    admin = Cli(folder, KRONIKA_SERVER=where, KRONIKA_TOKEN=deployment["admin"])
    made = admin.lines("keys", "create", "--role", "operator")[0]
    operator = Cli(folder, KRONIKA_SERVER=where, KRONIKA_TOKEN=made["key"])

    assert (
        admin.ok("maintenance", "on")
        == f"{where}: maintenance on; /readyz: not ready (maintenance)\n"
    )
    assert httpx.get(f"{where}/readyz", timeout=10).status_code == 503
    assert operator.lines("maintenance", "status") == [
        {"maintenance": True, "ready": False, "failing": ["maintenance"]}
    ]
    assert "'admin' permission" in operator.refused(2, "maintenance", "off")
    admin.ok("maintenance", "off")
    assert httpx.get(f"{where}/readyz", timeout=10).status_code == 200

    anonymous = Cli(folder, KRONIKA_SERVER=where)
    message = anonymous.refused(2, "processors", "status")
    assert f"the server at {where} refused: missing credentials" in message
    assert "--token or KRONIKA_TOKEN" in message
    wrong = Cli(folder, KRONIKA_SERVER=where, KRONIKA_TOKEN="kr_0123456789abcdef_" + "x" * 43)
    assert "check the key or token" in wrong.refused(2, "keys", "list")
    assert "'admin' permission" in operator.refused(2, "keys", "list")

    gone = Cli(folder, KRONIKA_SERVER="http://127.0.0.1:9", KRONIKA_TOKEN=made["key"])
    assert "cannot reach the Kronika server at http://127.0.0.1:9" in gone.refused(
        1, "replay", "status"
    )
    local = Cli(folder, KRONIKA_DATABASE_URL=deployment["url"])
    assert "--server" in local.refused(2, "maintenance", "on")
    bad = Cli(folder, KRONIKA_SERVER="postgresql://db/kronika")
    assert "--server must look like http://HOST:PORT" in bad.refused(2, "streams", "list")
