"""One partition of one processor: events in order, in batches, with failing keys parked.

The runner takes events from its :class:`Inbox` and handles up to ``batch_size`` of them in
one transaction that also moves the partition's checkpoint. If the batch fails, it is rolled
back and handled again one event per transaction, so the failing event is found. Its key
is *parked* (a :class:`~kronika.store.processing.FailedKey` saved with the checkpoint) and
later events of that key are passed over, while the partition goes on with other keys.
A parked key is retried with backoff from the failing event; after its last attempt it is
*quarantined* until an operator retries or skips it.

Every transaction is fenced by the partition's lease: ``set_checkpoint(..., owner=...)``
fails with ``LeaseLost`` when another worker has taken the partition, so two workers never
both commit work for one partition.

Speed: catching up, the runtime's own work per event must stay small next to reading the
event. The router hands events over through a plain deque (:class:`Inbox`) and remembers
each key's partition (:func:`partitioner`); with no tracer provider set, a batch's events
are handled without a span each, the causation ids are made strings only if a handler
appends (:func:`~kronika.domain.context.set_cause`), and the handler durations are
observed once per batch (:func:`~kronika.observability.metrics.handler_durations`).
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from time import perf_counter

from kronika.domain.context import CORRELATION_ID, reset_cause, set_cause
from kronika.domain.events import RecordedEvent
from kronika.observability import metrics
from kronika.observability.logging import (
    event_log_context,
    handling,
    reset_event_log_context,
    set_event_log_context,
)
from kronika.observability.tracing import tracing_enabled
from kronika.runtime.processor import Context, Processor, partition_of
from kronika.store.processing import (
    FailedKey,
    FailureAction,
    FailureState,
    LeaseLost,
    ProcessingStore,
    ProcessingTransaction,
)
from kronika.store.protocol import EventStore

__all__ = ["Inbox", "PartitionRunner", "Routed", "events_of_key", "partitioner"]

log = logging.getLogger("kronika.runtime")
IDLE_CHECKPOINT = timedelta(seconds=2)
"""How often, at most, an idle partition moves its checkpoint up to the router's position."""
Clock = Callable[[], datetime]
KEYS_REMEMBERED = 100_000
"""Keys whose partition :func:`partitioner` remembers (it forgets them all beyond that)."""


def _now() -> datetime:
    return datetime.now(UTC)


async def events_of_key(
    store: EventStore, processor: Processor, key: str, start: int, end: int
) -> list[RecordedEvent]:
    """The processor's events of ``key`` with positions from ``start`` to ``end`` inclusive."""
    found: list[RecordedEvent] = []
    position = start
    while position <= end:
        page = await store.read_all(
            from_position=position,
            limit=1_000,
            types=processor.types,
            categories=processor.categories,
        )
        for event in page:
            if event.position > end:
                return found
            if processor.key(event) == key:
                found.append(event)
        if not page:
            break
        position = page[-1].position + 1
    return found


def partitioner(processor: Processor) -> Callable[[RecordedEvent], int]:
    """``processor.partition``, remembering each key's partition (hashing is the costly
    part); a processor that overrides ``partition`` gets it called for every event."""
    if type(processor).partition is not Processor.partition:
        return processor.partition
    key, partitions = processor.key, processor.partitions
    known: dict[str, int] = {}

    def partition(event: RecordedEvent) -> int:
        k = key(event)
        found = known.get(k)
        if found is None:
            if len(known) >= KEYS_REMEMBERED:
                known.clear()
            found = known[k] = partition_of(k, partitions)
        return found

    return partition


class Routed:
    """How far a processor's router has queued events: shared by its partition runners."""

    __slots__ = ("catching_up", "position")

    def __init__(self, position: int) -> None:
        self.position = position
        self.catching_up = False
        """True while the router reads full pages (more events are on their way): the
        runners then wait for a full batch, so that catching up takes few transactions."""


