"""Schema versions and migrations of a SQLite database.

Migration 0001 creates ``schema_migrations``; each applied migration is recorded there
with the checksum of its SQL. A database migrated by a newer Kronika is always refused.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from kronika.errors import SchemaError
from kronika.store.migrations import Migration, SchemaStatus, status_of
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.connection import connect
from kronika.store.sqlite.errors import translating
from kronika.store.sqlite.sql import MIGRATIONS, QUERIES, split_script

__all__ = ["apply", "check", "migrate", "migrate_file", "prepare", "status", "status_of_file"]


def _applied(conn: sqlite3.Connection) -> dict[int, str]:
    """Checksums of the applied migrations, by version."""
    if not conn.execute(QUERIES["migrations_table_exists"]).fetchone()[0]:
        return {}
    return dict(conn.execute(QUERIES["applied_migrations"]).fetchall())


def status(conn: sqlite3.Connection) -> SchemaStatus:
    """How the database's schema compares with this code."""
    applied = _applied(conn)
    return status_of(max(applied, default=0), MIGRATIONS)


def check(conn: sqlite3.Connection, *, allow_pending: bool) -> SchemaStatus:
    """The status, raising ``SchemaError`` for a newer schema, an edited migration, or
    (unless ``allow_pending``) pending migrations."""
    applied = _applied(conn)
    found = status_of(max(applied, default=0), MIGRATIONS)
    if found.too_new:
        raise SchemaError(
            f"the database schema is at version {found.current}, newer than this Kronika "
            f"(which knows up to version {found.latest}); upgrade Kronika to use it"
        )
    for migration in MIGRATIONS:
        checksum = applied.get(migration.version)
        if checksum is not None and checksum != migration.checksum:
            raise SchemaError(
                f"migration {migration.version:04d}_{migration.name} differs from the one "
                "applied to this database; restore the released migration file"
            )
    if found.pending and not allow_pending:
        raise SchemaError(
            f"the database schema is at version {found.current} and {len(found.pending)} "
            f"migration(s) are pending (latest: {found.latest}); run 'kronika migrate'"
        )
    return found


def apply(conn: sqlite3.Connection, migration: Migration) -> None:
    """Run one migration and record it (inside the caller's transaction)."""
    for statement in split_script(migration.sql):
        conn.execute(statement)
    conn.execute(
        QUERIES["record_migration"],
        {
            "version": migration.version,
            "name": migration.name,
            "checksum": migration.checksum,
            "applied_at": datetime.now(UTC).isoformat(),
        },
    )


def migrate(conn: sqlite3.Connection) -> list[Migration]:
    """Apply the pending migrations (inside the caller's write transaction)."""
    pending = check(conn, allow_pending=True).pending
    for migration in pending:
        apply(conn, migration)
    return list(pending)


def prepare(conn: sqlite3.Connection, *, migrate_pending: bool) -> list[Migration]:
    """On open: migrate if allowed, else insist that nothing is pending."""
    if migrate_pending:
        return migrate(conn)
    check(conn, allow_pending=False)
    return []


def status_of_file(config: SQLiteConfig) -> SchemaStatus:
    """The schema status of a database file, without opening a store (blocking)."""
    if not config.path.exists():
        return status_of(0, MIGRATIONS)
    conn = connect(config, writer=False)
    try:
        with translating(config.path):
            return status(conn)
    finally:
        conn.close()


def migrate_file(config: SQLiteConfig) -> list[Migration]:
    """Migrate a database file in one transaction, without opening a store (blocking)."""
    conn = connect(config, writer=True)
    try:
        with translating(config.path):
            conn.execute(QUERIES["begin_immediate"])
            try:
                applied = migrate(conn)
                conn.execute(QUERIES["commit"])
            except BaseException:
                if conn.in_transaction:
                    conn.execute(QUERIES["rollback"])
                raise
            return applied
    finally:
        conn.close()
