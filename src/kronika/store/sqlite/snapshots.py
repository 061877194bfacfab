"""Snapshots in SQLite: the latest one per stream, in the ``snapshots`` table.

Writing goes through the writer thread like every write; deleting a stream deletes its
snapshot in the same transaction (see :class:`~kronika.store.sqlite.writes.DeleteOp`).
"""

from __future__ import annotations

import sqlite3
import time

from kronika.domain.events import Snapshot
from kronika.store.base import decode_json
from kronika.store.sqlite.sql import QUERIES
from kronika.store.sqlite.transaction import Transaction, WriteOp
from kronika.store.sqlite.writes import require_stream

__all__ = ["SnapshotOp", "read_snapshot"]


class SnapshotOp(WriteOp[None]):
    """Keep a stream's latest snapshot; the stream must exist and not be tombstoned."""

    def __init__(
        self, namespace: str, stream: str, version: int, schema_version: int, state: bytes
    ) -> None:
        self.namespace, self.stream = namespace, stream
        self.version, self.schema_version, self.state = version, schema_version, state

    def run(self, tx: Transaction) -> None:
        require_stream(tx.conn, self.namespace, self.stream)
        params = {
            "namespace": self.namespace,
            "stream": self.stream,
            "version": self.version,
            "schema_version": self.schema_version,
            "state": self.state,
            "recorded_at": time.time_ns() // 1000,
        }
        tx.conn.execute(QUERIES["save_snapshot"], params)


def read_snapshot(conn: sqlite3.Connection, namespace: str, stream: str) -> Snapshot | None:
    """The stream's latest snapshot, or ``None``."""
    params = {"namespace": namespace, "stream": stream}
    row = conn.execute(QUERIES["select_snapshot"], params).fetchone()
    if row is None:
        return None
    version, schema_version, state = row
    return Snapshot(
        stream=stream, version=version, schema_version=schema_version, state=decode_json(state)
    )
