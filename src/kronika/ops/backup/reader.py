"""Reading and checking an archive, a page at a time, in constant memory.

:class:`ArchiveScan` walks an archive once: it checks the header, every section's columns,
page shapes and row counts, the content's SHA-256 against the trailer, and gzip's own CRC;
it yields the pages as it goes and leaves an :class:`ArchiveSummary` when the walk is
complete. Any problem raises ``ValidationError`` naming the file and what is wrong. A
restore walks the archive twice: once to check it all before writing anything, then
again to write (and the second walk checks everything again, so a file that changes in
between is refused too).
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

from kronika.errors import ValidationError
from kronika.ops.backup.format import FORMAT, FORMAT_VERSION, ArchiveSummary
from kronika.store.archive import Section, section

__all__ = ["ArchiveScan", "Page"]

Page = tuple[Section, list[list[Any]]]
"""A section and a page of its rows, in this Kronika's column order."""

_FLOOR_COLUMNS = {"partitions": "position", "failures": "position", "jobs": "target"}
"""Positions besides the events' that new events must stay above after a restore."""


class _Bad(Exception):
    """A problem found while scanning (turned into a ``ValidationError`` at the edge)."""


def _mapping(spec: Section, columns: object) -> list[int | None] | None:
    """Where each of this Kronika's columns is in the archive's rows (None: as is)."""
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _Bad(f"section {spec.name} has no valid column list")
    if tuple(columns) == spec.names:
        return None
    unknown = sorted(set(columns) - set(spec.names))
    if unknown:
        raise _Bad(
            f"section {spec.name} has columns this Kronika does not know ({', '.join(unknown)}): "
            "it was written by a newer Kronika; upgrade Kronika to read it"
        )
    missing = [c.name for c in spec.columns if c.name not in columns and not c.nullable]
    if missing or len(set(columns)) != len(columns):
        raise _Bad(f"section {spec.name} lacks columns {missing} or repeats some")
    return [columns.index(c.name) if c.name in columns else None for c in spec.columns]


