"""Append requests: what the store sends to ``kronika_append`` and how it reads the answer.

Everything about one append travels as parallel arrays in PostgreSQL's binary format
(:mod:`.arrays`): one element per part or per event, payloads as the JSON bytes the base
class already encoded.

Locking: each append takes transaction-scoped advisory locks in a fixed order, first its
streams' keys, then its type, tag and bulk keys, each group in ascending order, so that no
two appends can deadlock on them:

- exclusive on each stream it writes, shared on each stream it only checks;
- shared on each event type and tag it writes, so a concurrent conditional append that
  could match them waits (an append touching more than ``MAX_SHARED_KEYS`` types and tags
  takes the exclusive *bulk* key instead, keeping the lock table small);
- with a condition: exclusive on the condition's tags (or on its types when it has no
  tags), and shared on the bulk key.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from kronika.domain.events import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendCondition,
    AppendResult,
    ExpectedVersionLike,
    MultiAppendResult,
    RecordedEvent,
    StreamState,
)
from kronika.errors import ConditionFailed, ConflictError, KronikaError
from kronika.store.base import PreparedAppend, check_stream_expectation, resolve_multi_retry
from kronika.store.integrity import append_digests
from kronika.store.postgres.arrays import (
    BigintArray,
    ByteaArray,
    IntArray,
    JsonbArray,
    PgArray,
    TextArray,
    UuidArray,
)
from kronika.store.postgres.database import RawJson

__all__ = [
    "MAX_SHARED_KEYS",
    "append_params",
    "condition_error",
    "expectation_error",
    "lock_key",
    "noop_params",
    "read_result",
    "resolve_stored",
]

MAX_SHARED_KEYS = 64
"""Most type and tag locks one append takes before it locks the bulk key instead."""

_EXPECTED = {ANY: -1, NO_STREAM: -2, STREAM_EXISTS: -3}


@functools.lru_cache(maxsize=4096)
def lock_key(scope: str, kind: str, name: str) -> int:
    """The 64-bit advisory lock key of a stream, type or tag within ``scope``."""
    raw = f"{scope}\x00{kind}\x00{name}".encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big", signed=True)


def _expected_code(expected: ExpectedVersionLike) -> int:
    return expected if isinstance(expected, int) else _EXPECTED[expected]


def _locks(
    appends: Sequence[PreparedAppend], condition: AppendCondition | None, scope: str
) -> tuple[list[int], list[int]]:
    """The advisory keys to lock, in order (streams first, then types and tags, each
    sorted), and the ones to lock exclusively."""
    streams = {lock_key(scope, "stream", a.stream): bool(a.events) for a in appends}
    exclusive = {key for key, writes in streams.items() if writes}
    others = {("type", e.type) for a in appends for e in a.events}
    others.update(("tag", t) for a in appends for e in a.events for t in e.tags)
    bulk = lock_key(scope, "bulk", "")
    keys = {lock_key(scope, kind, name) for kind, name in others}
    if len(keys) > MAX_SHARED_KEYS:
        keys = {bulk}
        exclusive.add(bulk)
    if condition is not None:
        wanted = [("tag", t) for t in condition.tags] or [("type", t) for t in condition.types]
        checked = {lock_key(scope, kind, name) for kind, name in wanted}
        keys.update(checked, (bulk,))
        exclusive.update(checked)
    return sorted(streams) + sorted(keys - streams.keys()), sorted(exclusive)


def _tags_literal(tags: tuple[str, ...]) -> str | None:
    """One event's tags as a PostgreSQL array literal, every element quoted."""
    if not tags:
        return None
    quoted = (t.replace("\\", "\\\\").replace('"', '\\"') for t in tags)
    return "{" + ",".join(f'"{t}"' for t in quoted) + "}"


