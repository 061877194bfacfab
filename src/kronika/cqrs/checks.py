"""Checks over what is stored, for operators and CI (the CLI calls them too)."""

from __future__ import annotations

from kronika.cqrs.registry import EVENT_VERSION, EventRegistry, MissingUpcast, default_registry
from kronika.store.protocol import EventStore

__all__ = ["stored_event_types", "unreadable_event_types"]


async def stored_event_types(
    store: EventStore, *, batch_size: int = 5_000
) -> dict[tuple[str, int], int]:
    """Count the stored events per (type, version) pair, scanning the global log."""
    counts: dict[tuple[str, int], int] = {}
    position = 0
    while batch := await store.read_all(from_position=position, limit=batch_size):
        for event in batch:
            version = event.metadata.get(EVENT_VERSION, 1)
            key = (event.type, version if isinstance(version, int) else 0)
            counts[key] = counts.get(key, 0) + 1
        position = batch[-1].position + 1
    return counts


async def unreadable_event_types(
    store: EventStore,
    registry: EventRegistry = default_registry,
    *,
    ignore_unregistered: bool = False,
) -> list[MissingUpcast]:
    """Stored (type, version) pairs with no path to a registered class (B4).

    With ``ignore_unregistered=True`` types that no class claims are left out, for stores
    shared with other applications.
    """
    missing = registry.missing_upcasts(await stored_event_types(store))
    if ignore_unregistered:
        missing = [m for m in missing if "no class is registered" not in m.reason]
    return missing
