"""Hash chains over the event log: what each event's ``hash`` is, and what a backend gives
the verifier (:mod:`kronika.store.verify`).

Every event stored since schema migration 0005 carries a SHA-256 ``hash`` chained to the
previous event of its stream; the ``streams`` row keeps the chain's head (``hash``) and the
chain hash just before its first stored event (``anchor``, set when events are purged)::

    content digest   d(e) = sha256(canonical_json([stream, id, type, data, metadata, tags]))
    chain hash       h(v) = sha256(h(v - 1) + d(v))     h(-1) = 32 zero bytes
    global chain     G    = sha256(G + h(e))            over a namespace's chained events,
                                                        in position order, from G = 0

The digest is computed in Python from the JSON values, never from an engine's stored bytes,
so a log copied from SQLite to PostgreSQL (or back) verifies the same. A chain starts from
32 zero bytes wherever there is nothing before it: version 0, a stream whose older events
were stored before 0005 (their ``hash`` is NULL: *unchained*), or a purge of such events.

Checkpoints of ``G`` (table ``chain_checkpoints``) are recorded by ``kronika verify``. The
store's documented purge paths (``truncate_stream``, ``delete_stream``) delete the
checkpoints at or after the lowest position they remove and bump the namespace's purge
counter (table ``chain_purges``), so a legitimate purge never reads as tampering and a
verifier never records a checkpoint over events purged while it read them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import orjson

from kronika.errors import ConfigurationError

if TYPE_CHECKING:
    from kronika.store.base import PreparedAppend
    from kronika.store.protocol import EventStore

__all__ = [
    "ZERO_HASH",
    "ChainSource",
    "Checkpoint",
    "Prior",
    "ScanRow",
    "StreamTail",
    "append_digests",
    "canonical_json",
    "chain",
    "chain_hash",
    "chains_of",
    "content_digest",
    "digest_content",
    "global_hash",
]

ZERO_HASH = bytes(32)
"""Where every chain starts: before version 0, and before the global chain's first event."""

_SORTED = orjson.OPT_SORT_KEYS
_INT_LOW, _INT_HIGH = -(2**63), 2**64
"""Integers orjson reads back as ``int`` (outside this range, as ``float``)."""
_BIG = 1e16
"""orjson writes floats this large with an exponent; PostgreSQL's jsonb gives them back as
integers, so the canonical form writes them as integers too."""

_sha256 = hashlib.sha256


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON: orjson with sorted keys, numbers as every engine returns them.

    PostgreSQL's ``jsonb`` stores numbers as decimals: it gives an integral float written
    with an exponent (``1e+16``) back as an integer and ``-0.0`` as ``0.0``. Such floats
    are rare, so the common case costs one ``orjson.dumps`` and two byte searches; the
    rest is normalised the way ``jsonb`` would normalise it.
    """
    raw = orjson.dumps(value, option=_SORTED)
    if b"e+" in raw or b"-0.0" in raw:  # a string may match too: normalising is harmless
        raw = orjson.dumps(_portable(orjson.loads(raw)), option=_SORTED)
    return raw


def _portable(value: Any) -> Any:
    """``value`` with floats as they come back from PostgreSQL's ``jsonb``."""
    if isinstance(value, float):
        if value == 0.0:
            return 0.0
        if abs(value) >= _BIG and value.is_integer() and _INT_LOW <= value < _INT_HIGH:
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: _portable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_portable(item) for item in value]
    return value


def content_digest(
    stream: str,
    event_id: UUID | str,
    type_: str,
    *,
    data: Any,
    metadata: Any,
    tags: Sequence[str],
) -> bytes:
    """The SHA-256 of an event's content: stream, id, type, data, metadata and tags."""
    # orjson writes a UUID as its canonical string and a tuple as an array.
    return _sha256(canonical_json([stream, event_id, type_, data, metadata, tags])).digest()


def digest_content(content: Any) -> bytes:
    """:func:`content_digest` of ``[stream, id, type, data, metadata, tags]``, given as a list
    or as its JSON text (e.g. built by the database: any key order, any spacing)."""
    if isinstance(content, (str, bytes)):
        content = orjson.loads(content)
    return _sha256(canonical_json(content)).digest()


def chain_hash(previous: bytes | None, digest: bytes) -> bytes:
    """The chain hash of an event: ``sha256(previous + digest)`` (``None``: zero bytes)."""
    return _sha256((previous or ZERO_HASH) + digest).digest()


def chain(previous: bytes | None, digests: Iterable[bytes]) -> list[bytes]:
    """The chain hashes of consecutive events of one stream, starting after ``previous``."""
    hashes: list[bytes] = []
    current = previous or ZERO_HASH
    for digest in digests:
        current = _sha256(current + digest).digest()
        hashes.append(current)
    return hashes


def global_hash(previous: bytes, event_hash: bytes) -> bytes:
    """The global chain after one more event: ``sha256(previous + event_hash)``."""
    return _sha256(previous + event_hash).digest()