def append_params(
    namespace: str,
    appends: Sequence[PreparedAppend],
    condition: AppendCondition | None,
    scope: str,
) -> dict[str, Any]:
    """The parameters of the ``append`` query (``lookup`` is set by the caller).

    Each event's content digest is computed here, on the caller's event loop before its
    first ``await``: ``kronika_append`` chains them (see kronika.store.integrity).
    """
    keys, exclusive = _locks(appends, condition, scope)
    events = appends[0].events if len(appends) == 1 else [e for a in appends for e in a.events]
    tags = [_tags_literal(e.tags) for e in events] if any(e.tags for e in events) else None
    return {
        "namespace": namespace,
        "streams": TextArray.of([a.stream for a in appends]),
        "expected": _per_part(BigintArray, [_expected_code(a.expected) for a in appends]),
        "counts": _per_part(IntArray, [len(a.events) for a in appends]),
        "keys": BigintArray.of(keys),
        "exclusive": BigintArray.of(exclusive),
        "ids": UuidArray.of([e.id for e in events]),
        "types": TextArray.of([e.type for e in events]),
        "data": JsonbArray.of([e.data for e in events]),
        "metadata": JsonbArray.of([e.metadata for e in events]),
        "tags": None if tags is None else TextArray.of(tags),
        "correlations": TextArray.of([e.correlation_id for e in events]),
        "digests": ByteaArray.of([d for a in appends for d in append_digests(a)]),
        "condition": _condition(condition),
        "lookup": False,
    }


def _per_part(kind: type[BigintArray] | type[IntArray], values: list[int]) -> PgArray:
    """A small per-part array: the few shapes most appends share are built once."""
    return kind.of_small(tuple(values)) if len(values) <= 4 else kind.of(values)


def noop_params(namespace: str) -> dict[str, Any]:
    """Parameters of an append with nothing in it: compiles ``kronika_append`` and prepares
    the query on a new connection, so the first real append does not pay for it."""
    return append_params(namespace, [], None, "")


def _condition(condition: AppendCondition | None) -> RawJson | None:
    if condition is None:
        return None
    spec = {"types": condition.types, "tags": condition.tags, "after": condition.after}
    return RawJson(orjson.dumps(spec))


def read_result(appends: Sequence[PreparedAppend], row: Sequence[Any]) -> MultiAppendResult:
    """The result of an append that wrote (or only checked): a version and a position per
    part, in order."""
    versions, positions = row[0], row[1]
    streams = {
        a.stream: AppendResult(v, p) for a, v, p in zip(appends, versions, positions, strict=True)
    }
    written = [p for a, p in zip(appends, positions, strict=True) if a.events]
    return MultiAppendResult(streams=streams, position=max(written, default=0))


def resolve_stored(
    appends: Sequence[PreparedAppend], stored: Sequence[RecordedEvent]
) -> dict[str, AppendResult]:
    """Results of a retried append (parts with events only), or ``DuplicateEventError``.

    Called after a unique violation on event ids, so finding none of them stored means they
    were deleted in between.
    """
    by_id = {e.id: e for e in stored}
    per_append = [[by_id[e.id] for e in a.events if e.id in by_id] for a in appends]
    results = resolve_multi_retry(appends, per_append)
    if results is None:
        raise ConflictError("the events of this retried append were deleted meanwhile; retry")
    return results


def expectation_error(appends: Sequence[PreparedAppend], stream: str, hint: str) -> KronikaError:
    """The error for a stream that failed its expectation (SQLSTATE KRCON)."""
    expected = {a.stream: a.expected for a in appends}
    state_text, _, version_text = hint.partition(":")
    state = StreamState(state_text) if state_text else None
    version = int(version_text) if version_text else None
    try:
        check_stream_expectation(stream, expected.get(stream, ANY), version, state)
    except KronikaError as exc:
        return exc
    return ConflictError(f"stream {stream!r} did not meet its expected version")


def condition_error(position_text: str, hint: str) -> ConditionFailed:
    """The error for a matching event after the condition's position (SQLSTATE KRCND)."""
    event_id, _, event_type = hint.partition(":")
    position = int(position_text)
    return ConditionFailed(
        f"event {event_id} ({event_type}) at position {position} matches the condition",
        position=position,
    )
