"""Inline projections: a SIGKILL mid-append on SQLite, the memory backend, remote stores,
``kronika inline`` and ``--app`` loading."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from inline_app import OrderTotals, placed
from inline_support import implied, projection_for, query, table
from typer.testing import CliRunner, Result

import kronika
from kronika import NewEvent, RecordedEvent, StreamAppend
from kronika.cli import output
from kronika.cli.app import app
from kronika.errors import ConfigurationError, InlineProjectionFailed
from kronika.runtime import Context, InlineContext, InlineProjection, Projection, on
from kronika.runtime.loading import load_inline, load_processors
from kronika.store.base import StoreBase
from kronika.store.http.problems import error_from_problem

HERE = Path(__file__).parent

# -- a SIGKILL mid-append (SQLite) ------------------------------------------------------------

APPENDER = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
import kronika
from kronika import NewEvent
from inline_app import OrderTotals, placed

OrderTotals.slow = 0.0005  # most of each transaction is the handlers' time

async def main(url):
    async with kronika.open_store(url, inline=[OrderTotals()]) as store:
        print("ready", flush=True)
        round_ = 0
        while True:
            await asyncio.gather(*(
                store.append(
                    f"order-{(round_ + k) % 40}",
                    [placed(2), NewEvent("Refunded", {"amount": 1}), placed(1)],
                )
                for k in range(10)
            ))
            round_ += 1

asyncio.run(main(sys.argv[1]))
"""


def start_appender(url: str) -> subprocess.Popen[str]:
    """A process appending to ``url`` with OrderTotals registered, until killed."""
    return subprocess.Popen(
        [sys.executable, "-c", APPENDER, url, str(HERE)], stdout=subprocess.PIPE, text=True
    )


async def test_a_process_killed_mid_append_leaves_both_event_and_row_or_neither(
    sqlite_url: str,
) -> None:
    for threshold in (200, 900, 2000):
        process = start_appender(sqlite_url)
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            while query(sqlite_url, "SELECT count(*) FROM events")[0][0] < threshold:
                assert process.poll() is None, "the appending process died on its own"
                await asyncio.sleep(0.005)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
        assert process.returncode == -signal.SIGKILL
        async with kronika.open_store(sqlite_url, inline=[OrderTotals()]) as store:
            events = await store.read_all()
            assert len(events) >= threshold
            assert len(events) % 3 == 0, "an append was cut in half"
            assert table(sqlite_url) == implied(events)


# -- the memory backend: documents only ---------------------------------------------------------


class DocumentTotals(InlineProjection):
    """Documents only: the last order event per stream; a negative total fails."""

    name = "document-totals"
    collections = ("totals",)

    @on("OrderPlaced")
    def placed(self, event: RecordedEvent, ctx: InlineContext) -> None:
        if event.data["total"] < 0:
            raise ValueError("a negative total")
        previous = event.metadata.get("previous", 0)
        ctx.put_document("totals", event.stream, {"total": event.data["total"] + previous})

    @on("Cancelled")
    def cancelled(self, event: RecordedEvent, ctx: InlineContext) -> None:
        ctx.delete_document("totals", event.stream)


async def _document(store: Any, key: str) -> dict[str, Any] | None:
    async with store.processing.documents_reader() as docs:
        found: dict[str, Any] | None = await docs.get("totals", key)
        return found


async def test_memory_runs_document_projections_in_the_append(memory_url: str) -> None:
    async with kronika.open_store(memory_url, inline=[DocumentTotals()]) as store:
        assert isinstance(store, StoreBase)
        await store.append("order-1", [NewEvent("OrderPlaced", {"total": 3})])
        assert await _document(store, "order-1") == {"total": 3}
        head = await store.head_position()
        with pytest.raises(InlineProjectionFailed, match=r"'document-totals'.*a negative"):
            await store.append(
                "order-1",
                [NewEvent("Cancelled", {}), NewEvent("OrderPlaced", {"total": -1})],
            )
        with pytest.raises(InlineProjectionFailed):
            await store.append("order-2", [NewEvent("OrderPlaced", {"total": -1})])
        # Undone: no events, no stream, no document change; positions and versions go on.
        assert await store.head_position() == head
        assert [s.stream for s in await store.list_streams()] == ["order-1"]
        assert await _document(store, "order-1") == {"total": 3}
        again = await store.append("order-1", [NewEvent("Cancelled", {})])
        assert (again.next_expected_version, again.position) == (1, head + 1)
        assert await _document(store, "order-1") is None
        retried = [NewEvent("OrderPlaced", {"total": 5}, metadata={"previous": 1})]
        multi = [StreamAppend("order-3", retried)]
        assert await store.append_multi(multi) == await store.append_multi(multi)
        assert await _document(store, "order-3") == {"total": 6}
        await store.processing.clear_documents("totals")
        record = await store.rebuild_inline("document-totals")
        assert record.rebuilt_position == await store.head_position()
        assert await _document(store, "order-3") == {"total": 6}
        assert await _document(store, "order-1") is None
    async with kronika.open_store(memory_url) as plain:
        with pytest.raises(ConfigurationError, match="'document-totals' handles"):
            await plain.append("order-4", [NewEvent("OrderPlaced", {"total": 1})])


