"""API keys kept in the store's database, and the protocol to reach them (``store.keys``).

The store keeps what the server needs to check a key and nothing it could leak: a key's
public id, its name, roles, categories and times, and a one-way hash of its secret (see
:mod:`kronika.server.security.apikeys` for the key format and why the hash is SHA-256).
The secret itself is shown once when the key is created and never stored.

Roles are kept as names (``reader``, ``writer`` ...): the store layer knows nothing of
what they grant; the server maps them to permissions. Times are given by the caller, so
every backend records the same instants and tests need no database clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["ApiKeyRecord", "KeyStore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKeyRecord:
    """What is stored about one API key."""

    id: str
    """The public lookup handle: the part of ``kr_<id>_<secret>`` that is safe to log."""
    name: str
    """A label chosen by the operator (``ci-deploy``); may be empty."""
    secret_hash: bytes
    """SHA-256 digest of the secret; the secret itself is never stored."""
    roles: tuple[str, ...]
    """Role names, sorted."""
    categories: tuple[str, ...] | None
    """Stream categories the key may reach, sorted; ``None`` means every category."""
    created_at: datetime
    """When it was created (UTC)."""
    expires_at: datetime | None = None
    """When it stops working (UTC); ``None`` for never."""
    revoked_at: datetime | None = None
    """When an operator revoked it (UTC); ``None`` while it is live."""
    last_used_at: datetime | None = None
    """When it last authenticated a request, to the minute (UTC); ``None`` if never."""

    def expired(self, now: datetime) -> bool:
        """True when the key has an expiry time and ``now`` has reached it."""
        return self.expires_at is not None and now >= self.expires_at


class KeyStore(Protocol):
    """The API keys of one namespace."""

    async def create_key(self, record: ApiKeyRecord) -> bool:
        """Store a new key; False (and nothing changes) if a key with its id exists."""
        ...

    async def key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id, revoked and expired ones included, or ``None``."""
        ...

    async def keys(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        ...

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord | None:
        """Revoke a key at ``at`` (a key revoked before keeps its first time).

        Returns the key as stored afterwards, or ``None`` if there is no such key.
        """
        ...

    async def touch_key(self, key_id: str, at: datetime, *, stale_before: datetime) -> None:
        """Set ``last_used_at`` to ``at`` unless it is already at or after ``stale_before``.

        Callers pass ``stale_before = at - 1 minute`` so a busy key costs at most one write
        a minute however many requests it authenticates.
        """
        ...
