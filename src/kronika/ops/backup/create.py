"""Writing a backup: one consistent snapshot of a store, streamed into an archive.

The store stays in use: the snapshot is a read transaction (SQLite WAL, PostgreSQL
REPEATABLE READ), so writers carry on while it is read. Pages are fetched, encoded and
compressed one at a time, the next page being fetched while the current one is written,
so memory stays flat whatever the store's size. The finished archive is read back and
checked before it gets its name, then recorded in the store's backups catalog.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import kronika
from kronika.errors import KronikaError, ValidationError
from kronika.ops.backup.format import FORMAT, FORMAT_VERSION, PAGE_ROWS, ArchiveSummary
from kronika.ops.backup.progress import NO_PROGRESS, Progress
from kronika.ops.backup.verify import verify
from kronika.ops.backup.writer import ArchiveWriter
from kronika.store.archive import SECTIONS, ArchiveSource, BackupRecord, archive_of

__all__ = ["backup"]

T = TypeVar("T")


def _target(path: str | Path, *, force: bool) -> Path:
    """The archive's absolute path, refusing one that exists unless ``force``."""
    target = Path(path).absolute()
    if target.is_dir():
        raise ValidationError(f"FILE {target} is a directory; name the archive file to write")
    if not target.parent.is_dir():
        raise ValidationError(f"FILE {target}: the directory {target.parent} does not exist")
    if target.exists() and not force:
        raise ValidationError(
            f"FILE {target} exists; choose a new name, or pass --force to replace it"
        )
    return target


async def backup(
    store: object, path: str | Path, *, force: bool = False, progress: Progress = NO_PROGRESS
) -> BackupRecord:
    """Write an archive of ``store`` (every namespace) to ``path`` and catalog it.

    ``path`` must not exist unless ``force``. The archive is written to ``path.partial``,
    read back and checked, then renamed to ``path``; the store's ``backups`` table records
    it, verified. Raises ``ConfigurationError`` for engines without backups (memory, http)
    and ``SchemaError`` when the store's schema is not current.
    """
    archive = archive_of(store)
    target = _target(path, force=force)
    started = datetime.now(UTC)
    writer = ArchiveWriter(target)  # no await before the try: a cancellation cannot slip in
    try:
        async with archive.snapshot() as source:
            trailer = await _export(source, writer, started, progress)
        size, digest = await asyncio.to_thread(writer.finish, trailer)
        summary = await asyncio.to_thread(_read_back, writer, progress)
        await asyncio.to_thread(writer.commit)
    except BaseException:
        writer.discard()  # at once, even while a cancelled write still runs in its thread
        raise
    now = datetime.now(UTC)
    record = BackupRecord(
        id=uuid.uuid4().hex,
        path=str(target),
        started_at=started,
        finished_at=now,
        events=summary.events,
        last_position=summary.last_position,
        bytes=size,
        sha256=digest,
        engine=source.info.engine,
        verified_at=now,
    )
    await archive.record_backup(record)
    return record


def _read_back(writer: ArchiveWriter, progress: Progress) -> ArchiveSummary:
    """Check the finished partial archive, and that it holds what was written."""
    summary = verify(writer.partial, progress=progress)
    if summary.sha256 != writer.content_sha256:  # pragma: no cover - disk trouble
        raise KronikaError(f"the archive {writer.partial} did not read back as written")
    return summary


async def _export(
    source: ArchiveSource, writer: ArchiveWriter, started: datetime, progress: Progress
) -> dict[str, Any]:
    """Write the header and every section; return the trailer's facts."""
    info = source.info
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kronika": kronika.__version__,
        "engine": info.engine,
        "schema_version": info.schema_version,
        "created_at": started.isoformat(),
        "namespaces": list(info.namespaces),
        "sections": {s.name: info.counts[s.name] for s in SECTIONS},
    }
    await asyncio.to_thread(writer.line, header)
    progress.phase("backing up", sum(info.counts.values()))
    counts: dict[str, int] = {}
    done = last = 0
    for section in SECTIONS:
        await asyncio.to_thread(writer.line, {"section": section.name, "columns": section.names})
        count = 0
        async for page in _prefetched(source.pages(section, PAGE_ROWS)):
            await asyncio.to_thread(writer.page, page)
            count += len(page)
            if section.name == "events":
                last = max(last, *(row[1] for row in page))
            progress.done(done + count)
        await asyncio.to_thread(writer.line, {"end": section.name, "rows": count})
        counts[section.name] = count
        done += count
    return {"sections": counts, "last_position": last, "high_water": max(info.high_water, last)}


async def _prefetched(pages: AsyncIterator[Sequence[T]]) -> AsyncIterator[Sequence[T]]:
    """The pages of ``pages``, the next one being fetched while the caller uses one."""
    pending = asyncio.ensure_future(anext(pages, None))
    try:
        while (page := await pending) is not None:
            pending = asyncio.ensure_future(anext(pages, None))
            yield page
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, KronikaError):
                await pending
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            await aclose()
