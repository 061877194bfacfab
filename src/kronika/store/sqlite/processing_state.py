"""The runtime's bookkeeping outside processing transactions, as functions of a connection.

Writes (registering, pausing, requests, heartbeats, leases) run on the store's writer
thread inside its group transaction; reads run on a reader thread. Each function reads
the clock itself, when it runs, so time spent waiting in a queue does not shorten a lease.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import orjson

from kronika.errors import ConfigurationError, NotFound
from kronika.store.processing import FailedKey, FailureAction, Lease, ProcessorRecord
from kronika.store.sqlite.processing_rows import (
    failure_from_row,
    lease_from_row,
    now_micros,
    records_from_rows,
)
from kronika.store.sqlite.sql import QUERIES

__all__ = [
    "acquire_leases",
    "failures",
    "heartbeat",
    "leases",
    "processors",
    "register_processor",
    "release_leases_except",
    "request",
    "set_paused",
]


def processors(conn: sqlite3.Connection, namespace: str, name: str | None) -> list[ProcessorRecord]:
    """The records of one processor (``name``) or of all (``None``), by name."""
    params = {"namespace": namespace, "name": name}
    return records_from_rows(conn.execute(QUERIES["select_processors"], params))


def register_processor(
    conn: sqlite3.Connection, namespace: str, name: str, partitions: int
) -> ProcessorRecord:
    """Create the record if new; refuse a partition count other than the stored one."""
    params = {"namespace": namespace, "name": name, "partitions": partitions}
    conn.execute(QUERIES["insert_processor"], params)
    [record] = processors(conn, namespace, name)
    if record.partitions != partitions:
        raise ConfigurationError(
            f"processor {name!r} runs with {record.partitions} partitions, not {partitions}; "
            "the count is fixed once a processor has run (replay under a new name to change it)"
        )
    return record


def set_paused(conn: sqlite3.Connection, namespace: str, name: str, paused: bool) -> None:
    """Pause or resume a processor; ``NotFound`` if it never ran."""
    params = {"namespace": namespace, "name": name, "paused": int(paused)}
    if conn.execute(QUERIES["set_paused"], params).rowcount == 0:
        raise NotFound(f"no processor {name!r} has run in this namespace")


def failures(conn: sqlite3.Connection, namespace: str, processor: str | None) -> list[FailedKey]:
    """Failed keys of one processor (or all), oldest first."""
    params = {"namespace": namespace, "processor": processor}
    return [failure_from_row(row) for row in conn.execute(QUERIES["select_failures"], params)]


def request(
    conn: sqlite3.Connection, namespace: str, processor: str, key: str, action: FailureAction
) -> bool:
    """Record an operator's request on a failed key; False if the key is not failed."""
    params = {"namespace": namespace, "processor": processor, "key": key, "action": action.value}
    return conn.execute(QUERIES["request_action"], params).rowcount > 0


def heartbeat(conn: sqlite3.Connection, namespace: str, owner: str, ttl: float) -> list[str]:
    """Keep ``owner`` alive for ``ttl`` seconds; every live worker, sorted."""
    now = now_micros()
    expires_at = now + round(ttl * 1_000_000)
    conn.execute(
        QUERIES["save_heartbeat"],
        {"namespace": namespace, "owner": owner, "expires_at": expires_at},
    )
    conn.execute(QUERIES["delete_expired_workers"], {"namespace": namespace, "now": now})
    rows = conn.execute(QUERIES["live_workers"], {"namespace": namespace, "now": now})
    return sorted(owner for (owner,) in rows)


def acquire_leases(
    conn: sqlite3.Connection,
    namespace: str,
    processor: str,
    partitions: Sequence[int],
    *,
    owner: str,
    ttl: float,
) -> list[int]:
    """Claim or renew the partitions that are free, lapsed or ``owner``'s; those held now."""
    now = now_micros()
    params = {
        "namespace": namespace,
        "processor": processor,
        "owner": owner,
        "expires_at": now + round(ttl * 1_000_000),
        "now": now,
    }
    claim = QUERIES["claim_lease"]
    return [p for p in partitions if conn.execute(claim, {**params, "partition": p}).rowcount]


def release_leases_except(
    conn: sqlite3.Connection, namespace: str, processor: str, owner: str, keep: Sequence[int]
) -> None:
    """Give up ``owner``'s leases on ``processor`` other than the ``keep`` partitions."""
    params = {
        "namespace": namespace,
        "processor": processor,
        "owner": owner,
        "keep": orjson.dumps(list(keep)).decode(),
    }
    conn.execute(QUERIES["release_leases_except"], params)


def leases(conn: sqlite3.Connection, namespace: str, processor: str) -> list[Lease]:
    """The leases on a processor, by partition."""
    rows = conn.execute(QUERIES["select_leases"], {"namespace": namespace, "processor": processor})
    return [lease_from_row(processor, row) for row in rows]
