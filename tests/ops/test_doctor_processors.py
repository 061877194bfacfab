"""``kronika doctor``'s processor checks against real workers on real stores: failing and
quarantined keys, dead letters, stalls, lag and recommendations (K15)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest

import kronika
from kronika import NewEvent, RecordedEvent, RetryPolicy
from kronika.errors import NotFound
from kronika.ops.doctor import CheckResult, Status, Thresholds
from kronika.runtime import Context, Projection, Worker, admin, on
from kronika.runtime.replay import activate, generations, start_replay, stop_replay
from kronika.runtime.worker import processing_of
from kronika.store.processing import FailedKey, FailureState, JobState
from kronika.store.protocol import EventStore

RunCheck = Callable[..., Awaitable[CheckResult]]
broken: set[str] = set()
hanging: set[str] = set()


class Ledger(Projection):
    """Counts events per stream; fails on streams in ``broken``, hangs on ``hanging``."""

    name = "ledger"
    partitions = 2
    collections = ("ledger",)
    retry = RetryPolicy(max_attempts=1, initial_delay=0.05, max_delay=0.05, jitter=False)

    @on("Numbered")
    async def numbered(self, event: RecordedEvent, ctx: Context) -> None:
        if event.stream in hanging:
            await asyncio.sleep(3600)
        if event.stream in broken:
            raise RuntimeError(f"cannot handle {event.stream}")
        doc = await ctx.documents.get("ledger", event.stream) or {"count": 0}
        doc["count"] += 1
        await ctx.documents.put("ledger", event.stream, doc)


class Patient(Ledger):
    """The same, retried for a long time before it gives up."""

    name = "patient"
    retry = RetryPolicy(max_attempts=50, initial_delay=60, max_delay=60, jitter=False)


class Audit(Ledger):
    """In the application but never run."""

    name = "audit"


APP = [Ledger, Audit]
APP_REF = f"{__name__}:APP"
MATCHING = [Ledger]
MATCHING_REF = f"{__name__}:MATCHING"


def found(result: CheckResult) -> list[str]:
    """The severities of a result's findings (empty: quiet)."""
    assert result.status is not Status.ERROR, result.reason
    return [f.severity.value for f in result.findings]


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def check_any(check: RunCheck) -> RunCheck:
    """The ``check`` fixture under another name, for tests that wrap it."""
    return check


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(f"{request.param}_url")
    return value


@pytest.fixture
async def store(url: str) -> AsyncIterator[EventStore]:
    broken.clear()
    hanging.clear()
    async with kronika.open_store(url) as opened:
        yield opened


class Running:
    """A worker running ``processors`` on ``store`` until stopped."""

    def __init__(self, store: EventStore, *processors: Projection) -> None:
        self.worker = Worker(store, list(processors), lease_ttl=1.0, drain_timeout=1)
        self.task = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        self.worker.stop()
        await asyncio.wait_for(self.task, 15)


async def append(store: EventStore, stream: str, count: int = 1) -> None:
    await store.append(stream, [NewEvent("Numbered", {"n": n}) for n in range(count)])


async def caught_up(store: EventStore, processor: Projection) -> bool:
    try:
        state = await admin.status(store, processor)
    except NotFound:
        return False
    return state.lag_events == 0 and not state.lag_capped and bool(state.owners)


async def failures(store: EventStore, state: FailureState) -> list[FailedKey]:
    return [f for f in await processing_of(store).failures() if f.state is state]


async def test_failing_and_quarantined_keys_and_neglected_dead_letters(
    check: RunCheck, store: EventStore, url: str
) -> None:
    running = Running(store, Ledger(), Patient())
    try:
        await append(store, "good-1", 3)
        await until(lambda: caught_up(store, Ledger()))
        for check_id in ("DR-PROC-FAILING", "DR-PROC-QUARANTINED", "DR-PROC-DEAD-LETTERS"):
            assert found(await check(check_id, url=url)) == [], check_id
        broken.add("bad-7")
        await append(store, "bad-7", 2)
        await until(lambda: _count(failures(store, FailureState.QUARANTINED), 1))
        await until(lambda: _count(failures(store, FailureState.RETRYING), 1))
    finally:
        await running.stop()
    retrying = await check("DR-PROC-FAILING", url=url)
    assert found(retrying) == ["medium"]
    assert retrying.findings[0].subject == "patient"
    assert "bad-7" in retrying.findings[0].found
    quarantined = await check("DR-PROC-QUARANTINED", url=url)
    assert found(quarantined) == ["high"]
    [finding] = quarantined.findings
    assert finding.subject == "ledger"
    assert "bad-7 for" in finding.found and "RuntimeError: cannot handle bad-7" in finding.found
    assert "kronika processors retry ledger" in finding.action
    assert found(await check("DR-PROC-DEAD-LETTERS", url=url)) == []  # fresh: not neglected
    neglected = Thresholds(dead_letter_age=0.0)
    old = await check("DR-PROC-DEAD-LETTERS", url=url, thresholds=neglected)
    assert found(old) == ["high"]
    assert old.findings[0].subject == "ledger"


async def _count(got: Awaitable[list[FailedKey]], expected: int) -> bool:
    return len(await got) == expected


