"""Retention's queries on the memory backend (the reference for the SQL backends)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kronika.domain import names
from kronika.domain.events import StreamInfo, StreamState
from kronika.store.retention import SnapshotRule

if TYPE_CHECKING:
    from kronika.store.memory.store import _Log

__all__ = ["MemoryRetention"]


class MemoryRetention:
    """Retention's queries on one namespace of a memory store's log."""

    def __init__(self, log: _Log, namespace: str) -> None:
        self._log = log
        self._namespace = namespace

    async def limited_streams(self, *, after: str = "", limit: int = 1000) -> list[StreamInfo]:
        """Active streams with a ``max_age`` or ``max_count``, in name order after ``after``."""
        names.check_limit(limit)
        found = [
            stream.info(name)
            for (namespace, name), stream in self._log.streams.items()
            if namespace == self._namespace
            and name > after
            and stream.state is StreamState.ACTIVE
            and (stream.max_age is not None or stream.max_count is not None)
        ]
        return sorted(found, key=lambda info: info.stream)[:limit]

    async def count_snapshots(self, rule: SnapshotRule) -> int:
        """How many snapshots ``rule`` selects."""
        return len(self._selected(rule))

    async def delete_snapshots(self, rule: SnapshotRule, *, limit: int) -> int:
        """Delete at most ``limit`` snapshots that ``rule`` selects."""
        names.check_limit(limit)
        doomed = self._selected(rule)[:limit]
        for key in doomed:
            del self._log.snapshots[key]
            self._log.snapshot_times.pop(key, None)
        return len(doomed)

    def _selected(self, rule: SnapshotRule) -> list[tuple[str, str]]:
        return sorted(
            key
            for key in self._log.snapshots
            if key[0] == self._namespace and self._matches(key, rule)
        )

    def _matches(self, key: tuple[str, str], rule: SnapshotRule) -> bool:
        if rule.orphaned:
            stream = self._log.streams.get(key)
            if stream is None or stream.state is not StreamState.ACTIVE:
                return True
        written = self._log.snapshot_times.get(key)
        return rule.recorded_before is not None and (
            written is None or written < rule.recorded_before
        )
