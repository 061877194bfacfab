"""The global options every command shares, and running async store work from a command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import typer

from kronika.store import EventStore, open_store, resolve_url

__all__ = ["Settings", "run", "settings_of", "with_store"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What the global options chose."""

    url: str
    """The store URL (``--url``, else ``$KRONIKA_DATABASE_URL``, else the default)."""
    namespace: str | None
    """The namespace (``--namespace``), or ``None`` for the store's default."""

    @classmethod
    def from_options(cls, url: str | None, namespace: str | None) -> Settings:
        """Resolve the URL the same way :func:`kronika.open_store` does."""
        return cls(url=resolve_url(url), namespace=namespace)

    def store_options(self, **extra: Any) -> dict[str, Any]:
        """Keyword options for :func:`kronika.open_store`."""
        options = dict(extra)
        if self.namespace is not None:
            options["namespace"] = self.namespace
        return options

    def make_store(self, **extra: Any) -> EventStore:
        """The configured store, not yet opened."""
        return open_store(self.url, **self.store_options(**extra))


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root command stored on the context."""
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):  # a sub-app invoked on its own, as in tests
        settings = Settings.from_options(None, None)
    return settings


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop."""
    return asyncio.run(coro)


def with_store(ctx: typer.Context, action: Callable[[EventStore], Awaitable[T]]) -> T:
    """Open the configured store, run ``action`` with it, close it, and return the result."""
    store = settings_of(ctx).make_store()

    async def go() -> T:
        async with store:
            return await action(store)

    return run(go())
