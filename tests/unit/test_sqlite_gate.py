"""The SQLite backend's write gate: first come, first served, handed over on any thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from kronika.errors import Unavailable
from kronika.store.sqlite.gate import WriteGate, gate_for


def test_waiters_get_their_turn_in_arrival_order() -> None:
    gate = WriteGate(Path("db"))
    gate.enter(1)
    order: list[int] = []

    def wait(n: int) -> None:
        gate.enter(5)
        order.append(n)
        gate.leave()

    threads = []
    for n in range(5):
        thread = threading.Thread(target=wait, args=(n,))
        thread.start()
        threads.append(thread)
        time.sleep(0.02)  # each queues before the next starts
    gate.leave()
    for thread in threads:
        thread.join(5)
    assert order == list(range(5))


def test_a_waiter_gives_up_after_the_timeout_and_leaves_the_queue() -> None:
    gate = WriteGate(Path("db"))
    gate.enter(1)
    with pytest.raises(Unavailable, match="busy"):
        gate.enter(0.05)
    gate.leave()
    gate.enter(0)  # free again: the waiter that gave up is not in the way
    gate.leave()


def test_a_turn_may_end_on_another_thread() -> None:
    gate = WriteGate(Path("db"))
    gate.enter(1)
    thread = threading.Thread(target=gate.leave)
    thread.start()
    thread.join(5)
    gate.enter(0.5)
    gate.leave()


def test_one_gate_per_file(tmp_path: Path) -> None:
    assert gate_for(tmp_path / "a.db") is gate_for(tmp_path / "." / "a.db")
    assert gate_for(tmp_path / "a.db") is not gate_for(tmp_path / "b.db")
