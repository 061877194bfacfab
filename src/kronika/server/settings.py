"""The server's settings: read from ``KRONIKA_*`` environment variables, checked at start.

Every setting has an environment variable named ``KRONIKA_`` plus its name in capitals
(``port`` -> ``KRONIKA_PORT``); the database URL, which may hold a password, can also be
read from a file named by ``KRONIKA_DATABASE_URL_FILE``, as container orchestrators mount
secrets. Authentication has its own settings (:class:`AuthSettings`), embedded here.
A bad value stops the server before it binds a port, with a message naming the
variable, because a server that starts with a typo in its limits fails later and quietly.

The ``production`` mode adds checks that a deployment reachable from a network must pass
(:meth:`ServerSettings.production_problems`); the ``local`` mode is for a laptop.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from kronika.errors import ConfigurationError
from kronika.server.security.settings import ENVIRONMENT, AuthSettings
from kronika.store import DEFAULT_URL
from kronika.store.options import parse_bool

__all__ = ["ENV_PREFIX", "SECRET_SETTINGS", "ServerSettings", "env_name"]

ENV_PREFIX = "KRONIKA_"
SECRET_SETTINGS = frozenset({"database_url"})
"""Settings that may also come from a file (``KRONIKA_<NAME>_FILE``)."""
MIN_JWT_SECRET_BYTES = 32
AUTH_VARIABLE = ENVIRONMENT["enabled"]
JWT_SECRET_VARIABLE = ENVIRONMENT["jwt_secret"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def env_name(setting: str) -> str:
    """The environment variable of a setting: ``port`` -> ``KRONIKA_PORT``."""
    return ENV_PREFIX + setting.upper()


class ServerSettings(BaseModel):
    """What ``kronika serve`` and :func:`kronika.server.app.create_app` run with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    """Address to bind; the loopback default keeps a laptop's server private."""
    port: int = Field(8080, ge=0, le=65535)
    """TCP port (0 picks a free one)."""
    database_url: SecretStr = SecretStr(DEFAULT_URL)
    """The store URL; secret because it may hold a password."""
    mode: Literal["local", "production"] = "local"
    """``production`` refuses unsafe settings at start."""
    security: AuthSettings = Field(default_factory=lambda: AuthSettings.model_validate({}))
    """Authentication (``KRONIKA_AUTH_ENABLED``, JWT, bootstrap key): see security.md."""
    max_body_bytes: int = Field(1024 * 1024, ge=1)
    """Largest request body accepted; larger ones get 413."""
    max_concurrency: int = Field(64, ge=1)
    """Requests handled at once; beyond it 429 (503 when not ready) instead of queueing."""
    max_streams: int = Field(1000, ge=1)
    """Server-Sent Event streams open at once (they do not count against max_concurrency)."""
    request_timeout: float = Field(30.0, gt=0)
    """Seconds a request may take before it is answered with 503."""
    rate_limit: float = Field(200.0, ge=0)
    """Requests per second per credential (or per client IP when anonymous); 0 turns it off."""
    rate_burst: int = Field(400, ge=1)
    """Requests a credential may make at once before the rate applies (token bucket size)."""
    trusted_proxies: tuple[Network, ...] = ()
    """Peers whose X-Forwarded-For / X-Forwarded-Proto headers are believed."""
    cors_origins: tuple[str, ...] = ()
    """Origins browsers may call the API from (empty: no CORS headers)."""
    tls_certfile: Path | None = None
    """PEM certificate (chain) to serve HTTPS with."""
    tls_keyfile: Path | None = None
    """PEM private key of the certificate."""
    sse_heartbeat: float = Field(15.0, gt=0)
    """Seconds between keep-alive comments on idle event streams."""
    readyz_cache: float = Field(0.25, ge=0.05)
    """Seconds a readiness verdict is reused."""
    readyz_timeout: float = Field(2.0, gt=0)
    """Seconds each readiness check may take before it counts as failing."""
    drain_timeout: float = Field(30.0, ge=0)
    """Seconds to finish in-flight requests on shutdown before they are cancelled."""
    metrics_public: bool = False
    """Serve /metrics without credentials (for a scraper inside a private network)."""
    app: str | None = None
    """``package.module:attribute`` naming the processors /v1/processors reports on."""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        value = _comma_list(value)
        if isinstance(value, (list, tuple)):
            return tuple(ipaddress.ip_network(str(v), strict=False) for v in value)
        return value

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need credentials."""
        return self.security.enabled

    @property
    def url(self) -> str:
        """The store URL in clear (never log it; use redact_url)."""
        return self.database_url.get_secret_value()

    @property
    def tls(self) -> bool:
        """Whether the server itself terminates TLS."""
        return self.tls_certfile is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> ServerSettings:
        """Settings from ``KRONIKA_*`` variables, with ``overrides`` (CLI options) winning."""
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            value = None if name == "security" else _from_environment(name, environ)
            if value is not None:
                values[name] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        security = AuthSettings.from_env(environ)
        if not environ.get(AUTH_VARIABLE, "").strip():
            enabled = _auth_switch(environ.get("KRONIKA_AUTH"), values.get("mode"))
            security = security.model_copy(update={"enabled": enabled})
        values.setdefault("security", security)
        return cls.checked(**values)

    @classmethod
    def checked(cls, **values: Any) -> ServerSettings:
        """Validate ``values``, raising ``ConfigurationError`` naming each bad setting."""
        try:
            settings = cls(**values)
        except pydantic.ValidationError as exc:
            raise ConfigurationError(_describe(exc)) from None
        settings._check_tls()
        return settings

    def _check_tls(self) -> None:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ConfigurationError(
                f"{env_name('tls_certfile')} and {env_name('tls_keyfile')} go together: "
                "set both to serve HTTPS, or neither"
            )
        for name in ("tls_certfile", "tls_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ConfigurationError(f"{env_name(name)}: no such file {str(path)!r}")

    def production_problems(self) -> list[str]:
        """What stops this configuration from running in ``production`` mode, one per line."""
        problems = list(self.security.production_problems())
        secret = self.security.resolved_jwt_secret()
        if secret is not None and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            problems.append(
                f"{JWT_SECRET_VARIABLE} is shorter than {MIN_JWT_SECRET_BYTES} bytes: "
                "use a random secret of at least 32 bytes (e.g. openssl rand -base64 48)"
            )
        if "*" in self.cors_origins:
            problems.append(
                f"{env_name('cors_origins')} allows any origin ('*'): list the exact origins"
            )
        if self.url.split(":", 1)[0] == "memory":
            problems.append(
                f"{env_name('database_url')} is the memory store, which loses every event "
                "on restart: use postgresql://... (or sqlite:///PATH)"
            )
        if not self.tls and not self.trusted_proxies:
            problems.append(
                f"neither TLS nor a trusted proxy is configured: set {env_name('tls_certfile')} "
                f"and {env_name('tls_keyfile')}, or {env_name('trusted_proxies')} to the "
                "TLS-terminating proxy's address"
            )
        return problems


def _auth_switch(value: str | None, mode: object) -> bool:
    """``KRONIKA_AUTH`` (``on``/``off``), else the mode's default: on in production only."""
    if value is None or not value.strip():
        return mode == "production"
    try:
        return parse_bool(value)
    except ValueError:
        raise ConfigurationError(f"KRONIKA_AUTH: expected on or off, got {value!r}") from None


def _comma_list(value: object) -> object:
    """``"a, b"`` -> ``("a", "b")``: lists come from environment variables as text."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _from_environment(name: str, environ: Mapping[str, str]) -> str | None:
    variable = env_name(name)
    if name in SECRET_SETTINGS and environ.get(f"{variable}_FILE"):
        path = Path(environ[f"{variable}_FILE"])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"{variable}_FILE: cannot read {str(path)!r}: {exc.strerror}"
            ) from None
    return environ.get(variable)


def _describe(exc: pydantic.ValidationError) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        name = str(error["loc"][0]) if error["loc"] else "settings"
        lines.append(f"{env_name(name)}: {error['msg']}")
    return "; ".join(lines)
