"""``kronika verify``: recompute the hash chains of a log and report what does not match.

The verifier walks a namespace's events in position order, in pages, through a backend's
:class:`~kronika.store.integrity.ChainSource`. For each event it recomputes the chain hash
from the previous event of its stream and compares it with the stored one; it folds the
stored hashes into the global chain and compares that with the checkpoints it passes. At
the end it compares every stream row with the newest event stored for it. What it finds:

``altered``
    an event's stored hash does not match its content and its predecessor's hash (its
    data, metadata, type, tags, id or stream changed, or its hash did), or a stream row
    disagrees with its newest event
``removed``
    versions are missing: a gap inside a stream, first events gone without a truncation,
    or a stream row whose version is beyond its newest stored event
``reordered``
    a stream's versions are stored out of position order
``checkpoint``
    the global chain differs from a checkpoint recorded earlier: events at or before its
    position were altered, removed, inserted or reordered (also when the per-stream
    checks saw nothing, e.g. a stream's newest event and its row were both rewound)

Truncations and deletions through the store are not problems: they keep an anchor for
what they removed and delete the checkpoints they invalidate. Events stored before schema
migration 0005 have no hash; they are counted as *unchained*.

A run records new checkpoints every ``checkpoint_every`` chained events and at its end,
unless it found a problem (the next run then reports it again) or a purge happened while
it read. ``resume=True`` starts after the newest checkpoint, with its global hash.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from kronika.errors import ValidationError
from kronika.store.integrity import (
    ZERO_HASH,
    ChainSource,
    Checkpoint,
    Prior,
    ScanRow,
    StreamTail,
    canonical_json,
)

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "DEFAULT_PAGE_SIZE",
    "MAX_HEADS",
    "MAX_PROBLEMS",
    "Problem",
    "ProblemKind",
    "VerifyProgress",
    "VerifyReport",
    "verify",
]

DEFAULT_PAGE_SIZE = 5_000
"""Events read per query."""
DEFAULT_CHECKPOINT_EVERY = 100_000
"""Chained events between two checkpoints a run records."""
MAX_PROBLEMS = 1_000
"""Problems kept in a report (the total is still counted)."""
MAX_HEADS = 1_000_000
"""Streams whose last hash a run keeps in memory (about 200 bytes each); beyond that it
forgets the oldest half, and looks a stream's predecessor up again when it meets it."""
_TAIL_PAGE = 1_000
_HIGHEST = 2**63 - 1
_SORTED = orjson.OPT_SORT_KEYS


