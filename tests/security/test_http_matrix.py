"""Authentication and authorisation over HTTP, against a real ``kronika serve`` process.

The matrix walks the server's own route table (``endpoints_for``), so a route added later
is covered without editing this file: every non-public route answers 401 without
credentials (and with bad ones), 403 to a role lacking its permission, and neither to a
role that has it; Server-Sent Events routes included. Keys are created with the public
API in the server's database before it starts; the admin key is bootstrapped from
``KRONIKA_BOOTSTRAP_ADMIN_KEY``; a JWT (HS256) goes through the same chain.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from kronika import open_store
from kronika.server.app import endpoints_for
from kronika.server.principal import Permission, Role
from kronika.server.routing import Endpoint
from kronika.server.security import create_key, generate_key
from kronika.server.settings import ServerSettings

KRONIKA = str(Path(sys.executable).with_name("kronika"))
JWT_SECRET = "j" * 40
GRANTS = {
    Role.READER: {Permission.READ},
    Role.WRITER: {Permission.READ, Permission.WRITE},
    Role.OPERATOR: {Permission.READ, Permission.OPERATE},
    Role.ADMIN: set(Permission),
}
SUBSTITUTES = {"{stream}": "orders-1", "{name}": "some-processor"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``kronika serve`` with authentication on, stopped with SIGTERM."""

    def __init__(self, database_url: str, log: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        clean = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
        command = [KRONIKA, "serve", "--port", str(self.port), "--database-url", database_url]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env={**clean, **env}
            )
        self._wait_live()

    def _wait_live(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"kronika serve exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/livez", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"kronika serve did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Setup:
    """A running server and a credential per role (keys, and one JWT)."""

    def __init__(self, server: Server, tokens: dict[str, str], key_ids: dict[str, str]) -> None:
        self.server = server
        self.tokens = tokens
        self.key_ids = key_ids


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    tokens, key_ids = _create_keys(url)
    admin = generate_key().token
    tokens["admin"] = admin
    tokens["jwt-writer"] = _jwt(["writer"])
    env = {
        "KRONIKA_AUTH_ENABLED": "true",
        "KRONIKA_BOOTSTRAP_ADMIN_KEY": admin,
        "KRONIKA_AUTH_KEY_CACHE_TTL": "1",
        "KRONIKA_JWT_SECRET": JWT_SECRET,
        "KRONIKA_JWT_ISSUER": "https://idp.test",
        "KRONIKA_JWT_AUDIENCE": "kronika-test",
        "KRONIKA_RATE_LIMIT": "100000",
        "KRONIKA_RATE_BURST": "100000",
        "KRONIKA_DRAIN_TIMEOUT": "2",
    }
    server = Server(url, tmp_path / "serve.log", env)
    try:
        yield Setup(server, tokens, key_ids)
    finally:
        server.stop()


def _create_keys(url: str) -> tuple[dict[str, str], dict[str, str]]:
    import asyncio

    async def make() -> tuple[dict[str, str], dict[str, str]]:
        tokens, ids = {}, {}
        async with open_store(url) as store:
            for role in ("reader", "writer", "operator"):
                tokens[role], record = await create_key(store, [role], name=role)
                ids[role] = record.id
            tokens["orders-writer"], record = await create_key(
                store, ["writer"], categories=["orders"]
            )
            ids["orders-writer"] = record.id
        return tokens, ids

    return asyncio.run(make())


def _jwt(roles: list[str], **changes: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "ci-bot",
        "iss": "https://idp.test",
        "aud": "kronika-test",
        "exp": now + 600,
        "roles": roles,
        **changes,
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def _routes() -> list[Endpoint]:
    return [e for e in endpoints_for(ServerSettings.checked()) if not e.public]


def _status(http: httpx.Client, endpoint: Endpoint, token: str | None, **params: str) -> int:
    """The status ``endpoint`` answers; an event stream is closed once its head arrives."""
    path = endpoint.path
    for placeholder, value in SUBSTITUTES.items():
        path = path.replace(placeholder, value)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {} if endpoint.method in {"POST", "PUT", "PATCH"} else None
    with http.stream(
        endpoint.method, path, headers=headers, json=body, params=params or None
    ) as answer:
        if answer.status_code in (401, 403):
            assert answer.headers["content-type"].startswith("application/problem+json")
        return answer.status_code


def test_the_route_table_has_protected_routes_including_sse() -> None:
    routes = _routes()
    assert len(routes) >= 20
    assert any(e.response == "text/event-stream" for e in routes)
    assert {e.permission for e in routes} == set(Permission)
    needs = {f"{e.method} {e.path}": e.permission for e in routes}
    assert needs["POST /v1/keys"] is needs["GET /v1/keys"] is needs["DELETE /v1/keys/{id}"]
    assert needs["DELETE /v1/keys/{id}"] is Permission.ADMIN
    assert needs["GET /v1/streams"] is needs["GET /v1/failed"] is Permission.READ


def test_every_route_needs_credentials_and_the_right_role(setup: Setup) -> None:
    failures: list[str] = []
    with httpx.Client(base_url=setup.server.url, timeout=10) as http:
        for endpoint in _routes():
            where = f"{endpoint.method} {endpoint.path}"
            for token in (None, "kr_0123456789abcdef_" + "x" * 43, "not-a-jwt"):
                status = _status(http, endpoint, token)
                if status != 401:
                    failures.append(f"{where} with {token!r}: {status}, expected 401")
            for role, granted in GRANTS.items():
                status = _status(http, endpoint, setup.tokens[role.value])
                allowed = endpoint.permission in granted
                if allowed and status in (401, 403):
                    failures.append(f"{where} as {role.value}: {status}, expected access")
                if not allowed and status != 403:
                    failures.append(f"{where} as {role.value}: {status}, expected 403")
            status = _status(http, endpoint, setup.tokens["jwt-writer"])
            jwt_allowed = endpoint.permission in GRANTS[Role.WRITER]
            if jwt_allowed == (status in (401, 403)):
                failures.append(f"{where} as a writer JWT: {status}")
    assert not failures, "\n".join(failures)


def test_category_limits_hold_over_http(setup: Setup) -> None:
    token = setup.tokens["orders-writer"]
    auth = {"Authorization": f"Bearer {token}"}
    body = {"expected_version": "any", "events": [{"type": "Placed", "data": {}}]}
    with httpx.Client(base_url=setup.server.url, timeout=10, headers=auth) as http:
        assert http.post("/v1/streams/orders-7", json=body).status_code == 200
        refused = http.post("/v1/streams/users-7", json=body)
        assert refused.status_code == 403
        assert "users" in refused.json()["detail"]
        event = {"type": "Placed", "data": {}}
        multi = {
            "streams": [
                {"stream": "orders-8", "expected_version": "any", "events": [event]},
                {"stream": "users-8", "expected_version": "any", "events": [event]},
            ]
        }
        assert http.post("/v1/append", json=multi).status_code == 403
        assert http.get("/v1/streams/orders-8").json()["events"] == []  # nothing half-written
        assert http.get("/v1/all").status_code == 403
        assert http.get("/v1/all", params={"categories": "orders"}).status_code == 200
        assert http.get("/v1/streams").status_code == 403
        assert http.get("/v1/streams", params={"category": "users"}).status_code == 403
        listed = http.get("/v1/streams", params={"category": "orders"})
        assert [s["stream"] for s in listed.json()["streams"]] == ["orders-7"]
        with http.stream("GET", "/v1/all/live", params={"categories": "users"}) as live:
            assert live.status_code == 403
        with http.stream("GET", "/v1/streams/users-1/live") as live:
            assert live.status_code == 403


def test_401_messages_say_what_is_wrong(setup: Setup) -> None:
    with httpx.Client(base_url=setup.server.url, timeout=10) as http:
        answers = {
            "missing": http.get("/v1/head"),
            "malformed": http.get("/v1/head", headers={"Authorization": "Bearer kr_x"}),
            "expired jwt": http.get(
                "/v1/head", headers={"Authorization": f"Bearer {_jwt(['reader'], exp=1)}"}
            ),
        }
    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 401)
    assert "missing credentials" in answers["missing"].json()["detail"]
    assert "malformed API key" in answers["malformed"].json()["detail"]
    assert "expired" in answers["expired jwt"].json()["detail"]


def test_a_revoked_key_is_refused_within_the_cache_time(setup: Setup) -> None:
    token = setup.tokens["reader"]
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=setup.server.url, timeout=10, headers=auth) as http:
        assert http.get("/v1/head").status_code == 200
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRONIKA_")}
        url = _database_url(setup)
        revoked = subprocess.run(
            [KRONIKA, "--url", url, "keys", "revoke", setup.key_ids["reader"]],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 15  # the cache time is 1 s; leave room for a busy machine
        status = 200
        while status == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
            status = http.get("/v1/head").status_code
        assert status == 401
        assert "revoked" in http.get("/v1/head").json()["detail"]


def _database_url(setup: Setup) -> str:
    args = setup.server.process.args
    assert isinstance(args, list)
    return str(args[args.index("--database-url") + 1])
