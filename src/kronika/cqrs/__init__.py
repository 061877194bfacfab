"""The write side: typed events, aggregates, repositories, sessions and commands."""

from kronika.cqrs.commands import CommandBus
from kronika.cqrs.registry import (
    Event,
    EventRegistry,
    MissingUpcast,
    default_registry,
    event,
    upcaster,
    validate,
)
from kronika.cqrs.repository import Repository, Session

__all__ = [
    "CommandBus",
    "Event",
    "EventRegistry",
    "MissingUpcast",
    "Repository",
    "Session",
    "default_registry",
    "event",
    "upcaster",
    "validate",
]
