"""The PostgreSQL backend's raw access to its log for ``kronika verify`` (a ``ChainSource``).

Scans stop below the visibility horizon, like every global read: a checkpoint never covers
a position below which a transaction could still commit an event. Each event's content
comes as one JSON text built by the server (``jsonb_build_array``), so Python parses one
value per event and psycopg builds five columns instead of nine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC
from typing import Any

from psycopg.rows import tuple_row

from kronika.store.integrity import Checkpoint, Prior, ScanRow, StreamTail
from kronika.store.postgres.database import Database
from kronika.store.postgres.queries import Queries

__all__ = ["PostgresChains"]


def _checkpoint(row: Sequence[Any]) -> Checkpoint:
    position, events, hash_, created_at = row
    return Checkpoint(
        position=position, events=events, hash=hash_, created_at=created_at.astimezone(UTC)
    )


class PostgresChains:
    """The hash chains of one namespace, in the store's PostgreSQL schema (see
    :class:`kronika.store.integrity.ChainSource`)."""

    def __init__(
        self,
        db: Database,
        queries: Queries,
        namespace: str,
        own_writes: Callable[[], Awaitable[None]],
    ) -> None:
        self._db = db
        self._queries = queries
        self._namespace = namespace
        self._own_writes = own_writes

    async def _rows(self, query: bytes, **params: Any) -> list[tuple[Any, ...]]:
        async with self._db.connection() as conn:
            cur = conn.cursor(row_factory=tuple_row, binary=True)
            await cur.execute(query, {"namespace": self._namespace, **params}, prepare=True)
            return await cur.fetchall()

    async def scan_limit(self) -> int:
        """The newest position below the visibility horizon (0 when none is readable),
        after waiting until the horizon passes the store's own appends, as ``read_all``."""
        await self._own_writes()
        rows = await self._rows(self._queries.chain_scan_limit)
        return int(rows[0][0])

    async def scan(self, after: int, upto: int, limit: int) -> list[ScanRow]:
        """Events with ``after < position <= upto``, in position order."""
        query = self._queries.chain_scan
        return await self._rows(query, after=after, upto=upto, limit=limit)

    async def priors(self, wanted: Sequence[tuple[str, int]]) -> dict[str, Prior]:
        """Stream rows and the events one version lower."""
        if not wanted:
            return {}
        streams, versions = [s for s, _ in wanted], [v for _, v in wanted]
        rows = await self._rows(self._queries.chain_priors, streams=streams, versions=versions)
        return {row[0]: Prior.from_row(row) for row in rows}

    async def tails(self, after: str, limit: int) -> list[StreamTail]:
        """Stream rows after ``after`` with their newest events."""
        rows = await self._rows(self._queries.chain_tails, after=after, limit=limit)
        return [StreamTail.from_row(row) for row in rows]

    async def checkpoints(self, after: int, upto: int) -> list[Checkpoint]:
        """Checkpoints with ``after < position <= upto``."""
        rows = await self._rows(self._queries.chain_checkpoints, after=after, upto=upto)
        return [_checkpoint(row) for row in rows]

    async def last_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint."""
        rows = await self._rows(self._queries.last_chain_checkpoint)
        return _checkpoint(rows[0]) if rows else None

    async def purges(self) -> int:
        """The namespace's purge counter."""
        rows = await self._rows(self._queries.chain_purge_count)
        return int(rows[0][0])

    async def record(self, checkpoint: Checkpoint, purges: int) -> bool:
        """Record ``checkpoint`` unless the purge counter moved past ``purges``."""
        rows = await self._rows(
            self._queries.record_chain_checkpoint,
            position=checkpoint.position,
            events=checkpoint.events,
            hash=checkpoint.hash,
            purges=purges,
        )
        return bool(rows) and rows[0][0] == purges
