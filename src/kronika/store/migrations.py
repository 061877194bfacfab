"""Versioned schema migrations, shared by the SQL backends.

Each backend package has ``migrations/NNNN_description.sql`` files (applied in order, each in
one transaction) and a canonical ``schema.sql``; a test proves that applying every migration
to an empty database gives the same schema as ``schema.sql``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

__all__ = ["Migration", "SchemaStatus", "load_migrations", "status_of"]

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    """One schema migration."""

    version: int
    """Its number: migrations apply in increasing order, from 1."""
    name: str
    """A short description taken from the file name."""
    sql: str
    """The statements to run."""

    @property
    def checksum(self) -> str:
        """SHA-256 of the SQL, recorded when applied, to spot edited migrations."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaStatus:
    """How a database's schema compares with this version of Kronika."""

    current: int
    """The newest migration applied to the database (0 for an empty database)."""
    latest: int
    """The newest migration this code knows."""
    pending: tuple[Migration, ...]
    """Migrations still to apply, in order."""

    @property
    def up_to_date(self) -> bool:
        """True when nothing is pending and the database is not newer than the code."""
        return self.current == self.latest

    @property
    def too_new(self) -> bool:
        """True when the database was migrated by a newer Kronika than this one."""
        return self.current > self.latest


def load_migrations(package: str) -> tuple[Migration, ...]:
    """The migrations in ``package``'s ``migrations`` folder, ordered and gap-checked."""
    folder = resources.files(package).joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(
                Migration(
                    version=int(match["version"]),
                    name=match["name"],
                    sql=entry.read_text(encoding="utf-8"),
                )
            )
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ValueError(f"{package}: migration {expected:04d} is missing")
    return tuple(found)


def status_of(current: int, migrations: tuple[Migration, ...]) -> SchemaStatus:
    """Compare the database's ``current`` version with the known ``migrations``."""
    latest = migrations[-1].version if migrations else 0
    pending = tuple(m for m in migrations if m.version > current)
    return SchemaStatus(current=current, latest=latest, pending=pending)
