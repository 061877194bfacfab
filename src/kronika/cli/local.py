"""The administration commands' work on a database: the runtime's admin API on the store.

Processors are described by the application's definitions when ``--app`` names them, and
otherwise from their stored records, as a server without ``KRONIKA_APP`` does (lag then
counts events of every type, keyed by stream). Starting, deleting and activating replays
need the projection's definition, so they need ``--app``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kronika.cli.operations import FailureAction, NewKey
from kronika.domain.events import RecordedEvent
from kronika.errors import ConfigurationError, NotFound, ValidationError
from kronika.runtime import admin, replay
from kronika.runtime.processor import Processor, Projection
from kronika.runtime.progress import processing_of
from kronika.server.security import management
from kronika.store.protocol import EventStore

__all__ = ["LocalOperations"]

JSONObject = dict[str, Any]


class LocalOperations:
    """:class:`~kronika.cli.operations.Operations` on an open store."""

    def __init__(self, store: EventStore, app: str | None) -> None:
        self.store = store
        self.app = app
        """``--app``: where the application's processors are, if given."""
        self._loaded: list[Processor] | None = None

    def _known(self) -> list[Processor]:
        """The application's processors (none without ``--app``), loaded once."""
        if self.app is None:
            return []
        if self._loaded is None:
            from kronika.runtime.loading import load_processors

            self._loaded = load_processors(self.app)
        return self._loaded

    def _projection(self, name: str) -> Projection:
        if self.app is None:
            raise ConfigurationError(
                f"--app (or $KRONIKA_APP) must name the application's processors: this needs "
                f"the definition of projection {name!r} (or give --server: a server uses its "
                "own KRONIKA_APP)"
            )
        found = next((p for p in self._known() if p.name == name), None)
        if found is None:
            raise NotFound(f"no processor {name!r} in the app {self.app!r}")
        if not isinstance(found, Projection):
            raise ValidationError(f"{name!r} is not a projection; only projections are replayed")
        return found

    async def _described(self, name: str) -> Processor:
        record = await processing_of(self.store).processor(name)
        if record is None:
            raise NotFound(f"processor {name!r} has never run")
        return admin.described(record, self._known())

    # -- processors -------------------------------------------------------------------

    async def processors(self) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        return [admin.status_dict(s) for s in await admin.statuses(self.store, self._known())]

    async def failed(self, processor: str | None) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        return [admin.failure_dict(f) for f in await admin.failed_keys(self.store, processor)]

    async def dead_letters(self, processor: str, key: str) -> list[RecordedEvent]:
        """See :class:`~kronika.cli.operations.Operations`."""
        return await admin.dead_letters(self.store, await self._described(processor), key)

    async def request(self, action: FailureAction, processor: str, key: str) -> None:
        """See :class:`~kronika.cli.operations.Operations`."""
        operation = admin.request_retry if action == "retry" else admin.request_skip
        await operation(self.store, processor, key)

    async def pause(self, processor: str) -> None:
        """See :class:`~kronika.cli.operations.Operations`."""
        await admin.pause(self.store, processor)

    async def resume(self, processor: str) -> None:
        """See :class:`~kronika.cli.operations.Operations`."""
        await admin.resume(self.store, processor)

    # -- replays ----------------------------------------------------------------------

    async def start_replay(self, processor: str) -> JSONObject:
        """See :class:`~kronika.cli.operations.Operations`."""
        return replay.job_dict(await replay.start_replay(self.store, self._projection(processor)))

    async def replays(self) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        found = []
        for job in await processing_of(self.store).jobs():
            if job.kind == replay.REPLAY:
                projection = await self._described(job.processor)
                found.append(await replay.replay_status(self.store, projection, job))
        return [replay.status_dict(s) for s in found]

    async def generations(self, processor: str) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        return [replay.generation_dict(g) for g in await replay.generations(self.store, processor)]

    async def stop_replay(self, job: str) -> JSONObject:
        """See :class:`~kronika.cli.operations.Operations`."""
        return replay.job_dict(await replay.stop_replay(self.store, job))

    async def resume_replay(self, job: str) -> JSONObject:
        """See :class:`~kronika.cli.operations.Operations`."""
        return replay.job_dict(await replay.resume_replay(self.store, job))

    async def delete_replay(self, job: str, wait: float) -> None:
        """See :class:`~kronika.cli.operations.Operations`."""
        found = await replay.job(self.store, job)
        projection = self._projection(found.processor)
        await replay.delete_replay(self.store, projection, job, wait=wait)

    async def activate(self, processor: str, generation: int) -> None:
        """See :class:`~kronika.cli.operations.Operations`."""
        await replay.activate(self.store, self._projection(processor), generation)

    # -- keys and the maintenance switch -----------------------------------------------

    async def create_key(self, key: NewKey) -> tuple[str, JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        token, record = await management.create_key(
            self.store,
            key.roles,
            categories=key.categories,
            name=key.name,
            expires_in=key.expires_in,
        )
        return token, management.key_dict(record, record.created_at)

    async def keys(self) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        now = datetime.now(UTC)
        return [management.key_dict(r, now) for r in await management.keys_of(self.store).keys()]

    async def revoke_key(self, key_id: str) -> JSONObject:
        """See :class:`~kronika.cli.operations.Operations`."""
        record = await management.revoke_key(self.store, key_id)
        return management.key_dict(record, datetime.now(UTC))

    async def maintenance(self, enabled: bool | None) -> JSONObject:
        """Refused: the switch lives in a server process, not in the database."""
        raise ConfigurationError(
            "the maintenance switch is a running server's (it forces that server's /readyz "
            "to 503): give --server http(s)://HOST:PORT (or KRONIKA_SERVER) and an admin "
            "--token (or KRONIKA_TOKEN); each replica has its own switch"
        )
