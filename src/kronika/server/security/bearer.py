"""Reading ``Authorization: Bearer <token>`` headers, the one way credentials arrive."""

from __future__ import annotations

from kronika.errors import Unauthorized

__all__ = ["bearer_token"]


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value; ``Unauthorized`` otherwise."""
    if authorization is None or not authorization.strip():
        raise Unauthorized("missing credentials")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("unsupported authorization scheme: use 'Bearer <token>'")
    if not token.strip():
        raise Unauthorized("missing credentials: the bearer token is empty")
    return token.strip()
