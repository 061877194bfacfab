"""Backups and restores on SQLite: the restore drill, consistency while in use, merges,
interruptions and the backups catalog (real database files, real archives)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from backup_drill import chains, fill, raw_rows, state

from kronika import NewEvent, StreamAppend, open_store
from kronika.errors import ConfigurationError, ConflictError, SchemaError, ValidationError
from kronika.ops import backup as ops
from kronika.store.archive import NOT_ARCHIVED, SECTIONS
from kronika.store.sqlite import archive_load


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _names(folder: Path) -> list[str]:
    """The files in ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir())


async def test_restore_drill_sqlite_to_sqlite(tmp_path: Path) -> None:
    source, target, archive = tmp_path / "src.db", tmp_path / "dst.db", tmp_path / "a.kar"
    await fill(_url(source))
    chained = await chains(_url(source))  # records global chain checkpoints to carry over
    assert all(clean and events and not unchained for clean, events, unchained, *_ in
               chained.values())  # fmt: skip
    record = await ops.backup(open_store(_url(source)), archive)
    summary = ops.verify(archive)
    assert summary.events == record.events > 2500
    assert summary.engine == "sqlite" and summary.namespaces == ("default", "tenant-b")
    assert all(summary.counts[s.name] > 0 for s in SECTIONS)

    result = await ops.restore(open_store(_url(target)), archive)
    assert result.rows == summary.counts and not result.merged
    assert await state(_url(target)) == await state(_url(source))
    assert not (tmp_path / "dst.db.partial").exists()
    restored_chains = await chains(_url(target))
    for namespace, (clean, events, _, global_hash, checked) in restored_chains.items():
        assert clean and checked > 0, namespace  # the carried-over checkpoints match
        assert (events, global_hash) == (chained[namespace][1], chained[namespace][3])

    async with open_store(_url(target)) as restored:
        appended = await restored.append("order-0", [NewEvent("After", {})])
        assert appended.position > summary.floor
        [event] = await restored.read_all(from_position=summary.last_position + 1)
        assert event.type == "After"


async def test_new_positions_stay_above_deleted_events_and_checkpoints(tmp_path: Path) -> None:
    """The archive carries the source's high-water mark, and checkpoints count too: a
    processor that passed a deleted event never misses the first one appended later."""
    source, target, archive = tmp_path / "src.db", tmp_path / "dst.db", tmp_path / "a.kar"
    async with open_store(_url(source)) as store:
        await store.append("keep-1", [NewEvent("A", {})])
        await store.append("gone-1", [NewEvent("B", {}) for _ in range(5)])
        head = await store.head_position()
        await store.delete_stream("gone-1", hard=True)
    await ops.backup(open_store(_url(source)), archive)
    summary = ops.verify(archive)
    assert (summary.last_position, summary.high_water) == (1, head)
    await ops.restore(open_store(_url(target)), archive)
    async with open_store(_url(target)) as restored:
        assert (await restored.append("keep-1", [NewEvent("C", {})])).position == head + 1


async def test_backup_while_a_writer_appends_is_a_consistent_snapshot(tmp_path: Path) -> None:
    source, target, archive = tmp_path / "src.db", tmp_path / "dst.db", tmp_path / "a.kar"
    await fill(_url(source), events=600)
    stop = asyncio.Event()
    async with open_store(_url(source)) as store:

        async def writer() -> None:
            i = 0
            while not stop.is_set():
                await store.append_multi(
                    [
                        StreamAppend(f"busy-{i % 7}", [NewEvent("Tick", {"i": i})]),
                        StreamAppend(f"order-{10 + i % 30}", [NewEvent("Tock", {"i": i})]),
                    ]
                )
                i += 1

        task = asyncio.create_task(writer())
        await asyncio.sleep(0.05)
        await ops.backup(store, archive)
        await asyncio.sleep(0.05)
        stop.set()
        await task
        everything = await store.read_all()
    summary = ops.verify(archive)
    assert 0 < summary.events < len(everything)
    await ops.restore(open_store(_url(target)), archive)
    async with open_store(_url(target), namespace="tenant-b") as other:
        elsewhere = len(await other.read_all())
    async with open_store(_url(target)) as restored:
        copied = await restored.read_all()
        assert copied == everything[: len(copied)]
        assert len(copied) + elsewhere == summary.events
        for stream in {e.stream for e in copied}:
            versions = [e.version for e in copied if e.stream == stream]
            info = await restored.stream_info(stream)
            assert versions == list(range(info.truncated_before, info.version + 1)), stream


