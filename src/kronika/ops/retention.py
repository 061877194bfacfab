"""Retention: remove derived and operational data by policy, and truncate hidden events.

A run first makes a :class:`Plan` (reading only): for each category (see
:class:`~kronika.ops.retention_policy.Category`) the :class:`Action` s the policy calls for,
with exact counts, cut to a total ``limit`` if one is given. ``kronika retention apply``
prints the plan and stops there unless told ``--apply``; :func:`apply` then carries it out
category by category, at most ``batch_size`` rows per transaction.

The event log changes only where the operator asked for it: a stream's ``max_age`` /
``max_count`` hide its older events from reads, and retention removes exactly those,
through :meth:`~kronika.store.protocol.EventStore.truncate_stream` (the store's documented
path, which also keeps integrity records in step). Nothing else touches events.

While it applies a category a run holds a lease on (namespace, category) in the
processing store, renewed as it goes, so two runs (two workers on a schedule, or a worker
and an operator) never work on one category at once: the second one skips it and says so.
A worker runs retention on a schedule with :func:`scheduled` (``kronika worker
--retention-interval``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kronika.errors import KronikaError
from kronika.ops.retention_policy import Category, RetentionPolicy
from kronika.ops.retention_rules import (
    UNITS,
    Action,
    Scope,
    apply_action,
    is_item,
    plan_category,
    shrink,
)
from kronika.runtime.processor import Processor, Projection
from kronika.runtime.progress import processing_of
from kronika.store.processing import ProcessingStore
from kronika.store.protocol import EventStore
from kronika.store.retention import retention_of

__all__ = [
    "LEASE_NAME",
    "LEASE_TTL",
    "Plan",
    "Report",
    "Tally",
    "action_dict",
    "apply",
    "dry_run",
    "plan",
    "report_dict",
    "run_once",
    "scheduled",
    "tally_dict",
]

log = logging.getLogger("kronika.ops")

LEASE_NAME = "kronika~retention"
"""Leases of retention runs are kept as partitions of this name, one per category ('~'
cannot appear in a processor's name, so it never meets a processor's leases)."""
LEASE_TTL = 60.0
"""Seconds a run's lease on a category lasts unless renewed (it renews every third)."""


@dataclass(slots=True, kw_only=True)
class Tally:
    """What one category planned and did."""

    category: Category
    """The category."""
    planned: int = 0
    """Rows the plan removes."""
    done: int = 0
    """Rows removed."""
    batches: int = 0
    """Transactions that removed rows."""
    notes: list[str] = field(default_factory=list)
    """What was left alone, and why."""
    error: str | None = None
    """Why the category stopped early, if it did."""

    @property
    def unit(self) -> str:
        """What the counts count."""
        return UNITS[self.category]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What a retention run removes."""

    policy: RetentionPolicy
    """The policy it was made with."""
    categories: tuple[Category, ...]
    """The categories looked at, in run order."""
    actions: tuple[Action, ...]
    """What to do, in run order."""
    notes: dict[Category, list[str]]
    """Per category: what is left alone, and why."""
    limit: int | None
    """The total the plan was cut to, if any."""
    cut_at: Category | None
    """The category where the limit left something out (``None``: nothing was)."""
    made_at: datetime
    """When it was made (ages are measured from here)."""
    projections: Mapping[str, Projection] = field(default_factory=dict, repr=False)
    """The application's projections it was made with (applying needs them too)."""

    @property
    def limited(self) -> bool:
        """True when the limit left something out."""
        return self.cut_at is not None

    @property
    def total(self) -> int:
        """Rows the plan removes in all."""
        return sum(a.count for a in self.actions)


@dataclass(slots=True, kw_only=True)
class Report:
    """A plan and what applying it did (nothing, for a dry run)."""

    plan: Plan
    """The plan."""
    applied: bool
    """False for a dry run."""
    tallies: dict[Category, Tally]
    """Per category, in run order."""
    done: dict[int, int] = field(default_factory=dict)
    """Rows removed per action (by index in the plan)."""

    @property
    def failed(self) -> bool:
        """True when a category stopped on an error."""
        return any(t.error for t in self.tallies.values())


