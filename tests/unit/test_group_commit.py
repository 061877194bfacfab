"""How PostgreSQL's group commit forms and settles groups (kronika.store.postgres.group_commit).

The database side (one transaction per group, each append's own result) is proven against
PostgreSQL in tests/integration/test_postgres_group_commit.py; these tests drive the
scheduling with stand-ins for the store's two calls.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kronika import ANY
from kronika.domain.events import AppendResult, MultiAppendResult
from kronika.errors import ConcurrencyError, Unavailable
from kronika.store.base import PreparedAppend
from kronika.store.postgres.group_commit import GROUP_APPENDS, GROUP_EVENTS, GroupCommit


def part(stream: str, events: int = 1) -> PreparedAppend:
    placeholders: tuple[Any, ...] = (None,) * events
    return PreparedAppend(stream, ANY, placeholders)


def result_of(append: PreparedAppend) -> MultiAppendResult:
    version = len(append.events) - 1
    return MultiAppendResult(streams={append.stream: AppendResult(version, 7)}, position=7)


class Calls:
    """The store's calls, recording what ran; each waits for ``gate`` while it is closed."""

    def __init__(self) -> None:
        self.alone: list[str] = []
        self.groups: list[list[str]] = []
        self.gate = asyncio.Event()
        self.failing: set[str] = set()
        self.group_error: Exception | None = None
        self.group_wrote_nothing = False

    async def run_one(self, append: PreparedAppend) -> MultiAppendResult:
        self.alone.append(append.stream)
        await self.gate.wait()
        if append.stream in self.failing:
            raise ConcurrencyError(append.stream, 0, 1)
        return result_of(append)

    async def run_group(self, appends: list[PreparedAppend]) -> list[MultiAppendResult] | None:
        self.groups.append([a.stream for a in appends])
        await self.gate.wait()
        if self.group_error is not None:
            raise self.group_error
        if any(a.stream in self.failing for a in appends):
            raise ConcurrencyError(appends[0].stream, 0, 1)
        return None if self.group_wrote_nothing else [result_of(a) for a in appends]


async def started(commit: GroupCommit, *appends: PreparedAppend) -> list[asyncio.Task[Any]]:
    tasks = [asyncio.create_task(commit.append(a)) for a in appends]
    for _ in range(5):  # let them queue and the scheduled start run
        await asyncio.sleep(0)
    return tasks


async def test_a_lone_append_runs_at_once_on_its_own() -> None:
    calls = Calls()
    calls.gate.set()
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=2)
    assert await commit.append(part("a")) == result_of(part("a"))
    assert (calls.alone, calls.groups) == (["a"], [])


async def test_appends_that_wait_for_a_slot_go_together() -> None:
    calls = Calls()
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=1)
    first = await started(commit, part("first"))
    waiting = await started(commit, *(part(f"s-{n}") for n in range(5)))
    assert calls.groups == []  # the one slot is taken
    calls.gate.set()
    results = await asyncio.gather(*first, *waiting)
    assert calls.alone == ["first"]
    assert calls.groups == [[f"s-{n}" for n in range(5)]]
    assert [next(iter(r.streams)) for r in results] == ["first"] + [f"s-{n}" for n in range(5)]


async def test_groups_spread_the_appends_over_the_slots() -> None:
    calls = Calls()
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=2)
    first = await started(commit, part("first"))
    waiting = await started(commit, *(part(f"s-{n}") for n in range(7)))
    # 1 running and 7 waiting over 2 slots: a group of 4 now, the other 3 wait for a slot.
    assert calls.groups == [["s-0", "s-1", "s-2", "s-3"]]
    calls.gate.set()
    await asyncio.gather(*first, *waiting)
    # Both slots came free at once: the last 3 spread over them too.
    assert calls.groups == [["s-0", "s-1", "s-2", "s-3"], ["s-4", "s-5"]]
    assert calls.alone == ["first", "s-6"]