async def test_merge_adds_namespaces_above_the_target_and_refuses_collisions(
    tmp_path: Path,
) -> None:
    target, other, archive = tmp_path / "dst.db", tmp_path / "other.db", tmp_path / "b.kar"
    async with open_store(_url(target), namespace="a") as store:
        await store.append("order-1", [NewEvent("A", {}) for _ in range(100)])
    async with open_store(_url(other), namespace="junk") as store:  # positions 1..100 gone
        await store.append("tmp-1", [NewEvent("J", {}) for _ in range(100)])
        await store.delete_stream("tmp-1")
    async with open_store(_url(other), namespace="b") as store:
        await store.append("order-1", [NewEvent("B", {}) for _ in range(50)])
    await ops.backup(open_store(_url(other)), archive)

    with pytest.raises(ConflictError, match=r"not empty.*--merge"):
        await ops.restore(open_store(_url(target)), archive)
    result = await ops.restore(open_store(_url(target)), archive, merge=True)
    assert result.merged and result.rows["events"] == 50
    async with open_store(_url(target), namespace="b") as store:
        assert [e.position for e in await store.read_all()] == list(range(101, 151))
        assert (await store.append("order-2", [NewEvent("C", {})])).position == 151
    before = await raw_rows(open_store(_url(target)))
    with pytest.raises(ConflictError, match="namespace 'b' holds events up to position 151"):
        await ops.restore(open_store(_url(target)), archive, merge=True)
    assert await raw_rows(open_store(_url(target))) == before


async def test_a_merge_whose_positions_collide_writes_nothing(tmp_path: Path) -> None:
    target, other, archive = tmp_path / "dst.db", tmp_path / "other.db", tmp_path / "c.kar"
    async with open_store(_url(target), namespace="a") as store:
        await store.append("order-1", [NewEvent("A", {}) for _ in range(10)])
    async with open_store(_url(other), namespace="c") as store:
        await store.append("order-1", [NewEvent("C", {}) for _ in range(10)])
    await ops.backup(open_store(_url(other)), archive)
    before = await raw_rows(open_store(_url(target)))
    with pytest.raises(ConflictError, match="events collides with one the target holds"):
        await ops.restore(open_store(_url(target)), archive, merge=True)
    assert await raw_rows(open_store(_url(target))) == before


async def test_restore_without_processing_leaves_processors_to_start_over(
    tmp_path: Path,
) -> None:
    source, target, archive = tmp_path / "src.db", tmp_path / "dst.db", tmp_path / "a.kar"
    await fill(_url(source), events=60)
    await ops.backup(open_store(_url(source)), archive)
    result = await ops.restore(open_store(_url(target)), archive, processing=False)
    assert set(result.rows) == {s.name for s in SECTIONS if not s.processing}
    rows = await raw_rows(open_store(_url(target)))
    assert all(rows[s.name] == [] for s in SECTIONS if s.processing)
    assert rows["events"] == (await raw_rows(open_store(_url(source))))["events"]


