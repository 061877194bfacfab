"""Authentication settings (:class:`AuthSettings`), read from ``KRONIKA_*`` variables.

The server embeds an :class:`AuthSettings` in its own settings and hands it to
:func:`kronika.server.security.build_authenticator`. Every field has one environment
variable, listed in :data:`ENVIRONMENT` (and in docs/reference/security.md); secrets may
instead come from a file named by the ``*_FILE`` variable, as container secret mounts do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from kronika.errors import ConfigurationError

__all__ = ["ENVIRONMENT", "AuthSettings"]

ENVIRONMENT: dict[str, str] = {
    "enabled": "KRONIKA_AUTH_ENABLED",
    "key_cache_ttl": "KRONIKA_AUTH_KEY_CACHE_TTL",
    "jwt_secret": "KRONIKA_JWT_SECRET",
    "jwt_secret_file": "KRONIKA_JWT_SECRET_FILE",
    "jwt_jwks_url": "KRONIKA_JWT_JWKS_URL",
    "jwt_algorithms": "KRONIKA_JWT_ALGORITHMS",
    "jwt_issuer": "KRONIKA_JWT_ISSUER",
    "jwt_audience": "KRONIKA_JWT_AUDIENCE",
    "jwt_leeway": "KRONIKA_JWT_LEEWAY",
    "roles_claim": "KRONIKA_JWT_ROLES_CLAIM",
    "categories_claim": "KRONIKA_JWT_CATEGORIES_CLAIM",
    "bootstrap_admin_key": "KRONIKA_BOOTSTRAP_ADMIN_KEY",
    "bootstrap_admin_key_file": "KRONIKA_BOOTSTRAP_ADMIN_KEY_FILE",
}
"""Field -> the environment variable it is read from."""


class AuthSettings(BaseModel):
    """How the server authenticates callers. Off by default (the ``local`` mode)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = False
    """Require credentials on every route; when off every caller is an anonymous admin."""
    key_cache_ttl: float = Field(5.0, ge=0, le=60)
    """Seconds a key lookup is cached: the longest a revoke takes to be noticed."""
    jwt_secret: SecretStr | None = None
    """HS256 secret shared with the token issuer, at least 32 bytes."""
    jwt_secret_file: Path | None = None
    """A file holding the HS256 secret (surrounding whitespace is ignored)."""
    jwt_jwks_url: str | None = None
    """The issuer's JWKS URL, for RS256/ES256 tokens (instead of a secret)."""
    jwt_algorithms: tuple[str, ...] | None = None
    """Accepted algorithms: HS256 with a secret; default RS256, ES256 with a JWKS URL."""
    jwt_issuer: str | None = None
    """The required ``iss`` claim."""
    jwt_audience: str | None = None
    """The required ``aud`` claim."""
    jwt_leeway: float = Field(30.0, ge=0, le=300)
    """Seconds of clock skew allowed when checking ``exp`` and ``nbf``."""
    roles_claim: str = "roles"
    """The claim holding role names (a dotted path reaches into nested objects)."""
    categories_claim: str = "kronika_categories"
    """The claim holding the stream categories a token may reach (absent: all)."""
    bootstrap_admin_key: SecretStr | None = None
    """A ``kr_...`` key stored as an admin key on start if its id is not stored yet."""
    bootstrap_admin_key_file: Path | None = None
    """A file holding the bootstrap admin key."""

    @model_validator(mode="after")
    def _consistent(self) -> AuthSettings:
        if self.jwt_secret is not None and self.jwt_secret_file is not None:
            raise ValueError("give KRONIKA_JWT_SECRET or KRONIKA_JWT_SECRET_FILE, not both")
        if self.bootstrap_admin_key is not None and self.bootstrap_admin_key_file is not None:
            raise ValueError(
                "give KRONIKA_BOOTSTRAP_ADMIN_KEY or KRONIKA_BOOTSTRAP_ADMIN_KEY_FILE, not both"
            )
        has_secret = self.jwt_secret is not None or self.jwt_secret_file is not None
        if has_secret and self.jwt_jwks_url:
            raise ValueError("give a JWT secret (HS256) or a JWKS URL (RS256/ES256), not both")
        if (has_secret or self.jwt_jwks_url) and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("JWT needs KRONIKA_JWT_ISSUER and KRONIKA_JWT_AUDIENCE")
        return self

    @property
    def jwt_enabled(self) -> bool:
        """Whether JWT bearer tokens are accepted (a secret or a JWKS URL is set)."""
        return bool(self.jwt_secret or self.jwt_secret_file or self.jwt_jwks_url)

    def resolved_jwt_secret(self) -> str | None:
        """The HS256 secret, from the setting or its file."""
        return _secret(self.jwt_secret, self.jwt_secret_file, "KRONIKA_JWT_SECRET_FILE")

    def resolved_bootstrap_key(self) -> str | None:
        """The bootstrap admin key, from the setting or its file."""
        return _secret(
            self.bootstrap_admin_key,
            self.bootstrap_admin_key_file,
            "KRONIKA_BOOTSTRAP_ADMIN_KEY_FILE",
        )

    def production_problems(self) -> list[str]:
        """What the ``production`` profile must refuse, each saying what to change."""
        if not self.enabled:
            return ["authentication is off: set KRONIKA_AUTH_ENABLED=true"]
        return []

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthSettings:
        """Read every setting from ``environ`` (default ``os.environ``).

        Invalid values raise :class:`ConfigurationError` naming the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, name in ENVIRONMENT.items():
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[field] = _split(raw) if field == "jwt_algorithms" else raw.strip()
        try:
            return cls(**values)
        except pydantic.ValidationError as exc:
            raise ConfigurationError(_message(exc)) from None


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _message(exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        where = ENVIRONMENT.get(field, "authentication settings")
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def _secret(value: SecretStr | None, file: Path | None, variable: str) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if file is None:
        return None
    try:
        return file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"{variable}: cannot read {file}: {exc.strerror}") from None
