"""Checks of a running deployment over HTTP (``--server URL``, ``--token``).

They ask what a load balancer, a scraper and a client would: ``/livez``, ``/readyz``,
``/metrics``, whether the API answers without credentials, and which certificate the
server presents. Processor checks use the server's routes too when doctor has no store
of its own to read (see :mod:`.sources`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from kronika.ops.doctor.certs import certificate_findings, fetch_certificate
from kronika.ops.doctor.config import loopback
from kronika.ops.doctor.context import DoctorContext
from kronika.ops.doctor.model import Finding, Severity, Skip

__all__ = ["auth_enforced", "metrics", "readiness", "server_reachable", "server_tls"]

KRONIKA_PREFIX = "kronika_"


async def server_reachable(ctx: DoctorContext) -> list[Finding]:
    """DR-HTTP-REACH: the server answers ``/livez``."""
    if ctx.options.server is None:
        raise Skip("no --server given")
    problem = ctx.server_problem
    if problem is None:
        return []
    return [
        Finding(
            check="DR-HTTP-REACH",
            severity=problem.severity,
            title=problem.title,
            found=problem.found,
            action=problem.action,
        )
    ]


async def readiness(ctx: DoctorContext) -> list[Finding]:
    """DR-HTTP-READY: ``/readyz`` says the replica should get traffic."""
    http = ctx.require_server()
    answer = await http.get("/readyz")
    if answer.status_code == 200:
        return []
    body = _json(answer)
    failing = body.get("failing") or []
    checks = body.get("checks") or {}
    details = "; ".join(
        f"{name}: {checks.get(name, {}).get('detail', 'failing')}" for name in failing
    )
    return [
        Finding(
            check="DR-HTTP-READY",
            severity=Severity.CRITICAL,
            title="the server is not ready",
            found=f"GET /readyz answered {answer.status_code}"
            + (f"; failing: {details}" if details else ""),
            action="fix the failing checks (database reachable, schema current); a forced "
            "maintenance ends with kronika --server URL maintenance off",
        )
    ]


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def metrics(ctx: DoctorContext) -> list[Finding]:
    """DR-HTTP-METRICS: ``/metrics`` answers, parses, and has Kronika's metrics."""
    http = ctx.require_server()
    answer = await http.get("/metrics")
    if answer.status_code in {401, 403} and not ctx.options.token:
        raise Skip(f"/metrics needs credentials ({answer.status_code}): give --token")
    if answer.status_code != 200:
        return [
            _metrics_finding(
                Severity.HIGH,
                "the metrics endpoint does not answer",
                f"GET /metrics answered {answer.status_code}",
                "check the token's role (read), or KRONIKA_METRICS_PUBLIC for the scraper",
            )
        ]
    try:
        names = {family.name for family in text_string_to_metric_families(answer.text)}
    except ValueError as exc:
        return [
            _metrics_finding(
                Severity.HIGH,
                "the metrics do not parse",
                f"GET /metrics is not the Prometheus text format: {exc}",
                "check that nothing between the server and here rewrites the answer",
            )
        ]
    if not any(name.startswith(KRONIKA_PREFIX) for name in names):
        return [
            _metrics_finding(
                Severity.MEDIUM,
                "the metrics have no Kronika series",
                f"GET /metrics has {len(names)} families, none named kronika_*",
                "check that the URL points at kronika serve, not a proxy or another service",
            )
        ]
    return []


def _metrics_finding(severity: Severity, title: str, found: str, action: str) -> Finding:
    return Finding(
        check="DR-HTTP-METRICS", severity=severity, title=title, found=found, action=action
    )


async def auth_enforced(ctx: DoctorContext) -> list[Finding]:
    """DR-HTTP-AUTH: the API refuses callers without credentials, and accepts the token."""
    http = ctx.require_server()
    request = http.build_request("GET", "/v1/processors")
    request.headers.pop("Authorization", None)
    anonymous = await http.send(request)
    host = urlsplit(str(http.base_url)).hostname or ""
    if anonymous.status_code == 200:
        return [
            Finding(
                check="DR-HTTP-AUTH",
                severity=Severity.LOW if loopback(host) else Severity.CRITICAL,
                title="the server answers without credentials",
                found=f"GET /v1/processors without a token answered 200 at {host}: "
                "authentication is off, every caller is an admin",
                action="set KRONIKA_AUTH_ENABLED=true (or KRONIKA_MODE=production) and restart",
            )
        ]
    if not ctx.options.token:
        return []
    answer = await http.get("/v1/processors")
    if answer.status_code in {401, 403}:
        refused = "refused the token" if answer.status_code == 401 else "denied the token read"
        return [
            Finding(
                check="DR-HTTP-AUTH",
                severity=Severity.HIGH,
                title="the server does not accept doctor's token",
                found=f"GET /v1/processors {refused} ({answer.status_code}): the remote "
                "checks of processors are skipped",
                action="give --token (or KRONIKA_TOKEN) an unrevoked key or JWT with the read role",
            )
        ]
    return []


async def server_tls(ctx: DoctorContext) -> list[Finding]:
    """DR-HTTP-TLS: the deployment is served over HTTPS with a certificate not expiring
    (judged even when the server is unreachable: an expired certificate is often why)."""
    if ctx.options.server is None:
        raise Skip("no --server given")
    parts = urlsplit(ctx.options.server)
    host = parts.hostname or ""
    if parts.scheme == "http":
        if loopback(host):
            raise Skip(f"plain HTTP on this host ({host})")
        return [
            Finding(
                check="DR-HTTP-TLS",
                severity=Severity.HIGH,
                title="the server is reached over plain HTTP",
                found=f"{ctx.options.server}: credentials and events travel in clear",
                action="serve HTTPS (KRONIKA_TLS_CERTFILE) or put a TLS-terminating proxy in "
                "front, and use its https:// URL",
            )
        ]
    try:
        cert = await fetch_certificate(host, parts.port or 443, ctx.options.timeout)
    except (OSError, ValueError) as exc:
        return [
            Finding(
                check="DR-HTTP-TLS",
                severity=Severity.HIGH,
                title="the server's certificate cannot be read",
                found=f"{host}:{parts.port or 443}: {exc}",
                action="check the TLS configuration of the server or its proxy",
            )
        ]
    return certificate_findings(
        "DR-HTTP-TLS",
        cert,
        f"{host}:{parts.port or 443}",
        ctx.now,
        ctx.thresholds.cert_warn_days,
        "renew the certificate where TLS is terminated (the server or its proxy)",
    )
