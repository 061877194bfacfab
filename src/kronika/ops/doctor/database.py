"""Checks of the store's database: reachable, schema current, role, pool, TLS, disk, snapshots.

Everything here only reads. The PostgreSQL checks open one connection of their own with
the store's URL (as the runtime role would connect) and ask the catalogs; the SQLite checks
look at the database file, its filesystem and, read-only, its tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kronika.ops.doctor.context import DoctorContext
from kronika.ops.doctor.model import Finding, Severity, Skip
from kronika.store.sqlfiles import load_queries

__all__ = [
    "database_role",
    "database_tls",
    "disk_space",
    "pool_sizing",
    "schema_current",
    "snapshot_policy",
    "store_reachable",
]

POOL_REQUESTS_PER_CONNECTION = 8
"""Concurrent requests one pooled connection serves comfortably (each holds it for a round
trip); beyond this many per connection, requests queue for the pool."""
POOL_EXTRA_CONNECTIONS = 2
"""Connections a store opens besides its pool: notifications and LISTEN."""
LOCAL_SOCKETS = frozenset({"", "localhost", "127.0.0.1", "::1"})
VERIFIED_SSLMODE = "verify-full"
WEAK_SSLMODES = frozenset({"disable", "allow", "prefer"})


@cache
def _queries() -> dict[str, str]:
    return load_queries("kronika.ops.doctor", "queries.sql")


async def store_reachable(ctx: DoctorContext) -> list[Finding]:
    """DR-STORE-REACH: the configured store can be reached and opened."""
    problem = ctx.store_problem
    if problem is None:
        if ctx.store is None and ctx.schema is None:
            raise Skip(ctx.store_skip or "no store configured")
        return []
    return [
        Finding(
            check="DR-STORE-REACH",
            severity=problem.severity,
            title=problem.title,
            found=problem.found,
            action=problem.action,
        )
    ]


async def schema_current(ctx: DoctorContext) -> list[Finding]:
    """DR-SCHEMA: the database's schema is the one this Kronika expects."""
    status = ctx.schema
    if status is None:
        raise Skip(ctx.store_skip or "the schema could not be read (see DR-STORE-REACH)")
    if status.too_new:
        return [
            _schema_finding(
                Severity.CRITICAL,
                "the database schema is newer than this Kronika",
                f"schema {status.current}, this Kronika knows {status.latest}: it refuses to run",
                "deploy the Kronika version that migrated the database (or newer)",
            )
        ]
    if status.current == 0 and ctx.engine != "memory":
        return [
            _schema_finding(
                Severity.MEDIUM,
                "the database has no Kronika schema",
                "no migrations were ever applied: is this the deployment's database?",
                "check the URL; for a new deployment run kronika migrate (as the owner role)",
            )
        ]
    if status.pending:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in status.pending)
        return [
            _schema_finding(
                Severity.HIGH,
                "migrations are pending",
                f"schema {status.current} of {status.latest}; pending: {names}",
                "run kronika migrate (as the owner role) before rolling out this version",
            )
        ]
    return []


def _schema_finding(severity: Severity, title: str, found: str, action: str) -> Finding:
    return Finding(check="DR-SCHEMA", severity=severity, title=title, found=found, action=action)


# -- PostgreSQL -------------------------------------------------------------------------------


def _postgres(ctx: DoctorContext) -> Any:
    """The PostgreSQL settings of the store URL; :class:`Skip` for other engines."""
    if ctx.engine != "postgresql" or ctx.store_url is None:
        raise Skip(f"the store is not PostgreSQL ({ctx.engine or 'none'})")
    if ctx.store_problem is not None:
        raise Skip("the store cannot be reached (see DR-STORE-REACH)")
    from kronika.store.postgres.settings import parse_url

    options = {"namespace": ctx.options.namespace} if ctx.options.namespace else {}
    return parse_url(ctx.store_url, options)


@contextlib.asynccontextmanager
async def _connect(ctx: DoctorContext, conninfo: str) -> AsyncIterator[Any]:
    import psycopg

    from kronika.errors import Unavailable

    try:
        conn = await psycopg.AsyncConnection.connect(
            conninfo,
            autocommit=True,
            connect_timeout=max(1, int(ctx.options.timeout)),
            application_name="kronika-doctor",
        )
    except psycopg.Error as exc:
        raise Unavailable(f"cannot connect to PostgreSQL: {exc}") from None
    try:
        yield conn
    finally:
        await conn.close()