class ProblemKind(StrEnum):
    """What kind of damage a problem is (see the module docstring)."""

    ALTERED = "altered"
    REMOVED = "removed"
    REORDERED = "reordered"
    CHECKPOINT = "checkpoint"


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing in the log that its hash chains do not vouch for."""

    kind: ProblemKind
    """Altered, removed, reordered, or a checkpoint mismatch."""
    position: int | None
    """The event's position; for a removal, the position where the gap was found (None
    when no stored event shows it); for a checkpoint, the checkpoint's position."""
    stream: str | None
    """The stream (None for a checkpoint)."""
    version: int | None
    """The event's version; for a removal, the first missing version."""
    detail: str
    """What was found, in words."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "position": self.position,
            "stream": self.stream,
            "version": self.version,
            "kind": self.kind.value,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyProgress:
    """Where a run is, after each page."""

    position: int
    """The last position checked."""
    start: int
    """The position the run started after."""
    upto: int
    """The highest position it will check."""
    events: int
    """Events checked so far."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """The outcome of a run."""

    start: int
    """The position the run started after (0: the beginning)."""
    resumed_from: Checkpoint | None
    """The checkpoint a resumed run started from."""
    upto: int
    """The highest position the run was to check (what was readable when it started)."""
    last_position: int
    """The last position it checked (``start`` if none)."""
    complete: bool
    """False when ``max_events`` stopped it early (``--resume`` carries on)."""
    events: int
    """Events checked."""
    unchained: int
    """Of those, events stored before hash chains existed (not verifiable)."""
    streams: int
    """Stream rows compared with their newest event (0 when stopped early)."""
    global_hash: bytes | None
    """The global chain after ``last_position`` (None: not computed, see ``from_position``)."""
    global_events: int
    """Chained events the global chain covers."""
    checkpoints_checked: int
    """Stored checkpoints compared."""
    checkpoints_recorded: int
    """Checkpoints this run recorded."""
    purged_meanwhile: bool
    """A purge happened while it read, so it recorded no (more) checkpoints."""
    problems: tuple[Problem, ...]
    """What it found (at most MAX_PROBLEMS)."""
    problems_total: int
    """How many problems it found in all."""
    elapsed: float
    """Seconds the run took."""

    @property
    def clean(self) -> bool:
        """True when nothing was found."""
        return self.problems_total == 0

    @property
    def rate(self) -> float:
        """Events checked per second."""
        return self.events / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (hashes in hex)."""
        resumed = self.resumed_from
        return {
            "clean": self.clean,
            "start": self.start,
            "resumed_from": None if resumed is None else resumed.position,
            "upto": self.upto,
            "last_position": self.last_position,
            "complete": self.complete,
            "events": self.events,
            "unchained": self.unchained,
            "streams": self.streams,
            "global_hash": None if self.global_hash is None else self.global_hash.hex(),
            "global_events": self.global_events,
            "checkpoints_checked": self.checkpoints_checked,
            "checkpoints_recorded": self.checkpoints_recorded,
            "purged_meanwhile": self.purged_meanwhile,
            "problems": [p.to_dict() for p in self.problems],
            "problems_total": self.problems_total,
            "elapsed": round(self.elapsed, 3),
            "events_per_second": round(self.rate),
        }


_Head = tuple[int, "bytes | None"]
"""Per stream: the last version walked and its chain hash (None: unknown, skip the next check)."""


