"""Hash chains on the memory backend: the purge path's bookkeeping and the verifier's reads.

The reference for the SQL backends: a purge keeps the chain hash of the last event it
removes as the stream's anchor, deletes the global chain's checkpoints from the lowest
position it removes, and counts itself (see kronika.store.integrity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from kronika.domain.events import RecordedEvent
from kronika.store.integrity import Checkpoint, Prior, ScanRow, StreamTail

if TYPE_CHECKING:
    from kronika.store.memory.store import _Log, _Stream

__all__ = ["MemoryChains", "before_purge"]


def before_purge(log: _Log, namespace: str, stream: _Stream, before: int) -> None:
    """Before ``stream``'s events below ``before`` are removed: anchor, checkpoints, count."""
    removed = [e for e in stream.events if e.version < before]
    if not removed:
        return
    last = removed[-1]
    if stream.version is not None and last.version == min(before, stream.version + 1) - 1:
        stream.anchor = log.hashes.get(last.position)
    lowest = min(e.position for e in removed)
    kept = log.checkpoints.get(namespace, {})
    log.checkpoints[namespace] = {p: c for p, c in kept.items() if p < lowest}
    log.purges[namespace] = log.purges.get(namespace, 0) + 1


class MemoryChains:
    """The hash chains of one namespace of a memory store's log (see
    :class:`kronika.store.integrity.ChainSource`)."""

    def __init__(self, log: _Log, namespace: str) -> None:
        self._log = log
        self._namespace = namespace

    async def scan_limit(self) -> int:
        """The newest position of the namespace (0 when none)."""
        mine = (p for p, (ns, _) in self._log.events.items() if ns == self._namespace)
        return max(mine, default=0)

    async def scan(self, after: int, upto: int, limit: int) -> list[ScanRow]:
        """Events with ``after < position <= upto``, in position order."""
        rows: list[ScanRow] = []
        events, hashes = self._log.events, self._log.hashes
        for position in range(after + 1, min(upto, self._log.last_position) + 1):
            entry = events.get(position)
            if entry is None or entry[0] != self._namespace:
                continue
            e = entry[1]
            content = [e.stream, e.id, e.type, e.data, e.metadata, e.tags]
            rows.append((position, e.stream, e.version, content, hashes.get(position)))
            if len(rows) >= limit:
                break
        return rows

    def _stream(self, name: str) -> _Stream | None:
        return self._log.streams.get((self._namespace, name))

    def _stored(self, names: set[str]) -> dict[str, list[RecordedEvent]]:
        """The events stored for ``names``, read from the log itself (like a table scan)."""
        found: dict[str, list[RecordedEvent]] = {name: [] for name in names}
        for namespace, event in self._log.events.values():
            if namespace == self._namespace and event.stream in found:
                found[event.stream].append(event)
        return found

    async def priors(self, wanted: Sequence[tuple[str, int]]) -> dict[str, Prior]:
        """Stream rows and the events one version lower."""
        stored = self._stored({name for name, _ in wanted})
        found: dict[str, Prior] = {}
        for name, version in wanted:
            stream = self._stream(name)
            before = [e for e in stored[name] if e.version == version - 1]
            position = before[0].position if before else None
            found[name] = Prior(
                stream=name,
                row=stream is not None,
                truncated_before=stream.truncated_before if stream else 0,
                anchor=stream.anchor if stream else None,
                position=position,
                hash=None if position is None else self._log.hashes.get(position),
            )
        return found

    async def tails(self, after: str, limit: int) -> list[StreamTail]:
        """Stream rows after ``after`` with their newest events."""
        names = sorted(n for ns, n in self._log.streams if ns == self._namespace and n > after)
        stored = self._stored(set(names[:limit]))
        return [self._tail(name, stored[name]) for name in names[:limit]]

    def _tail(self, name: str, events: list[RecordedEvent]) -> StreamTail:
        stream = self._log.streams[(self._namespace, name)]
        last = max(events, key=lambda e: e.version) if events else None
        return StreamTail(
            stream=name,
            version=stream.version,
            state=stream.state.value,
            truncated_before=stream.truncated_before,
            hash=stream.hash,
            last_version=None if last is None else last.version,
            last_hash=None if last is None else self._log.hashes.get(last.position),
            last_position=None if last is None else last.position,
        )

    async def checkpoints(self, after: int, upto: int) -> list[Checkpoint]:
        """Checkpoints with ``after < position <= upto``."""
        mine = self._log.checkpoints.get(self._namespace, {})
        return [mine[p] for p in sorted(mine) if after < p <= upto]

    async def last_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint."""
        mine = self._log.checkpoints.get(self._namespace, {})
        return mine[max(mine)] if mine else None

    async def purges(self) -> int:
        """The namespace's purge counter."""
        return self._log.purges.get(self._namespace, 0)

    async def record(self, checkpoint: Checkpoint, purges: int) -> bool:
        """Record ``checkpoint`` unless the purge counter moved past ``purges``."""
        if self._log.purges.get(self._namespace, 0) != purges:
            return False
        saved = replace(checkpoint, created_at=checkpoint.created_at or datetime.now(UTC))
        self._log.checkpoints.setdefault(self._namespace, {}).setdefault(saved.position, saved)
        return True
