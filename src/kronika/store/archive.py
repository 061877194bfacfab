"""The engine-neutral row format of Kronika archives, and the hooks the SQL backends provide.

A backup (:mod:`kronika.ops.backup`) streams the tables of a store through this format, so
that an archive written from one engine restores into the other. Each table is a
:class:`Section` of typed columns, and a value of each kind is written the same way
whatever the engine:

    kind   in an archive                          SQLite             PostgreSQL
    text   a string                               TEXT               text
    int    an integer                             INTEGER            bigint, integer
    float  a number                               REAL               double precision
    bool   true or false                          INTEGER 0/1        boolean
    json   a string holding JSON text             BLOB or TEXT       jsonb
    uuid   32 lowercase hex digits                BLOB (16 bytes)    uuid
    bytes  lowercase hex digits                   BLOB               bytea
    time   integer microseconds since the epoch   INTEGER            timestamptz
    list   an array of strings                    TEXT (JSON)        text[]

What is derived is left out and rebuilt on restore (``events.category``, the
``event_tags`` index); so is live state that belongs to running processes (partition
leases, worker heartbeats) and the ``backups`` catalog, which describes its own store.

To archive a new column, add it to its section here (``nullable`` when older archives lack
it) and to each backend's ``export_*``/``import_*`` queries in ``archive.sql``;
``tests/unit/test_archive_sections.py`` fails until every stored column is either archived
or listed in :data:`NOT_ARCHIVED`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from kronika.errors import ConfigurationError, ConflictError

__all__ = [
    "ArchiveSource",
    "BackupRecord",
    "Column",
    "Converter",
    "KINDS",
    "LoadPlan",
    "NOT_ARCHIVED",
    "SECTIONS",
    "Section",
    "SectionRows",
    "SourceInfo",
    "StoreArchive",
    "TargetState",
    "archive_of",
    "check_target",
    "converting",
    "durable_replace",
    "micros_of",
    "section",
    "time_of",
]

KINDS = frozenset({"text", "int", "float", "bool", "json", "uuid", "bytes", "time", "list"})
"""The kinds of value a column may hold (see the module docstring)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

Converter = Callable[[Any], Any]
"""Turns one value into another form (an archive value into an engine's, or back)."""


def time_of(micros: int) -> datetime:
    """A ``time`` value (microseconds since the epoch) as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=micros)


def micros_of(moment: datetime) -> int:
    """An aware datetime as a ``time`` value (microseconds since the epoch)."""
    return (moment - _EPOCH) // _MICROSECOND


def converting(
    fixes: Sequence[tuple[int, Converter]],
) -> Callable[[list[list[Any]]], list[list[Any]]]:
    """A function that converts a page of rows in place: each ``(column index, converter)``
    of ``fixes`` is applied to that column's values that are not NULL."""

    def convert(rows: list[list[Any]]) -> list[list[Any]]:
        for row in rows:
            for i, fix in fixes:
                if row[i] is not None:
                    row[i] = fix(row[i])
        return rows

    return convert


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """One archived column."""

    name: str
    """The column's name, the same in every engine."""
    kind: str
    """How its values are written: one of :data:`KINDS`."""
    nullable: bool = False
    """Whether it may be NULL (and may be missing from archives written before it existed)."""


