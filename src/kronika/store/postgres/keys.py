"""API keys in PostgreSQL (a ``KeyStore``): one statement per call on a pooled connection.

Semantics follow the memory backend (the reference). Creating a key is an
``INSERT ... ON CONFLICT DO NOTHING``, so replicas that bootstrap the same key at once
store it once and each learns whether it was the one that did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kronika.store.keys import ApiKeyRecord
from kronika.store.postgres.database import Database
from kronika.store.postgres.queries import Queries

__all__ = ["PostgresKeys"]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _record_from(row: Sequence[Any]) -> ApiKeyRecord:
    key_id, name, secret_hash, roles, categories, created, expires, revoked, used = row
    return ApiKeyRecord(
        id=key_id,
        name=name,
        secret_hash=bytes(secret_hash),
        roles=tuple(roles),
        categories=None if categories is None else tuple(categories),
        created_at=created.astimezone(UTC),
        expires_at=_utc(expires),
        revoked_at=_utc(revoked),
        last_used_at=_utc(used),
    )


class PostgresKeys:
    """The API keys of one namespace, in the store's PostgreSQL schema."""

    def __init__(self, db: Database, queries: Queries, namespace: str) -> None:
        self._db = db
        self._queries = queries
        self._namespace = namespace

    async def _rows(self, query: bytes, **params: Any) -> list[tuple[Any, ...]]:
        async with self._db.connection() as conn:
            cur = await conn.execute(query, {"namespace": self._namespace, **params}, prepare=True)
            return await cur.fetchall() if cur.description else []

    async def create_key(self, record: ApiKeyRecord) -> bool:
        """Store a new key; False if a key with its id exists."""
        rows = await self._rows(
            self._queries.insert_api_key,
            id=record.id,
            name=record.name,
            secret_hash=record.secret_hash,
            roles=list(record.roles),
            categories=None if record.categories is None else list(record.categories),
            created_at=record.created_at,
            expires_at=record.expires_at,
        )
        return bool(rows)

    async def key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id, or ``None``."""
        rows = await self._rows(self._queries.select_api_keys, id=key_id)
        return _record_from(rows[0]) if rows else None

    async def keys(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        rows = await self._rows(self._queries.select_api_keys, id=None)
        return [_record_from(row) for row in rows]

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord | None:
        """Revoke a key (keeping an earlier revocation time); the key afterwards, or None."""
        rows = await self._rows(self._queries.revoke_api_key, id=key_id, at=at)
        return _record_from(rows[0]) if rows else None

    async def touch_key(self, key_id: str, at: datetime, *, stale_before: datetime) -> None:
        """Record a use unless one at or after ``stale_before`` is recorded."""
        await self._rows(self._queries.touch_api_key, id=key_id, at=at, stale_before=stale_before)
