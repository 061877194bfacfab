"""Authentication for the server: API keys, JWT bearer tokens, and their settings.

- :mod:`.apikeys`: the ``kr_<id>_<secret>`` format, generation and hashing.
- :mod:`.management`: create, revoke, bootstrap keys (``kronika keys`` uses these).
- :class:`KeyAuthenticator`, :class:`JWTAuthenticator`, :class:`ChainAuthenticator`:
  :class:`~kronika.server.principal.Authenticator` implementations.
- :class:`AuthSettings` and :func:`build_authenticator` / :func:`start_authentication`:
  what the server calls on start.

docs/reference/security.md describes it for users.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kronika.server.security.apikeys import generate_key, hash_secret, parse_key
    from kronika.server.security.build import build_authenticator, start_authentication
    from kronika.server.security.chain import ChainAuthenticator
    from kronika.server.security.jwt_auth import JWTAuthenticator
    from kronika.server.security.key_auth import KeyAuthenticator
    from kronika.server.security.management import (
        create_key,
        ensure_bootstrap_key,
        keys_of,
        revoke_key,
    )
    from kronika.server.security.settings import AuthSettings

__all__ = [
    "AuthSettings",
    "ChainAuthenticator",
    "JWTAuthenticator",
    "KeyAuthenticator",
    "build_authenticator",
    "create_key",
    "ensure_bootstrap_key",
    "generate_key",
    "hash_secret",
    "keys_of",
    "parse_key",
    "revoke_key",
    "start_authentication",
]

_HOMES = {
    "AuthSettings": "settings",
    "ChainAuthenticator": "chain",
    "JWTAuthenticator": "jwt_auth",
    "KeyAuthenticator": "key_auth",
    "build_authenticator": "build",
    "create_key": "management",
    "ensure_bootstrap_key": "management",
    "generate_key": "apikeys",
    "hash_secret": "apikeys",
    "keys_of": "management",
    "parse_key": "apikeys",
    "revoke_key": "management",
    "start_authentication": "build",
}
"""Where each public name lives: imported on first use, so ``kronika keys`` (which needs
no JWT library or pydantic) starts fast."""


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
