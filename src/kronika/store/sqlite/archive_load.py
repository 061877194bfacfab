"""Restoring an archive into a SQLite database, all or nothing.

An empty target (no file, or a file whose tables hold nothing) is replaced: the archive
is loaded into ``<target>.partial`` next to it, without a journal (a failed build is
simply deleted), then flushed and renamed over the target. An interruption leaves the
target as it was and at most a ``.partial`` file, which the next restore replaces.

Merging into a target that holds data happens in place, in one write transaction: SQLite
rolls it back on any error or interruption, and a row that collides with a stored one
(the same event id, position, stream, key...) refuses the whole merge.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from kronika.domain.events import category_of
from kronika.errors import ConflictError, Unavailable
from kronika.store.archive import (
    SECTIONS,
    Converter,
    LoadPlan,
    Section,
    SectionRows,
    TargetState,
    check_target,
    converting,
    durable_replace,
)
from kronika.store.sqlfiles import load_queries
from kronika.store.sqlite import schema
from kronika.store.sqlite.config import SQLiteConfig
from kronika.store.sqlite.connection import connect
from kronika.store.sqlite.errors import check_directory, translating
from kronika.store.sqlite.sql import QUERIES

__all__ = ["ARCHIVE_QUERIES", "inspect", "load"]

ARCHIVE_QUERIES: dict[str, str] = load_queries(__package__ or "kronika.store.sqlite", "archive.sql")
"""The named queries of ``archive.sql``."""

_SIDE_FILES = ("-journal", "-wal", "-shm")

_BLOB_JSON = frozenset({"streams.metadata", "events.data", "events.metadata", "snapshots.state"})
"""JSON columns stored as BLOB (the others are TEXT)."""


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _utf8(value: str) -> bytes:
    return value.encode()


_TO_SQLITE: dict[str, Converter] = {
    "uuid": bytes.fromhex,
    "bytes": bytes.fromhex,
    "list": _json_text,
    "bool": int,
}
"""Per kind, how an archive value is stored (others are stored as they are)."""


def _import_converter(section: Section) -> Callable[[list[list[Any]]], list[list[Any]]]:
    """Convert a page of archive rows of ``section`` to parameters of its insert."""
    fixes: list[tuple[int, Converter]] = []
    for i, column in enumerate(section.columns):
        if f"{section.name}.{column.name}" in _BLOB_JSON:
            fixes.append((i, _utf8))
        elif column.kind in _TO_SQLITE:
            fixes.append((i, _TO_SQLITE[column.kind]))

    return converting(fixes)


def _event_rows(rows: list[list[Any]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Parameters of ``import_events`` and of ``import_event_tags`` for a page of events.

    The hot path of a restore: one pass, no generic per-column dispatch."""
    events: list[tuple[Any, ...]] = []
    tags: list[tuple[Any, ...]] = []
    fromhex, dumps = bytes.fromhex, orjson.dumps
    for (
        namespace,
        position,
        stream,
        version,
        id_,
        type_,
        data,
        meta,
        tag_list,
        corr,
        at,
        hash_,
    ) in rows:
        events.append(
            (position, namespace, stream, category_of(stream), version, fromhex(id_), type_,
             data.encode(), meta.encode(), dumps(tag_list).decode() if tag_list else None,
             corr, at, None if hash_ is None else fromhex(hash_))
        )  # fmt: skip
        if tag_list:
            tags.extend((namespace, tag, position) for tag in dict.fromkeys(tag_list))
    return events, tags


def _write(conn: sqlite3.Connection, sections: Iterator[SectionRows]) -> None:
    """Insert every page of every section (inside the caller's transaction)."""
    for part in sections:
        name = part.section.name
        try:
            if name == "events":
                for page in part.pages:
                    events, tags = _event_rows(page)
                    conn.executemany(ARCHIVE_QUERIES["import_events"], events)
                    conn.executemany(ARCHIVE_QUERIES["import_event_tags"], tags)
                continue
            convert = _import_converter(part.section)
            for page in part.pages:
                conn.executemany(ARCHIVE_QUERIES[f"import_{name}"], convert(page))
        except sqlite3.IntegrityError as exc:
            raise ConflictError(
                f"cannot restore: a row of the archive's {name} collides with one the "
                f"target holds ({exc}); nothing was written"
            ) from None


