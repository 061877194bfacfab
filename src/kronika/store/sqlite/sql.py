"""The SQLite backend's SQL: named queries from ``queries.sql``, migrations and ``schema.sql``."""

from __future__ import annotations

import sqlite3
from importlib import resources

from kronika.store.migrations import Migration, load_migrations
from kronika.store.sqlfiles import load_queries

__all__ = ["MIGRATIONS", "QUERIES", "canonical_schema", "split_script"]

_PACKAGE = "kronika.store.sqlite"

QUERIES: dict[str, str] = load_queries(_PACKAGE, "queries.sql")
"""Every named query, by name."""

MIGRATIONS: tuple[Migration, ...] = load_migrations(_PACKAGE)
"""The schema migrations, in order."""


def canonical_schema() -> str:
    """The text of ``schema.sql``: the schema after the newest migration."""
    return resources.files(_PACKAGE).joinpath("schema.sql").read_text(encoding="utf-8")


def split_script(script: str) -> list[str]:
    """Split a SQL script into complete statements (triggers stay whole).

    ``sqlite3.Connection.executescript`` would commit first; running the statements one by
    one keeps a migration and its bookkeeping row in one transaction.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return statements
