"""The in-memory backend (``memory://``)."""

from kronika.store.memory.store import MemoryEventStore

__all__ = ["MemoryEventStore"]
