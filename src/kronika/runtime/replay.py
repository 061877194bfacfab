"""Replays: rebuild a projection's read model beside the live one, then switch (blue/green).

:func:`start_replay` records a *job* that builds the next generation of the projection's
read model (see :mod:`.generations`) from the first event. Workers pick the job up: each
runs the new generation's partitions beside the live ones, with the same leases, fencing
and failure handling. The live read model keeps serving meanwhile.

When the new generation has handled every event up to the head and none of its keys is
failing, a worker makes it the live one: one transaction marks the job completed and sets
the projection's live generation. Readers that go through
:func:`~kronika.runtime.generations.read_model` or
:func:`~kronika.runtime.generations.live_table` see the new read model from then on; the
old generation's runners stop. Replaced generations are kept up to the projection's
``replayed_versions_to_keep`` (default 1) and can be made live again without a replay
(:func:`activate`); older ones are pruned, documents and tables included.

Jobs can be stopped, resumed and deleted (deleting an unfinished replay drops what it
built). At most one job runs per projection.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kronika.errors import ConflictError, NotFound, ValidationError
from kronika.runtime.generations import (
    collection_name,
    generation_of,
    physical_name,
    table_name,
)
from kronika.runtime.processor import Processor, Projection
from kronika.runtime.progress import processing_of, unhandled
from kronika.store.processing import (
    ACTIVE_JOB_STATES,
    Job,
    JobState,
    ProcessingStore,
    ProcessorRecord,
)
from kronika.store.protocol import EventStore

__all__ = [
    "REPLAY",
    "Generation",
    "ReplayStatus",
    "activate",
    "delete_replay",
    "ensure_tables",
    "generation_dict",
    "generations",
    "job",
    "job_dict",
    "prunable",
    "prune",
    "replay_status",
    "replays",
    "resume_replay",
    "start_replay",
    "status_dict",
    "stop_replay",
    "try_complete",
]

log = logging.getLogger("kronika.runtime")

REPLAY = "replay"
"""The kind of a replay job."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayStatus:
    """A replay job and how far its generation has come."""

    job: Job
    """The job's record."""
    position: int
    """The new generation's lowest partition checkpoint."""
    head: int
    """The newest position in the store."""
    lag_events: int
    """Events the new generation has still to handle (counted up to a limit)."""
    lag_capped: bool
    """True when there are more than ``lag_events``."""
    progress: float
    """From 0 to 1: how much of the log up to the job's target the generation has handled
    (by position, so approximate where positions are not dense, as on PostgreSQL)."""
    failing: int
    """Keys of the new generation that are parked or quarantined: the switch waits for an
    operator to retry or skip them (as processor ``<name>~g<generation>``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Generation:
    """One generation of a projection's read model that exists in the store."""

    generation: int
    """Its number (1 is the projection's first build)."""
    name: str
    """The name its state is kept under (and its failed keys are listed under)."""
    live: bool
    """True for the generation readers see."""
    building: Job | None
    """The replay job building it, while one is under way."""
    position: int
    """Its lowest partition checkpoint."""


def job_dict(job: Job) -> dict[str, Any]:
    """A job as JSON-ready values (the CLI's ``--json`` and the HTTP API)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "processor": job.processor,
        "generation": job.generation,
        "state": job.state.value,
        "step": job.step,
        "target": job.target,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
    }


def status_dict(status: ReplayStatus) -> dict[str, Any]:
    """A replay's job and progress as JSON-ready values."""
    return {
        **job_dict(status.job),
        "position": status.position,
        "head": status.head,
        "lag_events": status.lag_events,
        "lag_capped": status.lag_capped,
        "progress": status.progress,
        "failing": status.failing,
    }


def generation_dict(generation: Generation) -> dict[str, Any]:
    """A generation as JSON-ready values."""
    return {
        "generation": generation.generation,
        "name": generation.name,
        "live": generation.live,
        "position": generation.position,
        "building": generation.building.id if generation.building else None,
    }


# -- operator actions ---------------------------------------------------------------------------


async def start_replay(store: EventStore, projection: Processor) -> Job:
    """Start building the next generation of ``projection``'s read model from position 0."""
    if not isinstance(projection, Projection):
        raise ValidationError(
            f"{projection.name!r} is a {projection.kind.value}; only projections are replayed "
            "(replaying a reactor would repeat its side effects)",
            "processor",
        )
    processing = processing_of(store)
    record = await processing.register_processor(projection.name, projection.partitions)
    # Generation numbers are never reused: a dropped generation keeps an empty record.
    existing = await _records(processing, projection.name)
    known = [j.generation for j in await processing.jobs(projection.name)]
    generation = max([record.generation, *existing, *known]) + 1
    now = datetime.now(UTC)
    new = Job(
        id=str(uuid.uuid4()),
        kind=REPLAY,
        processor=projection.name,
        generation=generation,
        state=JobState.RUNNING,
        step="building",
        target=await store.head_position(),
        created_at=now,
        updated_at=now,
    )
    if not await processing.create_job(new):
        active = [j for j in await processing.jobs(projection.name) if j.state in ACTIVE_JOB_STATES]
        where = f" (job {active[0].id}, {active[0].state.value})" if active else ""
        raise ConflictError(f"a replay of {projection.name!r} is already under way{where}")
    await processing.register_processor(
        physical_name(projection.name, generation), projection.partitions
    )
    log.info(
        "replay started",
        extra={"action": "replay", "processor": projection.name, "generation": generation},
    )
    return new


