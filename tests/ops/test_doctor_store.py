"""``kronika doctor``'s store checks on real SQLite files and real PostgreSQL schemas: each
fires on a bad setup and stays quiet on a good one, and doctor changes nothing it reads."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

import kronika
from kronika import NewEvent, RecordedEvent
from kronika.ops.doctor import CheckResult, Status, Thresholds
from kronika.runtime import InlineContext, InlineProjection, on

RunCheck = Callable[..., Awaitable[CheckResult]]
PRODUCTION = {"KRONIKA_MODE": "production"}


def found(result: CheckResult) -> list[str]:
    """The severities of a result's findings (empty: quiet)."""
    assert result.status is not Status.ERROR, result.reason
    return [f.severity.value for f in result.findings]


async def filled(url: str, streams: dict[str, int]) -> None:
    """Migrate the store at ``url`` and give each stream that many events."""
    async with kronika.open_store(url) as store:
        for stream, count in streams.items():
            await store.append(stream, [NewEvent("Numbered", {"n": n}) for n in range(count)])


# -- reachability and schema ------------------------------------------------------------------


async def test_a_missing_sqlite_file_is_reported_and_not_created(
    check: RunCheck, tmp_path: Path
) -> None:
    path = tmp_path / "nowhere.db"
    result = await check("DR-STORE-REACH", url=f"sqlite:///{path}")
    assert found(result) == ["high"]
    assert str(path) in result.findings[0].found
    assert not path.exists()
    await filled(f"sqlite:///{path}", {})
    assert found(await check("DR-STORE-REACH", url=f"sqlite:///{path}")) == []


async def test_an_unreachable_database_is_critical(check: RunCheck) -> None:
    url = "postgresql://doctor:secret@127.0.0.1:1/kronika?connect_timeout=2"
    result = await check("DR-STORE-REACH", url=url, timeout=5)
    assert found(result) == ["critical"]
    assert "secret" not in result.findings[0].found  # the password is redacted
    assert (await check("DR-SCHEMA", url=url, timeout=5)).status is Status.SKIPPED


def _set_schema_version(path: Path, *, drop_latest: bool = False, add: int | None = None) -> None:
    with sqlite3.connect(path) as conn:
        if drop_latest:
            latest = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
            conn.execute("DELETE FROM schema_migrations WHERE version = ?", (latest,))
        if add is not None:
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, 'future', 'x', '2099-01-01')", (add,)
            )
    conn.close()


async def test_pending_migrations_and_a_newer_schema_are_reported(
    check: RunCheck, tmp_path: Path
) -> None:
    path = tmp_path / "k.db"
    url = f"sqlite:///{path}"
    await filled(url, {"order-1": 1})
    assert found(await check("DR-SCHEMA", url=url)) == []
    _set_schema_version(path, drop_latest=True)
    pending = await check("DR-SCHEMA", url=url)
    assert found(pending) == ["high"]
    assert "pending" in pending.findings[0].found
    with sqlite3.connect(path) as conn:  # doctor did not migrate it
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 1
    conn.close()
    assert (await check("DR-SNAPSHOTS", url=url)).status is Status.SKIPPED
    _set_schema_version(path, add=999)
    assert found(await check("DR-SCHEMA", url=url)) == ["critical"]


async def test_a_database_without_kronika_tables_is_questioned(
    check: RunCheck, tmp_path: Path
) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).close()  # an empty SQLite file: not a Kronika store
    assert found(await check("DR-SCHEMA", url=f"sqlite:///{path}")) == ["medium"]


# -- SQLite disk ------------------------------------------------------------------------------


