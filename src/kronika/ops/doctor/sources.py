"""Where processor state comes from: the store (through the runtime's admin API) or a
running server (through its ``/v1/processors``, ``/v1/failed`` and ``/v1/replays`` routes).

Both give the same typed values (:class:`~kronika.runtime.admin.ProcessorStatus`,
:class:`~kronika.store.processing.FailedKey`, :class:`~kronika.store.processing.Job`), so
each processor check is written once. The server's JSON is the admin API's own
(``status_dict``, ``failure_dict``, ``job_dict``), read back here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from kronika.errors import NotFound, Unavailable
from kronika.ops.doctor.model import Skip
from kronika.ops.httpclient import answer_detail
from kronika.runtime import admin
from kronika.runtime.generations import generation_of, physical_name
from kronika.runtime.processor import Processor
from kronika.runtime.progress import processing_of
from kronika.store.processing import (
    FailedKey,
    FailureAction,
    FailureState,
    Job,
    JobState,
    ProcessorRecord,
)
from kronika.store.protocol import EventStore

__all__ = ["JobView", "ProcessorData", "get_json", "local_data", "remote_data"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobView:
    """A replay job and how many keys of the generation it builds are failing."""

    job: Job
    """The job."""
    failing: int
    """Failed keys of its generation (the switch waits for them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorData:
    """Every processor's state, every failed key and every replay job."""

    source: str
    """``store`` or ``server``: where it was read."""
    statuses: list[admin.ProcessorStatus]
    """One per processor that has run (live generations)."""
    failures: list[FailedKey]
    """Parked and quarantined keys, oldest first."""
    jobs: list[JobView]
    """Replay jobs, oldest first."""
    records: list[ProcessorRecord] | None = None
    """The stored records of every processor and generation (from the store only)."""
    inexact: frozenset[str] = frozenset()
    """Processors described from their stored records alone (not in ``--app``): their
    event types are unknown, so their lag counts every event and is not measured."""

    def measured(self) -> list[admin.ProcessorStatus]:
        """The statuses whose lag is exact."""
        return [s for s in self.statuses if s.name not in self.inexact]


async def local_data(store: EventStore, processors: Sequence[Processor] | None) -> ProcessorData:
    """Read it from the store with the admin API; ``processors`` (the application's, if
    loaded) make lag exact, others are described from their stored records."""
    processing = processing_of(store)
    records = await processing.processors()
    known = {p.name: p for p in processors or ()}
    statuses = []
    for record in sorted(records, key=lambda r: r.name):
        if generation_of(record.name)[1] != 1:
            continue  # a replay's generation: reported with its job
        try:
            statuses.append(
                await admin.status(store, known.get(record.name) or admin.recorded(record))
            )
        except NotFound:  # its live generation's record is gone: nothing to measure
            continue
    failures = await admin.failed_keys(store)
    jobs = [
        JobView(job=job, failing=_failing(failures, job))
        for job in await processing.jobs()
        if job.kind == "replay"
    ]
    return ProcessorData(
        source="store",
        statuses=statuses,
        failures=failures,
        jobs=jobs,
        records=records,
        inexact=frozenset(s.name for s in statuses if s.name not in known),
    )


def _failing(failures: list[FailedKey], job: Job) -> int:
    name = physical_name(job.processor, job.generation)
    return sum(f.processor == name for f in failures)


async def remote_data(http: httpx.AsyncClient) -> ProcessorData:
    """Read it from a running server: ``GET /v1/failed`` lists every failed key, of live
    generations and of replays alike, as :func:`local_data` does."""
    body = await get_json(http, "/v1/processors")
    statuses = [_status(d) for d in _list(body, "processors")]
    failed = await get_json(http, "/v1/failed")
    failures = [_failure(d) for d in _list(failed, "failed")]
    replays = await get_json(http, "/v1/replays")
    jobs = [
        JobView(job=_job(d), failing=int(d.get("failing", 0))) for d in _list(replays, "replays")
    ]
    return ProcessorData(source="server", statuses=statuses, failures=failures, jobs=jobs)


async def get_json(http: httpx.AsyncClient, path: str) -> Any:
    """``GET path`` as JSON. 401/403 skip the check (doctor cannot see); any other
    failure is :class:`Unavailable` naming the route."""
    try:
        answer = await http.get(path)
    except httpx.HTTPError as exc:
        raise Unavailable(f"GET {path}: {type(exc).__name__}: {exc}") from None
    if answer.status_code in {401, 403}:
        raise Skip(
            f"GET {path} answered {answer.status_code} ({answer_detail(answer)}): "
            "give --token with a key or JWT that has the read role"
        )
    if answer.status_code != 200:
        raise Unavailable(f"GET {path} answered {answer.status_code}: {answer_detail(answer)}")
    try:
        return answer.json()
    except ValueError:
        raise Unavailable(f"GET {path} did not answer JSON") from None


def _list(body: Any, key: str) -> list[dict[str, Any]]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise Unavailable(f"the server's answer has no {key!r} list")
    return items


def _status(d: dict[str, Any]) -> admin.ProcessorStatus:
    try:
        return admin.ProcessorStatus(
            name=d["name"],
            generation=int(d["generation"]),
            state=admin.ProcessorState(d["state"]),
            partitions=int(d["partitions"]),
            position=int(d["position"]),
            head=int(d["head"]),
            lag_events=int(d["lag_events"]),
            lag_capped=bool(d["lag_capped"]),
            lag_seconds=float(d["lag_seconds"]),
            parked=int(d["parked"]),
            quarantined=int(d["quarantined"]),
            owners=tuple(d["workers"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Unavailable(f"unexpected processor status from the server: {exc!r}") from None


def _failure(d: dict[str, Any]) -> FailedKey:
    try:
        return FailedKey(
            processor=d["processor"],
            partition=int(d["partition"]),
            key=d["key"],
            position=int(d["position"]),
            event_id=uuid.UUID(d["event_id"]),
            event_type=d["event_type"],
            attempts=int(d["attempts"]),
            error=d["error"],
            stack=d.get("stack") or "",
            first_failed_at=datetime.fromisoformat(d["first_failed_at"]),
            last_failed_at=datetime.fromisoformat(d["last_failed_at"]),
            next_retry_at=_time(d.get("next_retry_at")),
            state=FailureState(d["state"]),
            requested=FailureAction(d["requested"]) if d.get("requested") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Unavailable(f"unexpected failed key from the server: {exc!r}") from None


def _job(d: dict[str, Any]) -> Job:
    try:
        return Job(
            id=d["id"],
            kind=d["kind"],
            processor=d["processor"],
            generation=int(d["generation"]),
            state=JobState(d["state"]),
            step=d["step"],
            target=int(d["target"]),
            created_at=datetime.fromisoformat(d["created_at"]),
            updated_at=datetime.fromisoformat(d["updated_at"]),
            error=d.get("error"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Unavailable(f"unexpected replay job from the server: {exc!r}") from None


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
