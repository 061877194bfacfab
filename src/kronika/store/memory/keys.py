"""API keys for the memory backend: a dict of records (the reference semantics)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from kronika.store.keys import ApiKeyRecord

__all__ = ["MemoryKeys"]


class MemoryKeys:
    """The API keys of one namespace of a memory log."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKeyRecord] = {}

    async def create_key(self, record: ApiKeyRecord) -> bool:
        """Store a new key; False if a key with its id exists."""
        if record.id in self._keys:
            return False
        self._keys[record.id] = record
        return True

    async def key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id, or ``None``."""
        return self._keys.get(key_id)

    async def keys(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.id))

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord | None:
        """Revoke a key (keeping an earlier revocation time); the key afterwards, or None."""
        found = self._keys.get(key_id)
        if found is None:
            return None
        if found.revoked_at is None:
            found = self._keys[key_id] = replace(found, revoked_at=at)
        return found

    async def touch_key(self, key_id: str, at: datetime, *, stale_before: datetime) -> None:
        """Record a use unless one at or after ``stale_before`` is recorded."""
        found = self._keys.get(key_id)
        if found is not None and (found.last_used_at is None or found.last_used_at < stale_before):
            self._keys[key_id] = replace(found, last_used_at=at)
