"""Schema versions and migrations of the PostgreSQL backend.

``migrations/NNNN_*.sql`` are applied in order, each in its own transaction, under a
session advisory lock so that concurrent migrators (several replicas starting at once)
are safe: the second waits, then finds nothing to do. ``schema.sql`` is the canonical
result of all of them; a test proves they agree.
"""

from __future__ import annotations

from kronika.errors import SchemaError
from kronika.store.migrations import Migration, SchemaStatus, load_migrations, status_of
from kronika.store.postgres.database import Connection
from kronika.store.postgres.errors import translated
from kronika.store.postgres.queries import Queries, render

__all__ = ["MIGRATIONS", "apply_pending", "check_usable", "read_status"]

MIGRATIONS: tuple[Migration, ...] = load_migrations(__package__ or "kronika.store.postgres")
"""Every migration this version of Kronika knows, oldest first."""


async def _applied(conn: Connection, queries: Queries, schema: str) -> dict[int, str]:
    """Version -> checksum of the migrations applied to ``schema`` (empty if none)."""
    cur = await conn.execute(queries.migrations_table_exists, {"schema": schema})
    row = await cur.fetchone()
    if not row or not row[0]:
        return {}
    cur = await conn.execute(queries.applied_migrations)
    return {version: checksum for version, _name, checksum in await cur.fetchall()}


async def read_status(conn: Connection, queries: Queries, schema: str) -> SchemaStatus:
    """How the database's schema compares with the migrations this code knows."""
    with translated():
        applied = await _applied(conn, queries, schema)
    return status_of(max(applied, default=0), MIGRATIONS)


def check_usable(status: SchemaStatus, *, pending_allowed: bool) -> None:
    """Raise ``SchemaError`` if the schema is newer than the code, or has pending
    migrations that may not be applied now."""
    if status.too_new:
        raise SchemaError(
            f"the database schema is at version {status.current}, newer than this Kronika "
            f"knows (version {status.latest}); upgrade Kronika"
        )
    if status.pending and not pending_allowed:
        count = len(status.pending)
        plural = "migration is" if count == 1 else "migrations are"
        raise SchemaError(
            f"the database schema is at version {status.current} and {count} {plural} "
            f"pending; run 'kronika migrate'"
        )


def _check_checksums(applied: dict[int, str]) -> None:
    for migration in MIGRATIONS:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise SchemaError(
                f"migration {migration.version:04d}_{migration.name} was changed after it was "
                "applied; restore the original file"
            )


async def apply_pending(conn: Connection, queries: Queries, schema: str) -> list[Migration]:
    """Apply the pending migrations to ``schema`` and return them (``conn`` is autocommit)."""
    with translated():
        await conn.execute(queries.lock_migrations, {"schema": schema})
        try:
            return await _apply_locked(conn, queries, schema)
        finally:
            await conn.execute(queries.unlock_migrations, {"schema": schema})


async def _apply_locked(conn: Connection, queries: Queries, schema: str) -> list[Migration]:
    await conn.execute(queries.create_migrations_table, prepare=False)
    applied = await _applied(conn, queries, schema)
    _check_checksums(applied)
    status = status_of(max(applied, default=0), MIGRATIONS)
    check_usable(status, pending_allowed=True)
    for migration in status.pending:
        async with conn.transaction():
            await conn.execute(render(migration.sql, schema), prepare=False)
            await conn.execute(
                queries.record_migration,
                {
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                },
            )
    return list(status.pending)
