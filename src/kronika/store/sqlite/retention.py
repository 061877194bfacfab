"""Retention's queries in the SQLite database (a ``RetentionStore``).

Reads use the reader pool; deleting snapshots goes through the writer thread like every
write, one request (one transaction) per call. Semantics follow the memory backend.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from kronika.domain import names
from kronika.domain.events import StreamInfo
from kronika.store.retention import SnapshotRule
from kronika.store.sqlite.parts import StorePart
from kronika.store.sqlite.processing_rows import micros
from kronika.store.sqlite.rows import StreamRow
from kronika.store.sqlite.sql import QUERIES

__all__ = ["SQLiteRetention"]


def _limited(conn: sqlite3.Connection, namespace: str, after: str, limit: int) -> list[StreamInfo]:
    params = {"namespace": namespace, "after": after, "limit": limit}
    found = []
    for stream, *values in conn.execute(QUERIES["limited_streams"], params):
        row = StreamRow.from_row(tuple(values))
        assert row is not None
        found.append(row.info(stream))
    return found


def _rule_params(namespace: str, rule: SnapshotRule) -> dict[str, Any]:
    before = rule.recorded_before
    return {
        "namespace": namespace,
        "orphaned": int(rule.orphaned),
        "recorded_before": None if before is None else micros(before),
    }


def _count(conn: sqlite3.Connection, namespace: str, rule: SnapshotRule) -> int:
    row = conn.execute(QUERIES["count_snapshots"], _rule_params(namespace, rule)).fetchone()
    return int(row[0])


class SQLiteRetention(StorePart):
    """Retention's queries on one namespace of the store's SQLite file."""

    async def limited_streams(self, *, after: str = "", limit: int = 1000) -> list[StreamInfo]:
        """Active streams with a ``max_age`` or ``max_count``, in name order after ``after``."""
        names.check_limit(limit)
        return await self._read(_limited, after, limit)

    async def count_snapshots(self, rule: SnapshotRule) -> int:
        """How many snapshots ``rule`` selects."""
        return await self._read(_count, rule)

    async def delete_snapshots(self, rule: SnapshotRule, *, limit: int) -> int:
        """Delete at most ``limit`` snapshots that ``rule`` selects, in one transaction."""
        names.check_limit(limit)
        params = {**_rule_params(self._namespace, rule), "limit": limit}

        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute(QUERIES["delete_snapshots"], params).rowcount

        return await self._write(delete)
