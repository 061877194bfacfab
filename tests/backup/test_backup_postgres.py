"""Backups and restores with PostgreSQL: the restore drill in every direction (SQLite ->
PostgreSQL, PostgreSQL -> SQLite, PostgreSQL -> PostgreSQL), positions after a restore,
consistency while in use, and refusals that leave the target untouched."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from backup_drill import chains, fill, raw_rows, state
from psycopg import sql

from kronika import NewEvent, StreamAppend, open_store
from kronika.errors import ConflictError, ValidationError
from kronika.ops import backup as ops
from kronika.store.archive import NOT_ARCHIVED, SECTIONS, archive_of
from kronika.store.keys import ApiKeyRecord

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def other_postgres_url(postgres_server: str) -> Iterator[str]:
    """A second store URL in a schema of its own, dropped after the test."""
    schema = f"kronika_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}schema={schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _sqlite(path: Path) -> str:
    return f"sqlite:///{path}"


async def test_restore_drill_across_engines(
    tmp_path: Path, postgres_url: str, other_postgres_url: str
) -> None:
    """SQLite -> PostgreSQL -> PostgreSQL -> SQLite: every hop keeps every row."""
    source = _sqlite(tmp_path / "src.db")
    await fill(source)
    chained = await chains(source)  # records global chain checkpoints to carry over
    expected = await state(source)

    await ops.backup(open_store(source), tmp_path / "1.kar")
    await ops.restore(open_store(postgres_url), tmp_path / "1.kar")
    assert await state(postgres_url) == expected

    record = await ops.backup(open_store(postgres_url), tmp_path / "2.kar")
    assert record.engine == "postgresql" and record.events == ops.verify(tmp_path / "1.kar").events
    await ops.restore(open_store(other_postgres_url), tmp_path / "2.kar")
    assert await state(other_postgres_url) == expected

    await ops.backup(open_store(other_postgres_url), tmp_path / "3.kar")
    back = _sqlite(tmp_path / "back.db")
    await ops.restore(open_store(back), tmp_path / "3.kar")
    assert await state(back) == expected
    for url in (postgres_url, other_postgres_url, back):
        for namespace, (clean, events, _, global_hash, checked) in (await chains(url)).items():
            assert clean and checked > 0, (url, namespace)
            assert (events, global_hash) == (chained[namespace][1], chained[namespace][3])
    assert [r.id for r in await ops.history(open_store(postgres_url))] == [record.id]


async def _shift_positions(url: str, by: int) -> None:
    """Make the store's next positions ``by`` higher, as on a busier cluster."""
    schema = url.rpartition("schema=")[2]
    async with await psycopg.AsyncConnection.connect(url.partition("?")[0]) as conn:
        offset = sql.SQL(
            "CREATE OR REPLACE FUNCTION {}.kronika_position_offset() RETURNS bigint "
            "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {}::bigint $$"
        ).format(sql.Identifier(schema), sql.Literal(by))
        await conn.execute(offset)
        await conn.commit()


async def test_appends_after_a_restore_go_above_every_restored_position(
    tmp_path: Path, postgres_url: str, other_postgres_url: str
) -> None:
    """Positions from a busier cluster lie above a fresh cluster's ``xid << 16``: the
    restore raises kronika_position_offset so that later appends still sort after them,
    and global readers (read_all, subscriptions) see both."""
    async with open_store(postgres_url) as busy:
        await busy.append("order-1", [NewEvent("Placed", {"n": 1})])
    await _shift_positions(postgres_url, 1 << 50)
    async with open_store(postgres_url) as busy:
        await busy.append("order-1", [NewEvent("Paid", {"n": 2})])
        await busy.append("order-2", [NewEvent("Placed", {"n": 3})] * 1)
        source = await busy.read_all()
    assert source[-1].position > 1 << 50
    await ops.backup(open_store(postgres_url), tmp_path / "busy.kar")

    await ops.restore(open_store(other_postgres_url), tmp_path / "busy.kar")
    async with open_store(other_postgres_url) as restored:
        assert await restored.read_all() == source
        last = source[-1].position
        subscription = restored.subscribe(from_position=last + 1)
        waiter = asyncio.ensure_future(anext(aiter(subscription)))
        appended = await restored.append("order-2", [NewEvent("Paid", {"n": 4})])
        assert appended.position > last
        seen = await asyncio.wait_for(waiter, 10)
        assert seen.position == appended.position and seen.type == "Paid"
        [after] = await restored.read_all(from_position=last + 1)
        assert after.position == appended.position
        await subscription.aclose()  # type: ignore[attr-defined]


async def test_backup_while_writers_append_is_a_consistent_snapshot(
    tmp_path: Path, postgres_url: str, other_postgres_url: str
) -> None:
    await fill(postgres_url, events=300)
    stop = asyncio.Event()
    async with open_store(postgres_url) as store:

        async def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                await store.append_multi(
                    [
                        StreamAppend(f"busy-{n}-{i % 5}", [NewEvent("Tick", {"n": n, "i": i})]),
                        StreamAppend(f"order-{10 + i % 30}", [NewEvent("Tock", {"n": n, "i": i})]),
                    ]
                )
                i += 1

        tasks = [asyncio.create_task(writer(n)) for n in range(3)]
        await asyncio.sleep(0.1)
        await ops.backup(store, tmp_path / "live.kar")
        await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        everything = await store.read_all()
    summary = ops.verify(tmp_path / "live.kar")
    await ops.restore(open_store(other_postgres_url), tmp_path / "live.kar")
    async with open_store(other_postgres_url) as restored:
        copied = await restored.read_all()
        assert 0 < len(copied) < len(everything)
        by_id = {e.id: e for e in everything}
        assert all(by_id[e.id] == e for e in copied)
        ticks = {(e.data["n"], e.data["i"]) for e in copied if e.type == "Tick"}
        tocks = {(e.data["n"], e.data["i"]) for e in copied if e.type == "Tock"}
        assert ticks == tocks and ticks, "a multi-stream append was split by the snapshot"
        assert summary.counts["events"] >= len(copied)
        for stream in {e.stream for e in copied}:
            versions = [e.version for e in copied if e.stream == stream]
            info = await restored.stream_info(stream)
            assert sorted(versions) == list(range(info.truncated_before, info.version + 1))