class _Header:
    """The checked header line."""

    def __init__(self, value: object) -> None:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise _Bad("it is not a Kronika archive (its first line is not an archive header)")
        version = value.get("format_version")
        if version != FORMAT_VERSION:
            raise _Bad(
                f"its format version is {version!r} and this Kronika reads version "
                f"{FORMAT_VERSION} only; use the Kronika version that wrote it"
            )
        try:
            self.kronika = str(value["kronika"])
            self.engine = str(value["engine"])
            self.schema_version = int(value["schema_version"])
            self.created_at = datetime.fromisoformat(value["created_at"])
            self.namespaces = tuple(str(n) for n in value["namespaces"])
            self.sections = {str(k): int(v) for k, v in value["sections"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise _Bad(f"its header is damaged ({exc!r})") from None
        for name in self.sections:
            if section(name) is None:
                raise _Bad(
                    f"it holds a section {name!r} this Kronika does not know: it was written "
                    "by a newer Kronika; upgrade Kronika to read it"
                )


class ArchiveScan:
    """One walk through an archive: iterate it for its pages; then read :attr:`summary`."""

    def __init__(self, path: Path, on_bytes: Callable[[int], None] | None = None) -> None:
        self.path = path
        self._on_bytes = on_bytes
        self._content = hashlib.sha256()
        self._line_number = 0
        self._summary: ArchiveSummary | None = None
        self._last = 0
        """The highest event position read so far."""
        self._floor = 0
        """The highest position of any kind read so far."""
        self._lows: dict[str, int] = {}
        """The lowest event position per namespace."""

    @property
    def summary(self) -> ArchiveSummary:
        """What the complete walk found (only after iterating to the end)."""
        if self._summary is None:
            raise RuntimeError("the archive has not been read to its end")
        return self._summary

    def __iter__(self) -> Iterator[Page]:
        if not self.path.is_file():
            raise ValidationError(f"{self.path}: no such archive file")
        try:
            with self.path.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield from self._walk(raw, unzipped)
        except _Bad as exc:
            raise self._error(str(exc)) from None
        except gzip.BadGzipFile as exc:
            if self._line_number == 0:
                raise self._error("it is not a Kronika archive (not gzip-compressed)") from None
            raise self._error(f"it is corrupt ({exc})") from None
        except EOFError:
            raise self._error("it is truncated (the compressed data ends early)") from None
        except (zlib.error, OSError) as exc:
            raise self._error(f"it is corrupt ({exc})") from None

    def _error(self, reason: str) -> ValidationError:
        where = f", line {self._line_number}" if self._line_number > 1 else ""
        return ValidationError(f"archive {self.path}{where}: {reason}")

    def _line(self, unzipped: gzip.GzipFile, raw: IO[bytes], *, hashed: bool = True) -> bytes:
        line = unzipped.readline()
        if not line and self._line_number == 0:
            raise _Bad("it is not a Kronika archive (it is empty)")
        if not line:
            raise _Bad("it is truncated (it ends before its trailer)")
        if not line.endswith(b"\n"):
            raise _Bad("it is truncated (its last line is cut short)")
        self._line_number += 1
        if hashed:
            self._content.update(line)
        if self._on_bytes is not None:
            self._on_bytes(raw.tell())
        return line

    def _load(self, line: bytes) -> Any:
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            raise _Bad("it is corrupt (a line is not valid JSON)") from None

    def _walk(self, raw: IO[bytes], unzipped: gzip.GzipFile) -> Iterator[Page]:
        header = _Header(self._load(self._line(unzipped, raw)))
        for name, expected in header.sections.items():
            spec = section(name)
            assert spec is not None  # checked by _Header
            count = yield from self._section(spec, raw, unzipped)
            if count != expected:
                raise _Bad(f"section {name} holds {count} rows, its header says {expected}")
        trailer = self._load(self._line(unzipped, raw, hashed=False))
        high_water = self._check_trailer(trailer, header.sections)
        if unzipped.readline():  # reading on also checks gzip's CRC and length
            raise _Bad("it has data after its trailer")
        self._summary = ArchiveSummary(
            path=self.path,
            bytes=self.path.stat().st_size,
            format_version=FORMAT_VERSION,
            kronika_version=header.kronika,
            engine=header.engine,
            schema_version=header.schema_version,
            created_at=header.created_at,
            namespaces=header.namespaces,
            counts=dict(header.sections),
            last_position=self._last,
            high_water=high_water,
            floor=max(self._floor, high_water),
            lows=self._lows,
            sha256=self._content.hexdigest(),
        )

    def _section(
        self, spec: Section, raw: IO[bytes], unzipped: gzip.GzipFile
    ) -> Generator[Page, None, int]:
        """Yield the section's pages; return how many rows it held."""
        start = self._load(self._line(unzipped, raw))
        if not isinstance(start, dict) or start.get("section") != spec.name:
            raise _Bad(f"section {spec.name} is missing or out of order")
        mapping = _mapping(spec, start.get("columns"))
        width = len(start["columns"])
        count = 0
        while True:
            line = self._line(unzipped, raw)
            if line[:1] != b"[":
                end = self._load(line)
                if end != {"end": spec.name, "rows": count}:
                    raise _Bad(f"section {spec.name} does not end as it should")
                return count
            rows = self._load(line)
            if not all(type(row) is list and len(row) == width for row in rows):
                raise _Bad(f"a page of section {spec.name} has rows of the wrong shape")
            if mapping is not None:
                rows = [[row[i] if i is not None else None for i in mapping] for row in rows]
            self._track(spec, rows)
            count += len(rows)
            yield spec, rows

    def _track(self, spec: Section, rows: list[list[Any]]) -> None:
        """Note the positions a restore must stay above, and each namespace's lowest."""
        if spec.name == "events":
            self._track_events(rows)
            return
        column = _FLOOR_COLUMNS.get(spec.name)
        if column is None:
            return
        index = spec.names.index(column)
        for row in rows:
            value = row[index]
            if value is not None:
                if type(value) is not int:
                    raise _Bad(f"section {spec.name} has a {column} that is not an integer")
                self._floor = max(self._floor, value)

    def _track_events(self, rows: list[list[Any]]) -> None:
        # namespace and position are the first two columns of the events section
        last, lows = self._last, self._lows
        for row in rows:
            namespace, position = row[0], row[1]
            if type(position) is not int or type(namespace) is not str:
                raise _Bad("section events has a position or namespace of the wrong type")
            last = max(last, position)
            if position < lows.get(namespace, position + 1):
                lows[namespace] = position
        self._last = last
        self._floor = max(self._floor, last)

    def _check_trailer(self, value: object, sections: dict[str, int]) -> int:
        """Check the trailer against what was read; return the source's high-water mark."""
        trailer = value.get("trailer") if isinstance(value, dict) else None
        if not isinstance(trailer, dict):
            raise _Bad("its trailer is missing (it is truncated or was altered)")
        if trailer.get("sha256") != self._content.hexdigest():
            raise _Bad(
                "its content does not match the SHA-256 in its trailer (it was altered or damaged)"
            )
        if trailer.get("sections") != sections or trailer.get("last_position") != self._last:
            raise _Bad("its trailer disagrees with its content")
        high_water = trailer.get("high_water")
        if type(high_water) is not int or high_water < self._last:
            raise _Bad("its trailer has no valid high_water")
        return high_water
