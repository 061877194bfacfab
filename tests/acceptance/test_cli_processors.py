"""``kronika worker`` and ``kronika processors`` as an operator runs them, on SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

KRONIKA = Path(sys.executable).with_name("kronika")


def ok(*args: str, url: str, cwd: Path | None = None) -> str:
    """Run ``kronika --url URL ...`` and return stdout, failing the test on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    done = subprocess.run(
        [str(KRONIKA), "--url", url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        cwd=cwd,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


APP = """
from kronika import RecordedEvent
from kronika.runtime import Context, Projection, on
from kronika.domain.retry import RetryPolicy


class Ledger(Projection):
    name = "ledger"
    partitions = 2
    retry = RetryPolicy(max_attempts=2, initial_delay=0.05, max_delay=0.05, jitter=False)

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        FROZEN.write_text(str(gc.get_freeze_count()))
        if event.stream == "bad-1" and not FIXED.exists():
            raise RuntimeError("cannot handle bad-1")
        doc = await ctx.documents.get("ledger", event.stream) or {"seen": []}
        doc["seen"].append(event.data["n"])
        await ctx.documents.put("ledger", event.stream, doc)


import gc
import pathlib
FIXED = pathlib.Path(__file__).with_name("fixed")
FROZEN = pathlib.Path(__file__).with_name("frozen")
PROCESSORS = [Ledger]
"""


def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_an_operator_sees_and_clears_a_failed_key(tmp_path: Path) -> None:
    (tmp_path / "ledgerapp.py").write_text(APP, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'kronika.db'}"
    ok("migrate", url=url)
    for stream in ("good-1", "bad-1"):
        ok("streams", "append", stream, "Numbered", '{"n": 1}', url=url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    env["KRONIKA_APP"] = "ledgerapp:PROCESSORS"
    worker = subprocess.Popen(
        [str(KRONIKA), "--url", url, "worker", "--lease-ttl", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    app = ["--app", "ledgerapp:PROCESSORS"]
    try:

        def quarantined() -> bool:
            failed = lines(ok("processors", "failed", "--json", url=url))
            return any(f["key"] == "bad-1" and f["state"] == "quarantined" for f in failed)

        until(quarantined)
        # The worker froze its start-up heap before handling events (fewer objects for
        # every full collection to scan).
        assert int((tmp_path / "frozen").read_text()) > 10_000
        [failure] = lines(ok("processors", "failed", "--processor", "ledger", "--json", url=url))
        assert "RuntimeError: cannot handle bad-1" in str(failure["error"])
        dead = lines(
            ok(
                "processors",
                "dead-letters",
                "ledger",
                "bad-1",
                *app,
                "--json",
                url=url,
                cwd=tmp_path,
            )
        )
        assert [e["stream"] for e in dead] == ["bad-1"]
        [state] = lines(ok("processors", "status", *app, "--json", url=url, cwd=tmp_path))
        assert (state["name"], state["state"], state["quarantined"]) == ("ledger", "degraded", 1)

        (tmp_path / "fixed").touch()  # the handler is fixed
        ok("processors", "retry", "ledger", "bad-1", url=url)
        until(lambda: not lines(ok("processors", "failed", "--json", url=url)))
        ok("processors", "pause", "ledger", url=url)
        until(
            lambda: (
                lines(ok("processors", "status", *app, "--json", url=url, cwd=tmp_path))[0]["state"]
                == "paused"
            )
        )
        ok("processors", "resume", "ledger", url=url)
        missing = subprocess.run(
            [str(KRONIKA), "--url", url, "processors", "skip", "ledger", "good-1"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        assert missing.returncode == 1
        assert "not failed" in missing.stderr
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors
    assert "stopped" in errors


def test_an_operator_replays_a_projection_and_rolls_it_back(tmp_path: Path) -> None:
    """``kronika replay``: a job builds generation 2 while the worker serves generation 1,
    switches when caught up, and ``activate`` rolls back to generation 1 without a replay."""
    (tmp_path / "ledgerapp.py").write_text(APP, encoding="utf-8")
    (tmp_path / "fixed").touch()
    url = f"sqlite:///{tmp_path / 'kronika.db'}"
    ok("migrate", url=url)
    for n in range(5):
        ok("streams", "append", f"s-{n % 3}", "Numbered", f'{{"n": {n}}}', url=url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    env["KRONIKA_APP"] = "ledgerapp:PROCESSORS"
    worker = subprocess.Popen(
        [str(KRONIKA), "--url", url, "worker", "--lease-ttl", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    app = ["--app", "ledgerapp:PROCESSORS"]

    def generations() -> dict[object, object]:
        found = lines(ok("replay", "generations", "ledger", "--json", url=url))
        return {g["generation"]: g["live"] for g in found}

    try:
        until(lambda: generations() == {1: True})
        [job] = lines(ok("replay", "start", "ledger", *app, "--json", url=url, cwd=tmp_path))
        assert (job["generation"], job["state"]) == (2, "running")

        def completed() -> bool:
            [state] = lines(ok("replay", "status", *app, "--json", url=url, cwd=tmp_path))
            return state["state"] == "completed" and state["progress"] == 1.0

        until(completed)
        assert generations() == {2: True, 1: False}
        ok("replay", "activate", "ledger", "1", *app, url=url, cwd=tmp_path)
        assert generations() == {2: False, 1: True}
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors

    # With no worker running, a job waits; stopped and deleted, it leaves nothing behind.
    [job] = lines(ok("replay", "start", "ledger", *app, "--json", url=url, cwd=tmp_path))
    assert job["generation"] == 3
    assert generations() == {3: False, 2: False, 1: True}
    ok("replay", "stop", str(job["id"]), url=url)
    ok("replay", "delete", str(job["id"]), *app, url=url, cwd=tmp_path)
    assert generations() == {2: False, 1: True}
    assert (
        lines(ok("replay", "status", *app, "--json", url=url, cwd=tmp_path))[-1]["generation"] == 2
    )