async def test_an_interrupted_restore_leaves_the_target_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, archive = tmp_path / "src.db", tmp_path / "a.kar"
    await fill(_url(source), events=60)
    await ops.backup(open_store(_url(source)), archive)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(archive_load, "_raise_high_water", interrupted)
    fresh = tmp_path / "fresh.db"
    with pytest.raises(KeyboardInterrupt):
        await ops.restore(open_store(_url(fresh)), archive)
    assert _names(tmp_path) == ["a.kar", "src.db"]

    merged = tmp_path / "merged.db"
    async with open_store(_url(merged), namespace="zzz") as store:
        await store.set_stream_metadata("x-1", metadata={"kept": True})
    before = await raw_rows(open_store(_url(merged)))
    with pytest.raises(KeyboardInterrupt):  # after every row was written
        await ops.restore(open_store(_url(merged)), archive, merge=True)
    assert await raw_rows(open_store(_url(merged))) == before


async def test_a_failing_backup_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, archive = tmp_path / "src.db", tmp_path / "a.kar"
    await fill(_url(source), events=3000)
    from kronika.ops.backup import writer

    pages = 0
    original = writer.ArchiveWriter.page

    def failing(self: writer.ArchiveWriter, rows: object) -> None:
        nonlocal pages
        pages += 1
        if pages == 3:
            raise OSError("disk full")
        original(self, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(writer.ArchiveWriter, "page", failing)
    with pytest.raises(OSError, match="disk full"):
        await ops.backup(open_store(_url(source)), archive)
    assert not archive.exists() and not ops.partial_path(archive).exists()
    assert await ops.history(open_store(_url(source))) == []


async def test_the_catalog_lists_backups_newest_first(tmp_path: Path) -> None:
    source = tmp_path / "src.db"
    assert await ops.history(open_store(_url(source))) == []  # no file: nothing, none made
    assert not source.exists()
    await fill(_url(source), events=30)
    first = await ops.backup(open_store(_url(source)), tmp_path / "1.kar")
    with pytest.raises(ValidationError, match=r"exists.*--force"):
        await ops.backup(open_store(_url(source)), tmp_path / "1.kar")
    second = await ops.backup(open_store(_url(source)), tmp_path / "1.kar", force=True)
    records = await ops.history(open_store(_url(source)))
    assert [r.id for r in records] == [second.id, first.id]
    newest = records[0]
    assert newest.verified_at is not None and newest.finished_at >= newest.started_at
    assert newest.engine == "sqlite" and newest.path == str(tmp_path / "1.kar")
    import hashlib

    assert newest.sha256 == hashlib.sha256((tmp_path / "1.kar").read_bytes()).hexdigest()
    assert newest.bytes == (tmp_path / "1.kar").stat().st_size
    assert await ops.history(open_store(_url(source)), limit=1) == [newest]


async def test_backups_need_a_sql_store_and_a_current_schema(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SQLite or PostgreSQL"):
        await ops.backup(open_store("memory://"), tmp_path / "m.kar")
    with pytest.raises(ConfigurationError, match="no SQLite database"):
        await ops.backup(open_store(_url(tmp_path / "missing.db")), tmp_path / "m.kar")
    old = tmp_path / "old.db"
    raw = sqlite3.connect(old)
    raw.execute("CREATE TABLE t (x)")
    raw.close()
    with pytest.raises(SchemaError, match="kronika migrate"):
        await ops.backup(open_store(_url(old)), tmp_path / "old.kar")
    assert not (tmp_path / "old.kar").exists()


def test_every_stored_column_is_archived_or_left_out_on_purpose(tmp_path: Path) -> None:
    """A new column or table must be added to the archive sections or to NOT_ARCHIVED."""
    from kronika.store.sqlite.config import SQLiteConfig
    from kronika.store.sqlite.schema import migrate_file

    path = tmp_path / "schema.db"
    migrate_file(SQLiteConfig(path=path))
    raw = sqlite3.connect(path)
    tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    stored = {
        f"{table}.{column[1]}"
        for table in tables
        if table not in NOT_ARCHIVED and table != "sqlite_sequence"
        for column in raw.execute(f"PRAGMA table_info({table})")
    }
    raw.close()
    archived = {f"{s.name}.{c.name}" for s in SECTIONS for c in s.columns}
    assert sorted(stored - archived - set(NOT_ARCHIVED)) == []
    assert sorted(archived - stored) == []
