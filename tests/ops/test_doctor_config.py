"""``kronika doctor``'s configuration checks: each fires on a bad setting and stays quiet on
a good one, read from a real ``KRONIKA_*`` environment (and real certificate files)."""

from __future__ import annotations

import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from kronika.ops.doctor import CheckResult, Status, Thresholds

RunCheck = Callable[..., Awaitable[CheckResult]]

PRODUCTION = {"KRONIKA_MODE": "production"}
JWT = {"KRONIKA_JWT_ISSUER": "https://issuer.example", "KRONIKA_JWT_AUDIENCE": "kronika"}
GOOD_SECRET = secrets.token_urlsafe(48)


def found(result: CheckResult) -> list[str]:
    """The severities of a result's findings (empty: quiet)."""
    assert result.status is not Status.ERROR, result.reason
    return [f.severity.value for f in result.findings]


# (check, environment, store URL, expected severities); [] means quiet.
CASES = [
    ("DR-CONFIG", {"KRONIKA_PORT": "eighty"}, "memory://", ["critical"]),
    ("DR-CONFIG", {"KRONIKA_PORT": "8080"}, "memory://", []),
    ("DR-STORE-ENGINE", PRODUCTION, "memory://", ["critical"]),
    ("DR-STORE-ENGINE", {}, "memory://", ["low"]),
    ("DR-STORE-ENGINE", PRODUCTION, "sqlite", ["low"]),
    ("DR-STORE-ENGINE", {}, "sqlite", []),
    ("DR-AUTH", {**PRODUCTION, "KRONIKA_AUTH": "off"}, "memory://", ["critical"]),
    ("DR-AUTH", {"KRONIKA_HOST": "0.0.0.0"}, "memory://", ["high"]),  # noqa: S104
    ("DR-AUTH", {"KRONIKA_HOST": "127.0.0.1"}, "memory://", []),
    ("DR-AUTH", PRODUCTION, "memory://", []),
    ("DR-SECRET", {**JWT, "KRONIKA_JWT_SECRET": "too-short"}, "memory://", ["critical"]),
    ("DR-SECRET", {**JWT, "KRONIKA_JWT_SECRET": "changeme" * 5}, "memory://", ["high"]),
    ("DR-SECRET", {**JWT, "KRONIKA_JWT_SECRET": "ab" * 20}, "memory://", ["high"]),
    ("DR-SECRET", {**JWT, "KRONIKA_JWT_SECRET": GOOD_SECRET}, "memory://", []),
    (
        "DR-SECRET",
        {**PRODUCTION, "KRONIKA_BOOTSTRAP_ADMIN_KEY": "kr_0123456789abcdef_" + "A" * 43},
        "memory://",
        ["medium"],
    ),
    ("DR-CORS", {**PRODUCTION, "KRONIKA_CORS_ORIGINS": "*"}, "memory://", ["critical"]),
    ("DR-CORS", {"KRONIKA_CORS_ORIGINS": "*"}, "memory://", ["medium"]),
    (
        "DR-CORS",
        {**PRODUCTION, "KRONIKA_CORS_ORIGINS": "https://app.example, http://old.example"},
        "memory://",
        ["medium"],
    ),
    (
        "DR-CORS",
        {**PRODUCTION, "KRONIKA_CORS_ORIGINS": "https://app.example, http://localhost:3000"},
        "memory://",
        [],
    ),
    ("DR-TLS", PRODUCTION, "memory://", ["critical"]),
    ("DR-RATE-LIMIT", {**PRODUCTION, "KRONIKA_RATE_LIMIT": "0"}, "memory://", ["high"]),
    ("DR-RATE-LIMIT", {**PRODUCTION, "KRONIKA_RATE_LIMIT": "50"}, "memory://", []),
    ("DR-RATE-LIMIT", {"KRONIKA_RATE_LIMIT": "0"}, "memory://", []),
    ("DR-PROXY", {"KRONIKA_TRUSTED_PROXIES": "0.0.0.0/0"}, "memory://", ["critical"]),
    ("DR-PROXY", {"KRONIKA_TRUSTED_PROXIES": "8.0.0.0/8, ::/0"}, "memory://", ["high", "critical"]),
    ("DR-PROXY", {"KRONIKA_TRUSTED_PROXIES": "10.0.0.0/8, 203.0.113.7"}, "memory://", []),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
async def test_configuration_checks(
    check: RunCheck, tmp_path: Path, case: tuple[str, dict[str, str], str, list[str]]
) -> None:
    check_id, environ, url, expected = case
    store = f"sqlite:///{tmp_path / 'k.db'}" if url == "sqlite" else url
    result = await check(check_id, environ, url=store)
    assert found(result) == expected, [f.found for f in result.findings]
    if expected:
        assert all(f.check == check_id and f.action for f in result.findings)
        assert result.findings[0].runbook == f"docs/operations/doctor.md#{check_id.lower()}"


async def test_a_bad_configuration_skips_the_other_configuration_checks(check: RunCheck) -> None:
    result = await check("DR-AUTH", {"KRONIKA_PORT": "eighty"}, url="memory://")
    assert result.status is Status.SKIPPED
    assert "DR-CONFIG" in (result.reason or "")


async def test_a_jwt_secret_file_is_read_and_judged(check: RunCheck, tmp_path: Path) -> None:
    secret = tmp_path / "jwt-secret"
    secret.write_text("password" * 5 + "\n", encoding="utf-8")
    env = {**JWT, "KRONIKA_JWT_SECRET_FILE": str(secret)}
    result = await check("DR-SECRET", env, url="memory://")
    assert found(result) == ["high"]
    assert "'password'" in result.findings[0].found
    secret.write_text(GOOD_SECRET, encoding="utf-8")
    assert found(await check("DR-SECRET", env, url="memory://")) == []


@pytest.mark.parametrize(
    ("days_left", "days_valid", "expected"),
    [(-1, 30, ["critical"]), (5, 30, ["high"]), (30, 10, ["high"]), (90, 365, [])],
    ids=["expired", "expiring", "not-yet-valid", "valid"],
)
async def test_the_certificate_file_is_warned_about_before_it_expires(
    check: RunCheck,
    make_certificate: Callable[..., tuple[Path, Path]],
    days_left: float,
    days_valid: float,
    expected: list[str],
) -> None:
    cert, key = make_certificate(days_left=days_left, days_valid=days_valid)
    env = {"KRONIKA_TLS_CERTFILE": str(cert), "KRONIKA_TLS_KEYFILE": str(key)}
    result = await check("DR-TLS", env, url="memory://")
    assert found(result) == expected
    if expected:
        assert str(cert) in result.findings[0].found


async def test_the_warning_window_is_an_option(
    check: RunCheck, make_certificate: Callable[..., tuple[Path, Path]]
) -> None:
    cert, key = make_certificate(days_left=20)
    env = {"KRONIKA_TLS_CERTFILE": str(cert), "KRONIKA_TLS_KEYFILE": str(key)}
    assert found(await check("DR-TLS", env, url="memory://")) == []
    warned = await check("DR-TLS", env, url="memory://", thresholds=Thresholds(cert_warn_days=30))
    assert found(warned) == ["high"]
    assert "expires in 20 days" in warned.findings[0].title


async def test_an_unreadable_certificate_is_reported(check: RunCheck, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate", encoding="utf-8")
    key.write_text("not a key", encoding="utf-8")
    env = {"KRONIKA_TLS_CERTFILE": str(cert), "KRONIKA_TLS_KEYFILE": str(key)}
    assert found(await check("DR-TLS", env, url="memory://")) == ["high"]


async def test_production_behind_a_trusted_proxy_needs_no_certificate(check: RunCheck) -> None:
    env = {**PRODUCTION, "KRONIKA_TRUSTED_PROXIES": "10.0.0.5"}
    result = await check("DR-TLS", env, url="memory://")
    assert result.status is Status.SKIPPED
    assert "proxy" in (result.reason or "")


@pytest.fixture
def collector() -> Iterator[int]:
    """A TCP port something listens on (standing in for an OTLP collector)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_tracing_to_an_unreachable_collector_is_reported(
    check: RunCheck, collector: int
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    result = await check("DR-TRACING", env, url="memory://")
    assert found(result) == ["medium"]
    assert "cannot connect" in result.findings[0].found
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector}"}
    assert found(await check("DR-TRACING", env, url="memory://")) == []


async def test_tracing_without_the_sdk_is_reported(
    check: RunCheck, collector: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector}"}
    result = await check("DR-TRACING", env, url="memory://")
    assert found(result) == ["high"]
    assert "kronika[otlp]" in result.findings[0].action


async def test_tracing_switched_off_again_is_pointed_out(check: RunCheck, collector: int) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector}",
        "OTEL_SDK_DISABLED": "true",
    }
    assert found(await check("DR-TRACING", env, url="memory://")) == ["low"]
    assert (await check("DR-TRACING", {}, url="memory://")).status is Status.SKIPPED
