"""The global options every command shares, and running async store work from a command.

Commands reach either a database (``--url``, the default) or a running ``kronika serve``
(``--server``, or an ``http(s)://`` ``--url``) with a bearer ``--token``. Store commands
then use the HTTP client store; the administration commands use the server's API (see
:mod:`kronika.cli.operations`). ``serve``, ``worker`` and ``migrate`` always work on the
database: they are the deployment, not clients of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import typer

from kronika.errors import ConfigurationError
from kronika.store import EventStore, open_store, resolve_url
from kronika.store.options import redact_url

__all__ = ["Settings", "run", "settings_of", "with_store"]

T = TypeVar("T")


def _is_http(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


def _server(value: str) -> str:
    """``--server``: an ``http(s)://HOST[:PORT][/PREFIX]`` URL, without a trailing ``/``."""
    parts = urlsplit(value)
    if not _is_http(value) or not parts.hostname:
        raise ConfigurationError(
            f"--server must look like http://HOST:PORT or https://HOST:PORT, got "
            f"{redact_url(value)!r} (a database URL goes in --url)"
        )
    return value.rstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What the global options chose."""

    url: str
    """The store URL (``--url``, else ``$KRONIKA_DATABASE_URL``, else the default)."""
    namespace: str | None
    """The namespace (``--namespace``), or ``None`` for the store's default."""
    server: str | None = None
    """The server to work through (``--server``, ``$KRONIKA_SERVER``, or an http(s) ``--url``);
    ``None`` to work on the database."""
    token: str | None = None
    """The bearer token for the server (``--token`` or ``$KRONIKA_TOKEN``)."""

    @classmethod
    def from_options(
        cls,
        url: str | None,
        namespace: str | None,
        server: str | None = None,
        token: str | None = None,
    ) -> Settings:
        """Resolve the URL the same way :func:`kronika.open_store` does; an ``http(s)`` one
        is the server when ``--server`` is not given."""
        resolved = resolve_url(url)
        if server is None and _is_http(resolved):
            server = resolved
        return cls(
            url=resolved,
            namespace=namespace,
            server=None if server is None else _server(server),
            token=token or None,
        )

    @property
    def remote(self) -> bool:
        """True when commands go through a server."""
        return self.server is not None

    @property
    def shown_url(self) -> str:
        """Where commands go, with any password replaced by ``***`` (for messages)."""
        return self.server or redact_url(self.url)

    def store_options(self, **extra: Any) -> dict[str, Any]:
        """Keyword options for :func:`kronika.open_store`."""
        options = dict(extra)
        if self.namespace is not None:
            options["namespace"] = self.namespace
        return options

    def make_store(self, **extra: Any) -> EventStore:
        """The configured store, not yet opened: the server's (over HTTP) when remote."""
        if self.server is None:
            return self.database_store(**extra)
        if self.token is not None:
            extra["token"] = self.token
        return open_store(self.server, **self.store_options(**extra))

    def database_store(self, **extra: Any) -> EventStore:
        """The store of ``--url``, even when a server is configured (worker, migrate)."""
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