def test_memory_refuses_projections_with_sql_tables(memory_url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"keeps SQL tables.*SQLite or PostgreSQL"):
        kronika.open_store(memory_url, inline=[OrderTotals()])


def test_a_remote_store_refuses_inline_projections() -> None:
    with pytest.raises(ConfigurationError, match="run where the database is"):
        kronika.open_store("http://127.0.0.1:9", inline=[DocumentTotals()])


def test_the_error_survives_the_http_boundary() -> None:
    error = InlineProjectionFailed(
        "order-totals", "RuntimeError: boom", event_id="e-1", event_type="T", stream="s-1"
    )
    body = error.to_dict()
    assert body["projection"] == "order-totals" and body["stream"] == "s-1"
    rebuilt = error_from_problem(error.status, body, {})
    assert isinstance(rebuilt, InlineProjectionFailed)
    assert (rebuilt.projection, rebuilt.event_type, rebuilt.message) == (
        "order-totals",
        "T",
        error.message,
    )


def test_sync_handlers_only() -> None:
    with pytest.raises(ConfigurationError, match="synchronous"):

        class Async(InlineProjection):  # pyright: ignore[reportUnusedClass]
            name = "async"

            @on("X")
            async def x(self, event: RecordedEvent, ctx: InlineContext) -> None: ...


# -- --app: inline projections and processors side by side ------------------------------------


class Counter(Projection):
    """A processor listed beside an inline projection."""

    name = "counter"

    @on("OrderPlaced")
    async def placed(self, event: RecordedEvent, ctx: Context) -> None: ...


MIXED = [Counter, OrderTotals()]
"""``--app test_inline_engines:MIXED``: what a worker and ``kronika inline`` each take."""


def test_an_app_may_list_processors_and_inline_projections_together() -> None:
    assert [p.name for p in load_processors("test_inline_engines:MIXED")] == ["counter"]
    assert [p.name for p in load_inline("test_inline_engines:MIXED")] == ["order-totals"]
    assert load_inline("inline_app:SQLITE")[0].name == "order-totals"
    with pytest.raises(ConfigurationError, match="names no processors"):
        load_processors("inline_app:SQLITE")


async def test_a_worker_registers_the_inline_projections_of_its_app(sqlite_url: str) -> None:
    async with kronika.open_store(sqlite_url, inline=[OrderTotals()]) as store:
        await store.append("order-1", [NewEvent("OrderRequested", {"total": 7})])
    root = HERE.parents[1]
    command = [sys.executable, "-m", "kronika", "--url", sqlite_url, "worker"]
    worker = subprocess.Popen(  # noqa: ASYNC220 - started once, then only polled
        [*command, "--app", "tests.runtime.inline_app:WORKER"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # the reactor's append, and the inline row with it
            if "order-1" in table(sqlite_url):
                break
            assert worker.poll() is None, "the worker stopped"
            await asyncio.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(10)
    assert table(sqlite_url)["order-1"][:2] == (7, 1)


# -- kronika inline -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh store URL on each engine."""
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


def cli(*args: str) -> Result:
    """Run ``kronika ARGS`` in-process."""
    output.out.width = output.err.width = 200
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    return CliRunner().invoke(app, list(args), env={**clean, "COLUMNS": "200"})


def test_the_cli_reports_rebuilds_and_drops_inline_projections(url: str) -> None:
    reference = "inline_app:POSTGRES" if url.startswith("postgres") else "inline_app:SQLITE"

    async def seed() -> None:
        async with kronika.open_store(url) as plain:
            await plain.append("order-1", [placed(4), placed(5)])
        async with kronika.open_store(url, inline=[projection_for(url)]) as store:
            await store.append("order-2", [placed(1)])

    asyncio.run(seed())
    shown = cli("--url", url, "inline", "status")
    assert shown.exit_code == 0, shown.output
    assert "order-totals" in shown.output and "needs rebuild" in shown.output
    assert list(table(url)) == ["order-2"]

    rebuilt = cli("--url", url, "inline", "rebuild", "order-totals", "--app", reference)
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "rebuilt order-totals up to position" in rebuilt.output
    assert sorted(table(url)) == ["order-1", "order-2"]
    assert table(url)["order-1"][:2] == (9, 2)

    [row] = [
        json.loads(line)
        for line in cli("--url", url, "inline", "status", "--json").stdout.splitlines()
    ]
    assert row["state"] == "complete" and row["needs_rebuild"] is False
    assert row["types"] == ["OrderPlaced", "Poisoned", "Refunded"]
    assert row["rebuilt_position"] >= row["registered_position"] > 0

    unknown = cli("--url", url, "inline", "rebuild", "nope", "--app", reference)
    assert unknown.exit_code == 2
    assert "has no inline projection 'nope' (it has: order-totals)" in unknown.output

    dropped = cli("--url", url, "inline", "drop", "order-totals")
    assert dropped.exit_code == 0, dropped.output
    assert "no inline projections are recorded" in cli("--url", url, "inline", "status").output
    again = cli("--url", url, "inline", "drop", "order-totals")
    assert again.exit_code == 1 and "no inline projection 'order-totals'" in again.output


def test_the_cli_refuses_to_work_through_a_server() -> None:
    result = cli("--server", "http://127.0.0.1:9", "inline", "status")
    assert result.exit_code == 2
    assert "works on the database (--url)" in result.output
