"""Group commit: concurrent appends of one store object share a transaction.

Every append transaction costs the client a round trip through the driver and the server a
transaction of its own (function call, locks, commit record), whatever it writes. When many
tasks of one process append at once, most of that work can be shared: at most
``transactions`` append transactions of a store run at a time, and the appends that arrive
meanwhile wait, then go together, as the parts of one ``kronika_append`` call (the function
behind multi-stream appends), as soon as one of them ends.

An append that finds no append running starts at once, on its own, in the caller's task: a
lone writer waits for nothing. Otherwise it waits. A group starts when a slot is free, once
the tasks that are ready to run (those the previous group woke) have queued their next
appends, and takes its share of the running and waiting appends spread over the slots, so
that groups that end together keep the slots evenly loaded. Grouping never changes what
an append does or reports:

- a group holds only independent single-stream appends without a condition, each stream at
  most once (a second append to a stream waits for the next group);
- each part keeps its own expected version, checked in group order under the same locks as
  alone, and gets its own version and positions;
- if the group fails as a whole (a part's expected version, a tombstoned stream, event ids
  stored before, a deadlock), nothing of it was written and every part runs again on its
  own, concurrently: each gets exactly the result or error it would have had alone. A group
  that fails because the database is unavailable fails every part with that error.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from kronika.domain.events import MultiAppendResult
from kronika.errors import Unavailable
from kronika.store.base import PreparedAppend

__all__ = ["GroupCommit"]

GROUP_APPENDS = 64
"""Most appends one group holds."""

GROUP_EVENTS = 1_000
"""Most events one group holds; a larger append goes alone."""

RunOne = Callable[[PreparedAppend], Awaitable[MultiAppendResult]]
RunGroup = Callable[[list[PreparedAppend]], Awaitable[list[MultiAppendResult] | None]]


@dataclass(slots=True)
class _Waiting:
    append: PreparedAppend
    future: asyncio.Future[MultiAppendResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit:
    """Runs a store's single-stream appends, at most ``transactions`` transactions at once.

    ``run_one`` appends on its own; ``run_group`` appends several in one transaction and
    returns their results in order, or ``None`` when the group wrote nothing and each must
    run on its own (see the module docstring).
    """

    def __init__(self, run_one: RunOne, run_group: RunGroup, transactions: int) -> None:
        self._run_one = run_one
        self._run_group = run_group
        self._limit = transactions
        self._running = 0
        self._in_flight = 0
        self._scheduled = False
        self._waiting: deque[_Waiting] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()

    async def append(self, append: PreparedAppend) -> MultiAppendResult:
        """Append now if no append transaction runs, else with the next group."""
        if not self._running and not self._waiting:
            self._running += 1
            self._in_flight += 1
            try:
                return await self._run_one(append)
            finally:
                self._ended(1)
        waiting = _Waiting(append)
        self._waiting.append(waiting)
        self._schedule()
        return await waiting.future

    async def drain(self) -> None:
        """Wait until no append runs or waits (before closing the pool)."""
        while self._running or self._waiting:
            self._idle.clear()
            await self._idle.wait()

    def _ended(self, appends: int) -> None:
        self._running -= 1
        self._in_flight -= appends
        if self._waiting:
            self._schedule()
        elif not self._running:
            self._idle.set()

    def _schedule(self) -> None:
        """Start a group soon, once the tasks that are ready to run have queued their appends:
        the callers of a group that just ended append again together."""
        if not self._scheduled and self._running < self._limit:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        """Start groups from the waiting appends while slots are free."""
        self._scheduled = False
        while self._waiting and self._running < self._limit:
            # As many appends as the running groups plus the waiting ones, spread over the
            # slots: groups that end together keep the slots evenly loaded.
            share = -(-(self._in_flight + len(self._waiting)) // self._limit)
            group = self._take(share)
            if not group:  # every waiting caller was cancelled
                break
            self._running += 1
            self._in_flight += len(group)
            task = asyncio.get_running_loop().create_task(self._commit(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not self._running:
            self._idle.set()

    def _take(self, share: int) -> list[_Waiting]:
        """The next group, in arrival order: appends whose callers still wait, each stream
        once, within the size limits. The others keep their places."""
        group: list[_Waiting] = []
        streams: set[str] = set()
        events = 0
        most = min(share, GROUP_APPENDS)
        kept: deque[_Waiting] = deque()
        while self._waiting and len(group) < most:
            waiting = self._waiting.popleft()
            if waiting.future.done():  # its caller was cancelled
                continue
            size = len(waiting.append.events)
            fits = waiting.append.stream not in streams and events + size <= GROUP_EVENTS
            if group and not fits:
                kept.append(waiting)
                continue
            group.append(waiting)
            streams.add(waiting.append.stream)
            events += size
        kept.extend(self._waiting)  # a full group leaves the rest where they were
        self._waiting = kept
        return group

    async def _commit(self, group: list[_Waiting]) -> None:
        try:
            results: list[MultiAppendResult] | None = None
            if len(group) > 1:
                try:
                    results = await self._run_group([w.append for w in group])
                except Unavailable as exc:
                    for waiting in group:
                        _settle(waiting.future, exc)
                    return
                except Exception:  # a part failed, so nothing was written: each runs alone
                    results = None
            if results is None:
                await asyncio.gather(*(self._alone(w) for w in group))
                return
            for waiting, result in zip(group, results, strict=True):
                _settle(waiting.future, result)
        except BaseException:  # cancelled (the loop is closing): nobody may wait forever
            for waiting in group:
                waiting.future.cancel()
            raise
        finally:
            self._ended(len(group))

    async def _alone(self, waiting: _Waiting) -> None:
        if waiting.future.done():
            return
        try:
            result = await self._run_one(waiting.append)
        except Exception as exc:  # handed to the waiting caller
            _settle(waiting.future, exc)
        else:
            _settle(waiting.future, result)


def _settle(future: asyncio.Future[MultiAppendResult], outcome: object) -> None:
    """Give a waiting caller its result or error, unless it stopped waiting."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        assert isinstance(outcome, MultiAppendResult)
        future.set_result(outcome)
