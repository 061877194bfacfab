"""The event store: one protocol, several backends, chosen by URL."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kronika.errors import ConfigurationError
from kronika.store.protocol import EventStore

if TYPE_CHECKING:
    from kronika.store.inline import InlineHandler

__all__ = ["BACKENDS", "DEFAULT_URL", "EventStore", "open_store", "resolve_url"]

DEFAULT_URL = "sqlite:///kronika.db"
"""The store used when nothing is configured: ``./kronika.db`` in the working directory."""

BACKENDS: dict[str, str] = {
    "memory": "kronika.store.memory:MemoryEventStore",
    "sqlite": "kronika.store.sqlite:SQLiteEventStore",
    "postgresql": "kronika.store.postgres:PostgresEventStore",
    "postgres": "kronika.store.postgres:PostgresEventStore",
    "http": "kronika.store.http:HttpEventStore",
    "https": "kronika.store.http:HttpEventStore",
}
"""URL scheme -> ``module:Class`` of the backend; each class has ``from_url(url, **options)``."""


def resolve_url(url: str | None) -> str:
    """``url``, else ``$KRONIKA_DATABASE_URL``, else :data:`DEFAULT_URL`."""
    return url or os.environ.get("KRONIKA_DATABASE_URL") or DEFAULT_URL


def open_store(
    url: str | None = None, *, inline: Iterable[InlineHandler] = (), **options: Any
) -> EventStore:
    """Make a store for ``url`` without connecting; ``async with`` opens and closes it.

    URLs: ``memory://``, ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``,
    ``postgresql://user:pass@host:port/db?sslmode=require``, ``http://host:port`` (a
    ``kronika serve``, with ``token=...``). Options may be given as
    keyword arguments or in the URL's query string (see the configuration reference).

    ``inline`` lists inline projections (:class:`kronika.runtime.InlineProjection`) that
    every append updates in its own transaction (SQLite, PostgreSQL; documents-only ones on
    memory). Register the same ones in every process that appends.
    """
    url = resolve_url(url)
    scheme = url.partition(":")[0].lower()
    target = BACKENDS.get(scheme.split("+")[0])
    if target is None or "://" not in url:
        raise ConfigurationError(
            f"unsupported store URL {url.split('@')[-1]!r}: use memory://, sqlite:///PATH, "
            "postgresql://... or http(s)://HOST:PORT (a kronika server)"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"the {scheme} backend needs an optional dependency ({exc.name}); "
            f"install it with: pip install 'kronika[{scheme.removesuffix('ql')}]'"
        ) from None
    store: EventStore = getattr(module, class_name).from_url(url, **options)
    if inline:
        from kronika.store.base import StoreBase  # only now: most stores have none

        if not isinstance(store, StoreBase):  # pragma: no cover - every backend is one
            raise ConfigurationError(f"the {scheme} backend cannot run inline projections")
        store.register_inline(inline)
    return store
