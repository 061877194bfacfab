"""Deciders: the functional alternative to aggregate classes.

A decider is three pure functions: ``initial()`` gives the state of a new entity,
``evolve(state, event)`` folds one event into the state, and ``decide(command, state)``
returns the events a command produces (or raises a :class:`~kronika.errors.DomainError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from kronika.errors import ConfigurationError

__all__ = ["Decider"]

C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E")


@dataclass(frozen=True, slots=True, kw_only=True)
class Decider(Generic[C, S, E]):
    """Pure functions that decide and evolve one kind of entity."""

    category: str
    """Stream category: the entity ``id`` lives in stream ``f"{category}-{id}"``."""
    initial: Callable[[], S]
    """The state before any event."""
    evolve: Callable[[S, E], S]
    """The state after one more event."""
    decide: Callable[[C, S], Iterable[E]]
    """The events a command produces from the current state."""

    def __post_init__(self) -> None:
        if not self.category or "-" in self.category:
            raise ConfigurationError("a decider's category must be non-empty and contain no '-'")

    def fold(self, events: Iterable[E], state: S | None = None) -> S:
        """Evolve ``state`` (or the initial state) through ``events``."""
        current = self.initial() if state is None else state
        for event in events:
            current = self.evolve(current, event)
        return current

    def stream(self, entity_id: str) -> str:
        """The stream of one entity."""
        return f"{self.category}-{entity_id}"
