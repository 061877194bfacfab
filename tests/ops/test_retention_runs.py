"""Retention runs on every backend (J1, K6): a dry run changes nothing and counts exactly,
applying removes exactly what was planned in batches, hidden events are truncated while
stream reads stay the same, and what must survive (unresolved dead letters, running jobs,
live and kept generations) survives. Also the scheduled mode inside a worker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import kronika
from kronika import NewEvent, RecordedEvent
from kronika.errors import ConfigurationError
from kronika.ops import retention
from kronika.ops.retention_policy import Category, RetentionPolicy
from kronika.ops.retention_rules import SnapshotDeletion
from kronika.runtime import Context, Projection, Worker, on
from kronika.runtime.progress import processing_of
from kronika.runtime.replay import generations, start_replay, stop_replay
from kronika.store.processing import FailedKey, FailureAction, FailureState, Job, JobState
from kronika.store.protocol import EventStore
from kronika.store.retention import retention_of

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
LONG_AGO = datetime.now(UTC) - timedelta(days=400)


class Balances(Projection):
    """A document per account."""

    name = "balances"
    partitions = 2
    collections = ("balances",)

    @on("Deposited")
    async def deposited(self, event: RecordedEvent, ctx: Context) -> None:
        doc = await ctx.documents.get("balances", event.stream) or {"n": 0}
        doc["n"] += 1
        await ctx.documents.put("balances", event.stream, doc)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    async with kronika.open_store(url) as opened:
        yield opened


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def seed(store: EventStore) -> None:
    """Streams with and without limits, an orphaned snapshot, jobs in every state."""
    for name in ("keep-3", "keep-8", "plain"):
        await store.append(name, [NewEvent("Deposited", {"i": i}) for i in range(10)])
    await store.set_stream_metadata("keep-3", max_count=3)  # hides versions 0-6
    await store.set_stream_metadata("keep-8", max_count=8)  # hides versions 0-1
    for name in ("snap-live", "snap-gone"):
        await store.append(name, [NewEvent("Deposited", {})])
        await store.write_snapshot(name, 0, {"n": 1})
    await store.delete_stream("snap-gone")
    await store.write_snapshot("snap-gone", 0, {"n": 1})  # orphaned
    processing = processing_of(store)
    for state, processor in [(JobState.COMPLETED, "old-done"), (JobState.RUNNING, "old-run")]:
        await processing.register_processor(processor, 1)
        await processing.create_job(job(processor, state))


def job(processor: str, state: JobState) -> Job:
    return Job(
        id=str(uuid.uuid4()), kind="replay", processor=processor, generation=2, state=state,
        step="building", target=0, created_at=LONG_AGO, updated_at=LONG_AGO,
    )  # fmt: skip


async def snapshot(store: EventStore) -> dict[str, Any]:
    """Everything retention could touch, as comparable values."""
    processing = processing_of(store)
    return {
        "log": [(e.stream, e.version) for e in await store.read_all()],
        "reads": {s: await store.read_stream(s) for s in ("keep-3", "keep-8", "plain")},
        "snapshots": [await store.read_snapshot(s) for s in ("snap-live", "snap-gone")],
        "jobs": sorted(j.processor for j in await processing.jobs()),
    }


def counts(report: retention.Report) -> dict[str, int]:
    return {t.category.value: t.planned for t in report.tallies.values() if t.planned}


async def test_a_dry_run_changes_nothing_and_counts_exactly(store: EventStore) -> None:
    await seed(store)
    before = await snapshot(store)
    found = await retention.plan(store, RetentionPolicy())
    assert counts(retention.dry_run(found)) == {"jobs": 1, "snapshots": 1, "streams": 9}
    assert [(a.target, a.count) for a in found.actions if a.category is Category.STREAMS] == [
        ("keep-3", 7),
        ("keep-8", 2),
    ]
    assert await snapshot(store) == before
    assert retention.report_dict(retention.dry_run(found))["dry_run"] is True


async def test_applying_removes_exactly_the_plan_and_reads_stay_the_same(
    store: EventStore,
) -> None:
    await seed(store)
    before = await snapshot(store)
    found = await retention.plan(store, RetentionPolicy())
    report = await retention.apply(store, found)
    assert not report.failed
    assert {t.category.value: t.done for t in report.tallies.values() if t.done} == {
        "jobs": 1,
        "snapshots": 1,
        "streams": 9,
    }
    after = await snapshot(store)
    assert after["reads"] == before["reads"]  # reads showed exactly what is left
    gone = [e for e in before["log"] if e not in after["log"]]
    assert gone == [("keep-3", v) for v in range(7)] + [("keep-8", 0), ("keep-8", 1)]
    assert (await store.stream_info("keep-3")).truncated_before == 7
    assert (await store.stream_info("keep-3")).version == 9
    assert after["snapshots"][0] is not None
    assert after["snapshots"][1] is None
    assert after["jobs"] == ["old-run"]  # a running job is never removed, however old
    again = await retention.plan(store, RetentionPolicy())
    assert again.actions == ()


class CountingStore:
    """A store whose truncations are recorded: (stream, truncated_before, before_version)."""

    def __init__(self, inner: EventStore) -> None:
        self._inner = inner
        self.truncations: list[tuple[str, int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def truncate_stream(self, stream: str, before_version: int) -> None:
        low = (await self._inner.stream_info(stream)).truncated_before
        self.truncations.append((stream, low, before_version))
        await self._inner.truncate_stream(stream, before_version)


async def test_the_batch_size_bounds_every_transaction(store: EventStore) -> None:
    await seed(store)
    for n in range(5):
        await store.append(f"orphan-{n}", [NewEvent("Deposited", {})])
        await store.write_snapshot(f"orphan-{n}", 0, {})
        await store.delete_stream(f"orphan-{n}")
        await store.write_snapshot(f"orphan-{n}", 0, {})
    counting = CountingStore(store)
    policy = RetentionPolicy(batch_size=2)
    found = await retention.plan(counting, policy)  # type: ignore[arg-type]
    ticks: list[int] = []
    report = await retention.apply(counting, found, progress=ticks.append)  # type: ignore[arg-type]
    assert ticks == [1, 2, 2, 2, 2, 2, 2, 1, 2]  # a job, snapshots 2+2+2, events 2+2+2+1, 2
    assert counting.truncations == [
        ("keep-3", 0, 2), ("keep-3", 2, 4), ("keep-3", 4, 6), ("keep-3", 6, 7),
        ("keep-8", 0, 2),
    ]  # fmt: skip
    streams = report.tallies[Category.STREAMS]
    snapshots = report.tallies[Category.SNAPSHOTS]
    assert (streams.done, streams.batches) == (9, 5)
    assert (snapshots.done, snapshots.batches) == (6, 3)  # 2 + 2 + 2
    rule = next(a.rule for a in found.actions if isinstance(a, SnapshotDeletion))
    assert await retention_of(store).count_snapshots(rule) == 0


async def test_a_limit_caps_the_whole_run_and_the_next_run_goes_on(store: EventStore) -> None:
    await seed(store)
    policy = RetentionPolicy(jobs_days=None, snapshots_orphaned=False)
    found = await retention.plan(store, policy, limit=8)
    assert (found.total, found.limited) == (8, True)
    assert [(a.target, a.count) for a in found.actions] == [("keep-3", 7), ("keep-8", 1)]
    await retention.apply(store, found)
    assert (await store.stream_info("keep-8")).truncated_before == 1
    rest = await retention.plan(store, policy, limit=8)
    assert ([(a.target, a.count) for a in rest.actions], rest.limited) == ([("keep-8", 1)], False)


async def test_events_hidden_by_max_age_are_truncated(store: EventStore) -> None:
    await store.append("aged-2", [NewEvent("Deposited", {})])
    await store.set_stream_metadata("aged-2", max_age=2.0)
    await store.append("aged-1", [NewEvent("Deposited", {"i": i}) for i in range(4)])
    await store.set_stream_metadata("aged-1", max_age=2.0)
    await asyncio.sleep(2.2)
    await store.append("aged-1", [NewEvent("Deposited", {"i": i}) for i in range(4, 6)])
    shown = {s: await store.read_stream(s) for s in ("aged-1", "aged-2")}
    found = await retention.plan(store, RetentionPolicy(), categories=[Category.STREAMS])
    assert {a.target: a.count for a in found.actions} == {"aged-1": 4, "aged-2": 1}
    await retention.apply(store, found)
    assert {s: await store.read_stream(s) for s in ("aged-1", "aged-2")} == shown
    assert [e.version for e in shown["aged-1"]] == [4, 5]
    assert shown["aged-2"] == []
    assert [e.version for e in await store.read_all()] == [4, 5]
    await store.append("aged-2", [NewEvent("Deposited", {})])  # the stream lives on
    assert [e.version for e in await store.read_stream("aged-2")] == [1]


async def quarantine(store: EventStore, key: str, state: FailureState, when: datetime) -> None:
    failure = FailedKey(
        processor="balances", partition=0, key=key, position=1, event_id=uuid.uuid4(),
        event_type="Deposited", attempts=5, error="RuntimeError: no", stack="",
        first_failed_at=when, last_failed_at=when,
        next_retry_at=None if state is FailureState.QUARANTINED else when, state=state,
    )  # fmt: skip
    processing = processing_of(store)
    await processing.register_processor("balances", 1)
    async with processing.transaction() as tx:
        await tx.save_failure(failure)


async def test_unresolved_dead_letters_survive_unless_a_policy_skips_them(
    store: EventStore,
) -> None:
    await quarantine(store, "acct-old", FailureState.QUARANTINED, LONG_AGO)
    await quarantine(store, "acct-new", FailureState.QUARANTINED, datetime.now(UTC))
    await quarantine(store, "acct-retrying", FailureState.RETRYING, LONG_AGO)
    await retention.apply(store, await retention.plan(store, RetentionPolicy()))
    failures = {f.key: f for f in await processing_of(store).failures()}
    assert sorted(failures) == ["acct-new", "acct-old", "acct-retrying"]
    assert all(f.requested is None for f in failures.values())

    policy = RetentionPolicy(dead_letters_skip_days=30)
    found = await retention.plan(store, policy, categories=[Category.DEAD_LETTERS])
    assert [a.target for a in found.actions] == ["balances: key acct-old"]
    await retention.apply(store, found)
    requested = {f.key: f.requested for f in await processing_of(store).failures()}
    assert requested == {"acct-old": FailureAction.SKIP, "acct-new": None, "acct-retrying": None}


async def build_generation(store: EventStore, number: int) -> None:
    """Give a generation a checkpoint and a document, as a worker would have."""
    processing = processing_of(store)
    name = "balances" if number == 1 else f"balances~g{number}"
    collection = "balances" if number == 1 else f"balances~g{number}"
    await processing.register_processor(name, Balances.partitions)
    async with processing.transaction() as tx:
        await tx.set_checkpoint(name, 0, 1)
        await tx.documents.put(collection, "acct-1", {"generation": number})


async def documents(store: EventStore) -> list[int]:
    found = []
    async with processing_of(store).documents_reader() as docs:
        for number in range(1, 6):
            collection = "balances" if number == 1 else f"balances~g{number}"
            if await docs.get(collection, "acct-1") is not None:
                found.append(number)
    return found


async def test_live_kept_and_building_generations_are_never_dropped(store: EventStore) -> None:
    """No worker ran: generations 1 and 2 were replaced (only 1 may be dropped, the newest
    replaced one is kept), 3 is live, 4 is being built by a running replay."""
    processing = processing_of(store)
    await build_generation(store, 1)
    for number in (2, 3):
        replay = await start_replay(store, Balances())
        await build_generation(store, number)
        assert await processing.activate_generation("balances", number, completing=replay.id)
    building = await start_replay(store, Balances())
    await build_generation(store, 4)

    without_app = await retention.plan(store, RetentionPolicy(jobs_days=0))
    assert [a.category for a in without_app.actions] == [Category.JOBS, Category.JOBS]
    assert "give --app" in without_app.notes[Category.GENERATIONS][0]

    found = await retention.plan(store, RetentionPolicy(), processors=[Balances()])
    assert [a.target for a in found.actions] == ["balances generation 1"]
    await retention.apply(store, found)
    assert [g.generation for g in await generations(store, "balances")] == [4, 3, 2]
    assert await documents(store) == [2, 3, 4]

    # Finished jobs go (records only); the running replay stays until it is stopped.
    everything = RetentionPolicy(jobs_days=0)
    await retention.apply(store, await retention.plan(store, everything, processors=[Balances()]))
    assert [(j.generation, j.state) for j in await processing.jobs()] == [(4, JobState.RUNNING)]
    await stop_replay(store, building.id)
    found = await retention.plan(store, everything, processors=[Balances()])
    assert [a.target for a in found.actions] == [f"job {building.id} (balances generation 4)"]
    await retention.apply(store, found)
    assert await processing.jobs() == []
    assert [g.generation for g in await generations(store, "balances")] == [3, 2]
    assert await documents(store) == [2, 3]  # the stopped replay's build went with it


async def test_a_category_another_run_holds_is_skipped(store: EventStore) -> None:
    await seed(store)
    index = list(Category).index(Category.STREAMS)
    await processing_of(store).acquire_leases(retention.LEASE_NAME, [index], "other", 60)
    report = await retention.apply(store, await retention.plan(store, RetentionPolicy()))
    assert report.tallies[Category.STREAMS].done == 0
    assert "another retention run" in report.tallies[Category.STREAMS].notes[0]
    assert report.tallies[Category.SNAPSHOTS].done == 1  # other categories went ahead
    assert (await store.stream_info("keep-3")).truncated_before == 0
    leases = await processing_of(store).leases(retention.LEASE_NAME)
    assert [(lease.owner, lease.partition) for lease in leases] == [("other", index)]


async def test_the_schedule_runs_retention_inside_a_worker(store: EventStore) -> None:
    await seed(store)
    for n in range(3):
        await store.append(f"acct-{n}", [NewEvent("Deposited", {})])
    shown = await store.read_stream("keep-3")
    worker = Worker(store, [Balances()], lease_ttl=1.0, drain_timeout=5)
    policy = RetentionPolicy(interval=0.2)
    async with retention.scheduled(store, policy, processors=[Balances()], owner=worker.id):
        task = asyncio.create_task(worker.run())

        async def truncated() -> bool:
            info = await store.stream_info("keep-8")
            return info.truncated_before == 2 and await store.read_snapshot("snap-gone") is None

        await wait_for(truncated)
        await store.append("keep-3", [NewEvent("Deposited", {"i": 10})])

        async def again() -> bool:  # the next run truncates what the new event hid
            return (await store.stream_info("keep-3")).truncated_before == 8

        await wait_for(again)
        worker.stop()
        await asyncio.wait_for(task, 15)
    assert [e.version for e in await store.read_stream("keep-3")] == [8, 9, 10]
    assert (await store.read_stream("keep-3"))[:2] == shown[1:]
    assert sorted(j.processor for j in await processing_of(store).jobs()) == ["old-run"]


async def test_a_store_without_retention_is_refused() -> None:
    class Remote:
        engine = "http"

    with pytest.raises(ConfigurationError, match="cannot apply retention"):
        retention_of(Remote())  # type: ignore[arg-type]
