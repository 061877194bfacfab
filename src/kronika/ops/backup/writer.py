"""Writing an archive: ``FILE.partial`` first, renamed to ``FILE`` only once complete.

The writer compresses and hashes as it goes, so memory stays flat whatever the store's
size. Until :meth:`ArchiveWriter.commit` nothing named ``FILE`` exists: an interrupted
backup leaves at most the ``.partial`` file, which never passes for a complete archive.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from kronika.ops.backup.format import COMPRESS_LEVEL, partial_path
from kronika.store.archive import durable_replace

__all__ = ["ArchiveWriter"]

_LINE = orjson.OPT_APPEND_NEWLINE


class _HashingFile:
    """A write-only file that hashes and counts the (compressed) bytes passing through."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class ArchiveWriter:
    """One archive being written (blocking I/O; see :mod:`kronika.ops.backup.format`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = partial_path(path)
        self._raw = self.partial.open("wb")
        self._file = _HashingFile(self._raw)
        self._gzip = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._file, compresslevel=COMPRESS_LEVEL, mtime=0
        )
        self._content = hashlib.sha256()

    def line(self, value: Any) -> None:
        """Write one JSON line (an object, or a page of rows)."""
        data = orjson.dumps(value, option=_LINE)
        self._content.update(data)
        self._gzip.write(data)

    def page(self, rows: Sequence[Sequence[Any]]) -> None:
        """Write one page of rows."""
        self.line(rows)

    def finish(self, trailer: dict[str, Any]) -> tuple[int, str]:
        """Write the trailer (with the content's SHA-256), close and flush the file to disk.

        Returns the file's size and SHA-256."""
        trailer = {**trailer, "sha256": self._content.hexdigest()}
        self._gzip.write(orjson.dumps({"trailer": trailer}, option=_LINE))
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        return self._file.size, self._file.sha256.hexdigest()

    @property
    def content_sha256(self) -> str:
        """The SHA-256 of the uncompressed lines written so far."""
        return self._content.hexdigest()

    def discard(self) -> None:
        """Stop and delete the partial file (after a failure or an interruption)."""
        try:
            self._gzip.close()
        except (OSError, ValueError):
            pass
        finally:
            self._raw.close()
            self.partial.unlink(missing_ok=True)

    def commit(self) -> None:
        """Rename the finished archive to its name, durably."""
        durable_replace(self.partial, self.path)