def append_digests(append: PreparedAppend) -> list[bytes]:
    """The content digests of one stream's part of an append, in order.

    Backends call it in ``_append`` before their first ``await``, so the payloads are the
    ones the base class has just encoded.
    """
    # content_digest inlined: this runs for every appended event.
    stream, dumps, sha256, digests = append.stream, orjson.dumps, _sha256, []
    for e in append.events:
        content = [stream, e.id, e.type, e.source.data, e.metadata_object, e.tags]
        raw = dumps(content, option=_SORTED)
        if b"e+" in raw or b"-0.0" in raw:
            raw = canonical_json(orjson.loads(raw))
        digests.append(sha256(raw).digest())
    return digests


# -- what a backend gives the verifier ------------------------------------------------------

ScanRow = tuple[int, str, int, Any, "bytes | None"]
"""One event of a verification scan: position, stream, version, content (the list
``[stream, id, type, data, metadata, tags]`` or its JSON text) and stored chain hash."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A recorded value of the global chain."""

    position: int
    """The position of the last event it covers."""
    events: int
    """How many chained events it covers."""
    hash: bytes
    """The global chain after them."""
    created_at: datetime | None = None
    """When it was recorded (UTC)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Prior:
    """What precedes the first event of a stream that a scan meets (a resumed scan, or a
    stream whose first events were purged)."""

    stream: str
    """The stream."""
    row: bool
    """Whether the stream has a ``streams`` row at all."""
    truncated_before: int
    """The stream's truncation mark (0 without a row)."""
    anchor: bytes | None
    """The chain hash just before its first stored event (NULL: zero bytes)."""
    position: int | None
    """The position of the event one version lower, if it is stored."""
    hash: bytes | None
    """That event's chain hash."""

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Prior:
        """From ``stream, row exists, truncated_before, anchor, position, hash``."""
        stream, exists, truncated_before, anchor, position, hash_ = row
        return cls(
            stream=stream,
            row=bool(exists),
            truncated_before=truncated_before,
            anchor=anchor,
            position=position,
            hash=hash_,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamTail:
    """A ``streams`` row with the newest event stored for it."""

    stream: str
    """The stream."""
    version: int | None
    """The row's version (of the last event ever appended)."""
    state: str
    """``active``, ``deleted`` or ``tombstoned``."""
    truncated_before: int
    """Versions below this were purged."""
    hash: bytes | None
    """The row's chain head."""
    last_version: int | None
    """The version of the newest stored event (``None``: none is stored)."""
    last_hash: bytes | None
    """That event's chain hash."""
    last_position: int | None
    """That event's position."""

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StreamTail:
        """From ``stream, version, state, truncated_before, hash, last_version, last_hash,
        last_position``."""
        stream, version, state, truncated_before, hash_, last_version, last_hash, where = row
        return cls(
            stream=stream,
            version=version,
            state=state,
            truncated_before=truncated_before,
            hash=hash_,
            last_version=last_version,
            last_hash=last_hash,
            last_position=where,
        )


class ChainSource(Protocol):
    """A backend's raw access to its log for :mod:`kronika.store.verify` (one namespace).

    Reads never apply stream limits (``max_age``, ``max_count``) or states: they see what is
    stored. ``upto`` bounds a scan to what was readable when it started.
    """

    async def scan_limit(self) -> int:
        """The highest position a scan may read now (0 when the log is empty)."""
        ...

    async def scan(self, after: int, upto: int, limit: int) -> list[ScanRow]:
        """At most ``limit`` events with ``after < position <= upto``, in position order."""
        ...

    async def priors(self, wanted: Sequence[tuple[str, int]]) -> dict[str, Prior]:
        """For each ``(stream, version)``: its stream row and the event one version lower."""
        ...

    async def tails(self, after: str, limit: int) -> list[StreamTail]:
        """At most ``limit`` stream rows named after ``after``, in name order."""
        ...

    async def checkpoints(self, after: int, upto: int) -> list[Checkpoint]:
        """The checkpoints with ``after < position <= upto``, in position order."""
        ...

    async def last_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint (where ``--resume`` starts)."""
        ...

    async def purges(self) -> int:
        """How many purges (truncations, deletions) the namespace has had."""
        ...

    async def record(self, checkpoint: Checkpoint, purges: int) -> bool:
        """Record ``checkpoint`` unless the purge counter moved past ``purges`` (then
        return False: something it covers may have been purged meanwhile)."""
        ...


def chains_of(store: EventStore) -> ChainSource:
    """The hash chains of a store's namespace; ``ConfigurationError`` for a backend without
    them (the HTTP client: verification reads the database itself)."""
    found: ChainSource | None = getattr(store, "chains", None)
    if found is None:
        raise ConfigurationError(
            f"the {store.engine} store has no hash chains to read: verify against the "
            "database (a sqlite:/// or postgresql:// URL), not through a server"
        )
    return found
