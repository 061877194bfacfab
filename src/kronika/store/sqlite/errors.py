"""Translation of ``sqlite3`` errors into Kronika's error tree, at the backend's boundary.

Everything that talks to SQLite runs inside :func:`translating` (or passes what it caught
to :func:`translate`), so no ``sqlite3`` exception ever reaches a caller.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kronika.errors import (
    ConfigurationError,
    KronikaError,
    SchemaError,
    Unavailable,
    ValidationError,
)

__all__ = ["check_directory", "too_large", "translate", "translate_statement", "translating"]

# Primary result codes (https://www.sqlite.org/rescode.html).
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = (
    3,
    5,
    6,
    8,
    10,
    11,
    13,
    14,
    26,
)

_UNAVAILABLE = {
    _BUSY: "is locked by another connection and the busy timeout ran out; try again, or "
    "raise the 'busy_timeout' store option",
    _LOCKED: "is locked by another connection; try again",
    _READONLY: "is read-only: check the permissions of the file, its -wal and -shm files, "
    "and its directory",
    _IOERR: "could not be read or written (disk I/O error)",
    _FULL: "cannot grow: the disk is full",
    _CANTOPEN: "cannot be opened: check that the file and its directory exist and are "
    "readable and writable",
    _PERM: "cannot be opened: access denied",
}


def translate(exc: sqlite3.Error, path: Path | str) -> KronikaError:
    """The Kronika error for a ``sqlite3`` error on the database at ``path``."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    detail = f"({exc})"
    if primary in _UNAVAILABLE:
        return Unavailable(f"the SQLite database {path} {_UNAVAILABLE[primary]} {detail}")
    if primary == _NOTADB:
        return ConfigurationError(f"{path} is not a SQLite database (or is encrypted) {detail}")
    if primary == _CORRUPT:
        return KronikaError(f"the SQLite database {path} is corrupt; restore a backup {detail}")
    if "no such table" in str(exc):
        return SchemaError(
            f"the SQLite database {path} has no Kronika schema; run 'kronika migrate' {detail}"
        )
    return KronikaError(f"SQLite error on {path}: {exc}")


def translate_statement(exc: sqlite3.Error, path: Path | str) -> KronikaError:
    """The error for a caller's own SQL (a handler's ``ctx.execute``) that SQLite refused.

    Its message is SQLite's, as the caller wrote the statement; an unavailable or broken
    database is reported as for Kronika's own statements.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary in _UNAVAILABLE or primary in (_NOTADB, _CORRUPT):
        return translate(exc, path)
    return KronikaError(f"the SQL statement failed: {exc}")


def too_large(exc: OverflowError) -> ValidationError:
    """The error for a number SQLite cannot store (it has 64-bit integers)."""
    return ValidationError(f"a number is too large for SQLite (at most 2**63 - 1): {exc}")


@contextmanager
def translating(path: Path | str) -> Iterator[None]:
    """Re-raise any ``sqlite3`` error inside the block as a Kronika error."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
    except OverflowError as exc:
        raise too_large(exc) from exc


def check_directory(path: Path) -> None:
    """Raise ``ConfigurationError`` naming ``path`` if its directory does not exist."""
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"cannot open the SQLite database {path}: the directory {path.parent} does not exist"
        )
