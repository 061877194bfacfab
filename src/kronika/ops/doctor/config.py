"""Checks of the server's configuration: the settings ``kronika serve`` would start with.

They read the ``KRONIKA_*`` environment doctor runs in (run it where the server runs, or
with the same variables), judged by the mode (``KRONIKA_MODE`` or ``--mode``): what is
advice on a laptop is a finding in ``production``.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from urllib.parse import urlsplit

from kronika.errors import ConfigurationError
from kronika.ops.doctor.certs import certificate_findings, read_certificate
from kronika.ops.doctor.context import DoctorContext
from kronika.ops.doctor.model import Finding, Severity, Skip
from kronika.server.settings import ServerSettings, env_name

__all__ = [
    "auth",
    "loopback",
    "cors",
    "rate_limit",
    "secrets",
    "settings_valid",
    "storage_engine",
    "tls",
    "trusted_proxies",
]

MIN_SECRET_BYTES = 32
"""The shortest JWT secret the server accepts (HS256 needs 256 bits)."""
MIN_SECRET_BITS = 100.0
"""A secret whose estimated entropy is below this looks typed or patterned, not random."""
MIN_DISTINCT_CHARACTERS = 10
PLACEHOLDERS = ("changeme", "secret", "password", "example", "kronika", "default", "development")
"""Words that mark a sample or development secret."""
MAX_PUBLIC_PROXY_ADDRESSES = 256
"""A trusted public network larger than a /24 lets strangers forge client addresses."""


def loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def settings_valid(ctx: DoctorContext) -> list[Finding]:
    """DR-CONFIG: the settings parse and validate, as the server checks them at start."""
    problem = ctx.settings_problem
    if problem is None:
        return []
    return [
        Finding(
            check="DR-CONFIG",
            severity=problem.severity,
            title=problem.title,
            found=problem.found,
            action=problem.action,
        )
    ]


async def storage_engine(ctx: DoctorContext) -> list[Finding]:
    """DR-STORE-ENGINE: memory loses everything on restart; SQLite is one host."""
    ctx.require_settings()
    if ctx.engine in {None, "http"}:
        raise Skip(ctx.store_skip or "no store URL to judge")
    production = ctx.production
    if ctx.engine == "memory":
        return [
            Finding(
                check="DR-STORE-ENGINE",
                severity=Severity.CRITICAL if production else Severity.LOW,
                title="the store is in memory",
                found="memory:// keeps events only inside one process: a restart loses them all",
                action="use postgresql://... (or sqlite:///PATH on a single host)",
            )
        ]
    if ctx.engine == "sqlite" and production:
        return [
            Finding(
                check="DR-STORE-ENGINE",
                severity=Severity.LOW,
                title="SQLite in production",
                found="SQLite serves one host: one writer process, no replicas, no failover",
                action="fine for a single-node deployment with backups; use PostgreSQL to run "
                "several replicas or workers on other hosts",
            )
        ]
    return []


async def auth(ctx: DoctorContext) -> list[Finding]:
    """DR-AUTH: authentication is on wherever the server is reachable from a network."""
    settings = ctx.require_settings()
    if settings.auth_enabled:
        return []
    if ctx.production:
        severity, where = Severity.CRITICAL, "in production mode"
    elif not loopback(settings.host):
        severity, where = Severity.HIGH, f"and the server binds {settings.host}"
    else:
        return []
    return [
        Finding(
            check="DR-AUTH",
            severity=severity,
            title="authentication is off",
            found=f"authentication is off {where}: every caller is an anonymous admin",
            action="set KRONIKA_AUTH_ENABLED=true and give clients API keys (kronika keys create)",
        )
    ]


async def secrets(ctx: DoctorContext) -> list[Finding]:
    """DR-SECRET: the JWT secret is long and random; secrets come from files in production."""
    settings = ctx.require_settings()
    security = settings.security
    configured = (
        security.jwt_secret,
        security.jwt_secret_file,
        security.bootstrap_admin_key,
        security.bootstrap_admin_key_file,
    )
    if not any(configured):
        raise Skip("no JWT secret and no bootstrap admin key configured")
    found = _jwt_secret(settings)
    if ctx.production:
        found.extend(_inline_secrets(ctx))
    return found


def _jwt_secret(settings: ServerSettings) -> list[Finding]:
    try:
        secret = settings.security.resolved_jwt_secret()
    except ConfigurationError as exc:
        return [_secret_finding(Severity.HIGH, "the JWT secret cannot be read", exc.message)]
    if not secret:
        return []
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        return [
            _secret_finding(
                Severity.CRITICAL,
                "the JWT secret is too short",
                f"KRONIKA_JWT_SECRET has {size} bytes; HS256 needs at least {MIN_SECRET_BYTES}",
            )
        ]
    weakness = _weakness(secret)
    if weakness:
        return [_secret_finding(Severity.HIGH, "the JWT secret looks guessable", weakness)]
    return []


def _secret_finding(severity: Severity, title: str, found: str) -> Finding:
    return Finding(
        check="DR-SECRET",
        severity=severity,
        title=title,
        found=found,
        action="use a random secret of at least 32 bytes (openssl rand -base64 48) and "
        "rotate it with the token issuer",
    )


def _weakness(secret: str) -> str | None:
    """Why ``secret`` looks typed rather than random, if it does."""
    lowered = secret.lower()
    word = next((w for w in PLACEHOLDERS if w in lowered), None)
    if word is not None:
        return f"KRONIKA_JWT_SECRET contains the word {word!r}: a sample or development secret"
    distinct = len(set(secret))
    if distinct < MIN_DISTINCT_CHARACTERS:
        return f"KRONIKA_JWT_SECRET uses only {distinct} different characters"
    bits = _entropy_bits(secret)
    if bits < MIN_SECRET_BITS:
        return (
            f"KRONIKA_JWT_SECRET has about {bits:.0f} bits of entropy (want {MIN_SECRET_BITS:g}+)"
        )
    return None


def _entropy_bits(text: str) -> float:
    """Length times the Shannon entropy of its characters: a rough upper bound."""
    counts = Counter(text)
    size = len(text)
    per_character = -sum(n / size * math.log2(n / size) for n in counts.values())
    return per_character * size


def _inline_secrets(ctx: DoctorContext) -> list[Finding]:
    found = []
    if ctx.environ.get("KRONIKA_BOOTSTRAP_ADMIN_KEY", "").strip():
        found.append(
            Finding(
                check="DR-SECRET",
                severity=Severity.MEDIUM,
                title="the bootstrap admin key is in the environment",
                found="KRONIKA_BOOTSTRAP_ADMIN_KEY holds an admin key in the process "
                "environment, readable by anyone who can inspect the process",
                action="mount it as a file (KRONIKA_BOOTSTRAP_ADMIN_KEY_FILE) from the secret "
                "store, or remove it once the key is stored (the server keeps it)",
            )
        )
    if ctx.environ.get("KRONIKA_JWT_SECRET", "").strip():
        found.append(
            Finding(
                check="DR-SECRET",
                severity=Severity.LOW,
                title="the JWT secret is in the environment",
                found="KRONIKA_JWT_SECRET is set directly in the process environment",
                action="mount it as a file instead (KRONIKA_JWT_SECRET_FILE)",
            )
        )
    return found


async def cors(ctx: DoctorContext) -> list[Finding]:
    """DR-CORS: browsers may call the API only from listed, encrypted origins."""
    settings = ctx.require_settings()
    origins = settings.cors_origins
    if not origins:
        raise Skip("no CORS origins configured (no CORS headers are sent)")
    production = ctx.production
    if "*" in origins:
        return [
            Finding(
                check="DR-CORS",
                severity=Severity.CRITICAL if production else Severity.MEDIUM,
                title="CORS allows any origin",
                found=f"{env_name('cors_origins')} contains '*': any web page a user visits "
                "may call the API from their browser",
                action="list the exact origins of your front ends",
            )
        ]
    plain = [o for o in origins if _plaintext(o)]
    if production and plain:
        return [
            Finding(
                check="DR-CORS",
                severity=Severity.MEDIUM,
                title="CORS allows unencrypted origins",
                found=f"{env_name('cors_origins')} allows http:// origins: {', '.join(plain)}",
                action="serve the front ends over https and list their https:// origins",
            )
        ]
    return []


def _plaintext(origin: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme == "http" and not loopback(parts.hostname or "")


async def tls(ctx: DoctorContext) -> list[Finding]:
    """DR-TLS: HTTPS (here or at a proxy) in production; the certificate is not expiring."""
    settings = ctx.require_settings()
    if settings.tls_certfile is not None:
        where = str(settings.tls_certfile)
        try:
            cert = read_certificate(settings.tls_certfile)
        except (OSError, ValueError) as exc:
            return [
                Finding(
                    check="DR-TLS",
                    severity=Severity.HIGH,
                    title="the TLS certificate cannot be read",
                    found=f"{where}: {exc}",
                    action="point KRONIKA_TLS_CERTFILE at a PEM certificate (chain)",
                    subject=where,
                )
            ]
        renew = "renew the certificate and replace KRONIKA_TLS_CERTFILE (restart the server)"
        return certificate_findings(
            "DR-TLS", cert, where, ctx.now, ctx.thresholds.cert_warn_days, renew
        )
    if not ctx.production:
        raise Skip("no certificate configured (KRONIKA_TLS_CERTFILE) in local mode")
    if settings.trusted_proxies:
        raise Skip("TLS is terminated by the trusted proxy (check it with --server)")
    return [
        Finding(
            check="DR-TLS",
            severity=Severity.CRITICAL,
            title="no TLS",
            found="neither a certificate (KRONIKA_TLS_CERTFILE) nor a TLS-terminating trusted "
            "proxy (KRONIKA_TRUSTED_PROXIES) is configured: credentials travel in clear",
            action="set KRONIKA_TLS_CERTFILE and KRONIKA_TLS_KEYFILE, or terminate TLS at a "
            "proxy and list it in KRONIKA_TRUSTED_PROXIES",
        )
    ]


async def rate_limit(ctx: DoctorContext) -> list[Finding]:
    """DR-RATE-LIMIT: requests are rate-limited per credential in production."""
    settings = ctx.require_settings()
    if settings.rate_limit > 0 or not ctx.production:
        return []
    return [
        Finding(
            check="DR-RATE-LIMIT",
            severity=Severity.HIGH,
            title="rate limiting is off",
            found=f"{env_name('rate_limit')}=0: one client can use the whole server, and "
            "failed key guesses are not slowed down",
            action=f"set {env_name('rate_limit')} to the requests per second one client may "
            "make (default 200)",
        )
    ]


async def trusted_proxies(ctx: DoctorContext) -> list[Finding]:
    """DR-PROXY: only the actual proxies may set X-Forwarded-For / -Proto."""
    settings = ctx.require_settings()
    if not settings.trusted_proxies:
        raise Skip("no trusted proxies configured")
    found = []
    for network in settings.trusted_proxies:
        if network.prefixlen == 0:
            severity, why = Severity.CRITICAL, "every address on the internet"
        elif not network.is_private and network.num_addresses > MAX_PUBLIC_PROXY_ADDRESSES:
            severity, why = Severity.HIGH, f"{network.num_addresses} public addresses"
        else:
            continue
        found.append(
            Finding(
                check="DR-PROXY",
                severity=severity,
                title="a trusted proxy network is too wide",
                found=f"{env_name('trusted_proxies')} trusts {network} ({why}): anyone in it "
                "can forge the client address (and so its rate limit) and the scheme",
                action="list only the load balancers' own addresses or their small subnet",
                subject=str(network),
            )
        )
    return found
