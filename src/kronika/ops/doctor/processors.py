"""Checks of the processing runtime: failed keys, dead letters, stalls, lag, and what to do.

The state comes from the store through the runtime's admin API, or from ``--server``'s
processor routes when there is no store to read (see :mod:`.sources`). Findings name the
processor (and key) and the command that deals with it, as K15's recommendations do:
"key order-7 of order-totals quarantined for 2 h".
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import quote

from kronika.ops.doctor.context import DoctorContext
from kronika.ops.doctor.model import Finding, Severity, Skip, age
from kronika.ops.doctor.sources import ProcessorData, get_json
from kronika.runtime import replay
from kronika.runtime.admin import ProcessorState, ProcessorStatus
from kronika.runtime.generations import generation_of
from kronika.store.processing import FailedKey, FailureState, JobState, ProcessorRecord

__all__ = [
    "dead_letters",
    "failing_keys",
    "lag",
    "quarantined_keys",
    "recommendations",
    "stalled",
]

SHOWN_KEYS = 3
"""Keys named in a finding; the rest are counted."""


def _by_processor(failures: Iterable[FailedKey]) -> dict[str, list[FailedKey]]:
    grouped: dict[str, list[FailedKey]] = defaultdict(list)
    for failure in failures:
        grouped[failure.processor].append(failure)
    return dict(sorted(grouped.items()))


def _keys(failures: list[FailedKey], now: datetime) -> str:
    shown = [
        f"{f.key} for {age((now - f.first_failed_at).total_seconds())}"
        for f in failures[:SHOWN_KEYS]
    ]
    more = len(failures) - SHOWN_KEYS
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


async def failing_keys(ctx: DoctorContext) -> list[Finding]:
    """DR-PROC-FAILING: keys being retried (failed partitions)."""
    data = await ctx.processor_data()
    retrying = [f for f in data.failures if f.state is FailureState.RETRYING]
    return [
        Finding(
            check="DR-PROC-FAILING",
            severity=Severity.MEDIUM,
            title=f"{len(keys)} key(s) of {name} are failing and being retried",
            found=f"failing: {_keys(keys, ctx.now)}; last error: {keys[-1].error}",
            action=f"look at the error (kronika processors failed --processor {name}); they "
            "are quarantined after their last attempt",
            subject=name,
        )
        for name, keys in _by_processor(retrying).items()
    ]


async def quarantined_keys(ctx: DoctorContext) -> list[Finding]:
    """DR-PROC-QUARANTINED: keys out of attempts, waiting for an operator."""
    data = await ctx.processor_data()
    stuck = [f for f in data.failures if f.state is FailureState.QUARANTINED]
    return [
        Finding(
            check="DR-PROC-QUARANTINED",
            severity=Severity.HIGH,
            title=f"{len(keys)} key(s) of {name} are quarantined",
            found=f"quarantined: {_keys(keys, ctx.now)}; their events wait as dead letters; "
            f"last error: {keys[-1].error}",
            action=f"fix the handler, then kronika processors retry {name} KEY (or skip the "
            "failing event with kronika processors skip)",
            subject=name,
        )
        for name, keys in _by_processor(stuck).items()
    ]


async def dead_letters(ctx: DoctorContext) -> list[Finding]:
    """DR-PROC-DEAD-LETTERS: dead letters nobody has dealt with for too long."""
    data = await ctx.processor_data()
    limit = ctx.thresholds.dead_letter_age
    old = [
        f
        for f in data.failures
        if f.state is FailureState.QUARANTINED
        and (ctx.now - f.last_failed_at).total_seconds() > limit
    ]
    return [
        Finding(
            check="DR-PROC-DEAD-LETTERS",
            severity=Severity.HIGH,
            title=f"dead letters of {name} have waited more than {age(limit)}",
            found=f"{len(keys)} quarantined key(s) untouched since "
            f"{min(k.last_failed_at for k in keys):%Y-%m-%d %H:%M} UTC: {_keys(keys, ctx.now)}",
            action=f"see kronika processors dead-letters {name} KEY --app ..., then retry or "
            "skip each key; make this part of the daily checks",
            subject=name,
        )
        for name, keys in _by_processor(old).items()
    ]


def _waiting(status: ProcessorStatus, after: float) -> bool:
    return (status.lag_events > 0 or status.lag_capped) and status.lag_seconds > after


def _measured(data: ProcessorData) -> list[ProcessorStatus]:
    """The statuses with exact lag; :class:`Skip` when there are processors but none is."""
    measured = data.measured()
    if data.statuses and not measured:
        raise Skip(
            "the processors' event types are unknown, so their lag is not measured: give "
            "--app (the application's processors)"
        )
    return measured


async def stalled(ctx: DoctorContext) -> list[Finding]:
    """DR-PROC-STALLED: processors with old work waiting that do not move."""
    data = await ctx.processor_data()
    after = ctx.thresholds.stall_after
    suspects = [s for s in _measured(data) if _waiting(s, after)]
    found = [_idle(s) for s in suspects if s.state in _IDLE]
    running = [s for s in suspects if s.state not in _IDLE]
    if running:
        await asyncio.sleep(ctx.thresholds.stall_window)
        later = {s.name: s for s in (await ctx.processor_data(fresh=True)).statuses}
        found.extend(
            _not_moving(s, ctx.thresholds.stall_window)
            for s in running
            if s.name in later and later[s.name].position <= s.position
        )
    return found


_IDLE = (ProcessorState.PAUSED, ProcessorState.STOPPED)


def _idle(status: ProcessorStatus) -> Finding:
    waiting = f"{_lag(status)} waiting, the oldest for {age(status.lag_seconds)}"
    if status.state is ProcessorState.PAUSED:
        return Finding(
            check="DR-PROC-STALLED",
            severity=Severity.MEDIUM,
            title=f"{status.name} is paused with work waiting",
            found=f"an operator paused it; {waiting}",
            action=f"kronika processors resume {status.name} when the reason is gone",
            subject=status.name,
        )
    return Finding(
        check="DR-PROC-STALLED",
        severity=Severity.HIGH,
        title=f"no worker runs {status.name}",
        found=f"no worker holds its partitions; {waiting}",
        action="start kronika worker with the application (--app), or check why the workers "
        "died (their logs)",
        subject=status.name,
    )


def _not_moving(status: ProcessorStatus, window: float) -> Finding:
    return Finding(
        check="DR-PROC-STALLED",
        severity=Severity.HIGH,
        title=f"{status.name} is not making progress",
        found=f"position {status.position} did not move in {window:g} s with {_lag(status)} "
        f"waiting, the oldest for {age(status.lag_seconds)}; workers: "
        f"{', '.join(status.owners) or 'none'}",
        action="look at the workers' logs for a handler that hangs or a lost database "
        "connection; restart them if needed",
        subject=status.name,
    )


def _lag(status: ProcessorStatus) -> str:
    return f"{status.lag_events}{'+' if status.lag_capped else ''} event(s)"


async def lag(ctx: DoctorContext) -> list[Finding]:
    """DR-PROC-LAG: processors behind the head by more than the thresholds."""
    data = await ctx.processor_data()
    limits = ctx.thresholds
    found = []
    for status in _measured(data):
        too_old = status.lag_seconds > limits.max_lag_seconds
        too_many = status.lag_capped or status.lag_events > limits.max_lag_events
        if not (too_old or too_many):
            continue
        found.append(
            Finding(
                check="DR-PROC-LAG",
                severity=Severity.MEDIUM,
                title=f"{status.name} lags behind",
                found=f"{_lag(status)} not handled yet, the oldest for "
                f"{age(status.lag_seconds)} (limits: {limits.max_lag_events} events, "
                f"{age(limits.max_lag_seconds)})",
                action="add workers or partitions' worth of capacity, or look for slow "
                "handlers (kronika_handler_duration_seconds)",
                subject=status.name,
            )
        )
    return found


async def recommendations(ctx: DoctorContext) -> list[Finding]:
    """DR-RECOMMEND (K15): operator actions the stored state calls for."""
    data = await ctx.processor_data()
    found = _app_findings(ctx, data.records)
    for view in data.jobs:
        job = view.job
        if job.state is JobState.RUNNING and view.failing:
            found.append(
                _advice(
                    Severity.MEDIUM,
                    f"the replay of {job.processor} is stuck",
                    f"{view.failing} key(s) of generation {job.generation} are failing, so "
                    "it cannot take over",
                    f"fix the handler, then retry or skip them as processor "
                    f"{job.processor}~g{job.generation} (kronika processors failed)",
                    job.processor,
                )
            )
        elif job.state is JobState.STOPPED:
            found.append(
                _advice(
                    Severity.LOW,
                    f"the replay of {job.processor} is stopped",
                    f"job {job.id} (generation {job.generation}) was stopped "
                    f"{age((ctx.now - job.updated_at).total_seconds())} ago",
                    f"kronika replay resume {job.id}, or delete it with kronika replay delete",
                    job.processor,
                )
            )
    found.extend(await _rolled_back(ctx, [s.name for s in data.statuses]))
    return found


def _app_findings(ctx: DoctorContext, records: list[ProcessorRecord] | None) -> list[Finding]:
    """What comparing the application (``--app``) with the stored records shows."""
    if ctx.processors is None or records is None:
        return []
    stored = {r.name: r for r in records}
    found = []
    for processor in ctx.processors:
        record = stored.get(processor.name)
        if record is None:
            found.append(
                _advice(
                    Severity.LOW,
                    f"{processor.name} has never run",
                    f"the application has {processor.kind.value} {processor.name}, the store "
                    "has no state for it",
                    "start kronika worker with this application: it builds from the first event",
                    processor.name,
                )
            )
        elif record.partitions != processor.partitions:
            found.append(
                _advice(
                    Severity.HIGH,
                    f"{processor.name} changed its partition count",
                    f"the code declares {processor.partitions} partitions, the store has "
                    f"{record.partitions}: workers refuse to run it",
                    f"set partitions = {record.partitions} again, or give the processor a new "
                    "name (it then builds from the first event)",
                    processor.name,
                )
            )
    known = {p.name for p in ctx.processors}
    for name in sorted(stored):
        base, generation = generation_of(name)
        if generation == 1 and base not in known:
            found.append(
                _advice(
                    Severity.LOW,
                    f"{name} is stored but not in the application",
                    f"the store keeps checkpoints of {name}, which --app does not name",
                    "if it was removed on purpose its state can go; else deploy it again",
                    name,
                )
            )
    return found


async def _rolled_back(ctx: DoctorContext, names: list[str]) -> list[Finding]:
    """Projections whose live generation is older than one that was built: rolled back."""
    found = []
    for name in names:
        generations = await _generations(ctx, name)
        live = next((g for g, is_live in generations if is_live), None)
        newer = [g for g, _ in generations if live is not None and g > live]  # built, kept
        if newer:
            found.append(
                _advice(
                    Severity.LOW,
                    f"projection {name} needs a replay",
                    f"it was rolled back to generation {live}; generation {max(newer)} is kept",
                    f"once the fix is deployed, kronika replay start {name} --app ... (or "
                    f"kronika replay activate {name} {max(newer)} --app ... to go forward again)",
                    name,
                )
            )
    return found


async def _generations(ctx: DoctorContext, name: str) -> list[tuple[int, bool]]:
    """``(generation, live)`` of each built generation (not those a replay is building)."""
    if ctx.store is not None:
        found = await replay.generations(ctx.store, name)
        return [(g.generation, g.live) for g in found if g.building is None]
    path = f"/v1/processors/{quote(name, safe='')}/generations"
    body = await get_json(ctx.require_server(), path)
    return [
        (int(g["generation"]), bool(g["live"]))
        for g in body.get("generations", [])
        if not g.get("building")
    ]


def _advice(severity: Severity, title: str, found: str, action: str, subject: str) -> Finding:
    return Finding(
        check="DR-RECOMMEND",
        severity=severity,
        title=title,
        found=found,
        action=action,
        subject=subject,
    )
