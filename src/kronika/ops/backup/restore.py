"""Restoring an archive into a store: check all of it first, then write all or nothing.

The first pass reads the whole archive and checks it (see :mod:`.reader`) before anything
is written; the second streams it into the store through the backend's ``load``, which
writes in one transaction (PostgreSQL, a SQLite merge) or into a new file renamed into
place (SQLite), so an interruption leaves either nothing or the old state.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kronika.errors import KronikaError, ValidationError
from kronika.ops.backup.format import ArchiveSummary
from kronika.ops.backup.progress import NO_PROGRESS, Progress
from kronika.ops.backup.reader import ArchiveScan, Page
from kronika.ops.backup.verify import verify
from kronika.store.archive import (
    SECTIONS,
    LoadPlan,
    SectionRows,
    archive_of,
    check_target,
)

__all__ = ["RestoreResult", "restore"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreResult:
    """What a restore wrote."""

    summary: ArchiveSummary
    """The archive it read."""
    rows: dict[str, int]
    """Rows written per section, in archive order."""
    merged: bool
    """True when the target held data already and the archive was added to it."""


async def restore(
    store: object,
    path: str | Path,
    *,
    merge: bool = False,
    processing: bool = True,
    progress: Progress = NO_PROGRESS,
) -> RestoreResult:
    """Restore the archive at ``path`` into ``store``, which must not be open.

    The target must be empty (no SQLite file, an empty one, or a fresh schema) unless
    ``merge``: then the archive's rows are added, refusing any that collide with stored
    ones, and each namespace's restored events must lie above the target's. With
    ``processing=False`` the processors' state (checkpoints, failed keys, documents, replay
    jobs) is left out, so every processor starts again from the first event.

    Raises ``ValidationError`` for a bad archive and ``ConflictError`` for a target that
    cannot take it, before anything is written.
    """
    archive = archive_of(store)
    summary = await asyncio.to_thread(verify, path, progress=progress)
    source = summary.path  # absolute
    sections = tuple(s for s in SECTIONS if processing or not s.processing)
    plan = LoadPlan(sections=sections, merge=merge, floor=summary.floor, lows=summary.lows)
    state = await archive.inspect()
    check_target(plan, state)
    rows = {s.name: summary.counts.get(s.name, 0) for s in sections}
    progress.phase("restoring", sum(rows.values()))
    stop = threading.Event()
    try:
        await archive.load(plan, _sections(source, summary, set(rows), progress, stop))
    except asyncio.CancelledError:
        stop.set()  # a load running in a thread stops at its next page and cleans up
        raise
    return RestoreResult(summary=summary, rows=rows, merged=not state.empty)


def _sections(
    path: Path,
    checked: ArchiveSummary,
    wanted: set[str],
    progress: Progress,
    stop: threading.Event,
) -> Iterator[SectionRows]:
    """The wanted sections of the archive, read (and checked) again as they are written;
    raises once ``stop`` is set."""
    scan = ArchiveScan(path)
    done = 0

    def pages(group: Iterator[Page]) -> Iterator[list[list[object]]]:
        nonlocal done
        for _, rows in group:
            if stop.is_set():
                raise KronikaError("the restore was interrupted; nothing was written")
            yield rows
            done += len(rows)
            progress.done(done)

    for name, group in itertools.groupby(scan, key=lambda page: page[0].name):
        if name in wanted:
            yield SectionRows(next(s for s in SECTIONS if s.name == name), pages(group))
    if scan.summary.sha256 != checked.sha256:
        raise ValidationError(f"archive {path}: it changed while it was being restored")
