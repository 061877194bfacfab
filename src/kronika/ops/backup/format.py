"""The Kronika archive format, version 1.

An archive is one gzip stream of JSON lines (UTF-8, one JSON value per line):

1. the **header**, an object: ``format`` (``"kronika-archive"``), ``format_version`` (1),
   ``kronika`` (the version that wrote it), ``engine`` and ``schema_version`` of the
   store it copies, ``created_at`` (ISO 8601, UTC), ``namespaces``, and ``sections``: the
   rows each section holds, in the order the sections follow;
2. per section: an object ``{"section": NAME, "columns": [...]}``, then its rows in
   **pages**, each a JSON array of up to 1,000 rows (a row is an array of values in the
   column order; see :mod:`kronika.store.archive` for how each kind of value is written),
   then ``{"end": NAME, "rows": N}``;
3. the **trailer**, the last line: ``{"trailer": {"sections": {...}, "last_position": P,
   "high_water": H, "sha256": HEX}}``, where ``sha256`` is the SHA-256 of every byte of
   the uncompressed stream before the trailer line.

Objects and pages tell themselves apart by their first byte (``{`` or ``[``). A missing
or wrong trailer means the archive is truncated or was altered; gzip's own CRC catches
most damage to the compressed bytes before that. The checksum guards against accidents,
not against someone who rewrites the whole archive: keep archives where only operators
can write, and compare the file's SHA-256 with the one the backups catalog recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = [
    "ArchiveSummary",
    "COMPRESS_LEVEL",
    "FORMAT",
    "FORMAT_VERSION",
    "PAGE_ROWS",
    "partial_path",
]

FORMAT = "kronika-archive"
"""The ``format`` of every archive's header."""
FORMAT_VERSION = 1
"""The version this Kronika writes and the only one it reads."""
PAGE_ROWS = 1_000
"""Rows per page line."""
COMPRESS_LEVEL = 1
"""gzip level: archives are mostly JSON, which level 1 already shrinks several times."""


def partial_path(path: Path) -> Path:
    """Where an archive (or a restored SQLite file) is written before it is complete."""
    return path.with_name(path.name + ".partial")


@dataclass(frozen=True, slots=True, kw_only=True)
class ArchiveSummary:
    """What a complete check of an archive found (it is valid, or checking raised)."""

    path: Path
    """The archive file."""
    bytes: int
    """Its size on disk."""
    format_version: int
    """The archive format version."""
    kronika_version: str
    """The Kronika version that wrote it."""
    engine: str
    """The engine of the store it copies."""
    schema_version: int
    """The schema version of that store."""
    created_at: datetime
    """When the backup began (the snapshot's time, UTC)."""
    namespaces: tuple[str, ...]
    """The namespaces it holds data of."""
    counts: dict[str, int]
    """Rows per section, in archive order."""
    last_position: int
    """The highest event position in it (0 without events)."""
    high_water: int
    """The highest position its source had assigned (at least ``last_position``)."""
    floor: int
    """New positions after a restore must lie above this: ``high_water`` and every
    checkpoint, failed key and replay target in the archive."""
    lows: dict[str, int]
    """The lowest event position per namespace."""
    sha256: str
    """The SHA-256 of its uncompressed content (from the trailer, and recomputed)."""

    @property
    def events(self) -> int:
        """Events in the archive."""
        return self.counts.get("events", 0)