async def test_low_disk_space_and_a_growing_wal_are_reported(
    check: RunCheck, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    await filled(url, {"order-1": 3})
    assert found(await check("DR-DISK", url=url)) == []  # this machine has room
    nearly_full = Thresholds(disk_free_warn=1.0, disk_free_critical=0.0)
    assert found(await check("DR-DISK", url=url, thresholds=nearly_full)) == ["high"]
    full = Thresholds(disk_free_warn=1.0, disk_free_critical=1.0)
    assert found(await check("DR-DISK", url=url, thresholds=full)) == ["critical"]
    async with kronika.open_store(url) as store:  # an open store keeps its WAL
        await store.append("order-2", [NewEvent("Numbered", {"n": 1})])
        result = await check("DR-DISK", url=url, thresholds=Thresholds(wal_max_bytes=0))
    assert found(result) == ["medium"]
    assert "-wal" in result.findings[0].found


async def test_disk_is_only_checked_for_sqlite(check: RunCheck) -> None:
    assert (await check("DR-DISK", url="memory://")).status is Status.SKIPPED


# -- snapshots --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def test_long_streams_without_snapshots_are_reported(check: RunCheck, store_url: str) -> None:
    await filled(store_url, {"order-1": 30, "order-2": 25, "ledger-1": 5})
    limits = Thresholds(long_stream=10)
    result = await check("DR-SNAPSHOTS", url=store_url, thresholds=limits)
    assert found(result) == ["medium"]
    [finding] = result.findings
    assert finding.subject == "order"
    assert "2 order-* stream(s)" in finding.found and "up to 30" in finding.found
    async with kronika.open_store(store_url) as store:
        await store.write_snapshot("order-1", 27, {"total": 27})
        await store.write_snapshot("order-2", 24, {"total": 24})
    assert found(await check("DR-SNAPSHOTS", url=store_url, thresholds=limits)) == []
    assert found(await check("DR-SNAPSHOTS", url=store_url)) == []  # default: 1000 events


# -- backups ----------------------------------------------------------------------------------


async def test_backups_must_exist_be_recent_and_verified(check: RunCheck, tmp_path: Path) -> None:
    from kronika.ops.backup import BackupRecord, backup
    from kronika.store.archive import archive_of

    url = f"sqlite:///{tmp_path / 'k.db'}"
    await filled(url, {"order-1": 3})
    none = await check("DR-BACKUP", PRODUCTION, url=url)
    assert found(none) == ["high"]
    assert found(await check("DR-BACKUP", url=url)) == ["low"]  # local mode: advice
    store = kronika.open_store(url)
    await backup(store, tmp_path / "k.backup")
    assert found(await check("DR-BACKUP", PRODUCTION, url=url)) == []
    old = await check("DR-BACKUP", PRODUCTION, url=url, thresholds=Thresholds(backup_max_age=0))
    assert found(old) == ["high"]
    assert "old" in old.findings[0].title
    now = datetime.now(UTC)
    unverified = BackupRecord(
        id=uuid.uuid4().hex,
        path=str(tmp_path / "copied-by-hand.backup"),
        started_at=now - timedelta(minutes=1),
        finished_at=now,
        events=3,
        last_position=3,
        bytes=1,
        sha256="0" * 64,
        engine="sqlite",
        verified_at=None,
    )
    await archive_of(store).record_backup(unverified)
    result = await check("DR-BACKUP", PRODUCTION, url=url)
    assert found(result) == ["medium"]
    assert "copied-by-hand.backup" in result.findings[0].found


# -- verification ---------------------------------------------------------------------------


async def _verify(url: str) -> None:
    """Run ``kronika verify --resume`` on the store at ``url``; it must come out clean."""
    from kronika.store.integrity import chains_of
    from kronika.store.verify import verify

    async with kronika.open_store(url) as store:
        report = await verify(chains_of(store), resume=True)
    assert report.clean, report.problems


async def _appended(url: str, stream: str, count: int) -> None:
    """Append ``count`` events to ``stream``, then read them back globally: on PostgreSQL
    that waits until the visibility horizon passes them, so doctor's store sees them too."""
    async with kronika.open_store(url) as store:
        await store.append(stream, [NewEvent("Numbered", {"n": n}) for n in range(count)])
        assert await store.read_all(limit=1)


async def test_the_log_must_be_verified_in_time(check: RunCheck, store_url: str) -> None:
    await filled(store_url, {})
    assert found(await check("DR-VERIFY", PRODUCTION, url=store_url)) == []  # nothing stored
    await _appended(store_url, "order-1", 3)
    never = await check("DR-VERIFY", PRODUCTION, url=store_url)
    assert found(never) == ["medium"]
    assert "never verified" in never.findings[0].title
    assert found(await check("DR-VERIFY", url=store_url)) == ["low"]  # local mode: advice
    await _verify(store_url)
    now = Thresholds(verify_max_age=0)
    # Verified up to the newest event: nothing waits, however old the checkpoint gets.
    assert found(await check("DR-VERIFY", PRODUCTION, url=store_url, thresholds=now)) == []
    await _appended(store_url, "order-2", 2)
    assert found(await check("DR-VERIFY", PRODUCTION, url=store_url)) == []  # 8 days to go
    overdue = await check("DR-VERIFY", PRODUCTION, url=store_url, thresholds=now)
    assert found(overdue) == ["medium"]
    assert "not verified recently" in overdue.findings[0].title
    assert "waited" in overdue.findings[0].found
    await _verify(store_url)
    assert found(await check("DR-VERIFY", PRODUCTION, url=store_url, thresholds=now)) == []


async def test_verification_is_judged_on_the_memory_store_too(check: RunCheck) -> None:
    url = f"memory://doctor-verify-{uuid.uuid4().hex}"
    async with kronika.open_store(url) as store:  # the log lives while a store holds it
        await store.append("order-1", [NewEvent("Numbered", {"n": 0})])
        assert found(await check("DR-VERIFY", url=url)) == ["low"]
        await _verify(url)
        assert found(await check("DR-VERIFY", url=url)) == []


# -- PostgreSQL: role, pool, TLS --------------------------------------------------------------


def _with(url: str, **params: object) -> str:
    parts = urlsplit(url)
    query = "&".join(p for p in [parts.query, urlencode(params)] if p)
    return urlunsplit(parts._replace(query=query))


def _as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


@pytest.fixture
def app_role(postgres_server: str, postgres_url: str) -> Iterator[str]:
    """A login role granted what the PostgreSQL guide grants the application, on the test's
    schema (migrated); dropped afterwards."""
    import psycopg

    role = f"kronika_app_{uuid.uuid4().hex[:8]}"
    schema = postgres_url.rsplit("schema=", 1)[1]
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    yield role
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')


def _grant_as_the_guide_does(postgres_server: str, schema: str, role: str) -> None:
    import psycopg

    operational = ", ".join(
        f'"{schema}".{t}'
        for t in (
            "snapshots",
            "processors",
            "partitions",
            "failures",
            "documents",
            "workers",
            "jobs",
        )
    )
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.execute(
            f'GRANT SELECT, INSERT ON "{schema}".events, "{schema}".event_tags TO "{role}"'
        )
        conn.execute(f'GRANT SELECT, INSERT, UPDATE ON "{schema}".streams TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {operational} TO "{role}"')


@pytest.mark.postgres
async def test_the_runtime_role_must_not_rewrite_events(
    check: RunCheck, postgres_server: str, postgres_url: str, app_role: str
) -> None:
    import psycopg

    await filled(postgres_url, {"order-1": 2})
    superuser = await check("DR-DB-ROLE", PRODUCTION, url=postgres_url)
    assert found(superuser) == ["high"]
    assert "superuser" in superuser.findings[0].title
    assert found(await check("DR-DB-ROLE", url=postgres_url)) == ["low"]  # local: advice
    schema = postgres_url.rsplit("schema=", 1)[1]
    _grant_as_the_guide_does(postgres_server, schema, app_role)
    as_app = _as_role(postgres_url, app_role)
    assert found(await check("DR-DB-ROLE", PRODUCTION, url=as_app)) == []
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'GRANT DELETE, TRUNCATE ON "{schema}".events TO "{app_role}"')
    result = await check("DR-DB-ROLE", PRODUCTION, url=as_app)
    assert found(result) == ["high"]
    assert "DELETE on events" in result.findings[0].found
    assert "TRUNCATE on events" in result.findings[0].found