def _columns(spec: str) -> tuple[Column, ...]:
    """Columns from ``"name:kind name:kind? ..."`` (``?`` marks a nullable column)."""
    found = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        found.append(Column(name=name, kind=kind.removesuffix("?"), nullable=kind.endswith("?")))
    return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class Section:
    """One archived table."""

    name: str
    """The table's name, the same in every engine."""
    columns: tuple[Column, ...]
    """Its archived columns, in archive order."""
    processing: bool = False
    """Runtime state of processors: left out by ``restore --without-processing``."""

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in archive order."""
        return tuple(c.name for c in self.columns)


SECTIONS: tuple[Section, ...] = (
    Section(
        name="streams",
        columns=_columns(
            "namespace:text stream:text version:int? state:text truncated_before:int "
            "max_age:float? max_count:int? metadata:json hash:bytes? anchor:bytes?"
        ),
    ),
    Section(
        name="events",
        columns=_columns(
            "namespace:text position:int stream:text version:int id:uuid type:text data:json "
            "metadata:json tags:list correlation_id:text? recorded_at:time hash:bytes?"
        ),
    ),
    Section(
        name="chain_checkpoints",
        columns=_columns("namespace:text position:int events:int hash:bytes created_at:time"),
    ),
    Section(
        name="snapshots",
        columns=_columns(
            "namespace:text stream:text version:int schema_version:int state:json recorded_at:time"
        ),
    ),
    Section(
        name="api_keys",
        columns=_columns(
            "namespace:text id:text name:text secret_hash:bytes roles:list categories:list? "
            "created_at:time expires_at:time? revoked_at:time? last_used_at:time?"
        ),
    ),
    Section(
        name="processors",
        columns=_columns("namespace:text name:text partitions:int paused:bool generation:int"),
        processing=True,
    ),
    Section(
        name="partitions",
        columns=_columns("namespace:text processor:text partition:int position:int?"),
        processing=True,
    ),
    Section(
        name="failures",
        columns=_columns(
            "namespace:text processor:text key:text partition:int position:int "
            "event_id:uuid event_type:text attempts:int error:text stack:text "
            "first_failed_at:time last_failed_at:time next_retry_at:time? state:text "
            "requested:text?"
        ),
        processing=True,
    ),
    Section(
        name="documents",
        columns=_columns("namespace:text collection:text key:text data:json"),
        processing=True,
    ),
    Section(
        name="jobs",
        columns=_columns(
            "namespace:text id:text kind:text processor:text generation:int state:text "
            "step:text target:int error:text? created_at:time updated_at:time"
        ),
        processing=True,
    ),
)
"""Every archived table, in archive (and restore) order."""

NOT_ARCHIVED: dict[str, str] = {
    "schema_migrations": "the target keeps its own migration history",
    "event_tags": "rebuilt from events.tags",
    "events.category": "derived from the stream name",
    "partitions.owner": "a lease of a running worker",
    "partitions.lease_expires_at": "a lease of a running worker",
    "workers": "heartbeats of running workers",
    "backups": "the catalog describes its own store",
    "chain_purges": "counts purges for a verify that is running; restarts from zero",
    "inline_projections": "their read models (the application's own tables) are not archived "
    "either: a restored store registers them anew and reports that they need a rebuild",
}
"""Tables and ``table.column`` names a store holds that archives leave out, and why."""


def section(name: str) -> Section | None:
    """The section of that name, or ``None`` if this Kronika does not archive it."""
    return next((s for s in SECTIONS if s.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceInfo:
    """What a backend reports about the consistent snapshot it exports."""

    engine: str
    """``sqlite`` or ``postgresql``."""
    schema_version: int
    """The newest migration applied to the source."""
    namespaces: tuple[str, ...]
    """Every namespace with data, sorted."""
    counts: dict[str, int]
    """Rows per section in the snapshot."""
    high_water: int
    """The highest position the source ever assigned as far as it records one (SQLite keeps
    it even after the newest events were deleted), else 0."""


class ArchiveSource(Protocol):
    """One consistent read-only snapshot of every archived table."""

    info: SourceInfo
    """The snapshot's facts, known before any row is read."""

    def pages(self, section: Section, size: int) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """The section's rows in the archive's value format, ``size`` at a time."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetState:
    """What a restore needs to know about its target before (and while) it writes."""

    exists: bool
    """False when there is nothing yet (no SQLite file, no Kronika schema)."""
    rows: dict[str, int]
    """Rows per archived table the target has (tables it lacks are left out)."""
    heads: dict[str, int] = field(default_factory=dict)
    """The highest event position per namespace."""

    @property
    def empty(self) -> bool:
        """True when no archived table holds a row."""
        return not any(self.rows.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadPlan:
    """What a restore writes, and the facts about the archive it was validated against."""

    sections: tuple[Section, ...]
    """The sections to write, in order."""
    merge: bool
    """Add to a store that holds data (else the target must be empty)."""
    floor: int
    """New positions must stay above this: the highest position in the archive, its
    source's high-water mark, and every checkpoint, failure and job target it holds."""
    lows: dict[str, int]
    """The lowest event position per namespace in the archive."""


