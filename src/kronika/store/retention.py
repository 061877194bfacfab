"""What retention asks of a backend's database (``store.retention``), beyond the event store.

Retention (``kronika retention``, :mod:`kronika.ops.retention`) removes derived and
operational data and truncates the events that a stream's ``max_age`` / ``max_count`` already
hide from reads. It changes the event log only through
:meth:`~kronika.store.protocol.EventStore.truncate_stream`, the store's documented path;
this protocol only finds the streams that have limits, and counts and deletes snapshots
by rule. The SQL backends and the memory store have it; the HTTP client does not (run
retention against the database itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from kronika.domain.events import StreamInfo
from kronika.errors import ConfigurationError
from kronika.store.protocol import EventStore

__all__ = ["RetentionStore", "SnapshotRule", "retention_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotRule:
    """Which snapshots to count or delete: those matching either criterion that is set."""

    orphaned: bool = False
    """Snapshots of streams that are soft-deleted, tombstoned or unknown. Deleting a stream
    deletes its snapshot, but one written after a soft delete stays, and would be loaded
    as the state of the stream if it were recreated."""
    recorded_before: datetime | None = None
    """Snapshots written (or last replaced) before this time."""

    @property
    def empty(self) -> bool:
        """True when the rule selects nothing."""
        return not self.orphaned and self.recorded_before is None


class RetentionStore(Protocol):
    """Retention's queries on one namespace of a store's database."""

    async def limited_streams(self, *, after: str = "", limit: int = 1000) -> list[StreamInfo]:
        """Active streams with a ``max_age`` or ``max_count``, in name order, after the name
        ``after`` (a cursor: the last name of the previous page), at most ``limit``."""
        ...

    async def count_snapshots(self, rule: SnapshotRule) -> int:
        """How many snapshots ``rule`` selects."""
        ...

    async def delete_snapshots(self, rule: SnapshotRule, *, limit: int) -> int:
        """Delete at most ``limit`` snapshots that ``rule`` selects, in one transaction;
        returns how many were deleted."""
        ...


def retention_of(store: EventStore) -> RetentionStore:
    """The retention queries of a store; ``ConfigurationError`` for a backend without them."""
    found = getattr(store, "retention", None)
    if found is None:
        raise ConfigurationError(
            f"the {store.engine} store cannot apply retention: run it against the database "
            "(a sqlite:/// or postgresql:// URL), not through a server"
        )
    return found  # type: ignore[no-any-return]
