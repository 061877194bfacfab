"""Authenticating JWT bearer tokens: HS256 with a shared secret, or RS256/ES256 via JWKS.

What is checked, and why:

- The algorithm is pinned by configuration and never taken from the token: a token whose
  header names another algorithm (``none``, or HS256 against an RSA key) is refused
  before anything else, so algorithm confusion cannot happen.
- The signature; ``exp`` (required), ``nbf`` (when present), ``iss`` and ``aud``
  (required, and must equal the configured values), with ``leeway`` seconds of clock skew
  allowed, 30 by default and at most 300.
- ``sub`` (required) names the caller: it becomes the principal's name.

Roles come from the ``roles_claim`` (default ``roles``: a list of role names, or a string
of names separated by spaces; a dotted path such as ``realm_access.roles`` reaches into
nested objects). Names Kronika does not know are ignored. Stream categories come from
``categories_claim`` (default ``kronika_categories``); without it, every category.

JWKS keys are fetched by :class:`jwt.PyJWKClient`, which caches the key set
(``jwks_cache_seconds``, default 300) and refetches it when a token names an unknown
``kid`` (rotation). Fetches run in a worker thread so they never block the event loop;
an unreachable JWKS endpoint is ``Unavailable`` (503), not the caller's fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import jwt

from kronika.errors import ConfigurationError, Unauthorized, Unavailable
from kronika.server.principal import Principal, Role
from kronika.server.security.bearer import bearer_token

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "MAX_LEEWAY",
    "MIN_SECRET_BYTES",
    "JWTAuthenticator",
]

MIN_SECRET_BYTES = 32
"""The shortest HS256 secret accepted: 256 bits, as RFC 7518 requires for HS256."""
MAX_LEEWAY = 300.0
"""The most clock skew that may be allowed, in seconds."""
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384"})
"""Algorithms accepted with a JWKS URL."""

_ROLE_NAMES = frozenset(r.value for r in Role)


class JWTAuthenticator:
    """Checks JWTs signed with ``secret`` (HS256) or by a key published at ``jwks_url``.

    Give exactly one of ``secret`` and ``jwks_url``. ``algorithms`` defaults to
    ``["HS256"]`` with a secret and ``["RS256", "ES256"]`` with a JWKS URL.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        secret: str | bytes | None = None,
        jwks_url: str | None = None,
        algorithms: Sequence[str] | None = None,
        leeway: float = 30.0,
        roles_claim: str = "roles",
        categories_claim: str = "kronika_categories",
        jwks_cache_seconds: float = 300.0,
        jwks_timeout: float = 5.0,
    ) -> None:
        if (secret is None) == (jwks_url is None):
            raise ConfigurationError("JWT needs exactly one of a secret (HS256) and a JWKS URL")
        if not issuer or not audience:
            raise ConfigurationError(
                "JWT needs an issuer and an audience (KRONIKA_JWT_ISSUER, KRONIKA_JWT_AUDIENCE): "
                "without them a token minted for another service would be accepted"
            )
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ConfigurationError(f"JWT leeway must be between 0 and {MAX_LEEWAY:g} seconds")
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._roles_claim = roles_claim
        self._categories_claim = categories_claim
        self._secret: bytes | None = None
        self._jwks: jwt.PyJWKClient | None = None
        if secret is not None:
            self._secret = _checked_secret(secret)
            self._algorithms = _checked(algorithms or ["HS256"], frozenset({"HS256"}))
        else:
            assert jwks_url is not None
            self._algorithms = _checked(algorithms or ["RS256", "ES256"], ASYMMETRIC_ALGORITHMS)
            self._jwks = jwt.PyJWKClient(
                jwks_url,
                cache_keys=True,
                cache_jwk_set=True,
                lifespan=jwks_cache_seconds,
                timeout=jwks_timeout,
            )

    async def authenticate(self, authorization: str | None) -> Principal:
        """The token's principal; ``Unauthorized`` saying what is wrong with it."""
        return await self.authenticate_token(bearer_token(authorization))

    async def authenticate_token(self, token: str) -> Principal:
        """The principal of a bare JWT."""
        header = _header(token)
        if header.get("alg") not in self._algorithms:
            raise Unauthorized(
                f"token algorithm {str(header.get('alg'))[:20]!r} is not accepted "
                f"(accepted: {', '.join(self._algorithms)})"
            )
        key = await self._key(token)
        claims = self._decode(token, key)
        return Principal(
            name=str(claims["sub"]),
            roles=_roles(_claim(claims, self._roles_claim), self._roles_claim),
            categories=_categories(_claim(claims, self._categories_claim), self._categories_claim),
            kind="jwt",
            claims=claims,
        )

    async def _key(self, token: str) -> Any:
        if self._secret is not None:
            return self._secret
        assert self._jwks is not None
        try:
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise Unavailable(f"cannot fetch the JWKS to check the token: {exc}") from None
        except (jwt.PyJWKClientError, jwt.PyJWKError, jwt.DecodeError) as exc:
            raise Unauthorized(f"no signing key for the token: {exc}") from None
        return signing_key.key

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self._algorithms),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(_reason(exc)) from None
        return claims


def _checked_secret(secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"the JWT secret is {len(raw)} bytes; HS256 needs at least {MIN_SECRET_BYTES} "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    return raw


def _checked(algorithms: Sequence[str], allowed: frozenset[str]) -> tuple[str, ...]:
    wrong = sorted(set(algorithms) - allowed)
    if wrong or not algorithms:
        raise ConfigurationError(
            f"JWT algorithms {wrong or '[]'} cannot be used here; choose from {sorted(allowed)}"
        )
    return tuple(algorithms)


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("malformed token: not a JWT") from None


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired (exp)"),
    (jwt.ImmatureSignatureError, "token is not valid yet (nbf)"),
    (jwt.InvalidIssuerError, "token issuer (iss) is not accepted"),
    (jwt.InvalidAudienceError, "token audience (aud) is not accepted"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.InvalidKeyError, "token signature is invalid"),
    (jwt.DecodeError, "malformed token"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim!r} claim"
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return f"invalid token: {type(exc).__name__}"


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _names(value: Any, claim: str) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise Unauthorized(f"token claim {claim!r} must be a list of names")


def _roles(value: Any, claim: str) -> frozenset[Role]:
    if value is None:
        return frozenset()
    return frozenset(Role(name) for name in _names(value, claim) if name in _ROLE_NAMES)


def _categories(value: Any, claim: str) -> frozenset[str] | None:
    return None if value is None else frozenset(_names(value, claim))
