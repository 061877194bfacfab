"""What each retention category finds to remove (an :class:`Action`) and how it removes it.

Planning only reads. Applying looks again right before it acts and never goes beyond the
plan: a stream is truncated up to the smaller of the planned cut and what reads hide at
that moment; a job, a generation or a quarantined key is acted on only while it is still
in the state it was planned in. Every write goes through the store's documented paths
(``truncate_stream``, the processing store, the replay module), one batch per transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from kronika.domain.events import StreamInfo, StreamState
from kronika.errors import ConflictError, StreamDeleted, StreamNotFound
from kronika.ops.retention_policy import Category, RetentionPolicy
from kronika.runtime.processor import Projection
from kronika.runtime.progress import processing_of
from kronika.runtime.replay import delete_replay, prunable, prune
from kronika.store.processing import FailedKey, FailureAction, FailureState, Job, JobState
from kronika.store.protocol import EventStore
from kronika.store.retention import SnapshotRule, retention_of

__all__ = [
    "UNITS",
    "Action",
    "GenerationDrop",
    "JobRemoval",
    "KeySkip",
    "Scope",
    "SnapshotDeletion",
    "Tick",
    "Truncation",
    "apply_action",
    "is_item",
    "plan_category",
    "shrink",
]

UNITS = {
    Category.GENERATIONS: "generations",
    Category.JOBS: "jobs",
    Category.DEAD_LETTERS: "keys",
    Category.SNAPSHOTS: "snapshots",
    Category.STREAMS: "events",
}
"""What an action's count counts, per category."""

STREAM_PAGE = 500
"""Streams with limits read per query while planning."""