async def plan(
    store: EventStore,
    policy: RetentionPolicy,
    *,
    processors: Iterable[Processor] = (),
    categories: Sequence[Category] | None = None,
    limit: int | None = None,
) -> Plan:
    """What the policy removes now, cut to ``limit`` rows in all (reads only)."""
    retention_of(store)  # refuse a backend without retention before reading anything
    scope = _scope(store, policy, processors)
    chosen = tuple(categories or Category)
    actions: list[Action] = []
    notes: dict[Category, list[str]] = {}
    for category in chosen:
        found, notes[category] = await plan_category(scope, category)
        actions.extend(found)
    capped, cut_at = _cap(actions, limit)
    return Plan(
        policy=policy,
        categories=chosen,
        actions=tuple(capped),
        notes=notes,
        limit=limit,
        cut_at=cut_at,
        made_at=scope.now,
        projections=scope.projections,
    )


def _scope(store: EventStore, policy: RetentionPolicy, processors: Iterable[Processor]) -> Scope:
    projections = {p.name: p for p in processors if isinstance(p, Projection)}
    return Scope(store=store, policy=policy, projections=projections, now=datetime.now(UTC))


def _cap(actions: list[Action], limit: int | None) -> tuple[list[Action], Category | None]:
    """The actions that fit in ``limit`` rows (the last one cut down if it can be), and the
    category of the first one left out or cut (``None`` when everything fits)."""
    if limit is None:
        return actions, None
    capped: list[Action] = []
    remaining = limit
    for action in actions:
        if action.count <= remaining:
            capped.append(action)
            remaining -= action.count
            continue
        if remaining and not is_item(action):
            capped.append(shrink(action, remaining))
        return capped, action.category
    return capped, None


def dry_run(found: Plan) -> Report:
    """The report of a plan that is not applied."""
    return Report(plan=found, applied=False, tallies=_tallies(found))


def _tallies(found: Plan) -> dict[Category, Tally]:
    tallies = {c: Tally(category=c, notes=list(found.notes.get(c, []))) for c in found.categories}
    for action in found.actions:
        tallies[action.category].planned += action.count
    if found.cut_at is not None:
        tallies[found.cut_at].notes.append(f"the plan stops here at --limit {found.limit}")
    return tallies


class _CategoryLease:
    """A run's lease on one category of one namespace, renewed as batches go by."""

    def __init__(self, processing: ProcessingStore, owner: str, category: Category) -> None:
        self._processing = processing
        self._owner = owner
        self._partition = list(Category).index(category)
        self._renewed = 0.0

    async def hold(self) -> bool:
        """Take or renew the lease; False if another run holds it."""
        held = await self._processing.acquire_leases(
            LEASE_NAME, [self._partition], self._owner, LEASE_TTL
        )
        self._renewed = asyncio.get_running_loop().time()
        return self._partition in held

    async def keep(self) -> bool:
        """Renew the lease if a third of its time has passed; False if it was lost."""
        if asyncio.get_running_loop().time() - self._renewed < LEASE_TTL / 3:
            return True
        return await self.hold()

    async def release(self) -> None:
        """Let the lease go."""
        await self._processing.release_leases(LEASE_NAME, self._owner)


class _LeaseLost(Exception):
    """Another run took the category over (this one was too slow to renew)."""


