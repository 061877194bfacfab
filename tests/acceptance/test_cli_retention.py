"""``kronika retention`` as an operator runs it: the dry run, --apply, batches and limits,
the effective policies, bad policy values; and ``kronika worker --retention-interval``."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

import kronika
from kronika import NewEvent
from kronika.cli import output
from kronika.cli.app import app

KRONIKA = Path(sys.executable).with_name("kronika")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in-process; ``KRONIKA_RETENTION_*`` comes only from ``env``."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KRONIKA_")}
    return CliRunner().invoke(app, list(args), env={**clean, "COLUMNS": "200", **(env or {})})


def seed(url: str) -> None:
    async def go() -> None:
        async with kronika.open_store(url) as store:
            for name in ("keep-3", "keep-8", "plain"):
                await store.append(name, [NewEvent("Happened", {"i": i}) for i in range(10)])
            await store.set_stream_metadata("keep-3", max_count=3)
            await store.set_stream_metadata("keep-8", max_count=8)
            await store.append("gone", [NewEvent("Happened", {})])
            await store.delete_stream("gone")
            await store.write_snapshot("gone", 0, {"n": 1})

    asyncio.run(go())


def log_of(url: str) -> list[tuple[str, int]]:
    async def go() -> list[tuple[str, int]]:
        async with kronika.open_store(url) as store:
            return [(e.stream, e.version) for e in await store.read_all()]

    return asyncio.run(go())


def categories(result: Result) -> dict[str, dict[str, Any]]:
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    return {c["category"]: c for c in report["categories"]}


def test_a_dry_run_prints_the_plan_and_removes_nothing(url: str) -> None:
    seed(url)
    before = log_of(url)
    result = invoke("--url", url, "retention", "apply")
    assert result.exit_code == 0, result.output
    assert "keep-3" in result.stdout
    assert "7 events" in result.stdout
    assert "versions 0-6 hidden by max_count 3" in result.stdout
    assert "1 snapshots" in result.stdout
    assert "dry run: nothing was removed" in result.stderr
    assert log_of(url) == before
    found = categories(invoke("--url", url, "retention", "apply", "--json"))
    assert {c: (v["planned"], v["done"]) for c, v in found.items()} == {
        "generations": (0, 0),
        "jobs": (0, 0),
        "dead-letters": (0, 0),
        "snapshots": (1, 0),
        "streams": (9, 0),
    }
    assert "give --app" in found["generations"]["notes"][0]
    assert log_of(url) == before


def test_apply_removes_the_plan_in_batches(url: str) -> None:
    seed(url)
    before = log_of(url)
    args = ["--url", url, "retention", "apply", "--apply", "--batch-size", "3", "--only"]
    result = invoke(*args, "streams", "--json")
    report = json.loads(result.stdout)
    assert report["dry_run"] is False
    assert [(a["target"], a["count"], a["done"]) for a in report["actions"]] == [
        ("keep-3", 7, 7),
        ("keep-8", 2, 2),
    ]
    found = categories(result)
    assert list(found) == ["streams"]
    assert (found["streams"]["done"], found["streams"]["batches"]) == (9, 4)  # 3+3+1, 2
    hidden = {("keep-3", v) for v in range(7)} | {("keep-8", 0), ("keep-8", 1)}
    assert log_of(url) == [e for e in before if e not in hidden]
    again = invoke("--url", url, "retention", "apply", "--apply")
    assert again.exit_code == 0, again.output
    assert "removed 1 of 1 rows in 1 transactions" in again.stderr  # the snapshot


def test_a_terminal_gets_a_progress_bar_unless_quiet(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(sqlite_url)
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(output, "err", terminal)
    quiet = invoke("--url", sqlite_url, "retention", "apply", "--apply", "--quiet", "--limit", "2")
    assert quiet.exit_code == 0, quiet.output
    assert "retention" not in screen.getvalue()
    shown = invoke("--url", sqlite_url, "retention", "apply", "--apply")
    assert shown.exit_code == 0, shown.output
    assert "retention" in screen.getvalue()
    assert "8/8" in screen.getvalue()  # 7 + 2 events and 1 snapshot, less the 2 done before


def test_limit_caps_a_run(url: str) -> None:
    seed(url)
    result = invoke("--url", url, "retention", "apply", "--apply", "--limit", "5", "--json")
    report = json.loads(result.stdout)
    assert (report["planned"], report["done"], report["limited"]) == (5, 5, True)
    assert [(a["target"], a["done"]) for a in report["actions"]] == [
        ("snapshots", 1),
        ("keep-3", 4),
    ]


def test_show_prints_the_effective_policies() -> None:
    env = {"KRONIKA_RETENTION_JOBS_DAYS": "7", "KRONIKA_RETENTION_GENERATIONS": "off"}
    result = invoke("retention", "show", "--set", "snapshots_days=90", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "generations": False,
        "jobs_days": 7.0,
        "dead_letters_skip_days": None,
        "snapshots_orphaned": True,
        "snapshots_days": 90.0,
        "stream_limits": True,
        "batch_size": 500,
        "interval": None,
    }
    table = invoke("retention", "show", env=env)
    assert "KRONIKA_RETENTION_DEAD_LETTERS_SKIP_DAYS" in table.stdout
    assert "never" in table.stdout


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--set", "jobs_days=-3"], {}, "--set jobs_days: must be a number of days"),
        (["--set", "batch_size=0"], {}, "--set batch_size: must be a whole number"),
        (["--set", "colour=red"], {}, "'colour' is not a retention setting"),
        (["--set", "jobs_days"], {}, "--set: expected NAME=VALUE"),
        (["--only", "everything"], {}, "--only: unknown category 'everything'"),
        ([], {"KRONIKA_RETENTION_SNAPSHOTS_DAYS": "soon"}, "KRONIKA_RETENTION_SNAPSHOTS_DAYS: "),
        ([], {"KRONIKA_RETENTION_STREAM_LIMITS": "maybe"}, "KRONIKA_RETENTION_STREAM_LIMITS: "),
        ([], {"KRONIKA_RETENTION_JOB_DAYS": "3"}, "KRONIKA_RETENTION_JOB_DAYS is not a retention"),
    ],
)
def test_bad_policy_values_are_refused_naming_the_setting(
    sqlite_url: str, args: list[str], env: dict[str, str], named: str
) -> None:
    result = invoke("--url", sqlite_url, "retention", "apply", "--apply", *args, env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert named in result.stderr.splitlines()[0]
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # nothing was opened


def test_bad_numbers_of_options_are_usage_errors(sqlite_url: str) -> None:
    for option in ("--batch-size", "--limit"):
        result = invoke("--url", sqlite_url, "retention", "apply", option, "0")
        assert result.exit_code == 2
        assert option in result.stderr


APP = """
from kronika import RecordedEvent
from kronika.runtime import Context, Projection, on


class Counter(Projection):
    name = "counter"
    collections = ("counter",)

    @on("Happened")
    async def happened(self, event: RecordedEvent, ctx: Context) -> None:
        doc = await ctx.documents.get("counter", event.stream) or {"n": 0}
        doc["n"] += 1
        await ctx.documents.put("counter", event.stream, doc)


PROCESSORS = [Counter]
"""


def test_a_worker_applies_retention_on_a_schedule(sqlite_url: str, tmp_path: Path) -> None:
    seed(sqlite_url)
    (tmp_path / "retention_app.py").write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    env["KRONIKA_RETENTION_BATCH_SIZE"] = "4"
    worker = subprocess.Popen(
        [str(KRONIKA), "--url", sqlite_url, "worker", "--app", "retention_app:PROCESSORS",
         "--retention-interval", "0.3", "--lease-ttl", "2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while [s for s, _ in log_of(sqlite_url)].count("keep-3") != 3:
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker did not truncate keep-3"
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert [s for s, _ in log_of(sqlite_url)].count("keep-8") == 8
    assert '"action": "retention"' in out or "retention applied" in out + err