@dataclass(frozen=True, slots=True)
class SectionRows:
    """One section of an archive being restored: its rows in the current column order."""

    section: Section
    """Which table."""
    pages: Iterator[list[list[Any]]]
    """The rows, a page at a time (missing nullable columns are ``None``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BackupRecord:
    """A backup in a store's catalog (the ``backups`` table of the store it copied)."""

    id: str
    """A random identifier (32 hex digits)."""
    path: str
    """The archive's absolute path when it was written."""
    started_at: datetime
    """When the backup started (UTC)."""
    finished_at: datetime
    """When the archive was complete and renamed into place (UTC)."""
    events: int
    """Events in the archive."""
    last_position: int
    """The highest event position in the archive (0 when it holds no event)."""
    bytes: int
    """The archive's size on disk."""
    sha256: str
    """SHA-256 of the archive file (compare with ``sha256sum FILE``)."""
    engine: str
    """The engine of the store it copied."""
    verified_at: datetime | None
    """When the archive was last read back and found intact (UTC), if ever."""

    @classmethod
    def from_row(cls, row: Sequence[Any], time: Callable[[Any], datetime]) -> BackupRecord:
        """From a catalog row (``id, path, started_at, finished_at, events, last_position,
        bytes, sha256, engine, verified_at``); ``time`` reads a stored time as UTC."""
        id_, path, started, finished, events, last, size, sha256, engine, verified = row
        return cls(
            id=id_,
            path=path,
            started_at=time(started),
            finished_at=time(finished),
            events=events,
            last_position=last,
            bytes=size,
            sha256=sha256,
            engine=engine,
            verified_at=None if verified is None else time(verified),
        )

    def params(self, time: Callable[[datetime], Any]) -> dict[str, Any]:
        """The catalog insert's parameters; ``time`` writes a time as the engine stores it."""
        return {
            "id": self.id,
            "path": self.path,
            "started_at": time(self.started_at),
            "finished_at": time(self.finished_at),
            "events": self.events,
            "last_position": self.last_position,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "engine": self.engine,
            "verified_at": None if self.verified_at is None else time(self.verified_at),
        }


class StoreArchive(Protocol):
    """What a backend offers for backups: export, restore, and the backups catalog.

    Every method opens connections of its own, so it works on a store that is not open
    (and a restore must not open one: that would create the target)."""

    engine: str
    """``sqlite`` or ``postgresql``."""

    def snapshot(self) -> AbstractAsyncContextManager[ArchiveSource]:
        """A consistent snapshot of the store, read while the store stays in use."""
        ...

    async def inspect(self) -> TargetState:
        """The state of the store as a restore target (creates nothing)."""
        ...

    async def load(self, plan: LoadPlan, sections: Iterator[SectionRows]) -> None:
        """Write the sections all or nothing: refuse (``ConflictError``) a non-empty
        target unless merging, and any row that collides with a stored one."""
        ...

    async def record_backup(self, record: BackupRecord) -> None:
        """Add a finished backup to the catalog."""
        ...

    async def backup_history(self, limit: int | None) -> list[BackupRecord]:
        """The catalog, newest first."""
        ...

    async def mark_verified(self, sha256: str, at: datetime) -> int:
        """Set ``verified_at`` of the backups whose file has this SHA-256; how many."""
        ...


def archive_of(store: object) -> StoreArchive:
    """The backup hooks of a store; ``ConfigurationError`` for engines without them."""
    archive: StoreArchive | None = getattr(store, "archive", None)
    if archive is None:
        engine = getattr(store, "engine", type(store).__name__)
        raise ConfigurationError(
            f"backups need a SQLite or PostgreSQL store, not {engine}: "
            "use a sqlite:/// or postgresql:// URL"
        )
    return archive


def check_target(plan: LoadPlan, state: TargetState) -> None:
    """Refuse a restore the target cannot take (``ConflictError``).

    Without ``merge`` the target must be empty. With it, each namespace's restored events
    must lie above the events the target already holds in that namespace: subscribers
    that have passed a position never go back, so an event restored below it would never
    reach them. Colliding rows (ids, positions, streams, keys) are refused while writing.
    """
    if not plan.merge:
        if not state.empty:
            held = ", ".join(f"{name} ({count})" for name, count in state.rows.items() if count)
            raise ConflictError(
                f"the target store is not empty (it holds {held}); restore into an empty "
                "store, or add --merge to add the archive's rows to it"
            )
        return
    for namespace, low in sorted(plan.lows.items()):
        head = state.heads.get(namespace)
        if head is not None and low <= head:
            raise ConflictError(
                f"cannot merge: namespace {namespace!r} holds events up to position {head} in "
                f"the target and the archive's events there start at position {low}; "
                "merged events must lie above the target's (subscribers never go back)"
            )


def durable_replace(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` so that after a crash either is there, complete.

    The file's data is flushed before the rename and the directory entry after it.
    """
    _fsync(source, os.O_RDONLY)
    os.replace(source, target)
    _fsync(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
