"""The HTTP API of a real ``kronika serve`` process, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

StartServer = Callable[..., Any]
KRONIKA = str(Path(sys.executable).with_name("kronika"))


def _event(kind: str = "Happened", **data: object) -> dict[str, object]:
    return {"type": kind, "data": dict(data)}


def test_append_and_read_round_trip(start_server: StartServer, store_url: str) -> None:
    server = start_server(store_url)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        event_id = str(uuid.uuid4())
        first = {"id": event_id, "type": "Opened", "data": {"n": 1}, "tags": ["t:1"]}
        body = {"expected_version": "no_stream", "events": [first, _event(n=2)]}
        answer = http.post("/v1/streams/order-1", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["next_expected_version"] == 1
        last_position = answer.json()["position"]

        again = http.post(
            "/v1/streams/order-1", json={"expected_version": "any", "events": [first]}
        )
        assert again.status_code == 200, "a retried event id is accepted, not stored twice"

        events = http.get("/v1/streams/order-1").json()["events"]
        assert [(e["version"], e["type"], e["data"]) for e in events] == [
            (0, "Opened", {"n": 1}),
            (1, "Happened", {"n": 2}),
        ]
        assert events[0]["id"] == event_id
        assert events[0]["tags"] == ["t:1"]
        assert events[0]["recorded_at"].endswith("+00:00")
        backwards = http.get("/v1/streams/order-1", params={"backwards": "true", "limit": 1})
        assert [e["version"] for e in backwards.json()["events"]] == [1]

        assert events[1]["position"] == last_position
        assert http.get("/v1/head").json() == {"position": last_position}
        by_type = http.get("/v1/all", params={"types": "Opened,Other"}).json()["events"]
        assert [e["id"] for e in by_type] == [event_id]
        by_tag = http.get("/v1/all", params=[("tags", "t:1")]).json()["events"]
        assert [e["id"] for e in by_tag] == [event_id]

        info = http.get("/v1/streams/order-1/info").json()
        assert (info["stream"], info["version"], info["state"]) == ("order-1", 1, "active")
        meta = http.put("/v1/streams/order-1/metadata", json={"max_count": 5, "metadata": {"a": 1}})
        assert meta.json()["max_count"] == 5
        assert meta.json()["metadata"] == {"a": 1}

        snapshot = {"version": 1, "state": {"total": 3}, "schema_version": 2}
        assert http.put("/v1/streams/order-1/snapshot", json=snapshot).status_code == 204
        assert http.get("/v1/streams/order-1/snapshot").json()["state"] == {"total": 3}

        assert (
            http.post("/v1/streams/order-1/truncate", json={"before_version": 1}).status_code == 204
        )
        assert [e["version"] for e in http.get("/v1/streams/order-1").json()["events"]] == [1]


def test_stream_names_with_slashes_and_spaces_are_path_segments(
    start_server: StartServer, sqlite_url: str
) -> None:
    server = start_server(sqlite_url)
    name = "odd/name with spaces/info"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        path = f"/v1/streams/{quote(name, safe='')}"
        assert http.post(path, json={"events": [_event()]}).status_code == 200
        assert http.get(path).json()["events"][0]["stream"] == name
        assert http.get(f"{path}/info").json()["stream"] == name


def test_multi_stream_append_is_atomic(start_server: StartServer, sqlite_url: str) -> None:
    server = start_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        body = {
            "streams": [
                {"stream": "a-1", "expected_version": "no_stream", "events": [_event()]},
                {"stream": "b-1", "expected_version": "no_stream", "events": [_event(), _event()]},
            ]
        }
        answer = http.post("/v1/append", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["streams"] == [  # positions: each stream's last event
            {"stream": "a-1", "next_expected_version": 0, "position": 1},
            {"stream": "b-1", "next_expected_version": 1, "position": 3},
        ]
        assert answer.json()["position"] == 3
        conflict = http.post("/v1/append", json=body)
        assert conflict.status_code == 409
        assert len(http.get("/v1/all").json()["events"]) == 3


def test_every_error_status_is_problem_json(start_server: StartServer, store_url: str) -> None:
    server = start_server(store_url, {"KRONIKA_MAX_BODY_BYTES": "2048"})
    with httpx.Client(base_url=server.url, timeout=10) as http:
        http.post("/v1/streams/s-1", json={"events": [_event()]})

        conflict = http.post("/v1/streams/s-1", json={"expected_version": 5, "events": [_event()]})
        assert conflict.status_code == 409
        assert conflict.headers["content-type"] == "application/problem+json"
        problem = conflict.json()
        assert problem["code"] == "wrong_expected_version"
        assert (problem["expected_version"], problem["actual_version"]) == (5, 0)
        assert problem["type"].endswith("/wrong_expected_version")

        invalid = http.post(
            "/v1/streams/s-1",
            json={"expected_version": "sometimes", "events": [{"type": "", "data": []}]},
        )
        assert invalid.status_code == 422
        fields = {e["field"] for e in invalid.json()["errors"]}
        assert {"expected_version", "events[0].data"} <= fields, invalid.json()
        empty_type = http.post("/v1/streams/s-1", json={"events": [{"type": " ", "data": {}}]})
        assert empty_type.status_code == 422
        assert [e["field"] for e in empty_type.json()["errors"]] == ["events[0].type"]
        not_json = http.post("/v1/streams/s-1", content=b"{nope")
        assert not_json.status_code == 422
        assert not_json.json()["errors"][0]["field"] == "body"
        bad_query = http.get("/v1/streams/s-1", params={"limit": "lots"})
        assert bad_query.json()["errors"] == [
            {"field": "limit", "message": "must be an integer, got 'lots'"}
        ]

        assert http.get("/v1/streams/never-1/info").json()["code"] == "stream_not_found"
        missing_snapshot = http.get("/v1/streams/s-1/snapshot")
        assert (missing_snapshot.status_code, missing_snapshot.json()["code"]) == (
            404,
            "snapshot_not_found",
        )
        assert http.get("/v1/nothing-here").status_code == 404

        big = {"events": [_event(blob="x" * 4096)]}
        assert http.post("/v1/streams/s-1", json=big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
            for _ in range(8):
                yield b" " * 512

        streamed = http.post("/v1/streams/s-1", content=chunks())
        assert streamed.status_code == 413
        assert streamed.json()["code"] == "payload_too_large"

        assert http.delete("/v1/streams/s-1", params={"hard": "true"}).status_code == 204
        gone = http.get("/v1/streams/s-1")
        assert (gone.status_code, gone.json()["code"]) == (410, "stream_deleted")
        assert http.post("/v1/streams/s-1", json={"events": [_event()]}).status_code == 410


def test_security_headers_and_openapi(start_server: StartServer, sqlite_url: str) -> None:
    server = start_server(sqlite_url)
    answer = httpx.get(f"{server.url}/v1/head")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "strict-transport-security" not in answer.headers, "HSTS only over TLS"
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/v1/streams/{stream}" in document["paths"]


@pytest.mark.parametrize("burst", [3])
def test_a_burst_beyond_the_rate_limit_gets_429_with_retry_after(
    start_server: StartServer, sqlite_url: str, burst: int
) -> None:
    env = {"KRONIKA_RATE_LIMIT": "0.5", "KRONIKA_RATE_BURST": str(burst)}
    server = start_server(sqlite_url, env)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        answers = [http.get("/v1/head") for _ in range(burst + 3)]
    statuses = [a.status_code for a in answers]
    assert statuses[:burst] == [200] * burst
    assert statuses[burst:] == [429] * 3
    refused = answers[-1]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["code"] == "rate_limited"
    assert httpx.get(f"{server.url}/livez").status_code == 200, "probes are not rate limited"


def test_maintenance_switch_forces_readyz_to_503(
    start_server: StartServer, sqlite_url: str
) -> None:
    server = start_server(sqlite_url)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/readyz").status_code == 200
        assert http.post("/v1/admin/maintenance", json={"enabled": True}).status_code == 200
        down = http.get("/readyz")
        assert down.status_code == 503
        assert down.json()["failing"] == ["maintenance"]
        assert int(down.headers["retry-after"]) >= 1
        http.post("/v1/admin/maintenance", json={"enabled": False})
        assert http.get("/readyz").status_code == 200
        status = http.get("/status").json()
        assert status["engine"] == "sqlite"
        assert status["schema"]["current"] == status["schema"]["latest"]


def test_status_redacts_the_database_password(start_server: StartServer, postgres_url: str) -> None:
    url = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@", 1)
    server = start_server(url)
    status = httpx.get(f"{server.url}/status").json()
    assert "hunter2" not in str(status)
    assert ":***@" in status["database_url"]
    assert status["engine"] == "postgresql"


def test_production_mode_refuses_unsafe_settings() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
    env |= {"KRONIKA_CORS_ORIGINS": "*", "KRONIKA_AUTH_ENABLED": "false"}
    done = subprocess.run(
        [KRONIKA, "serve", "--mode", "production", "--database-url", "memory://"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 4, done.stderr
    for expected in ("authentication is off", "CORS", "memory store", "neither TLS"):
        assert any(expected in line for line in lines), (expected, done.stderr)