def _raise_high_water(conn: sqlite3.Connection, floor: int) -> None:
    """Make the positions of new events start above ``floor``."""
    params = {"floor": floor}
    if conn.execute(ARCHIVE_QUERIES["raise_high_water"], params).rowcount == 0:
        conn.execute(ARCHIVE_QUERIES["insert_high_water"], params)


def _state(conn: sqlite3.Connection) -> TargetState:
    tables = {row[0] for row in conn.execute(ARCHIVE_QUERIES["tables"])}
    rows = {
        s.name: conn.execute(ARCHIVE_QUERIES[f"count_{s.name}"]).fetchone()[0]
        for s in SECTIONS
        if s.name in tables
    }
    heads = {}
    if rows.get("events"):
        heads = dict(conn.execute(ARCHIVE_QUERIES["heads"]).fetchall())
    return TargetState(exists=True, rows=rows, heads=heads)


def inspect(config: SQLiteConfig) -> TargetState:
    """The target's state (blocking); a missing file is reported, not created."""
    if not config.path.exists():
        return TargetState(exists=False, rows={})
    conn = connect(config, writer=False)
    try:
        with translating(config.path):
            return _state(conn)
    finally:
        conn.close()


def load(config: SQLiteConfig, plan: LoadPlan, sections: Iterator[SectionRows]) -> None:
    """Restore into the database at ``config.path`` (blocking); see the module docstring."""
    state = inspect(config)
    if state.empty:
        _build(config, plan, sections)
        return
    check_target(plan, state)
    _merge(config, plan, sections)


def _remove(path: Path) -> None:
    for name in (path, *(path.with_name(path.name + s) for s in _SIDE_FILES)):
        name.unlink(missing_ok=True)


def _build(config: SQLiteConfig, plan: LoadPlan, sections: Iterator[SectionRows]) -> None:
    """Load into a new file next to the target, then rename it over the target."""
    target = config.path
    check_directory(target)
    partial = target.with_name(target.name + ".partial")
    _remove(partial)
    try:
        schema.migrate_file(replace(config, path=partial))
        conn = sqlite3.connect(partial, isolation_level=None, check_same_thread=False)
        try:
            with translating(target):
                for pragma in ("bulk_journal_off", "bulk_synchronous_off", "bulk_cache_size"):
                    conn.execute(ARCHIVE_QUERIES[pragma])
                conn.execute(QUERIES["begin_immediate"])
                _write(conn, sections)
                _raise_high_water(conn, plan.floor)
                conn.execute(QUERIES["commit"])
                conn.execute(ARCHIVE_QUERIES["journal_wal"])
        finally:
            conn.close()
        if target.exists():
            _quiesce(config)
        durable_replace(partial, target)
    except BaseException:
        _remove(partial)
        raise
    for suffix in ("-wal", "-shm"):  # the replaced file's, emptied by _quiesce
        target.with_name(target.name + suffix).unlink(missing_ok=True)


def _quiesce(config: SQLiteConfig) -> None:
    """Empty the WAL of the (empty) file about to be replaced; refuse if it is in use."""
    conn = connect(config, writer=True)
    try:
        with translating(config.path):
            conn.execute(ARCHIVE_QUERIES["checkpoint_truncate"])
    finally:
        conn.close()
    wal = config.path.with_name(config.path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise Unavailable(
            f"the SQLite database {config.path} is in use by another process; stop it "
            "before restoring over the database"
        )


def _merge(config: SQLiteConfig, plan: LoadPlan, sections: Iterator[SectionRows]) -> None:
    """Add the archive to a database that holds data, in one write transaction."""
    schema.migrate_file(config)
    conn = connect(config, writer=True)
    try:
        with translating(config.path):
            conn.execute(QUERIES["begin_immediate"])
            try:
                check_target(plan, _state(conn))
                _write(conn, sections)
                _raise_high_water(conn, plan.floor)
                conn.execute(QUERIES["commit"])
            finally:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute(QUERIES["rollback"])
    finally:
        conn.close()
