"""The SQLite backend's raw access to its log for ``kronika verify`` (a ``ChainSource``).

Reads run on the reader pool, each query on one snapshot; a checkpoint is recorded by the
writer thread, which also runs every purge, so comparing the purge counter there is exact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from kronika.store.integrity import Checkpoint, Prior, ScanRow, StreamTail
from kronika.store.sqlite.parts import StorePart
from kronika.store.sqlite.processing_rows import micros, moment
from kronika.store.sqlite.sql import QUERIES

__all__ = ["SQLiteChains"]


def _scan(
    conn: sqlite3.Connection, namespace: str, after: int, upto: int, limit: int
) -> list[ScanRow]:
    params = {"namespace": namespace, "after": after, "upto": upto, "limit": limit}
    rows: list[ScanRow] = conn.execute(QUERIES["chain_scan"], params).fetchall()
    return rows


def _priors(conn: sqlite3.Connection, namespace: str, wanted: str) -> dict[str, Prior]:
    rows = conn.execute(QUERIES["chain_priors"], {"namespace": namespace, "wanted": wanted})
    return {row[0]: Prior.from_row(row) for row in rows}


def _tails(conn: sqlite3.Connection, namespace: str, after: str, limit: int) -> list[StreamTail]:
    params = {"namespace": namespace, "after": after, "limit": limit}
    return [StreamTail.from_row(row) for row in conn.execute(QUERIES["chain_tails"], params)]


def _checkpoint(row: tuple[Any, ...]) -> Checkpoint:
    position, events, hash_, created_at = row
    return Checkpoint(position=position, events=events, hash=hash_, created_at=moment(created_at))


def _checkpoints(
    conn: sqlite3.Connection, namespace: str, after: int, upto: int
) -> list[Checkpoint]:
    params = {"namespace": namespace, "after": after, "upto": upto}
    return [_checkpoint(row) for row in conn.execute(QUERIES["chain_checkpoints"], params)]


def _one(conn: sqlite3.Connection, namespace: str, query: str) -> Any:
    return conn.execute(QUERIES[query], {"namespace": namespace}).fetchone()


class SQLiteChains(StorePart):
    """The hash chains of one namespace, in the store's SQLite file (see
    :class:`kronika.store.integrity.ChainSource`)."""

    async def scan_limit(self) -> int:
        """The newest position (0 when the log is empty)."""
        row = await self._read(_one, "head_position")
        return int(row[0] or 0)

    async def scan(self, after: int, upto: int, limit: int) -> list[ScanRow]:
        """Events with ``after < position <= upto``, in position order."""
        return await self._read(_scan, after, upto, limit)

    async def priors(self, wanted: Sequence[tuple[str, int]]) -> dict[str, Prior]:
        """Stream rows and the events one version lower."""
        if not wanted:
            return {}
        text = orjson.dumps(list(wanted)).decode()
        return await self._read(_priors, text)

    async def tails(self, after: str, limit: int) -> list[StreamTail]:
        """Stream rows after ``after`` with their newest events."""
        return await self._read(_tails, after, limit)

    async def checkpoints(self, after: int, upto: int) -> list[Checkpoint]:
        """Checkpoints with ``after < position <= upto``."""
        return await self._read(_checkpoints, after, upto)

    async def last_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint."""
        row = await self._read(_one, "last_chain_checkpoint")
        return None if row is None else _checkpoint(row)

    async def purges(self) -> int:
        """The namespace's purge counter."""
        row = await self._read(_one, "chain_purge_count")
        return int(row[0])

    async def record(self, checkpoint: Checkpoint, purges: int) -> bool:
        """Record ``checkpoint`` unless the purge counter moved past ``purges``."""
        namespace = self._namespace
        params = {
            "namespace": namespace,
            "position": checkpoint.position,
            "events": checkpoint.events,
            "hash": checkpoint.hash,
            "created_at": micros(checkpoint.created_at or datetime.now(UTC)),
        }

        def record(conn: sqlite3.Connection) -> bool:
            if _one(conn, namespace, "chain_purge_count")[0] != purges:
                return False
            conn.execute(QUERIES["record_chain_checkpoint"], params)
            return True

        return await self._write(record)
