"""Backups and restores of a store: ``kronika backup``, ``kronika restore``, ``kronika
backup verify`` and the backups catalog.

An archive (see :mod:`.format`) holds a consistent snapshot of every namespace of a SQLite
or PostgreSQL store, in an engine-neutral form: it restores into either engine, so it also
moves a store from SQLite to PostgreSQL. Archives are written beside their final name and
renamed once complete and checked; restores check the whole archive before they write,
then write all or nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from kronika.ops.backup.create import backup
from kronika.ops.backup.format import ArchiveSummary, partial_path
from kronika.ops.backup.progress import NO_PROGRESS, Progress
from kronika.ops.backup.restore import RestoreResult, restore
from kronika.ops.backup.verify import verify
from kronika.store.archive import BackupRecord, archive_of

__all__ = [
    "ArchiveSummary",
    "BackupRecord",
    "NO_PROGRESS",
    "Progress",
    "RestoreResult",
    "backup",
    "history",
    "partial_path",
    "record_verified",
    "restore",
    "verify",
]


async def record_verified(store: object, summary: ArchiveSummary) -> int:
    """Record in the catalog of ``store`` that the archive ``summary`` describes (just
    checked with :func:`verify`) is intact: its backups get ``verified_at`` = now.

    The archive is known by its file's SHA-256. Returns how many catalog rows it matched
    (0: the archive is not a backup of this store, or its file changed since).
    """
    digest = await asyncio.to_thread(_file_sha256, summary.path)
    return await archive_of(store).mark_verified(digest, datetime.now(UTC))


def _file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


async def history(store: object, *, limit: int | None = None) -> list[BackupRecord]:
    """The backups of ``store`` recorded in its catalog, newest first (at most ``limit``).

    Works whether or not the store is open; empty for a SQLite file that does not exist.
    Raises ``ConfigurationError`` for engines without backups (memory, http).
    """
    return await archive_of(store).backup_history(limit)