class Inbox:
    """Events routed to one partition, oldest first: the router puts, the runner takes.

    What ``asyncio.Queue`` does, for less per event: the router waits only while the inbox
    holds ``limit`` events, and the runner takes a whole batch at once. While the router
    is catching up (``routed.catching_up``) the inbox is *ready* for the runner only once
    it holds ``batch`` events, or when the router has caught up (:meth:`release`).
    """

    __slots__ = ("_events", "_ready", "_room", "batch", "limit", "routed")

    def __init__(self, limit: int, *, batch: int = 1, routed: Routed | None = None) -> None:
        self.limit = limit
        """Events the inbox holds before :meth:`put` waits."""
        self.batch = batch
        """Events the runner waits for while the router catches up."""
        self.routed = routed if routed is not None else Routed(0)
        self._events: deque[RecordedEvent] = deque()
        self._ready = asyncio.Event()
        """Set while the runner should take events."""
        self._room = asyncio.Event()
        """Set while fewer than ``limit`` events wait."""
        self._room.set()

    def __len__(self) -> int:
        return len(self._events)

    def offer(self, event: RecordedEvent) -> bool:
        """Add an event if there is room (False if the inbox is full)."""
        events = self._events
        if len(events) >= self.limit:
            return False
        events.append(event)
        if len(events) >= self.batch or not self.routed.catching_up:
            self._ready.set()
        return True

    async def put(self, event: RecordedEvent) -> None:
        """Add an event, after waiting for room if the inbox is full."""
        while not self.offer(event):
            self._room.clear()
            await self._room.wait()

    def release(self) -> None:
        """The router has caught up: the events that wait may be taken, however few."""
        if self._events:
            self._ready.set()

    def ready(self) -> bool:
        """Whether the runner should take events now."""
        return self._ready.is_set()

    async def wait(self) -> None:
        """Return once the inbox is ready."""
        await self._ready.wait()

    def take(self, most: int) -> list[RecordedEvent]:
        """Up to ``most`` events, oldest first (none when empty)."""
        events = self._events
        if len(events) <= most:
            batch = list(events)
            events.clear()
        else:
            batch = [events.popleft() for _ in range(most)]
        if not events or (len(events) < self.batch and self.routed.catching_up):
            self._ready.clear()
        if len(events) < self.limit:
            self._room.set()
        return batch


