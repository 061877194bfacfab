"""Opening SQLite connections with Kronika's settings."""

from __future__ import annotations

import sqlite3

from kronika.errors import ConfigurationError
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.errors import check_directory, translating
from kronika.store.sqlite.sql import QUERIES

__all__ = ["connect"]

_STATEMENT_CACHE = 256
"""Prepared statements kept per connection: more than the backend has queries."""

_SYNCHRONOUS = {"full": "synchronous_full", "normal": "synchronous_normal"}


def connect(config: SQLiteConfig, *, writer: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread.

    A writer connection switches the database to WAL and sets ``synchronous``; a reader
    connection is query-only.
    """
    check_directory(config.path)
    with translating(config.path):
        conn = sqlite3.connect(
            config.path,
            timeout=config.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=_STATEMENT_CACHE,
        )
        try:
            _configure(conn, config, writer=writer)
        except BaseException:
            conn.close()
            raise
    return conn


def _configure(conn: sqlite3.Connection, config: SQLiteConfig, *, writer: bool) -> None:
    if not writer:
        conn.execute(QUERIES["query_only"])
        return
    mode = conn.execute(QUERIES["enable_wal"]).fetchone()[0]
    if str(mode).lower() != "wal":
        raise ConfigurationError(
            f"the SQLite database {config.path} cannot use WAL mode (it is in {mode!r} mode); "
            "Kronika needs WAL: put the file on a local file system"
        )
    conn.execute(QUERIES[_SYNCHRONOUS[config.synchronous]])
    conn.execute(QUERIES["limit_wal_size"])
    conn.execute(QUERIES["writer_cache_size"])