async def _rows(ctx: DoctorContext, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    settings = _postgres(ctx)
    from psycopg import sql

    # The text is a packaged query; the schema goes in as a quoted identifier.
    query = sql.SQL(_queries()[name]).format(schema=sql.Identifier(settings.schema))
    async with _connect(ctx, settings.conninfo) as conn:
        cursor = await conn.execute(query, {"schema": settings.schema, **params})
        return list(await cursor.fetchall())


async def database_role(ctx: DoctorContext) -> list[Finding]:
    """DR-DB-ROLE (A10): the runtime role may insert and read events, not rewrite them."""
    schema = _postgres(ctx).schema
    [(role, superuser, owns_schema, may_create)] = await _rows(ctx, "pg_role", {})
    severity = Severity.HIGH if ctx.production else Severity.LOW
    if superuser:
        return [
            _role_finding(
                severity,
                "the store connects as a superuser",
                f"role {role!r} is a superuser: it can disable the triggers that keep events "
                "immutable, and do anything else to every database",
            )
        ]
    found = []
    tables = await _rows(ctx, "pg_event_tables", {})
    owned = [t[0] for t in tables if t[1]]
    if owned or owns_schema:
        what = f"tables {', '.join(owned)}" if owned else f"schema {schema}"
        found.append(
            _role_finding(
                severity,
                "the store's role owns Kronika's schema",
                f"role {role!r} owns {what}: it can ALTER or DROP them and disable the "
                "immutability triggers",
            )
        )
    writes = sorted(
        {f"{verb} on {t[0]}" for t in tables if not t[1] for verb, ok in _writes(t) if ok}
    )
    if writes:
        found.append(
            _role_finding(
                severity,
                "the store's role may change or remove events",
                f"role {role!r} has {', '.join(writes)}",
            )
        )
    if may_create and not owns_schema:
        found.append(
            _role_finding(
                Severity.MEDIUM if ctx.production else Severity.LOW,
                "the store's role may create objects in Kronika's schema",
                f"role {role!r} has CREATE on schema {schema}",
            )
        )
    return found


def _writes(table: tuple[Any, ...]) -> list[tuple[str, bool]]:
    return [("UPDATE", table[2]), ("DELETE", table[3]), ("TRUNCATE", table[4])]


def _role_finding(severity: Severity, title: str, found: str) -> Finding:
    return Finding(
        check="DR-DB-ROLE",
        severity=severity,
        title=title,
        found=found + " (if this is the application's URL)",
        action="connect the server and workers as a role with only SELECT and INSERT on the "
        "event tables; keep the owner role for kronika migrate (docs/guides/postgresql.md)",
    )


async def pool_sizing(ctx: DoctorContext) -> list[Finding]:
    """DR-POOL: the pool serves the server's concurrency and fits the database's limit."""
    pg = _postgres(ctx)
    settings = ctx.require_settings()
    [(max_connections, reserved, role_limit)] = await _rows(ctx, "pg_connections", {})
    found = []
    per_connection = settings.max_concurrency / pg.pool_max_size
    if per_connection > POOL_REQUESTS_PER_CONNECTION:
        found.append(
            _pool_finding(
                Severity.MEDIUM,
                "the pool is small for the server's concurrency",
                f"pool_max_size={pg.pool_max_size} for KRONIKA_MAX_CONCURRENCY="
                f"{settings.max_concurrency} ({per_connection:.0f} requests per connection): "
                "requests queue for connections and time out as 503",
                "raise pool_max_size in the store URL (or lower KRONIKA_MAX_CONCURRENCY)",
            )
        )
    limit = max_connections - reserved
    if role_limit is not None and role_limit >= 0:
        limit = min(limit, role_limit)
    needed = pg.pool_max_size + POOL_EXTRA_CONNECTIONS
    if needed > limit:
        found.append(
            _pool_finding(
                Severity.HIGH,
                "one process can exhaust the database's connections",
                f"a store opens up to {needed} connections (pool_max_size={pg.pool_max_size} "
                f"plus {POOL_EXTRA_CONNECTIONS}); the role may open {limit}",
                "lower pool_max_size so that every replica and worker together stays below "
                "max_connections (docs/guides/postgresql.md#4-pool-sizing)",
            )
        )
    if pg.pool_timeout >= settings.request_timeout:
        found.append(
            _pool_finding(
                Severity.LOW,
                "waiting for a connection can use a request's whole time",
                f"pool_timeout={pg.pool_timeout:g} s is not below KRONIKA_REQUEST_TIMEOUT="
                f"{settings.request_timeout:g} s",
                "set pool_timeout well below the request timeout (default 10 s of 30 s)",
            )
        )
    return found


def _pool_finding(severity: Severity, title: str, found: str, action: str) -> Finding:
    return Finding(check="DR-POOL", severity=severity, title=title, found=found, action=action)


async def database_tls(ctx: DoctorContext) -> list[Finding]:
    """DR-DB-TLS (A11): connections to a remote PostgreSQL are encrypted and verified."""
    pg = _postgres(ctx)
    parts = urlsplit(pg.conninfo)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.get("host") or parts.hostname or ctx.environ.get("PGHOST", "")
    if host in LOCAL_SOCKETS or host.startswith("/"):
        raise Skip(f"the database is on this host ({host or 'Unix socket'})")
    mode = query.get("sslmode") or ctx.environ.get("PGSSLMODE") or "prefer"
    if mode == VERIFIED_SSLMODE:
        return []
    if mode in WEAK_SSLMODES:
        severity = Severity.HIGH
        why = "connections may be unencrypted" if mode != "disable" else "connections are in clear"
    else:
        severity = Severity.MEDIUM
        why = "the connection is encrypted but the server's identity is not fully checked"
    return [
        Finding(
            check="DR-DB-TLS",
            severity=severity,
            title=f"the database connection uses sslmode={mode}",
            found=f"{host}: {why}",
            action="add sslmode=verify-full and sslrootcert=/path/to/ca.pem to the store URL",
        )
    ]


# -- SQLite -----------------------------------------------------------------------------------


def _sqlite_path(ctx: DoctorContext) -> Path:
    if ctx.engine != "sqlite":
        raise Skip(f"the store is not SQLite ({ctx.engine or 'none'})")
    path = getattr(ctx.store, "path", None) or ctx.sqlite_path
    if not isinstance(path, Path) or not path.exists():
        raise Skip("the SQLite database does not exist (see DR-STORE-REACH)")
    return path


async def disk_space(ctx: DoctorContext) -> list[Finding]:
    """DR-DISK: the SQLite database's filesystem has room, and its WAL is checkpointed."""
    path = _sqlite_path(ctx)
    usage = shutil.disk_usage(path.parent)
    free = usage.free / usage.total if usage.total else 0.0
    limits = ctx.thresholds
    found = []
    if free < limits.disk_free_warn:
        critical = free < limits.disk_free_critical
        found.append(
            Finding(
                check="DR-DISK",
                severity=Severity.CRITICAL if critical else Severity.HIGH,
                title="the database's disk is nearly full",
                found=f"{path.parent}: {_size(usage.free)} free of {_size(usage.total)} "
                f"({free:.1%}); appends fail when it is full",
                action="free or add space, or move the database to a larger volume",
                subject=str(path.parent),
            )
        )
    wal = path.with_name(path.name + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0
    if wal_size > limits.wal_max_bytes:
        found.append(
            Finding(
                check="DR-DISK",
                severity=Severity.MEDIUM,
                title="the write-ahead log keeps growing",
                found=f"{wal} is {_size(wal_size)}: checkpoints cannot finish while a reader "
                "holds an old snapshot",
                action="look for a long-running reader (a stuck process, an open sqlite3 "
                "shell); the log shrinks once it ends",
                subject=str(wal),
            )
        )
    return found


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


# -- snapshots --------------------------------------------------------------------------------


async def snapshot_policy(ctx: DoctorContext) -> list[Finding]:
    """DR-SNAPSHOTS (A16): long streams have snapshots, so loading them stays cheap."""
    threshold = ctx.thresholds.long_stream
    namespace = ctx.require_store().namespace
    if ctx.engine == "sqlite":
        path = _sqlite_path(ctx)
        rows = await asyncio.to_thread(_sqlite_long_streams, path, namespace, threshold)
    elif ctx.engine == "postgresql":
        rows = await _rows(ctx, "pg_long_streams", {"namespace": namespace, "threshold": threshold})
    else:
        raise Skip(f"snapshots are not kept by the {ctx.engine} store")
    return [
        Finding(
            check="DR-SNAPSHOTS",
            severity=Severity.MEDIUM,
            title=f"{category} streams load many events",
            found=f"{count} {category}-* stream(s) read more than {threshold} events on load "
            f"(up to {longest}): no snapshot, or the last one is far behind",
            action=f"if {category} is an aggregate, set snapshot_every on its class (or the "
            "repository's snapshot_every) so loads read a snapshot plus a short tail",
            subject=category,
        )
        for category, count, longest in rows
    ]


def _sqlite_long_streams(path: Path, namespace: str, threshold: int) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        params = {"namespace": namespace, "threshold": threshold}
        return list(conn.execute(_queries()["sqlite_long_streams"], params))
    finally:
        conn.close()
