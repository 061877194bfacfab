"""Fine-grained checks of the app (no subprocess): the route table, settings, limits, docs."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from kronika.errors import ConfigurationError, Forbidden
from kronika.server.app import create_app, endpoints_for
from kronika.server.clientip import client_ip
from kronika.server.principal import Principal, Role
from kronika.server.ratelimit import TokenBuckets
from kronika.server.routing import RawPathRoute
from kronika.server.settings import ServerSettings

HTTP_DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "http.md"
CONFIG_DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "configuration.md"
PUBLIC = {"/livez", "/readyz", "/openapi.json"}


def _routes(settings: ServerSettings) -> list[RawPathRoute]:
    app = create_app(settings)
    return [route for route in app.routes if isinstance(route, RawPathRoute)]


@pytest.mark.parametrize("metrics_public", [False, True])
def test_every_route_declares_a_permission(metrics_public: bool) -> None:
    settings = ServerSettings.checked(metrics_public=metrics_public)
    routes = _routes(settings)
    assert len(routes) == len(endpoints_for(settings)) + 1  # + /openapi.json
    public = {r.kronika.path for r in routes if r.kronika.permission is None}
    allowed = PUBLIC | ({"/metrics"} if metrics_public else set())
    assert public == allowed


def test_every_route_is_in_the_http_reference() -> None:
    documented = set(
        re.findall(r"^\| `(GET|POST|PUT|DELETE) ([^`]+)` \|", HTTP_DOC.read_text(), re.M)
    )
    routes = {(r.kronika.method, r.kronika.path) for r in _routes(ServerSettings.checked())}
    assert routes - documented == set(), "document these routes in docs/reference/http.md"
    assert documented - routes == set(), "these documented routes do not exist"


def test_every_server_setting_is_documented() -> None:
    text = CONFIG_DOC.read_text()
    missing = [
        name
        for name in ServerSettings.model_fields
        if name != "security" and f"`KRONIKA_{name.upper()}`" not in text
    ]
    assert missing == []


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="KRONIKA_PORT"):
        ServerSettings.from_env({"KRONIKA_PORT": "eighty"})
    with pytest.raises(ConfigurationError, match="KRONIKA_READYZ_CACHE"):
        ServerSettings.from_env({"KRONIKA_READYZ_CACHE": "0.01"})
    with pytest.raises(ConfigurationError, match="KRONIKA_TRUSTED_PROXIES"):
        ServerSettings.from_env({"KRONIKA_TRUSTED_PROXIES": "not-an-ip"})
    with pytest.raises(ConfigurationError, match="KRONIKA_TLS_KEYFILE"):
        ServerSettings.from_env({"KRONIKA_TLS_CERTFILE": "/etc/hostname"})


def test_secrets_come_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql://u:pw@db/x\n")
    settings = ServerSettings.from_env({"KRONIKA_DATABASE_URL_FILE": str(secret)})
    assert settings.url == "postgresql://u:pw@db/x"
    assert "pw" not in repr(settings)


def test_production_mode_turns_authentication_on_by_default() -> None:
    settings = ServerSettings.from_env({"KRONIKA_MODE": "production"})
    assert settings.auth_enabled
    assert len(settings.production_problems()) == 1  # only: neither TLS nor a trusted proxy
    proxied = ServerSettings.from_env(
        {"KRONIKA_MODE": "production", "KRONIKA_TRUSTED_PROXIES": "10.0.0.0/8"}
    )
    assert proxied.production_problems() == []


def test_token_bucket_refills_at_the_rate() -> None:
    buckets = TokenBuckets(rate=2.0, burst=2)
    assert buckets.take("k", now=0.0) is None
    assert buckets.take("k", now=0.0) is None
    assert buckets.take("k", now=0.0) == pytest.approx(0.5)
    assert buckets.take("other", now=0.0) is None, "buckets are per key"
    assert buckets.take("k", now=0.5) is None
    assert TokenBuckets(rate=0, burst=1).take("k") is None, "rate 0 turns limiting off"


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    headers = [(b"x-forwarded-for", b"203.0.113.9, 10.0.0.2")]
    from_proxy = {"client": ("10.0.0.1", 1), "headers": headers}
    from_elsewhere = {"client": ("198.51.100.7", 1), "headers": headers}
    assert client_ip(from_proxy, proxies) == "203.0.113.9"
    assert client_ip(from_elsewhere, proxies) == "198.51.100.7"
    assert client_ip(from_proxy, ()) == "10.0.0.1"


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_category_limited_callers_reach_only_their_streams() -> None:
    from starlette.testclient import TestClient

    class OnlyOrders:
        async def authenticate(self, authorization: str | None) -> Principal:
            return Principal("k1", frozenset({Role.WRITER}), frozenset({"order"}))

    settings = ServerSettings.checked(database_url="memory://")
    with TestClient(create_app(settings, authenticator=OnlyOrders())) as client:
        event = {"events": [{"type": "A", "data": {}}]}
        assert client.post("/v1/streams/order-1", json=event).status_code == 200
        denied = client.post("/v1/streams/invoice-1", json=event)
        assert (denied.status_code, denied.json()["code"]) == (403, Forbidden.code)
        assert client.get("/v1/all").status_code == 403
        assert client.get("/v1/all", params={"categories": "order"}).status_code == 200
        multi = {"streams": [{"stream": "invoice-2", "events": event["events"]}]}
        assert client.post("/v1/append", json=multi).status_code == 403
        assert client.post("/v1/admin/maintenance", json={"enabled": True}).status_code == 403
