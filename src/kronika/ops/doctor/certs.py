"""Certificates: read from a PEM file or from a server's TLS handshake, and judged by age.

Expiry is the one thing about a certificate that breaks a deployment on a known date, so
doctor warns ``warn_days`` ahead (14 by default, D19) and calls an expired certificate
critical. Only the first certificate of a chain is judged: the server's own.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from kronika.ops.doctor.model import Finding, Severity

__all__ = ["Certificate", "certificate_findings", "fetch_certificate", "read_certificate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """What doctor needs to know about a certificate."""

    subject: str
    """The subject, as an RFC 4514 string (``CN=api.example.com``)."""
    not_before: datetime
    """Valid from (UTC)."""
    not_after: datetime
    """Valid until (UTC)."""


def _parse(pem: bytes) -> Certificate:
    cert = x509.load_pem_x509_certificate(pem)
    return Certificate(
        subject=cert.subject.rfc4514_string() or "(no subject)",
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def read_certificate(path: Path) -> Certificate:
    """The first certificate in a PEM file; ``ValueError`` or ``OSError`` if unreadable."""
    return _parse(path.read_bytes())


async def fetch_certificate(host: str, port: int, timeout: float) -> Certificate:
    """The certificate a TLS server presents (not verified: its dates are what matter)."""
    pem = await asyncio.to_thread(ssl.get_server_certificate, (host, port), timeout=timeout)
    return _parse(pem.encode("ascii"))


def certificate_findings(  # noqa: PLR0917 - one call per certificate, every input named
    check: str, cert: Certificate, where: str, now: datetime, warn_days: float, renew: str
) -> list[Finding]:
    """Findings about ``cert`` (found at ``where``) at ``now``: expired, not yet valid, or
    expiring within ``warn_days``; ``renew`` says how to replace it."""
    left = cert.not_after - now
    if left <= timedelta(0):
        return [
            Finding(
                check=check,
                severity=Severity.CRITICAL,
                title="the TLS certificate has expired",
                found=f"{where} ({cert.subject}) expired on {_day(cert.not_after)}: "
                "clients refuse the connection",
                action=renew,
                subject=where,
            )
        ]
    if cert.not_before > now:
        return [
            Finding(
                check=check,
                severity=Severity.HIGH,
                title="the TLS certificate is not valid yet",
                found=f"{where} ({cert.subject}) is valid only from {_day(cert.not_before)}",
                action=f"check the server's clock, or {renew}",
                subject=where,
            )
        ]
    if left <= timedelta(days=warn_days):
        return [
            Finding(
                check=check,
                severity=Severity.HIGH,
                title=f"the TLS certificate expires in {_days(left)}",
                found=f"{where} ({cert.subject}) expires on {_day(cert.not_after)}",
                action=renew,
                subject=where,
            )
        ]
    return []


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _days(left: timedelta) -> str:
    days = left.total_seconds() / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"
