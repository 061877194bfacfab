"""Choosing and starting the server's authenticator from :class:`AuthSettings`."""

from __future__ import annotations

from kronika.errors import ConfigurationError
from kronika.server.principal import AllowAll, Authenticator
from kronika.server.security.chain import ChainAuthenticator
from kronika.server.security.jwt_auth import JWTAuthenticator
from kronika.server.security.key_auth import KeyAuthenticator
from kronika.server.security.management import ensure_bootstrap_key
from kronika.server.security.settings import AuthSettings

__all__ = ["build_authenticator", "start_authentication"]


def build_authenticator(store: object, settings: AuthSettings) -> Authenticator:
    """The authenticator ``settings`` describe, checking keys in ``store.keys``.

    Authentication off: :class:`AllowAll`. On: a :class:`ChainAuthenticator` of API keys
    and, when a secret or JWKS URL is set, JWTs. Bad settings (a short secret, a missing
    issuer) raise :class:`ConfigurationError` here, at start-up, not on the first request.
    """
    if not settings.enabled:
        return AllowAll()
    keys = KeyAuthenticator(store, cache_ttl=settings.key_cache_ttl)
    return ChainAuthenticator(keys, _jwt(settings) if settings.jwt_enabled else None)


def _jwt(settings: AuthSettings) -> JWTAuthenticator:
    if not settings.jwt_issuer or not settings.jwt_audience:  # the model checks this too
        raise ConfigurationError("JWT needs KRONIKA_JWT_ISSUER and KRONIKA_JWT_AUDIENCE")
    return JWTAuthenticator(
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        secret=settings.resolved_jwt_secret(),
        jwks_url=settings.jwt_jwks_url,
        algorithms=settings.jwt_algorithms,
        leeway=settings.jwt_leeway,
        roles_claim=settings.roles_claim,
        categories_claim=settings.categories_claim,
    )


async def start_authentication(store: object, settings: AuthSettings) -> Authenticator:
    """On server start (store open): store the bootstrap admin key if set, then build.

    Idempotent and safe with several replicas starting at once.
    """
    authenticator = build_authenticator(store, settings)
    bootstrap = settings.resolved_bootstrap_key()
    if bootstrap:
        await ensure_bootstrap_key(store, bootstrap)
    return authenticator