@pytest.mark.postgres
async def test_the_pool_must_fit_the_concurrency_and_the_server(
    check: RunCheck, postgres_url: str
) -> None:
    await filled(postgres_url, {})
    assert found(await check("DR-POOL", url=postgres_url)) == []  # the defaults fit
    small = await check("DR-POOL", {"KRONIKA_MAX_CONCURRENCY": "500"}, url=postgres_url)
    assert found(small) == ["medium"]
    assert "50 requests per connection" in small.findings[0].found
    huge = await check("DR-POOL", url=_with(postgres_url, pool_max_size=100_000))
    assert found(huge) == ["high"]
    slow = await check("DR-POOL", url=_with(postgres_url, pool_timeout=45))
    assert found(slow) == ["low"]


@pytest.mark.postgres
async def test_a_remote_database_needs_verified_tls(check: RunCheck, postgres_url: str) -> None:
    await filled(postgres_url, {})
    assert found(await check("DR-DB-TLS", url=postgres_url)) == []  # on this host: skipped
    host = urlsplit(postgres_url).hostname or "127.0.0.1"
    # A host name that is not local; libpq connects to hostaddr, so the store is reachable.
    remote = _with(postgres_url, host="db.example.invalid", hostaddr=host)
    result = await check("DR-DB-TLS", url=remote)
    assert found(result) == ["high"]
    assert "sslmode=prefer" in result.findings[0].title
    # PGSSLMODE in doctor's environment (libpq itself reads the process's).
    assert found(await check("DR-DB-TLS", {"PGSSLMODE": "require"}, url=remote)) == ["medium"]


# -- inline projections -----------------------------------------------------------------------


class _Counted(InlineProjection):
    """An inline projection keeping one document per stream of ``Numbered`` events."""

    name = "counted"
    collections = ("counts",)

    @on("Numbered")
    def numbered(self, event: RecordedEvent, ctx: InlineContext) -> None:
        ctx.put_document("counts", event.stream, {"version": event.version})


async def test_an_inline_projection_registered_on_a_full_log_needs_a_rebuild(
    check: RunCheck, store_url: str
) -> None:
    await filled(store_url, {})
    async with kronika.open_store(store_url, inline=[_Counted()]):
        pass  # registered on an empty log: complete
    assert found(await check("DR-INLINE", PRODUCTION, url=store_url)) == []

    async with kronika.open_store(store_url) as store:
        await store.drop_inline("counted")  # removed from the code: appends are allowed again
    await filled(store_url, {"order-1": 3})  # events the projection never saw
    async with kronika.open_store(store_url, inline=[_Counted()]):
        pass
    stale = await check("DR-INLINE", PRODUCTION, url=store_url)
    assert found(stale) == ["high"]
    assert "counted" in stale.findings[0].title
    assert "kronika inline rebuild counted" in stale.findings[0].action
    assert found(await check("DR-INLINE", url=store_url)) == ["medium"]  # local mode

    async with kronika.open_store(store_url, inline=[_Counted()]) as store:
        await store.rebuild_inline("counted")
    assert found(await check("DR-INLINE", PRODUCTION, url=store_url)) == []
