"""Replays over HTTP: an operator starts, follows and rolls back a blue/green replay of a
projection that a worker builds, against a real ``kronika serve`` on SQLite."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import kronika
from kronika.runtime import Worker

APP = """
from kronika import RecordedEvent
from kronika.runtime import Context, Projection, on


class Ledger(Projection):
    name = "ledger"
    partitions = 2
    collections = ("ledger",)

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        doc = await ctx.documents.get("ledger", event.stream) or {"seen": []}
        doc["seen"].append(event.data["n"])
        await ctx.documents.put("ledger", event.stream, doc)


PROCESSORS = [Ledger]
"""


async def until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_an_operator_replays_and_rolls_back_over_http(
    tmp_path: Path, start_server: Callable[..., Any]
) -> None:
    (tmp_path / "replayapp.py").write_text(APP, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("replayapp", tmp_path / "replayapp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    url = f"sqlite:///{tmp_path / 'kronika.db'}"
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    server = start_server(url, {"KRONIKA_APP": "replayapp:PROCESSORS", "PYTHONPATH": path})
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
        kronika.open_store(url) as store,
    ):
        for n in range(6):
            body = {"events": [{"type": "Numbered", "data": {"n": n}}]}
            assert (await http.post(f"/v1/streams/s-{n % 2}", json=body)).status_code == 200
        worker = Worker(store, [module.Ledger()], lease_ttl=1.0, drain_timeout=5)
        task = asyncio.create_task(worker.run())
        try:

            async def generations() -> dict[int, bool]:
                answer = await http.get("/v1/processors/ledger/generations")
                return {g["generation"]: g["live"] for g in answer.json()["generations"]}

            async def first_built() -> bool:
                return await generations() == {1: True}

            await until(first_built)
            started = await http.post("/v1/processors/ledger/replay")
            assert started.status_code == 202, started.text
            job = started.json()
            assert (job["generation"], job["state"]) == (2, "running")

            async def completed() -> bool:
                answer = (await http.get(f"/v1/replays/{job['id']}")).json()
                return bool(answer["state"] == "completed" and answer["progress"] == 1.0)

            await until(completed)
            status = (await http.get("/v1/processors/ledger")).json()
            assert status["generation"] == 2
            rolled = await http.post("/v1/processors/ledger/generations/1/activate")
            assert rolled.status_code == 200, rolled.text
            assert {g["generation"]: g["live"] for g in rolled.json()["generations"]}[1] is True
            missing = await http.post("/v1/processors/ledger/generations/99/activate")
            assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
            unknown = await http.post("/v1/processors/nobody/replay")
            assert unknown.status_code == 422
            assert "KRONIKA_APP" in unknown.json()["detail"]
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)
