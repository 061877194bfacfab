"""Workers run processors: leases, routing events to partitions, shutdown with a drain.

Every worker heartbeats and sees the same sorted list of live workers, so all of them
compute the same assignment (partition ``p`` goes to live worker ``p % n``). A worker claims
the leases of its partitions and releases the others; when a worker dies its heartbeat and
leases lapse after ``lease_ttl`` seconds and the survivors take its partitions over. Each
processing transaction checks the lease (see :mod:`.partition`), so two workers never both
commit work for one partition.

A worker runs one loop plus side tasks per processor: the lease keeper and the pipeline (a
subscription that routes each event to its partition's runner, and the runners). The first
side task that fails stops the worker. On :meth:`Worker.stop` intake stops, runners finish
what they hold within ``drain_timeout``, leases are released, and :meth:`Worker.run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncGenerator, Sequence

from kronika.domain.events import RecordedEvent
from kronika.runtime.generations import physical_name
from kronika.runtime.partition import PartitionRunner, Routed, partitioner
from kronika.runtime.processor import Processor
from kronika.runtime.progress import processing_of
from kronika.runtime.replay import REPLAY, ensure_tables, prune, try_complete
from kronika.runtime.saga import Saga
from kronika.store.base import StoreBase
from kronika.store.processing import JobState, LeaseLost
from kronika.store.protocol import EventStore

__all__ = ["ProcessorRunner", "Supervisor", "Worker", "assigned_partitions", "processing_of"]

log = logging.getLogger("kronika.runtime")


PAGE = 500
"""Events a router reads at a time."""
HOLD_PAGES = 8
"""Full pages a router routes before it lets the runners take what they hold, full batch
or not: while catching up the runners wait for full batches (fewer transactions), and
with many partitions that could otherwise hold back many events."""


async def _pages(
    store: EventStore,
    start: int,
    types: Sequence[str],
    categories: Sequence[str] | None,
) -> AsyncGenerator[list[RecordedEvent], None]:
    """A router's subscription, a page (at most :data:`PAGE` events) at a time, read on the
    processing path where the store has one (see ``StoreBase.subscribe_pages``). A page
    shorter than :data:`PAGE`, empty ones included, means the router has caught up."""
    if isinstance(store, StoreBase):
        pages = store.subscribe_pages(
            from_position=start,
            types=types,
            categories=categories,
            batch_size=PAGE,
            processing=True,
        )
        async with contextlib.aclosing(pages):
            async for page in pages:
                yield page
        return
    async for event in store.subscribe(from_position=start, types=types, categories=categories):
        yield [event]


def assigned_partitions(partitions: int, workers: Sequence[str], me: str) -> list[int]:
    """The partitions ``me`` should own when ``workers`` (sorted) are alive."""
    if me not in workers:
        return []
    index, count = workers.index(me), len(workers)
    return [p for p in range(partitions) if p % count == index]


class ProcessorRunner:
    """Runs one processor's partitions that this worker holds, until cancelled."""

    def __init__(
        self,
        processor: Processor,
        store: EventStore,
        *,
        owner: str,
        lease_ttl: float,
        drain_timeout: float,
        generation: int = 1,
    ) -> None:
        self.processor = processor
        self.generation = generation
        self.name = physical_name(processor.name, generation)
        """The name this generation's checkpoints and leases are kept under."""
        self.store = store
        self.processing = processing_of(store)
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.drain_timeout = drain_timeout
        self.owned: frozenset[int] = frozenset()
        self.runners: dict[int, PartitionRunner] = {}
        self._pipeline: asyncio.Task[None] | None = None
        self._routed = Routed(0)
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Keep leases and the pipeline in step until cancelled or stopped."""
        name = self.name
        await self.processing.register_processor(name, self.processor.partitions)
        try:
            while not self._stopping.is_set():
                await self._step()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.lease_ttl / 3):
                        await self._stopping.wait()
        finally:
            await self._stop_pipeline(drain=True)
            await self.processing.release_leases(name, self.owner)

    def stop(self) -> None:
        """Stop taking events; :meth:`run` drains and returns."""
        self._stopping.set()

    async def _step(self) -> None:
        name = self.name
        record = await self.processing.processor(name)
        workers = await self.processing.worker_heartbeat(self.owner, self.lease_ttl)
        paused = record is None or record.paused
        wanted = (
            [] if paused else assigned_partitions(self.processor.partitions, workers, self.owner)
        )
        failed = self._pipeline is not None and self._pipeline.done()
        if frozenset(wanted) != self.owned or failed:
            # Drain while the leases are still ours, then let the others have them.
            await self._stop_pipeline(drain=not failed)
            self.owned = frozenset()
        await self.processing.release_leases_except(name, self.owner, wanted)
        held = frozenset(
            await self.processing.acquire_leases(name, wanted, self.owner, self.lease_ttl)
        )
        if held != self.owned:
            await self._stop_pipeline(drain=True)
            self.owned = held
            if held:
                await self._start_pipeline()
        await self._deliver_requests()

    async def _deliver_requests(self) -> None:
        for failure in await self.processing.failures(self.name):
            runner = self.runners.get(failure.partition)
            if failure.requested is not None and runner is not None:
                runner.request(failure)

    async def _start_pipeline(self) -> None:
        record = await self.processing.processor(self.name)
        assert record is not None
        failures = await self.processing.failures(self.name)
        routed = self._routed = Routed(min(record.checkpoints.get(p, 0) for p in self.owned))
        self.runners = {
            p: PartitionRunner(
                self.processor,
                p,
                store=self.store,
                processing=self.processing,
                checkpoint=record.checkpoints.get(p, 0),
                owner=self.owner,
                failures={f.key: f for f in failures if f.partition == p},
                routed=routed,
                name=self.name,
                generation=self.generation,
            )
            for p in sorted(self.owned)
        }
        self._pipeline = asyncio.create_task(self._run_pipeline(), name=f"kronika-{self.name}")
        log.info(
            "partitions taken",
            extra={
                "action": "start",
                "processor": self.name,
                "partitions": sorted(self.owned),
            },
        )

    async def _run_pipeline(self) -> None:
        tasks = [
            asyncio.create_task(r.run(), name=f"partition-{p}") for p, r in self.runners.items()
        ]
        tasks.append(asyncio.create_task(self._route(), name="router"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None and not isinstance(task.exception(), LeaseLost):
                    log.error(
                        "processor pipeline failed",
                        exc_info=task.exception(),
                        extra={"processor": self.name},
                    )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _route(self) -> None:
        routed, runners = self._routed, self.runners
        start = min(r.checkpoint for r in runners.values()) + 1
        partition = partitioner(self.processor)
        pages = _pages(self.store, start, self.processor.types, self.processor.categories)
        held = 0  # full pages routed since the runners were last released
        async with contextlib.aclosing(pages):
            async for page in pages:
                # A full page: more events follow, the runners wait for full batches.
                routed.catching_up = len(page) >= PAGE
                for event in page:
                    runner = runners.get(partition(event))
                    if (
                        runner is not None
                        and event.position > runner.checkpoint
                        and not runner.inbox.offer(event)  # full: wait for room
                    ):
                        await runner.inbox.put(event)
                    routed.position = event.position
                held += 1
                if not routed.catching_up or held >= HOLD_PAGES:
                    held = 0
                    for runner in runners.values():
                        runner.inbox.release()

    async def _stop_pipeline(self, *, drain: bool) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is None:
            return
        pipeline.cancel()
        await asyncio.gather(pipeline, return_exceptions=True)
        if drain:
            with contextlib.suppress(TimeoutError):
                drains = (r.drain() for r in self.runners.values())
                async with asyncio.timeout(self.drain_timeout):
                    await asyncio.gather(*drains, return_exceptions=True)
        self.runners = {}


class Supervisor:
    """Keeps a processor's runners in line with what should run, one per generation.

    That is the live generation (unless the processor is paused) and, for a projection,
    the generation a running replay builds. The supervisor also finishes replays: once
    the new generation has caught up it makes it live (any worker may; one transaction
    decides), and when the live generation changes it prunes replaced ones. For a saga it
    fires the timeouts that fell due in the partitions this worker holds.
    """

    def __init__(
        self,
        processor: Processor,
        store: EventStore,
        *,
        owner: str,
        lease_ttl: float,
        drain_timeout: float,
    ) -> None:
        self.processor = processor
        self.store = store
        self.processing = processing_of(store)
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.drain_timeout = drain_timeout
        self.runners: dict[int, tuple[ProcessorRunner, asyncio.Task[None]]] = {}
        self._live: int | None = None
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Supervise until stopped (or a runner fails: its error is raised)."""
        await self.processing.register_processor(self.processor.name, self.processor.partitions)
        try:
            while not self._stopping.is_set():
                await self._step()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.lease_ttl / 3):
                        await self._stopping.wait()
        finally:
            for generation in list(self.runners):
                await self._stop(generation)

    def stop(self) -> None:
        """Stop every runner; :meth:`run` returns once they have drained."""
        self._stopping.set()

    async def _step(self) -> None:
        for _, task in self.runners.values():
            if task.done():
                task.result()  # a runner that ended on its own failed: let the worker know
        record = await self.processing.processor(self.processor.name)
        assert record is not None  # registered in run()
        replays = [
            job
            for job in await self.processing.jobs(self.processor.name)
            if job.kind == REPLAY and job.state is JobState.RUNNING
        ]
        wanted = {job.generation for job in replays}
        if not record.paused:
            wanted.add(record.generation)
        for generation in [g for g in self.runners if g not in wanted]:
            await self._stop(generation)
        for generation in sorted(wanted - set(self.runners)):
            await ensure_tables(self.processing, self.processor, generation)
            self._start(generation)
        for job in replays:
            await try_complete(self.store, self.processor, job)
        live = self.runners.get(record.generation)
        if isinstance(self.processor, Saga) and live is not None and live[0].owned:
            await self.processor.fire_due(self.store, live[0].owned)
        if self._live is not None and self._live != record.generation:
            await prune(self.store, self.processor)
        self._live = record.generation

    def _start(self, generation: int) -> None:
        runner = ProcessorRunner(
            self.processor,
            self.store,
            owner=self.owner,
            lease_ttl=self.lease_ttl,
            drain_timeout=self.drain_timeout,
            generation=generation,
        )
        task = asyncio.create_task(runner.run(), name=f"processor-{runner.name}")
        self.runners[generation] = (runner, task)

    async def _stop(self, generation: int) -> None:
        runner, task = self.runners.pop(generation)
        runner.stop()
        await asyncio.gather(task, return_exceptions=True)