async def test_refusals_leave_the_postgres_target_untouched(
    tmp_path: Path, postgres_url: str, other_postgres_url: str
) -> None:
    source = _sqlite(tmp_path / "src.db")
    await fill(source, events=60)
    await ops.backup(open_store(source), tmp_path / "a.kar")
    bad = tmp_path / "bad.kar"
    good = (tmp_path / "a.kar").read_bytes()
    bad.write_bytes(good[: len(good) - 40])
    with pytest.raises(ValidationError, match="truncated"):
        await ops.restore(open_store(postgres_url), bad)
    untouched = await archive_of(open_store(postgres_url)).inspect()
    assert not untouched.exists, "a refused restore must not even create the schema"

    async with open_store(other_postgres_url, namespace="zzz") as held:
        await held.append("kept-1", [NewEvent("Kept", {})])
    async with open_store(other_postgres_url) as held:  # the archive's key id, no events
        await held.keys.create_key(  # type: ignore[attr-defined]
            ApiKeyRecord(
                id="key0", name="mine", secret_hash=b"x" * 32, roles=("reader",),
                categories=None, created_at=datetime.now(UTC),
            )
        )  # fmt: skip
    before = await raw_rows(open_store(other_postgres_url))
    with pytest.raises(ConflictError, match="not empty"):
        await ops.restore(open_store(other_postgres_url), tmp_path / "a.kar")
    with pytest.raises(ConflictError, match=r"api_keys collides .*\(namespace, id\)"):
        await ops.restore(open_store(other_postgres_url), tmp_path / "a.kar", merge=True)
    assert await raw_rows(open_store(other_postgres_url)) == before


async def test_a_merge_adds_a_namespace_above_the_targets_positions(
    tmp_path: Path, postgres_url: str, other_postgres_url: str
) -> None:
    async with open_store(postgres_url, namespace="a") as target:
        await target.append("order-1", [NewEvent("A", {})])
    async with open_store(other_postgres_url, namespace="b") as other:
        await other.append("order-1", [NewEvent("B", {}) for _ in range(3)])
    await ops.backup(open_store(other_postgres_url), tmp_path / "b.kar")
    result = await ops.restore(open_store(postgres_url), tmp_path / "b.kar", merge=True)
    assert result.merged
    async with open_store(postgres_url, namespace="b") as merged:
        events = await merged.read_all(tags=None)
        assert [e.type for e in events] == ["B", "B", "B"]
        assert (await merged.append("order-1", [NewEvent("C", {})])).position > events[-1].position


async def test_every_stored_column_is_archived_or_left_out_on_purpose(postgres_url: str) -> None:
    store = open_store(postgres_url)
    await store.migrate()
    schema = postgres_url.rpartition("schema=")[2]
    async with await psycopg.AsyncConnection.connect(postgres_url.partition("?")[0]) as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s",
            (schema,),
        )
        stored = {
            f"{table}.{column}"
            for table, column in await cur.fetchall()
            if table not in NOT_ARCHIVED
        }
    archived = {f"{s.name}.{c.name}" for s in SECTIONS for c in s.columns}
    assert sorted(stored - archived - set(NOT_ARCHIVED)) == []
    assert sorted(archived - stored) == []


async def test_the_documented_backup_role_can_back_up_and_record(
    tmp_path: Path, postgres_url: str, postgres_server: str
) -> None:
    """Runs the GRANTs of docs/operations/backup.md for a fresh role, then backs up as it."""
    await fill(postgres_url, events=30)
    schema = postgres_url.rpartition("schema=")[2]
    role, password = f"kronika_backup_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    guide = (ROOT / "docs" / "operations" / "backup.md").read_text(encoding="utf-8")
    grants = [" ".join(g.split()) for g in re.findall(r"^GRANT [^;]*;", guide, re.MULTILINE)]
    assert any("kronika.backups" in g for g in grants)
    names = {"role": sql.Identifier(role), "schema": sql.Identifier(schema)}
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        create = sql.SQL("CREATE ROLE {role} LOGIN PASSWORD {password}")
        conn.execute(create.format(**names, password=sql.Literal(password)))
        for grant in grants:
            text = re.sub(r"\bkronika_backup\b", "{role}", grant)
            text = re.sub(r"\bkronika\b(?=\.| TO)", "{schema}", text)
            conn.execute(sql.SQL(text).format(**names))
    try:
        parts = urlsplit(postgres_url)
        netloc = f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"
        url = urlunsplit(parts._replace(netloc=netloc)) + "&migrate=false"
        record = await ops.backup(open_store(url), tmp_path / "role.kar")
        assert await ops.record_verified(open_store(url), ops.verify(tmp_path / "role.kar")) == 1
        assert [r.id for r in await ops.history(open_store(url))] == [record.id]
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {role}").format(**names))
            conn.execute(sql.SQL("DROP ROLE {role}").format(**names))
