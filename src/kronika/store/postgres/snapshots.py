"""Snapshots in PostgreSQL: the latest one per stream, in the ``snapshots`` table.

Writing one is a single statement that locks the stream's row ``FOR SHARE`` and checks it
exists and is not tombstoned. Deleting a stream deletes its snapshot in the delete's own
transaction (:meth:`PostgresSnapshots.delete`), after updating the stream row, so a
snapshot written concurrently is either seen and deleted, or written after the delete
(like any write to a soft-deleted stream).
"""

from __future__ import annotations

from kronika.domain.events import Snapshot, StreamState
from kronika.errors import StreamDeleted, StreamNotFound
from kronika.store.postgres.database import Connection, Database, RawJson
from kronika.store.postgres.queries import Queries

__all__ = ["PostgresSnapshots"]


class PostgresSnapshots:
    """Snapshots of one namespace."""

    def __init__(self, db: Database, queries: Queries, namespace: str) -> None:
        self._db = db
        self._queries = queries
        self._namespace = namespace

    async def write(self, stream: str, version: int, schema_version: int, state: bytes) -> None:
        """Keep ``state`` (JSON) as the stream's latest snapshot."""
        params = {
            "namespace": self._namespace,
            "stream": stream,
            "version": version,
            "schema_version": schema_version,
            "state": RawJson(state),
        }
        async with self._db.connection() as conn:
            cur = await conn.execute(self._queries.save_snapshot, params, prepare=True)
            row = await cur.fetchone()
        if row is None:
            raise StreamNotFound(stream)
        if row[0] == StreamState.TOMBSTONED.value:
            raise StreamDeleted(stream)

    async def read(self, stream: str) -> Snapshot | None:
        """The stream's latest snapshot, or ``None``."""
        params = {"namespace": self._namespace, "stream": stream}
        async with self._db.connection() as conn:
            cur = await conn.execute(self._queries.read_snapshot, params, prepare=True)
            row = await cur.fetchone()
        if row is None:
            return None
        version, schema_version, state = row
        return Snapshot(stream=stream, version=version, schema_version=schema_version, state=state)

    async def delete(self, conn: Connection, stream: str) -> None:
        """Delete the stream's snapshot inside the caller's transaction on ``conn``."""
        params = {"namespace": self._namespace, "stream": stream}
        await conn.execute(self._queries.delete_snapshot, params)
