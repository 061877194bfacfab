"""One authenticator for the server: API keys and, when configured, JWTs.

A bearer token that starts with ``kr_`` is an API key and goes to the key
authenticator; any other bearer token goes to the JWT authenticator, or is refused when
JWT is not configured. The two never see each other's tokens, so a JWT error cannot hide
a key error or the other way round.
"""

from __future__ import annotations

from kronika.errors import Unauthorized
from kronika.server.principal import Principal
from kronika.server.security.apikeys import PREFIX
from kronika.server.security.bearer import bearer_token
from kronika.server.security.jwt_auth import JWTAuthenticator
from kronika.server.security.key_auth import KeyAuthenticator

__all__ = ["ChainAuthenticator"]


class ChainAuthenticator:
    """Routes ``kr_`` keys to ``keys`` and other bearer tokens to ``jwt`` (if given)."""

    def __init__(self, keys: KeyAuthenticator, jwt: JWTAuthenticator | None = None) -> None:
        self._keys = keys
        self._jwt = jwt

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization`` header value (``None`` when absent)."""
        token = bearer_token(authorization)
        if token.startswith(PREFIX):
            return await self._keys.authenticate_token(token)
        if self._jwt is None:
            raise Unauthorized(
                "not a Kronika API key (kr_...), and JWT bearer tokens are not enabled"
            )
        return await self._jwt.authenticate_token(token)
