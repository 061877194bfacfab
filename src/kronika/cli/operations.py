"""What the administration commands do, on a database or through a running server.

A command asks :func:`operate` to run its action with an :class:`Operations`, then renders
what comes back. :class:`~kronika.cli.local.LocalOperations` works on the store of ``--url``
through the runtime's admin API; :class:`~kronika.cli.remote.RemoteOperations` calls the
HTTP API of the server of ``--server``. Both answer in the HTTP API's JSON shapes
(``status_dict``, ``failure_dict``, ``job_dict``, ``key_dict`` ...) and give events as
:class:`~kronika.domain.events.RecordedEvent`, so one rendering serves both and ``--json``
prints the same lines either way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol, TypeVar

import typer

from kronika.cli.context import Settings, run, settings_of
from kronika.domain.events import RecordedEvent

__all__ = ["FailureAction", "NewKey", "Operations", "operate"]

T = TypeVar("T")
JSONObject = dict[str, Any]
FailureAction = Literal["retry", "skip"]
"""What an operator asks of the worker owning a failed key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewKey:
    """An API key to create (``kronika keys create``)."""

    roles: tuple[str, ...]
    """The roles it grants."""
    categories: tuple[str, ...] | None = None
    """The stream categories it is limited to (``None``: all)."""
    name: str = ""
    """A label, such as ``ci-deploy``."""
    expires_in: timedelta | None = None
    """Its lifetime (``None``: it never expires)."""


class Operations(Protocol):
    """The operator's actions on processors, replays, keys and the maintenance switch."""

    async def processors(self) -> list[JSONObject]:
        """Every processor that has run: state, position and lag (``status_dict``)."""
        ...

    async def failed(self, processor: str | None) -> list[JSONObject]:
        """Parked and quarantined keys, oldest first (``failure_dict``)."""
        ...

    async def dead_letters(self, processor: str, key: str) -> list[RecordedEvent]:
        """The events a failed key holds back, from the failing one on."""
        ...

    async def request(self, action: FailureAction, processor: str, key: str) -> None:
        """Ask the worker owning a failed key to retry or skip it."""
        ...

    async def pause(self, processor: str) -> None:
        """Pause a processor."""
        ...

    async def resume(self, processor: str) -> None:
        """Resume a paused processor."""
        ...

    async def start_replay(self, processor: str) -> JSONObject:
        """Start a blue/green replay of a projection; the job (``job_dict``)."""
        ...

    async def replays(self) -> list[JSONObject]:
        """Every replay job with its progress, oldest first (replay ``status_dict``)."""
        ...

    async def generations(self, processor: str) -> list[JSONObject]:
        """A projection's kept generations, newest first (``generation_dict``)."""
        ...

    async def stop_replay(self, job: str) -> JSONObject:
        """Stop a running replay; the job."""
        ...

    async def resume_replay(self, job: str) -> JSONObject:
        """Resume a stopped replay; the job."""
        ...

    async def delete_replay(self, job: str, wait: float) -> None:
        """Delete a replay job (an unfinished one's generation is dropped)."""
        ...

    async def activate(self, processor: str, generation: int) -> None:
        """Make a kept generation live again."""
        ...

    async def create_key(self, key: NewKey) -> tuple[str, JSONObject]:
        """Create an API key: the key itself (shown once) and its record (``key_dict``)."""
        ...

    async def keys(self) -> list[JSONObject]:
        """Every API key, oldest first, without secrets."""
        ...

    async def revoke_key(self, key_id: str) -> JSONObject:
        """Revoke an API key; its record."""
        ...

    async def maintenance(self, enabled: bool | None) -> JSONObject:
        """Switch the server's maintenance override (``None``: only read it); the server's
        ``{"maintenance", "ready", "failing"}``."""
        ...


def operate(
    ctx: typer.Context,
    action: Callable[[Operations], Awaitable[T]],
    *,
    app: str | None = None,
    database_url: str | None = None,
) -> T:
    """Run ``action`` through the server, if one is configured, else on the database.

    ``app`` names the application's processors for local work (a server has its own
    ``KRONIKA_APP``); ``database_url`` forces work on that database (``keys --database-url``).
    """
    settings = settings_of(ctx)
    if database_url:
        settings = Settings.from_options(database_url, settings.namespace)
    if settings.server is not None:
        from kronika.cli.remote import RemoteOperations

        remote = RemoteOperations(settings.server, settings.token, settings.namespace)

        async def remotely() -> T:
            async with remote as operations:
                return await action(operations)

        return run(remotely())
    from kronika.cli.local import LocalOperations

    store = settings.database_store()

    async def locally() -> T:
        async with store:
            return await action(LocalOperations(store, app))

    return run(locally())