class Worker:
    """Runs processors until :meth:`stop`; several workers share them through leases."""

    def __init__(
        self,
        store: EventStore,
        processors: Sequence[Processor],
        *,
        worker_id: str | None = None,
        lease_ttl: float = 10.0,
        drain_timeout: float = 30.0,
    ) -> None:
        names = [p.name for p in processors]
        if len(set(names)) != len(names):
            raise ValueError(f"processor names must be unique, got {names}")
        self.store = store
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.supervisors = [
            Supervisor(p, store, owner=self.id, lease_ttl=lease_ttl, drain_timeout=drain_timeout)
            for p in processors
        ]

    async def run(self) -> None:
        """Run every processor; returns after :meth:`stop` once drained."""
        log.info("worker started", extra={"action": "start", "worker": self.id})
        tasks = [
            asyncio.create_task(s.run(), name=f"supervisor-{s.processor.name}")
            for s in self.supervisors
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._leave()
            log.info("worker stopped", extra={"action": "stop", "worker": self.id})

    async def _leave(self) -> None:
        """Expire this worker's heartbeat, so the others take its partitions at once."""
        with contextlib.suppress(Exception):  # the store may be gone; the heartbeat then lapses
            await processing_of(self.store).worker_heartbeat(self.id, 0)

    def stop(self) -> None:
        """Stop intake; :meth:`run` returns when in-flight work is drained."""
        for supervisor in self.supervisors:
            supervisor.stop()
