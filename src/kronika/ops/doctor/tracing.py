"""The tracing exporter: asked for by ``OTEL_*`` variables, installed, and its collector up.

``kronika serve`` and ``kronika worker`` export spans over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set, and quietly export
nothing when the SDK extra is missing or the collector refuses: requests never suffer
for tracing (E10). That quiet is what this check breaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit

from kronika.ops.doctor.context import DoctorContext
from kronika.ops.doctor.model import Finding, Severity, Skip

__all__ = ["ENDPOINT_VARIABLES", "tracing"]

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
"""Where the collector is, in the order the exporter reads them."""
DEFAULT_PORTS = {"http": 4318, "https": 443}


async def tracing(ctx: DoctorContext) -> list[Finding]:
    """DR-TRACING: spans asked for are exported: SDK installed, collector reachable."""
    env = ctx.environ
    variable = next((v for v in ENDPOINT_VARIABLES if env.get(v, "").strip()), None)
    if variable is None:
        raise Skip("tracing is off (no OTEL_EXPORTER_OTLP_ENDPOINT)")
    endpoint = env[variable].strip()
    disabled = _disabled_by(env)
    if disabled:
        return [
            _finding(
                Severity.LOW,
                "tracing is switched off",
                f"{variable} is set but {disabled}: no spans are exported",
                f"unset {variable} if tracing is not wanted, else remove {disabled.split('=')[0]}",
            )
        ]
    missing = _missing_sdk()
    if missing:
        return [
            _finding(
                Severity.HIGH,
                "the OpenTelemetry SDK is not installed",
                f"{variable} is set but {missing} cannot be imported: spans are dropped",
                "install the extra: pip install 'kronika[otlp]'",
            )
        ]
    problem = await _unreachable(endpoint, ctx.options.timeout)
    if problem:
        return [
            _finding(
                Severity.MEDIUM,
                "the trace collector cannot be reached",
                f"{variable}={endpoint}: {problem}; spans are dropped",
                "check the collector is running and reachable from this host",
            )
        ]
    return []


def _finding(severity: Severity, title: str, found: str, action: str) -> Finding:
    return Finding(check="DR-TRACING", severity=severity, title=title, found=found, action=action)


def _disabled_by(env: Mapping[str, str]) -> str | None:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "OTEL_SDK_DISABLED=true"
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return "OTEL_TRACES_EXPORTER=none"
    return None


def _missing_sdk() -> str | None:
    """The module of the ``otlp`` extra that cannot be imported, if any."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        return exc.name or "opentelemetry-sdk"
    return None


async def _unreachable(endpoint: str, timeout: float) -> str | None:
    """Why a TCP connection to the collector fails, or ``None`` when it opens."""
    parts = urlsplit(endpoint)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return "not an http:// or https:// URL"
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(parts.hostname, port)
    except TimeoutError:
        return f"no connection to {parts.hostname}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}"
    writer.close()
    await writer.wait_closed()
    return None
