"""One queue per database file for this process's writing connections.

A store's writer thread and its processing connection (see :mod:`.processing_connection`)
both take SQLite's write lock. SQLite makes a connection that finds the lock taken poll
for it, sleeping up to 100 ms between tries, so two busy connections of one process would
spend most of their time asleep. Instead they queue here, first come first served, and
each hands the lock straight to the next one when its transaction ends. Connections of
other processes still meet SQLite's polling (``busy_timeout``).
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path

from kronika.errors import Unavailable

__all__ = ["WriteGate", "gate_for"]


class WriteGate:
    """A first-come-first-served lock that may be taken and given back on any thread."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: collections.deque[threading.Lock] = collections.deque()

    def enter(self, timeout: float) -> None:
        """Wait for our turn, or raise ``Unavailable`` after ``timeout`` seconds."""
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        if turn.acquire(timeout=timeout) or not self._give_up(turn):
            return
        raise Unavailable(
            f"the SQLite database {self._path} is busy: another writer of this process kept "
            "it for longer than the busy timeout; try again, or raise 'busy_timeout'"
        )

    def _give_up(self, turn: threading.Lock) -> bool:
        """Leave the queue after a timeout; False if the turn came just now after all."""
        with self._mutex:
            try:
                self._waiting.remove(turn)
            except ValueError:
                return False
            return True

    def leave(self) -> None:
        """End our turn: hand it to the next in the queue, if any."""
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._held = False


_GATES: dict[Path, WriteGate] = {}
_GATES_LOCK = threading.Lock()


def gate_for(path: Path) -> WriteGate:
    """The gate of a database file (one per file and process)."""
    key = path.resolve()
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = WriteGate(key)
        return gate