async def apply(
    store: EventStore,
    found: Plan,
    *,
    owner: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Carry the plan out as ``owner`` (of the leases; default: this host and process);
    ``progress`` is told the rows removed after each transaction."""
    report = Report(plan=found, applied=True, tallies=_tallies(found))
    scope = _scope(store, found.policy, found.projections.values())
    me = owner or f"retention-{socket.gethostname()}-{os.getpid()}"
    for category in found.categories:
        indexed = [(i, a) for i, a in enumerate(found.actions) if a.category is category]
        if indexed:
            lease = _CategoryLease(processing_of(store), me, category)
            await _apply_category(scope, lease, indexed, report, progress)
    return report


async def _apply_category(
    scope: Scope,
    lease: _CategoryLease,
    indexed: list[tuple[int, Action]],
    report: Report,
    progress: Callable[[int], None] | None,
) -> None:
    tally = report.tallies[indexed[0][1].category]
    if not await lease.hold():
        tally.notes.append("skipped: another retention run is working on it")
        return

    async def tick(rows: int) -> None:
        tally.done += rows
        tally.batches += 1
        if progress is not None:
            progress(rows)
        if not await lease.keep():
            raise _LeaseLost

    try:
        for index, action in indexed:
            before = tally.done
            try:
                await apply_action(scope, action, tick)
            finally:
                report.done[index] = tally.done - before
    except _LeaseLost:
        tally.notes.append("stopped: another retention run took the category over")
    except KronikaError as exc:
        tally.error = exc.message
    finally:
        await lease.release()


async def run_once(
    store: EventStore,
    policy: RetentionPolicy,
    *,
    processors: Sequence[Processor] = (),
    owner: str | None = None,
) -> Report:
    """Plan and apply in one go (what the schedule does), logging a summary."""
    found = await plan(store, policy, processors=processors)
    report = await apply(store, found, owner=owner)
    removed = {t.category.value: t.done for t in report.tallies.values() if t.done}
    errors = {t.category.value: t.error for t in report.tallies.values() if t.error}
    log.info("retention applied", extra={"action": "retention", "removed": removed})
    if errors:
        log.error("retention failed", extra={"action": "retention", "errors": errors})
    return report


@asynccontextmanager
async def scheduled(
    store: EventStore,
    policy: RetentionPolicy,
    *,
    processors: Sequence[Processor] = (),
    owner: str | None = None,
) -> AsyncIterator[None]:
    """Run retention every ``policy.interval`` seconds (first at once) while inside the
    block; nothing when the interval is ``None``. A failing run is logged and the next
    one comes at its time."""
    if policy.interval is None:
        yield
        return
    task = asyncio.create_task(
        _every(store, policy, policy.interval, processors, owner), name="kronika-retention"
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _every(
    store: EventStore,
    policy: RetentionPolicy,
    interval: float,
    processors: Sequence[Processor],
    owner: str | None,
) -> None:
    while True:
        try:
            await run_once(store, policy, processors=processors, owner=owner)
        except (KronikaError, OSError):
            log.exception("retention run failed", extra={"action": "retention"})
        await asyncio.sleep(interval)


def action_dict(action: Action, done: int | None) -> dict[str, Any]:
    """One action as JSON-ready values (``done`` is ``None`` in a dry run)."""
    return {
        "category": action.category.value,
        "target": action.target,
        "count": action.count,
        "unit": UNITS[action.category],
        "detail": action.detail,
        "done": done,
    }


def tally_dict(tally: Tally) -> dict[str, Any]:
    """One category's totals as JSON-ready values."""
    return {
        "category": tally.category.value,
        "unit": tally.unit,
        "planned": tally.planned,
        "done": tally.done,
        "batches": tally.batches,
        "notes": list(tally.notes),
        "error": tally.error,
    }


def report_dict(report: Report) -> dict[str, Any]:
    """A report as one JSON-ready object (``kronika retention apply --json``)."""
    found = report.plan
    return {
        "dry_run": not report.applied,
        "made_at": found.made_at.isoformat(),
        "batch_size": found.policy.batch_size,
        "limit": found.limit,
        "limited": found.limited,
        "planned": found.total,
        "done": sum(t.done for t in report.tallies.values()),
        "categories": [tally_dict(t) for t in report.tallies.values()],
        "actions": [
            action_dict(a, report.done.get(i, 0) if report.applied else None)
            for i, a in enumerate(found.actions)
        ],
    }
