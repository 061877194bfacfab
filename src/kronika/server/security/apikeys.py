"""The API key format: ``kr_<id>_<secret>``, generated, parsed and hashed here.

- ``id`` is 16 lowercase hex characters (64 random bits): a public handle to look the
  key up by and to name it in logs, lists and ``kronika keys revoke``. It is not secret.
- ``secret`` is 43 URL-safe base64 characters: 32 bytes (256 bits) from :mod:`secrets`.

Why a plain SHA-256 of the secret, not bcrypt or argon2
------------------------------------------------------
Slow password hashes exist to make guessing *low-entropy* human passwords expensive after
a database leak. A key's secret has 256 random bits: nobody can enumerate that space
whatever the hash costs, so a fast hash loses no security, and it keeps a cache miss
cheap (a slow hash would cost ~100 ms of CPU per uncached request and make the server
easy to overload with garbage keys). The digest covers a fixed prefix and the key's id
too, so a stored hash is bound to its key. Digests are compared with
:func:`hmac.compare_digest`, whose time does not depend on where they differ.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from kronika.errors import Unauthorized

__all__ = ["PREFIX", "ParsedKey", "generate_key", "hash_secret", "parse_key", "verify_secret"]

PREFIX = "kr_"
"""What every Kronika API key starts with (so scanners and the server can tell it apart)."""

_ID_BYTES = 8
_SECRET_BYTES = 32
_SHAPE = re.compile(r"^kr_(?P<id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
_DOMAIN = b"kronika-api-key-v1\x00"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedKey:
    """A key split into its parts."""

    id: str
    """The public lookup handle."""
    secret: str
    """The secret part: never log or store it."""

    def __repr__(self) -> str:  # keep the secret out of tracebacks and logs
        return f"ParsedKey(id={self.id!r}, secret=<hidden>)"

    @property
    def token(self) -> str:
        """The whole key as a client sends it."""
        return f"{PREFIX}{self.id}_{self.secret}"


def generate_key() -> ParsedKey:
    """A fresh key: a random id and a 256-bit secret from the OS's CSPRNG."""
    return ParsedKey(id=secrets.token_hex(_ID_BYTES), secret=secrets.token_urlsafe(_SECRET_BYTES))


def parse_key(token: str) -> ParsedKey:
    """Split a ``kr_<id>_<secret>`` key; :class:`Unauthorized` if it is not one.

    The message never repeats the token: it may be a real secret with a typo.
    """
    match = _SHAPE.match(token.strip())
    if match is None:
        raise Unauthorized(
            "malformed API key: expected kr_<16 hex characters>_<43 base64url characters>"
        )
    return ParsedKey(id=match["id"], secret=match["secret"])


def hash_secret(key: ParsedKey) -> bytes:
    """The digest stored for ``key``: SHA-256 over a fixed prefix, the id and the secret."""
    return hashlib.sha256(_DOMAIN + key.id.encode() + b"\x00" + key.secret.encode()).digest()


def verify_secret(key: ParsedKey, stored_hash: bytes) -> bool:
    """Whether ``key``'s secret matches ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_secret(key), stored_hash)