async def job(store: EventStore, job_id: str) -> Job:
    """One job by id; ``NotFound`` if there is none."""
    for found in await processing_of(store).jobs():
        if found.id == job_id:
            return found
    raise NotFound(f"no job {job_id!r}")


async def stop_replay(store: EventStore, job_id: str) -> Job:
    """Stop a running replay; workers let its partitions go and keep what it built."""
    await _move(store, job_id, JobState.STOPPED, [JobState.RUNNING])
    return await job(store, job_id)


async def resume_replay(store: EventStore, job_id: str) -> Job:
    """Resume a stopped replay from where it stood."""
    await _move(store, job_id, JobState.RUNNING, [JobState.STOPPED])
    return await job(store, job_id)


async def _move(store: EventStore, job_id: str, state: JobState, expected: list[JobState]) -> None:
    current = await job(store, job_id)
    if not await processing_of(store).update_job(job_id, state=state, expected=expected):
        raise ConflictError(
            f"job {job_id} is {current.state.value}; it can become {state.value} only from "
            + " or ".join(s.value for s in expected)
        )


async def delete_replay(
    store: EventStore, projection: Projection, job_id: str, *, wait: float = 60.0
) -> None:
    """Delete a replay job. An unfinished one is stopped first, and once no worker holds
    its partitions (waiting up to ``wait`` seconds) what it built is dropped."""
    processing = processing_of(store)
    current = await job(store, job_id)
    if current.processor != projection.name:
        raise ValidationError(f"job {job_id} replays {current.processor!r}", "processor")
    if current.state is not JobState.COMPLETED:
        await processing.update_job(job_id, state=JobState.STOPPED, expected=[JobState.RUNNING])
        name = physical_name(projection.name, current.generation)
        await _wait_released(processing, name, wait)
        await _drop_generation(store, projection, current.generation)
    await processing.delete_job(job_id)