class PartitionRunner:
    """Handles the events of one partition, in order, until cancelled."""

    def __init__(
        self,
        processor: Processor,
        partition: int,
        *,
        store: EventStore,
        processing: ProcessingStore,
        checkpoint: int,
        failures: dict[str, FailedKey],
        owner: str,
        routed: Routed | None = None,
        name: str | None = None,
        generation: int = 1,
        clock: Clock = _now,
    ) -> None:
        self.processor = processor
        self.name = name or processor.name
        """The name its state is kept under: the processor's, or one generation's of it."""
        self.generation = generation
        """The read-model generation its handlers write (see :mod:`.generations`)."""
        self.partition = partition
        self.store = store
        self.processing = processing
        self.checkpoint = checkpoint
        self.failures = failures
        self.owner = owner
        self.clock = clock
        self.routed = routed if routed is not None else Routed(checkpoint)
        """Every event of this partition up to ``routed.position`` has been queued (the
        router moves it, once for all partitions)."""
        batch = processor.batch_size
        self.inbox = Inbox(batch * 4, batch=batch, routed=self.routed)
        self.requests: list[FailedKey] = []
        self.handled = 0
        self._idle_saved_at: datetime | None = None
        self.interrupted = False
        """True while work is under way: if the runner is cancelled then, its in-flight
        events were not handled (or not known to be), so it must not handle later ones."""

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Handle queued events and due retries until cancelled."""
        while True:
            self.interrupted = True  # _next_batch may take events out of the inbox
            batch = await self._next_batch()
            await self.retry_due()
            if batch:
                await self.process(batch)
            elif not self.inbox:
                await self._advance_idle()
            self.interrupted = False

    async def _next_batch(self) -> list[RecordedEvent]:
        if not self.inbox.ready():
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                async with asyncio.timeout(self._idle_timeout()):
                    await self.inbox.wait()
            except TimeoutError:
                return []
        return self.inbox.take(self.processor.batch_size)

    def _idle_timeout(self) -> float:
        due = [f.next_retry_at for f in self.failures.values() if f.next_retry_at is not None]
        if not due:
            return 1.0
        return max(0.0, min(1.0, (min(due) - self.clock()).total_seconds()))

    async def _advance_idle(self) -> None:
        """Move an idle partition's checkpoint up to the router's position, now and then.

        A partition whose keys see no events would otherwise keep an old checkpoint while
        the log moves on: lag scans and replay progress would start from there every time.
        Everything up to the router's position that belongs here has been queued and, the inbox
        being empty, handled; so the checkpoint may say so.
        """
        now = self.clock()
        recent = self._idle_saved_at is not None and now - self._idle_saved_at < IDLE_CHECKPOINT
        position = self.routed.position
        if position <= self.checkpoint or recent:
            return
        async with self.processing.transaction() as tx:
            await self._fence(tx, position)
        self.checkpoint = position
        self._idle_saved_at = now

    async def drain(self) -> None:
        """Handle everything already queued (used on shutdown), unless the runner was
        interrupted mid-batch: handling later events would skip the interrupted ones."""
        if self.interrupted:
            return
        batch = self.inbox.take(len(self.inbox))
        if batch:
            await self.process(batch)

    # -- handling ---------------------------------------------------------------------

    async def process(self, batch: list[RecordedEvent]) -> None:
        """Handle a batch in one transaction; on failure find and park the failing key."""
        events = [e for e in batch if e.position > self.checkpoint]
        if not events:
            return
        try:
            async with self.processing.transaction() as tx:
                await self._handle(events, tx)
                await self._fence(tx, events[-1].position)
        except LeaseLost:
            raise
        except Exception:
            await self._one_by_one(events)
        else:
            self.handled += len(events)
        self.checkpoint = events[-1].position

    async def _one_by_one(self, events: list[RecordedEvent]) -> None:
        for event in events:
            key = self.processor.key(event)
            if key not in self.failures:
                try:
                    async with self.processing.transaction() as tx:
                        await self._call(event, tx)
                        await self._fence(tx, event.position)
                    self.handled += 1
                    continue
                except LeaseLost:
                    raise
                except Exception as exc:
                    await self._park(event, exc)
        async with self.processing.transaction() as tx:
            await self._fence(tx, events[-1].position)

    async def _handle(self, events: list[RecordedEvent], tx: ProcessingTransaction) -> None:
        """Call the handler of every event whose key is not parked, in order."""
        failures, key = self.failures, self.processor.key
        if tracing_enabled():  # a span per event: the traced path
            for event in events:
                if not failures or key(event) not in failures:  # no key() call when none
                    await self._call(event, tx)
            return
        handle, store, generation = self.processor.handle, self.store, self.generation
        name, partition = self.name, self.partition
        durations: list[float] = []
        try:
            for event in events:
                if failures and key(event) in failures:
                    continue
                cause = set_cause(event.id, event.metadata.get(CORRELATION_ID))
                logged = set_event_log_context(name, partition, event)
                started = perf_counter()
                try:
                    await handle(event, Context(event, tx, store, generation))
                finally:
                    durations.append(perf_counter() - started)
                    reset_event_log_context(logged)
                    reset_cause(cause)
        finally:
            metrics.handler_durations(self.processor.name, durations)

    async def _call(self, event: RecordedEvent, tx: ProcessingTransaction) -> None:
        cause = set_cause(event.id, event.metadata.get(CORRELATION_ID))
        try:
            with handling(self.name, self.partition, event):
                handled = self.processor.handle(
                    event, Context(event, tx, self.store, self.generation)
                )
                await metrics.timed_handler(self.processor.name, handled)
        finally:
            reset_cause(cause)

    async def _fence(self, tx: ProcessingTransaction, position: int) -> None:
        await tx.set_checkpoint(self.name, self.partition, position, owner=self.owner)

    # -- failures ---------------------------------------------------------------------

    async def _park(self, event: RecordedEvent, exc: Exception) -> None:
        now = self.clock()
        failure = self._next_attempt(
            FailedKey(
                processor=self.name,
                partition=self.partition,
                key=self.processor.key(event),
                position=event.position,
                event_id=event.id,
                event_type=event.type,
                attempts=0,
                error="",
                stack="",
                first_failed_at=now,
                last_failed_at=now,
                next_retry_at=None,
                state=FailureState.RETRYING,
            ),
            event,
            exc,
        )
        async with self.processing.transaction() as tx:
            await tx.save_failure(failure)
            await self._fence(tx, event.position)

    def _next_attempt(self, failure: FailedKey, event: RecordedEvent, exc: Exception) -> FailedKey:
        attempts = failure.attempts + 1
        quarantined = attempts >= self.processor.retry.max_attempts
        now = self.clock()
        updated = replace(
            failure,
            position=event.position,
            event_id=event.id,
            event_type=event.type,
            attempts=attempts,
            error=f"{type(exc).__name__}: {exc}",
            stack="".join(traceback.format_exception(exc)),
            last_failed_at=now,
            next_retry_at=None
            if quarantined
            else now + timedelta(seconds=self.processor.retry.delay(attempts)),
            state=FailureState.QUARANTINED if quarantined else FailureState.RETRYING,
        )
        self.failures[updated.key] = updated
        with event_log_context(self.name, self.partition, event):  # hides its personal values
            log.warning(
                "handler failed",
                extra={
                    "action": "quarantine" if quarantined else "park",
                    "processor": self.name,
                    "partition": self.partition,
                    "key": updated.key,
                    "event_id": str(event.id),
                    "event_type": event.type,
                    "attempts": attempts,
                    "error": updated.error,
                },
            )
        return updated

    def request(self, failure: FailedKey) -> None:
        """Queue an operator's request (from storage) for this runner's own loop to carry out."""
        self.requests.append(failure)

    async def _apply_requests(self) -> None:
        if not self.requests:
            return
        self.requests.clear()
        current = {f.key: f for f in await self.processing.failures(self.name)}
        for stored in current.values():
            local = self.failures.get(stored.key)
            if local is None or stored.requested is None or stored.partition != self.partition:
                continue
            now = self.clock()
            if stored.requested is FailureAction.SKIP:
                local = replace(local, position=local.position + 1)
            local = replace(local, attempts=0, state=FailureState.RETRYING, next_retry_at=now)
            self.failures[local.key] = local
            async with self.processing.transaction() as tx:
                await tx.save_failure(local)
                await tx.clear_request(self.name, local.key)
                await self._fence(tx, self.checkpoint)
            log.info(
                "operator request",
                extra={
                    "action": stored.requested.value,
                    "processor": self.name,
                    "key": local.key,
                },
            )

    async def retry_due(self) -> None:
        """Carry out operators' requests, then retry every parked key whose time has come."""
        await self._apply_requests()
        now = self.clock()
        for failure in list(self.failures.values()):
            due = failure.next_retry_at
            if failure.state is FailureState.RETRYING and due is not None and due <= now:
                await self._retry(failure)

    async def _retry(self, failure: FailedKey) -> None:
        events = await events_of_key(
            self.store, self.processor, failure.key, failure.position, self.checkpoint
        )
        for event in events:
            try:
                async with self.processing.transaction() as tx:
                    await self._call(event, tx)
                    failure = replace(failure, position=event.position + 1)
                    await tx.save_failure(failure)
                    await self._fence(tx, self.checkpoint)
                self.failures[failure.key] = failure
                self.handled += 1
            except LeaseLost:
                raise
            except Exception as exc:
                failure = self._next_attempt(failure, event, exc)
                async with self.processing.transaction() as tx:
                    await tx.save_failure(failure)
                    await self._fence(tx, self.checkpoint)
                return
        async with self.processing.transaction() as tx:
            await tx.clear_failure(self.name, failure.key)
            await self._fence(tx, self.checkpoint)
        self.failures.pop(failure.key, None)
        log.info(
            "parked key recovered",
            extra={"action": "unpark", "processor": self.name, "key": failure.key},
        )
