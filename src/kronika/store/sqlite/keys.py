"""API keys in the SQLite database (a ``KeyStore``).

Writes go through the store's writer thread like every other write; reads use the reader
pool. Semantics follow the memory backend (the reference).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

import orjson

from kronika.store.keys import ApiKeyRecord
from kronika.store.sqlite.parts import StorePart
from kronika.store.sqlite.processing_rows import micros, moment
from kronika.store.sqlite.sql import QUERIES

__all__ = ["SQLiteKeys"]


def _optional_moment(value: int | None) -> datetime | None:
    return None if value is None else moment(value)


def _optional_micros(value: datetime | None) -> int | None:
    return None if value is None else micros(value)


def _record_from_row(row: tuple[Any, ...]) -> ApiKeyRecord:
    key_id, name, secret_hash, roles, categories, created, expires, revoked, used = row
    return ApiKeyRecord(
        id=key_id,
        name=name,
        secret_hash=bytes(secret_hash),
        roles=tuple(orjson.loads(roles)),
        categories=None if categories is None else tuple(orjson.loads(categories)),
        created_at=moment(created),
        expires_at=_optional_moment(expires),
        revoked_at=_optional_moment(revoked),
        last_used_at=_optional_moment(used),
    )


def _select(conn: sqlite3.Connection, namespace: str, key_id: str | None) -> list[ApiKeyRecord]:
    rows = conn.execute(QUERIES["select_api_keys"], {"namespace": namespace, "id": key_id})
    return [_record_from_row(row) for row in rows]


class SQLiteKeys(StorePart):
    """The API keys of one namespace, in the store's SQLite file."""

    async def create_key(self, record: ApiKeyRecord) -> bool:
        """Store a new key; False if a key with its id exists."""
        params = {
            "namespace": self._namespace,
            "id": record.id,
            "name": record.name,
            "secret_hash": record.secret_hash,
            "roles": orjson.dumps(list(record.roles)).decode(),
            "categories": (
                None
                if record.categories is None
                else orjson.dumps(list(record.categories)).decode()
            ),
            "created_at": micros(record.created_at),
            "expires_at": _optional_micros(record.expires_at),
        }
        query = QUERIES["insert_api_key"]
        return await self._write(lambda conn: conn.execute(query, params).rowcount > 0)

    async def key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id, or ``None``."""
        found = await self._read(_select, key_id)
        return found[0] if found else None

    async def keys(self) -> list[ApiKeyRecord]:
        """Every key, oldest first."""
        return await self._read(_select, None)

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord | None:
        """Revoke a key (keeping an earlier revocation time); the key afterwards, or None."""
        ns, params = self._namespace, {"namespace": self._namespace, "id": key_id, "at": micros(at)}

        def revoke(conn: sqlite3.Connection) -> ApiKeyRecord | None:
            conn.execute(QUERIES["revoke_api_key"], params)
            found = _select(conn, ns, key_id)
            return found[0] if found else None

        return await self._write(revoke)

    async def touch_key(self, key_id: str, at: datetime, *, stale_before: datetime) -> None:
        """Record a use unless one at or after ``stale_before`` is recorded."""
        params = {
            "namespace": self._namespace,
            "id": key_id,
            "at": micros(at),
            "stale_before": micros(stale_before),
        }
        query = QUERIES["touch_api_key"]
        await self._write(lambda conn: conn.execute(query, params).rowcount)