@dataclass
class _Walk:
    """The state of one run."""

    source: ChainSource
    started: float
    start: int
    upto: int
    g: bytes | None
    counted: int
    purges: int
    checkpoint_every: int
    resumed_from: Checkpoint | None
    progress: Callable[[VerifyProgress], None] | None
    heads: dict[str, _Head] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problems_total: int = 0
    events: int = 0
    unchained: int = 0
    streams: int = 0
    position: int = 0
    last_recorded: int = 0
    checked: int = 0
    recorded: int = 0
    purged_meanwhile: bool = False

    def report(
        self,
        kind: ProblemKind,
        position: int | None,
        stream: str | None,
        version: int | None,
        detail: str,
    ) -> None:
        """Keep a problem (up to MAX_PROBLEMS)."""
        self.problems_total += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(
                Problem(kind=kind, position=position, stream=stream, version=version, detail=detail)
            )

    # -- the event walk ---------------------------------------------------------------

    async def page(self, rows: Sequence[ScanRow]) -> None:
        """Check one page of events (in position order).

        The hot path of ``kronika verify``: an event that follows its predecessor and
        both are chained is checked inline (about 3 µs); everything else goes through
        the methods below.
        """
        last = rows[-1][0]
        pending = await self._pending_checkpoints(last)
        priors = await self._priors(rows)
        heads, g, counted = self.heads, self.g, self.counted
        next_checkpoint = pending[0].position if pending else last + 1
        loads, dumps, sha256, sorted_keys = orjson.loads, orjson.dumps, hashlib.sha256, _SORTED
        for position, stream, version, content, stored in rows:
            if position > next_checkpoint:
                self.g, self.counted = g, counted
                next_checkpoint = self._pass(pending, position)
            head = heads.get(stream) or self._first(stream, version, position, priors)
            previous = head[1]
            if version == head[0] + 1 and stored is not None and previous is not None:
                value = loads(content) if isinstance(content, (bytes, str)) else content
                raw = dumps(value, option=sorted_keys)
                if b"e+" in raw or b"-0.0" in raw:  # see integrity.canonical_json
                    raw = canonical_json(orjson.loads(raw))
                if sha256(previous + sha256(raw).digest()).digest() != stored:
                    self._altered(position, stream, version)
                heads[stream] = (version, stored)
            elif version == head[0] + 1:
                heads[stream] = (version, self._check(position, stream, version, stored, previous))
            else:
                heads[stream] = await self._out_of_order(position, stream, version, stored, head)
            if stored is not None and g is not None:
                g = sha256(g + stored).digest()
                counted += 1
        self.g, self.counted = g, counted
        self._pass(pending, last + 1)
        self.events += len(rows)
        self.position = last
        if len(heads) > MAX_HEADS:  # the oldest half is looked up again if met again
            for stream in list(itertools.islice(heads, len(heads) // 2)):
                del heads[stream]

    def _altered(self, position: int, stream: str, version: int) -> None:
        detail = "its content or hash changed: the chain hash does not match"
        self.report(ProblemKind.ALTERED, position, stream, version, detail)

    def _check(
        self, position: int, stream: str, version: int, stored: bytes | None, previous: bytes | None
    ) -> bytes | None:
        """An event that follows its predecessor but is unchained or has no known
        predecessor hash; return the stream's new head hash."""
        if stored is not None:
            return stored  # after a gap or a reordering: nothing to check it against
        self.unchained += 1
        if previous not in (None, ZERO_HASH):
            detail = "its hash was removed (the events before it are chained)"
            self.report(ProblemKind.ALTERED, position, stream, version, detail)
        return ZERO_HASH  # a chain after unchained events starts from zero bytes

    def _first(self, stream: str, version: int, position: int, priors: dict[str, Prior]) -> _Head:
        """The head before the first event of a stream this run meets."""
        if version == 0:
            return -1, ZERO_HASH
        prior = priors.get(stream)
        if prior is not None and prior.position is not None:
            if prior.position < position:  # a resumed run: checked before
                return version - 1, prior.hash or ZERO_HASH
            detail = f"version {version - 1} is stored after it, at position {prior.position}"
            self.report(ProblemKind.REORDERED, position, stream, version, detail)
            return version - 1, None
        if prior is None or not prior.row:
            detail = "the stream's row is missing"
            self.report(ProblemKind.REMOVED, position, stream, None, detail)
            return version - 1, None
        if version <= prior.truncated_before:  # the older versions were purged
            return version - 1, prior.anchor or ZERO_HASH
        low = prior.truncated_before
        detail = f"{_versions(low, version - 1)} missing before version {version}"
        self.report(ProblemKind.REMOVED, position, stream, low, detail)
        return version - 1, None

    async def _out_of_order(
        self, position: int, stream: str, version: int, stored: bytes | None, head: _Head
    ) -> _Head:
        """An event whose version does not follow the last one of its stream."""
        last = head[0]
        if version <= last:
            detail = f"version {version} is stored after version {last}"
            self.report(ProblemKind.REORDERED, position, stream, version, detail)
            return last, None
        if stored is None:
            self.unchained += 1
        found = (await self.source.priors([(stream, version)])).get(stream)
        if found is not None and found.position is not None and found.position > position:
            detail = f"version {version - 1} is stored after it, at position {found.position}"
            self.report(ProblemKind.REORDERED, position, stream, version, detail)
            return version, None
        detail = f"{_versions(last + 1, version - 1)} missing before version {version}"
        self.report(ProblemKind.REMOVED, position, stream, last + 1, detail)
        return version, stored

    async def _priors(self, rows: Sequence[ScanRow]) -> dict[str, Prior]:
        """The priors of the streams first met in this page at a version above 0."""
        heads, wanted = self.heads, {}
        for row in rows:
            stream = row[1]
            if stream not in heads and stream not in wanted:
                wanted[stream] = row[2]
        needed = [(stream, version) for stream, version in wanted.items() if version > 0]
        return await self.source.priors(needed) if needed else {}

    # -- the global chain -------------------------------------------------------------

    async def _pending_checkpoints(self, upto: int) -> list[Checkpoint]:
        if self.g is None:
            return []
        return await self.source.checkpoints(self.position, upto)

    def _pass(self, pending: list[Checkpoint], position: int) -> int:
        """Compare the checkpoints below ``position``; return the next one's position."""
        while pending and pending[0].position < position:
            self._compare(pending.pop(0))
        return pending[0].position if pending else position + (1 << 62)

    def _compare(self, checkpoint: Checkpoint) -> None:
        self.checked += 1
        self.last_recorded = max(self.last_recorded, self.counted)
        if checkpoint.hash == self.g and checkpoint.events == self.counted:
            return
        when = checkpoint.created_at.isoformat() if checkpoint.created_at else "earlier"
        detail = (
            f"the global chain over the {self.counted} chained events up to here does not "
            f"match the checkpoint recorded {when} over {checkpoint.events}: events at or "
            "before this position were altered, removed, inserted or reordered"
        )
        self.report(ProblemKind.CHECKPOINT, checkpoint.position, None, None, detail)

    async def record(self, *, final: bool) -> None:
        """Record a checkpoint at the current position when it is due and safe."""
        if self.g is None or self.problems_total or self.purged_meanwhile:
            return
        due = self.counted - self.last_recorded
        if due <= 0 or (not final and due < self.checkpoint_every):
            return
        checkpoint = Checkpoint(
            position=self.position, events=self.counted, hash=self.g, created_at=datetime.now(UTC)
        )
        if await self.source.record(checkpoint, self.purges):
            self.recorded += 1
            self.last_recorded = self.counted
        else:
            self.purged_meanwhile = True

    async def finish_checkpoints(self) -> None:
        """Compare the checkpoints after the last event walked, up to ``upto``. One above
        the newest event stored now was recorded over events that are gone (a purge would
        have deleted it). Those in between belong to a run that started later."""
        if self.g is None:
            return
        pending = await self.source.checkpoints(self.position, self.upto)
        self._pass(pending, self.upto + 1)
        head = max(self.upto, await self.source.scan_limit())
        for orphan in await self.source.checkpoints(head, _HIGHEST):
            self.checked += 1
            detail = (
                f"a checkpoint over {orphan.events} chained events ends here, but no event "
                "is stored here or after it: the newest events were removed"
            )
            self.report(ProblemKind.CHECKPOINT, orphan.position, None, None, detail)

    # -- stream rows ------------------------------------------------------------------

    async def tails(self) -> None:
        """Compare every stream row with the newest event stored for it."""
        after = ""
        while True:
            page = await self.source.tails(after, _TAIL_PAGE)
            for tail in page:
                self._tail(tail)
            self.streams += len(page)
            if len(page) < _TAIL_PAGE:
                return
            after = page[-1].stream

    def _tail(self, tail: StreamTail) -> None:
        last, version = tail.last_version, tail.version
        where = tail.last_position
        if last is None:
            if version is not None and version >= tail.truncated_before:
                low = tail.truncated_before
                detail = f"{_versions(low, version)} missing: no event of the stream is stored"
                self.report(ProblemKind.REMOVED, None, tail.stream, low, detail)
        elif version is None or last > version:
            detail = f"version {last} is stored but the stream row says version {version}"
            self.report(ProblemKind.ALTERED, where, tail.stream, last, detail)
        elif last < version:
            detail = f"{_versions(last + 1, version)} missing after version {last}"
            self.report(ProblemKind.REMOVED, None, tail.stream, last + 1, detail)
        elif tail.state != "active":
            detail = f"the stream is {tail.state} but its events are still stored"
            self.report(ProblemKind.ALTERED, where, tail.stream, last, detail)
        elif tail.hash != tail.last_hash:
            detail = "the stream row's chain head differs from its newest event's hash"
            self.report(ProblemKind.ALTERED, where, tail.stream, last, detail)

    def tell(self) -> None:
        """Report progress after a page."""
        if self.progress is not None:
            self.progress(
                VerifyProgress(
                    position=self.position, start=self.start, upto=self.upto, events=self.events
                )
            )

    def result(self, *, complete: bool) -> VerifyReport:
        """The report of the run."""
        return VerifyReport(
            start=self.start,
            resumed_from=self.resumed_from,
            upto=self.upto,
            last_position=self.position,
            complete=complete,
            events=self.events,
            unchained=self.unchained,
            streams=self.streams,
            global_hash=self.g,
            global_events=self.counted,
            checkpoints_checked=self.checked,
            checkpoints_recorded=self.recorded,
            purged_meanwhile=self.purged_meanwhile,
            problems=tuple(self.problems),
            problems_total=self.problems_total,
            elapsed=time.perf_counter() - self.started,
        )


def _versions(low: int, high: int) -> str:
    return f"version {low} is" if low == high else f"versions {low}-{high} are"


def _check_options(
    resume: bool, from_position: int | None, max_events: int | None, every: int, page: int
) -> None:
    if resume and from_position is not None:
        raise ValidationError("give either resume or from_position, not both", "from_position")
    checks = {"from_position": (from_position, 1), "max_events": (max_events, 1)}
    checks.update(checkpoint_every=(every, 1), page_size=(page, 1))
    for name, (value, low) in checks.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValidationError(f"must be an integer, got {type(value).__name__}", name)
        if value is not None and value < low:
            raise ValidationError(f"must be >= {low}, got {value}", name)


async def _start(
    source: ChainSource, resume: bool, from_position: int | None
) -> tuple[int, bytes | None, int, Checkpoint | None]:
    """Where a run starts: after which position, with which global hash and count."""
    if from_position is not None:
        return from_position - 1, None, 0, None
    if resume and (last := await source.last_checkpoint()) is not None:
        return last.position, last.hash, last.events, last
    return 0, ZERO_HASH, 0, None


async def verify(
    source: ChainSource,
    *,
    resume: bool = False,
    from_position: int | None = None,
    max_events: int | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    page_size: int = DEFAULT_PAGE_SIZE,
    progress: Callable[[VerifyProgress], None] | None = None,
) -> VerifyReport:
    """Verify the hash chains of the log ``source`` reads (one namespace).

    ``resume`` starts after the newest checkpoint; ``from_position`` checks only the
    events from there (per-stream chains; the global chain is neither checked nor
    recorded); ``max_events`` stops after about that many events (a later ``resume``
    carries on). ``progress`` is called after every page.
    """
    _check_options(resume, from_position, max_events, checkpoint_every, page_size)
    started = time.perf_counter()
    purges = await source.purges()
    start, g, counted, resumed = await _start(source, resume, from_position)
    upto = await source.scan_limit()
    walk = _Walk(
        source=source,
        started=started,
        start=start,
        upto=upto,
        g=g,
        counted=counted,
        purges=purges,
        checkpoint_every=checkpoint_every,
        resumed_from=resumed,
        progress=progress,
        position=start,
        last_recorded=counted,
    )
    complete = await _walk(walk, page_size, max_events)
    await walk.record(final=True)
    if complete:
        await walk.tails()
    return walk.result(complete=complete)


async def _walk(walk: _Walk, page_size: int, max_events: int | None) -> bool:
    """Walk the pages; True when it reached ``upto``, False when ``max_events`` stopped it.

    The next page is read while the current one is checked: the database (or the SQLite
    reader thread) works while Python hashes.
    """

    def fetch(after: int, scanned: int) -> asyncio.Task[list[ScanRow]] | None:
        left = page_size if max_events is None else min(page_size, max_events - scanned)
        if after >= walk.upto or left <= 0:
            return None
        return asyncio.ensure_future(walk.source.scan(after, walk.upto, left))

    upcoming = fetch(walk.position, 0)
    try:
        while upcoming is not None:
            rows = await upcoming
            upcoming = fetch(rows[-1][0], walk.events + len(rows)) if rows else None
            if not rows:
                break
            await walk.page(rows)
            await walk.record(final=False)
            walk.tell()
    finally:
        if upcoming is not None:
            upcoming.cancel()
            with contextlib.suppress(BaseException):
                await upcoming
    if max_events is not None and walk.events >= max_events and walk.position < walk.upto:
        return False
    await walk.finish_checkpoints()
    return True
