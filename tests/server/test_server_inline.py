"""``kronika serve`` with ``KRONIKA_APP`` runs the app's inline projections in its appends:
an append over HTTP updates the read model in the same transaction (K8)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

RUNTIME_TESTS = Path(__file__).resolve().parents[1] / "runtime"


def _totals(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT stream, total FROM order_totals").fetchall())


def test_appends_over_http_update_the_apps_inline_projection(
    tmp_path: Path, start_server: Callable[..., Any]
) -> None:
    path = tmp_path / "inline.db"
    pythonpath = os.pathsep.join([str(RUNTIME_TESTS), os.environ.get("PYTHONPATH", "")])
    server = start_server(
        f"sqlite:///{path}", {"KRONIKA_APP": "inline_app:SQLITE", "PYTHONPATH": pythonpath}
    )
    body = {"events": [{"type": "OrderPlaced", "data": {"total": 12}}]}
    answer = httpx.post(f"{server.url}/v1/streams/order-1", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    assert _totals(path) == {"order-1": 12}  # already there when the append answered

    poisoned = {"events": [{"type": "Poisoned", "data": {}}]}
    refused = httpx.post(f"{server.url}/v1/streams/order-2", json=poisoned, timeout=10)
    assert refused.status_code == 500, refused.text
    assert refused.json()["code"] == "inline_projection_failed"
    assert "order-totals" in refused.json()["detail"]
    nothing = httpx.get(f"{server.url}/v1/streams/order-2", timeout=10)
    assert nothing.json()["events"] == []  # nothing was stored