Tick = Callable[[int], Awaitable[None]]
"""Called after each transaction with the rows it removed (progress, lease renewal)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """What planning and applying work with."""

    store: EventStore
    """The open store."""
    policy: RetentionPolicy
    """The effective policy."""
    projections: Mapping[str, Projection]
    """The application's projections by name (empty without ``--app``)."""
    now: datetime
    """The run's time: ages are measured from it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """One thing a retention run removes."""

    category: Category
    """Its category."""
    target: str
    """What it acts on (a stream, a job, a generation, a key, or the snapshots)."""
    count: int
    """How many rows it removes, in its category's unit (:data:`UNITS`)."""
    detail: str
    """Why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Truncation(Action):
    """Truncate a stream's events below ``cut`` (all hidden by its limits)."""

    stream: str
    """The stream."""
    cut: int
    """Events with a lower version go."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRemoval(Action):
    """Remove a finished replay job (a stopped one with the generation it was building)."""

    job: Job
    """The job as planned."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationDrop(Action):
    """Drop a replaced read-model generation (documents, tables, checkpoints)."""

    projection: str
    """The projection."""
    generation: int
    """The generation."""


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySkip(Action):
    """Ask the worker that owns a quarantined key to skip its failing event."""

    failure: FailedKey
    """The key as planned."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotDeletion(Action):
    """Delete the snapshots a rule selects."""

    rule: SnapshotRule
    """Which ones."""


# -- planning -------------------------------------------------------------------------------


async def plan_category(scope: Scope, category: Category) -> tuple[list[Action], list[str]]:
    """The actions of one category, and notes on what it left alone and why."""
    planner = _PLANNERS[category]
    return await planner(scope)


async def _plan_generations(scope: Scope) -> tuple[list[Action], list[str]]:
    if not scope.policy.generations:
        return [], ["off (generations = false)"]
    if not scope.projections:
        return [], ["not checked: give --app (or $KRONIKA_APP) so projections are known"]
    actions: list[Action] = []
    for projection in scope.projections.values():
        keep = getattr(projection, "replayed_versions_to_keep", 1)
        actions.extend(
            GenerationDrop(
                category=Category.GENERATIONS,
                target=f"{projection.name} generation {old.generation}",
                count=1,
                detail=f"replaced; the newest {keep} replaced kept",
                projection=projection.name,
                generation=old.generation,
            )
            for old in reversed(await prunable(scope.store, projection))
        )
    return actions, []


async def _plan_jobs(scope: Scope) -> tuple[list[Action], list[str]]:
    days = scope.policy.jobs_days
    if days is None:
        return [], ["off (jobs_days = never)"]
    cutoff = scope.now - timedelta(days=days)
    actions: list[Action] = []
    notes = []
    for job in await processing_of(scope.store).jobs():
        if job.state is JobState.RUNNING or job.updated_at >= cutoff:
            continue
        if job.state is JobState.STOPPED and job.processor not in scope.projections:
            notes.append(f"stopped job {job.id} of {job.processor!r} kept: needs --app")
            continue
        what = "what it built is dropped too" if job.state is JobState.STOPPED else "record only"
        actions.append(
            JobRemoval(
                category=Category.JOBS,
                target=f"job {job.id} ({job.processor} generation {job.generation})",
                count=1,
                detail=f"{job.state.value} {_ago(scope.now, job.updated_at)}; {what}",
                job=job,
            )
        )
    return actions, notes


async def _plan_dead_letters(scope: Scope) -> tuple[list[Action], list[str]]:
    days = scope.policy.dead_letters_skip_days
    if days is None:
        return [], ["quarantined keys are kept (dead_letters_skip_days = never)"]
    cutoff = scope.now - timedelta(days=days)
    actions: list[Action] = [
        KeySkip(
            category=Category.DEAD_LETTERS,
            target=f"{failure.processor}: key {failure.key}",
            count=1,
            detail=f"quarantined, last failed {_ago(scope.now, failure.last_failed_at)}",
            failure=failure,
        )
        for failure in await processing_of(scope.store).failures()
        if _skippable(failure, cutoff)
    ]
    return actions, []


def _skippable(failure: FailedKey, cutoff: datetime) -> bool:
    return (
        failure.state is FailureState.QUARANTINED
        and failure.requested is None
        and failure.last_failed_at < cutoff
    )


async def _plan_snapshots(scope: Scope) -> tuple[list[Action], list[str]]:
    policy = scope.policy
    days = policy.snapshots_days
    before = None if days is None else scope.now - timedelta(days=days)
    rule = SnapshotRule(orphaned=policy.snapshots_orphaned, recorded_before=before)
    if rule.empty:
        return [], ["off (snapshots_orphaned = false, snapshots_days = never)"]
    count = await retention_of(scope.store).count_snapshots(rule)
    reasons = ["of streams that are not active"] if rule.orphaned else []
    if before is not None:
        reasons.append(f"written before {before.isoformat(timespec='seconds')}")
    if not count:
        return [], []
    action = SnapshotDeletion(
        category=Category.SNAPSHOTS,
        target="snapshots",
        count=count,
        detail=" or ".join(reasons),
        rule=rule,
    )
    return [action], []


async def _plan_streams(scope: Scope) -> tuple[list[Action], list[str]]:
    if not scope.policy.stream_limits:
        return [], ["off (stream_limits = false)"]
    retention = retention_of(scope.store)
    actions: list[Action] = []
    after = ""
    while True:
        page = await retention.limited_streams(after=after, limit=STREAM_PAGE)
        for info in page:
            found = await _truncation(scope.store, info)
            if found is not None:
                actions.append(found)
        if len(page) < STREAM_PAGE:
            return actions, []
        after = page[-1].stream


async def _truncation(store: EventStore, info: StreamInfo) -> Truncation | None:
    cut = await _visible_from(store, info)
    if cut is None or cut <= info.truncated_before:
        return None
    return Truncation(
        category=Category.STREAMS,
        target=info.stream,
        count=cut - info.truncated_before,
        detail=f"versions {info.truncated_before}-{cut - 1} hidden by {_limits(info)}",
        stream=info.stream,
        cut=cut,
    )


async def _visible_from(store: EventStore, info: StreamInfo) -> int | None:
    """The first version reads show (the version after the last, when they show none).

    ``info`` must be read before this call: an event appended in between is then above
    ``info.version`` and visible, so it is never below the cut."""
    if info.version is None:
        return None
    try:
        first = await store.read_stream(info.stream, limit=1)
    except (StreamDeleted, StreamNotFound):
        return None
    return first[0].version if first else info.version + 1


def _limits(info: StreamInfo) -> str:
    parts = []
    if info.max_count is not None:
        parts.append(f"max_count {info.max_count}")
    if info.max_age is not None:
        parts.append(f"max_age {info.max_age:g} s")
    return " and ".join(parts)


def _ago(now: datetime, then: datetime) -> str:
    days = (now - then).total_seconds() / 86_400
    return f"{days:.1f} days ago"


_PLANNERS = {
    Category.GENERATIONS: _plan_generations,
    Category.JOBS: _plan_jobs,
    Category.DEAD_LETTERS: _plan_dead_letters,
    Category.SNAPSHOTS: _plan_snapshots,
    Category.STREAMS: _plan_streams,
}


def shrink(action: Action, count: int) -> Action:
    """``action`` cut down to remove at most ``count`` rows (a stream keeps its newer
    hidden events, snapshots are counted against the limit)."""
    if isinstance(action, Truncation):
        return replace(action, count=count, cut=action.cut - (action.count - count))
    return replace(action, count=count)


# -- applying -------------------------------------------------------------------------------


async def apply_action(scope: Scope, action: Action, tick: Tick) -> int:
    """Carry out one action; returns the rows removed (``tick`` is called per transaction)."""
    if isinstance(action, Truncation):
        return await _truncate(scope, action, tick)
    if isinstance(action, SnapshotDeletion):
        return await _delete_snapshots(scope, action, tick)
    if isinstance(action, JobRemoval):
        done = await _remove_job(scope, action)
    elif isinstance(action, GenerationDrop):
        projection = scope.projections[action.projection]
        done = len(await prune(scope.store, projection, only={action.generation}))
    elif isinstance(action, KeySkip):
        done = await _skip(scope, action)
    else:  # pragma: no cover - every action type is handled above
        raise TypeError(f"unknown retention action {action!r}")
    if done:
        await tick(done)
    return done


async def _truncate(scope: Scope, action: Truncation, tick: Tick) -> int:
    store, batch = scope.store, scope.policy.batch_size
    try:
        info = await store.stream_info(action.stream)
    except StreamNotFound:
        return 0
    if info.state is not StreamState.ACTIVE:
        return 0
    cut = min(action.cut, await _visible_from(store, info) or 0)
    low, removed = info.truncated_before, 0
    while low < cut:
        high = min(cut, low + batch)
        await store.truncate_stream(action.stream, high)
        removed += high - low
        await tick(high - low)
        low = high
    return removed


async def _delete_snapshots(scope: Scope, action: SnapshotDeletion, tick: Tick) -> int:
    retention = retention_of(scope.store)
    remaining = action.count
    while remaining > 0:
        deleted = await retention.delete_snapshots(
            action.rule, limit=min(scope.policy.batch_size, remaining)
        )
        if not deleted:
            break
        remaining -= deleted
        await tick(deleted)
    return action.count - remaining


async def _remove_job(scope: Scope, action: JobRemoval) -> int:
    processing = processing_of(scope.store)
    planned = action.job
    current = next(
        (j for j in await processing.jobs(planned.processor) if j.id == planned.id), None
    )
    if current is None or current.state != planned.state:
        return 0
    if current.updated_at != planned.updated_at:
        return 0  # it moved since the plan was made: leave it
    if current.state is JobState.COMPLETED:
        return int(await processing.delete_job(current.id))
    try:
        projection = scope.projections[current.processor]
        await delete_replay(scope.store, projection, current.id, wait=0)
    except ConflictError:
        return 0  # a worker still holds its partitions: a later run removes it
    return 1


async def _skip(scope: Scope, action: KeySkip) -> int:
    processing = processing_of(scope.store)
    planned = action.failure
    current = next(
        (f for f in await processing.failures(planned.processor) if f.key == planned.key), None
    )
    if current is None or current.last_failed_at != planned.last_failed_at:
        return 0  # recovered, or failed again since the plan was made
    if current.state is not FailureState.QUARANTINED or current.requested is not None:
        return 0
    return int(await processing.request(planned.processor, planned.key, FailureAction.SKIP))


def is_item(action: Action) -> bool:
    """True for actions that act on one thing as a whole (count 1, never shrunk)."""
    return not isinstance(action, (Truncation, SnapshotDeletion))