async def test_stalled_processors_and_lag(check_any: RunCheck, store: EventStore, url: str) -> None:
    eager = Thresholds(stall_after=0.0, stall_window=0.5, max_lag_events=0, max_lag_seconds=0.0)

    async def check(check_id: str, **options: object) -> CheckResult:
        return await check_any(check_id, app=MATCHING_REF, **options)  # lag needs the types

    running = Running(store, Ledger())
    try:
        await append(store, "s-1", 2)
        await until(lambda: caught_up(store, Ledger()))
        assert found(await check("DR-PROC-STALLED", url=url, thresholds=eager)) == []
        assert found(await check("DR-PROC-LAG", url=url, thresholds=eager)) == []
        hanging.add("slow-1")
        await append(store, "slow-1")
        await append(store, "s-2")
        stuck = await check("DR-PROC-STALLED", url=url, thresholds=eager)
        assert found(stuck) == ["high"]
        assert "not making progress" in stuck.findings[0].title
    finally:
        await running.stop()
    stopped = await check("DR-PROC-STALLED", url=url, thresholds=eager)
    assert found(stopped) == ["high"]
    assert stopped.findings[0].title == "no worker runs ledger"
    assert found(await check("DR-PROC-STALLED", url=url)) == []  # waiting less than 300 s
    lagging = await check("DR-PROC-LAG", url=url, thresholds=eager)
    assert found(lagging) == ["medium"]
    assert found(await check("DR-PROC-LAG", url=url)) == []  # within 60 s and 10,000 events
    await admin.pause(store, "ledger")
    paused = await check("DR-PROC-STALLED", url=url, thresholds=eager)
    assert found(paused) == ["medium"]
    assert "kronika processors resume ledger" in paused.findings[0].action


async def test_recommendations_compare_the_application_with_the_store(
    check: RunCheck, store: EventStore, url: str
) -> None:
    processing = processing_of(store)
    await processing.register_processor("ledger", Ledger.partitions)
    assert found(await check("DR-RECOMMEND", url=url, app=MATCHING_REF)) == []
    await processing.register_processor("retired", 4)
    result = await check("DR-RECOMMEND", url=url, app=APP_REF)
    titles = {f.title: f.severity.value for f in result.findings}
    assert titles == {
        "audit has never run": "low",
        "retired is stored but not in the application": "low",
    }
    await processing.register_processor("audit", 16)  # the code says 2
    mismatch = await check("DR-RECOMMEND", url=url, app=APP_REF)
    severities = {f.title: f.severity.value for f in mismatch.findings}
    assert severities["audit changed its partition count"] == "high"


async def test_stopped_and_stuck_replays_are_recommended_for(
    check: RunCheck, store: EventStore, url: str
) -> None:
    await processing_of(store).register_processor("ledger", Ledger.partitions)
    job = await start_replay(store, Ledger())
    await stop_replay(store, job.id)
    stopped = await check("DR-RECOMMEND", url=url)
    assert [(f.severity.value, f.title) for f in stopped.findings] == [
        ("low", "the replay of ledger is stopped")
    ]
    assert f"kronika replay resume {job.id}" in stopped.findings[0].action
    await processing_of(store).update_job(
        job.id, state=JobState.RUNNING, expected=[JobState.STOPPED]
    )
    now = datetime.now(UTC)
    async with processing_of(store).transaction() as tx:
        await tx.save_failure(
            FailedKey(
                processor=f"ledger~g{job.generation}",
                partition=0,
                key="acct-1",
                position=1,
                event_id=uuid.uuid4(),
                event_type="Numbered",
                attempts=1,
                error="RuntimeError: boom",
                stack="",
                first_failed_at=now,
                last_failed_at=now,
                next_retry_at=None,
                state=FailureState.QUARANTINED,
            )
        )
    stuck = await check("DR-RECOMMEND", url=url)
    assert [(f.severity.value, f.title) for f in stuck.findings] == [
        ("medium", "the replay of ledger is stuck")
    ]


async def test_a_rolled_back_projection_needs_a_replay(
    check: RunCheck, store: EventStore, url: str
) -> None:
    running = Running(store, Ledger())
    try:
        await append(store, "r-1", 3)
        await until(lambda: caught_up(store, Ledger()))
        await start_replay(store, Ledger())

        async def switched() -> bool:
            return any(g.live and g.generation == 2 for g in await generations(store, "ledger"))

        await until(switched, timeout=30)
        assert found(await check("DR-RECOMMEND", url=url)) == []
        await activate(store, Ledger(), 1)
    finally:
        await running.stop()
    result = await check("DR-RECOMMEND", url=url)
    assert [(f.severity.value, f.title) for f in result.findings] == [
        ("low", "projection ledger needs a replay")
    ]
    assert "generation 2 is kept" in result.findings[0].found


async def test_lag_is_not_judged_without_the_processors_event_types(
    check: RunCheck, store: EventStore, url: str
) -> None:
    await processing_of(store).register_processor("ledger", Ledger.partitions)
    await append(store, "s-1", 3)
    eager = Thresholds(stall_after=0.0, max_lag_events=0, max_lag_seconds=0.0)
    for check_id in ("DR-PROC-LAG", "DR-PROC-STALLED"):
        skipped = await check(check_id, url=url, thresholds=eager)
        assert skipped.status is Status.SKIPPED and "--app" in (skipped.reason or "")
        judged = await check(check_id, url=url, thresholds=eager, app=MATCHING_REF)
        assert found(judged), check_id