async def test_a_group_holds_each_stream_once_and_stays_within_its_limits() -> None:
    calls = Calls()
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=1)
    first = await started(commit, part("first"))
    many = [part(f"s-{n}") for n in range(GROUP_APPENDS + 2)]
    waiting = await started(
        commit, part("twice"), part("twice"), *many, part("big", GROUP_EVENTS), part("last")
    )
    calls.gate.set()
    await asyncio.gather(*first, *waiting)
    assert calls.groups[0] == ["twice"] + [f"s-{n}" for n in range(GROUP_APPENDS - 1)]
    assert calls.groups[1] == ["twice", "s-63", "s-64", "s-65", "last"]  # not "big": full
    assert calls.groups[2:] == []
    assert calls.alone == ["first", "big"]  # as many events as a group holds: on its own


async def test_each_append_of_a_failed_group_runs_again_alone() -> None:
    calls = Calls()
    calls.failing = {"bad"}
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=1)
    first = await started(commit, part("first"))
    waiting = await started(commit, part("good"), part("bad"), part("fine"))
    calls.gate.set()
    await asyncio.gather(*first)
    good, bad, fine = await asyncio.gather(*waiting, return_exceptions=True)
    assert calls.groups == [["good", "bad", "fine"]]
    assert calls.alone == ["first", "good", "bad", "fine"]
    assert good == result_of(part("good")) and fine == result_of(part("fine"))
    assert isinstance(bad, ConcurrencyError)


async def test_a_group_that_wrote_nothing_runs_each_append_alone() -> None:
    calls = Calls()
    calls.group_wrote_nothing = True  # e.g. some of its event ids were stored before
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=1)
    first = await started(commit, part("first"))
    waiting = await started(commit, part("a"), part("b"))
    calls.gate.set()
    assert await asyncio.gather(*first, *waiting) == [
        result_of(part(s)) for s in ("first", "a", "b")
    ]
    assert calls.alone == ["first", "a", "b"]


async def test_an_unavailable_database_fails_every_append_of_the_group() -> None:
    calls = Calls()
    calls.group_error = Unavailable("PostgreSQL is unavailable: connection lost")
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=1)
    first = await started(commit, part("first"))
    waiting = await started(commit, part("a"), part("b"))
    calls.gate.set()
    await asyncio.gather(*first)
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, Unavailable) for o in outcomes)
    assert calls.alone == ["first"]  # not tried again one by one


async def test_a_caller_that_stops_waiting_leaves_the_group() -> None:
    calls = Calls()
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=1)
    first = await started(commit, part("first"))
    kept, gone = await started(commit, part("kept"), part("gone"))
    gone.cancel()
    calls.gate.set()
    await asyncio.gather(*first, kept)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert calls.groups == [] and calls.alone == ["first", "kept"]


async def test_drain_waits_until_no_append_runs_or_waits() -> None:
    calls = Calls()
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=1)
    first = await started(commit, part("first"))
    waiting = await started(commit, part("a"), part("b"))
    draining = asyncio.create_task(commit.drain())
    await asyncio.sleep(0.01)
    assert not draining.done()
    calls.gate.set()
    await asyncio.wait_for(draining, timeout=5)
    assert calls.groups == [["a", "b"]]
    assert all(t.done() for t in first)
    await asyncio.gather(*waiting)
    await asyncio.wait_for(commit.drain(), timeout=1)  # nothing left: at once


async def test_drain_ends_when_every_waiting_caller_was_cancelled() -> None:
    calls = Calls()
    commit = GroupCommit(calls.run_one, calls.run_group, transactions=1)
    first = await started(commit, part("first"))
    (gone,) = await started(commit, part("gone"))
    gone.cancel()
    calls.gate.set()
    await asyncio.gather(*first)
    await asyncio.wait_for(commit.drain(), timeout=5)
    assert calls.alone == ["first"] and calls.groups == []
