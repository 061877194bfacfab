"""Retention's queries in PostgreSQL (a ``RetentionStore``): one statement per call.

Semantics follow the memory backend (the reference). Deleting snapshots skips rows that
another transaction is writing (``FOR UPDATE SKIP LOCKED``): they are left for a later
batch rather than waited for.
"""

from __future__ import annotations

from typing import Any

from kronika.domain import names
from kronika.domain.events import StreamInfo
from kronika.store.postgres.database import Database
from kronika.store.postgres.queries import Queries
from kronika.store.postgres.rows import stream_info_from
from kronika.store.retention import SnapshotRule

__all__ = ["PostgresRetention"]


class PostgresRetention:
    """Retention's queries on one namespace of the store's PostgreSQL schema."""

    def __init__(self, db: Database, queries: Queries, namespace: str) -> None:
        self._db = db
        self._queries = queries
        self._namespace = namespace

    def _rule(self, rule: SnapshotRule) -> dict[str, Any]:
        return {
            "namespace": self._namespace,
            "orphaned": rule.orphaned,
            "recorded_before": rule.recorded_before,
        }

    async def limited_streams(self, *, after: str = "", limit: int = 1000) -> list[StreamInfo]:
        """Active streams with a ``max_age`` or ``max_count``, in name order after ``after``."""
        names.check_limit(limit)
        params = {"namespace": self._namespace, "after": after, "limit": limit}
        async with self._db.connection() as conn:
            cur = await conn.execute(self._queries.limited_streams, params)
            rows = await cur.fetchall()
        return [stream_info_from(row[0], row[1:]) for row in rows]

    async def count_snapshots(self, rule: SnapshotRule) -> int:
        """How many snapshots ``rule`` selects."""
        async with self._db.connection() as conn:
            cur = await conn.execute(self._queries.count_snapshots, self._rule(rule))
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def delete_snapshots(self, rule: SnapshotRule, *, limit: int) -> int:
        """Delete at most ``limit`` snapshots that ``rule`` selects, in one statement."""
        names.check_limit(limit)
        params = {**self._rule(rule), "limit": limit}
        async with self._db.connection() as conn:
            cur = await conn.execute(self._queries.delete_snapshots, params)
            return cur.rowcount
