"""Checking an archive without restoring it."""

from __future__ import annotations

from pathlib import Path

from kronika.ops.backup.format import ArchiveSummary
from kronika.ops.backup.progress import NO_PROGRESS, Progress
from kronika.ops.backup.reader import ArchiveScan

__all__ = ["verify"]


def verify(path: str | Path, *, progress: Progress = NO_PROGRESS) -> ArchiveSummary:
    """Read the whole archive and check it: format, version, columns, row counts, the
    content's SHA-256 and gzip's CRC (blocking).

    Returns what it holds; raises ``ValidationError`` naming the file and the first
    problem found (not an archive, a newer format, truncated, altered, damaged).
    """
    archive = Path(path).absolute()
    progress.phase("checking", archive.stat().st_size if archive.is_file() else 0)
    scan = ArchiveScan(archive, progress.done)
    for _ in scan:
        pass
    return scan.summary