async def _wait_released(processing: ProcessingStore, name: str, wait: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while await _held(processing, name):
        if loop.time() > deadline:
            raise ConflictError(
                f"workers still hold partitions of {name!r}; try again when they have let go"
            )
        await asyncio.sleep(0.2)


async def _held(processing: ProcessingStore, name: str) -> bool:
    now = datetime.now(UTC)
    return any(lease.expires_at > now for lease in await processing.leases(name))


async def activate(store: EventStore, projection: Projection, generation: int) -> None:
    """Make a kept generation live again without a replay (a rollback). It catches up from
    its own checkpoints; the generation it replaces is kept."""
    processing = processing_of(store)
    known = {g.generation: g for g in await generations(store, projection.name)}
    chosen = known.get(generation)
    if chosen is None:
        raise NotFound(
            f"generation {generation} of {projection.name!r} does not exist (kept: {sorted(known)})"
        )
    if chosen.live:
        return
    if any(g.building is not None for g in known.values()):
        raise ConflictError(
            f"a replay of {projection.name!r} is under way; stop and delete it before a rollback"
        )
    await processing.activate_generation(projection.name, generation)
    log.info(
        "generation activated",
        extra={"action": "activate", "processor": projection.name, "generation": generation},
    )


async def generations(store: EventStore, name: str) -> list[Generation]:
    """The generations of a processor's read model that exist, newest first."""
    processing = processing_of(store)
    records = await _records(processing, name)
    own = records.get(1)
    if own is None:
        return []
    building = {
        j.generation: j for j in await processing.jobs(name) if j.state in ACTIVE_JOB_STATES
    }
    found = []
    for number, record in sorted(records.items(), reverse=True):
        live = number == own.generation
        if not (live or record.checkpoints or number in building):
            continue  # dropped (or never started): only its record remains
        found.append(
            Generation(
                generation=number,
                name=record.name,
                live=live,
                building=building.get(number),
                position=min(record.checkpoints.get(p, 0) for p in range(record.partitions)),
            )
        )
    return found


async def _records(processing: ProcessingStore, name: str) -> dict[int, ProcessorRecord]:
    """The stored records of every generation of a processor, by generation."""
    return {
        generation_of(r.name)[1]: r
        for r in await processing.processors()
        if generation_of(r.name)[0] == name
    }


async def replays(store: EventStore, projections: dict[str, Processor]) -> list[ReplayStatus]:
    """Every replay job, oldest first, with progress where its projection is known."""
    found = []
    for each in await processing_of(store).jobs():
        projection = projections.get(each.processor)
        if each.kind == REPLAY and projection is not None:
            found.append(await replay_status(store, projection, each))
    return found


async def replay_status(store: EventStore, projection: Processor, replay: Job) -> ReplayStatus:
    """How far a replay's generation has come."""
    processing = processing_of(store)
    name = physical_name(projection.name, replay.generation)
    record = await processing.processor(name)
    head = await store.head_position()
    if record is None:  # completed and since pruned
        return ReplayStatus(
            job=replay, position=head, head=head, lag_events=0, lag_capped=False, progress=1.0,
            failing=0,
        )  # fmt: skip
    checkpoints = {p: record.checkpoints.get(p, 0) for p in range(record.partitions)}
    lag, capped, _ = await unhandled(store, projection, checkpoints)
    position = min(checkpoints.values())
    first = await store.read_all(limit=1)
    start = first[0].position - 1 if first else 0
    done = replay.state is JobState.COMPLETED or (lag == 0 and not capped)
    span = max(1, replay.target - start)
    progress = 1.0 if done else min(0.99, max(0.0, (position - start) / span))
    return ReplayStatus(
        job=replay,
        position=position,
        head=head,
        lag_events=lag,
        lag_capped=capped,
        progress=progress,
        failing=len(await processing.failures(name)),
    )


# -- what workers do ----------------------------------------------------------------------------


async def ensure_tables(
    processing: ProcessingStore, projection: Processor, generation: int
) -> None:
    """Create a generation's copies of the projection's declared tables (if missing)."""
    tables = getattr(projection, "tables", {})
    if not tables:
        return
    async with processing.transaction() as tx:
        for table, ddl in tables.items():
            # The DDL is the projection's own code; table_name() admits identifiers only.
            ddl_sql = ddl.format(table=table_name(table, generation))  # sql-static: allow DDL
            await tx.execute(ddl_sql)


async def try_complete(store: EventStore, projection: Processor, replay: Job) -> bool:
    """Make the replay's generation live if it has caught up; True if this call did it."""
    processing = processing_of(store)
    name = physical_name(projection.name, replay.generation)
    record = await processing.processor(name)
    if record is None or replay.state is not JobState.RUNNING:
        return False
    failing = len(await processing.failures(name))
    error = (
        f"{failing} key(s) of {name!r} are failing; retry or skip them to let the replay finish"
        if failing
        else None
    )
    if error != replay.error:
        await processing.update_job(
            replay.id, state=JobState.RUNNING, expected=[JobState.RUNNING], error=error
        )
    if failing:
        return False
    checkpoints = {p: record.checkpoints.get(p, 0) for p in range(record.partitions)}
    lag, capped, _ = await unhandled(store, projection, checkpoints)
    if lag or capped:
        return False
    if not await processing.activate_generation(
        projection.name, replay.generation, completing=replay.id
    ):
        return False
    log.info(
        "replay switched",
        extra={"action": "switch", "processor": projection.name, "generation": replay.generation},
    )
    return True


async def prunable(store: EventStore, projection: Processor) -> list[Generation]:
    """Replaced generations beyond ``replayed_versions_to_keep`` that no worker holds, newest
    first: what :func:`prune` drops. The live one, the kept ones and any a replay job is
    building (running or stopped) are never among them."""
    keep = getattr(projection, "replayed_versions_to_keep", 1)
    processing = processing_of(store)
    inactive = [
        g for g in await generations(store, projection.name) if not g.live and g.building is None
    ]
    # One a worker has not let go yet is left for a later prune.
    return [old for old in inactive[keep:] if not await _held(processing, old.name)]


async def prune(
    store: EventStore, projection: Processor, *, only: Collection[int] | None = None
) -> list[int]:
    """Drop the :func:`prunable` generations (of them, only those in ``only`` if given);
    returns the generations dropped."""
    dropped = []
    for old in await prunable(store, projection):
        if only is None or old.generation in only:
            await _drop_generation(store, projection, old.generation)
            dropped.append(old.generation)
    return dropped


async def _drop_generation(store: EventStore, projection: Processor, generation: int) -> None:
    """Remove a generation's documents, tables, checkpoints and failed keys."""
    processing = processing_of(store)
    for collection in getattr(projection, "collections", ()):
        await processing.clear_documents(collection_name(collection, generation))
    tables = getattr(projection, "tables", {})
    if tables:
        async with processing.transaction() as tx:
            for table in tables:
                name = table_name(table, generation)  # a checked identifier
                await tx.execute(f"DROP TABLE IF EXISTS {name}")  # sql-static: allow identifier
    name = physical_name(projection.name, generation)
    await processing.drop_processor(name, keep_record=True)
    log.info(
        "generation pruned",
        extra={"action": "prune", "processor": projection.name, "generation": generation},
    )
