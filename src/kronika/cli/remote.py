"""The administration commands' work through a running ``kronika serve``: its HTTP API.

:class:`RemoteOperations` calls the server's routes (processors, failed keys, dead
letters, replays, keys, the maintenance switch) with the bearer token of ``--token`` or
``$KRONIKA_TOKEN``. Requests go through :class:`kronika.ops.httpclient.ServerApi` (the
HTTP client store's transport), so failures become the same :mod:`kronika.errors` as
everywhere: an unreachable server is ``Unavailable`` naming its URL, and the server's
problem+json answers come back as their classes. :func:`explained` adds what the operator
should change to a 401 or 403.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from kronika.cli.context import Settings
from kronika.cli.operations import FailureAction, NewKey
from kronika.domain.events import RecordedEvent
from kronika.errors import Forbidden, KronikaError, Unauthorized
from kronika.ops.httpclient import ServerApi, server_config
from kronika.store.http.wire import events_from_json

__all__ = ["TIMEOUT", "RemoteOperations", "explained"]

TIMEOUT = 30.0
"""Seconds to wait for an answer: deleting a replay may wait up to 15 s for workers."""

JSONObject = dict[str, Any]


def _segment(value: str) -> str:
    """A path segment, percent-encoded (``/`` included)."""
    return quote(value, safe="")


class RemoteOperations(ServerApi):
    """:class:`~kronika.cli.operations.Operations` through a server's HTTP API."""

    def __init__(self, server: str, token: str | None, namespace: str | None = None) -> None:
        # A namespace other than the server's own is refused, naming the option.
        super().__init__(server_config(server, token=token, timeout=TIMEOUT, namespace=namespace))

    @staticmethod
    def _processor(name: str, suffix: str = "") -> str:
        return f"/v1/processors/{_segment(name)}{suffix}"

    # -- processors -------------------------------------------------------------------

    async def processors(self) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        answer: list[JSONObject] = (await self.call("GET", "/v1/processors"))["processors"]
        return answer

    async def failed(self, processor: str | None) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        answer = await self.call("GET", "/v1/failed", processor=processor)
        failed: list[JSONObject] = answer["failed"]
        return failed

    async def dead_letters(self, processor: str, key: str) -> list[RecordedEvent]:
        """See :class:`~kronika.cli.operations.Operations`."""
        path = self._processor(processor, "/dead-letters")
        return events_from_json(await self.call("GET", path, key=key))

    async def request(self, action: FailureAction, processor: str, key: str) -> None:
        """See :class:`~kronika.cli.operations.Operations`."""
        await self.call("POST", self._processor(processor, f"/failed/{action}"), {"key": key})

    async def pause(self, processor: str) -> None:
        """See :class:`~kronika.cli.operations.Operations`."""
        await self.call("POST", self._processor(processor, "/pause"))

    async def resume(self, processor: str) -> None:
        """See :class:`~kronika.cli.operations.Operations`."""
        await self.call("POST", self._processor(processor, "/resume"))

    # -- replays ----------------------------------------------------------------------

    async def start_replay(self, processor: str) -> JSONObject:
        """See :class:`~kronika.cli.operations.Operations`."""
        job: JSONObject = await self.call("POST", self._processor(processor, "/replay"))
        return job

    async def replays(self) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        answer: list[JSONObject] = (await self.call("GET", "/v1/replays"))["replays"]
        return answer

    async def generations(self, processor: str) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        answer = await self.call("GET", self._processor(processor, "/generations"))
        found: list[JSONObject] = answer["generations"]
        return found

    async def stop_replay(self, job: str) -> JSONObject:
        """See :class:`~kronika.cli.operations.Operations`."""
        moved: JSONObject = await self.call("POST", f"/v1/replays/{_segment(job)}/stop")
        return moved

    async def resume_replay(self, job: str) -> JSONObject:
        """See :class:`~kronika.cli.operations.Operations`."""
        moved: JSONObject = await self.call("POST", f"/v1/replays/{_segment(job)}/resume")
        return moved

    async def delete_replay(self, job: str, wait: float) -> None:
        """See :class:`~kronika.cli.operations.Operations`; the server waits for workers
        for its own time (15 s), whatever ``wait`` says."""
        await self.call("DELETE", f"/v1/replays/{_segment(job)}")

    async def activate(self, processor: str, generation: int) -> None:
        """See :class:`~kronika.cli.operations.Operations`."""
        path = self._processor(processor, f"/generations/{generation}/activate")
        await self.call("POST", path)

    # -- keys and the maintenance switch -----------------------------------------------

    async def create_key(self, key: NewKey) -> tuple[str, JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        body = {
            "roles": list(key.roles),
            "categories": None if key.categories is None else list(key.categories),
            "name": key.name,
            "expires_in": None if key.expires_in is None else int(key.expires_in.total_seconds()),
        }
        answer: JSONObject = await self.call("POST", "/v1/keys", body)
        return str(answer.pop("key")), answer

    async def keys(self) -> list[JSONObject]:
        """See :class:`~kronika.cli.operations.Operations`."""
        answer: list[JSONObject] = (await self.call("GET", "/v1/keys"))["keys"]
        return answer

    async def revoke_key(self, key_id: str) -> JSONObject:
        """See :class:`~kronika.cli.operations.Operations`."""
        record: JSONObject = await self.call("DELETE", f"/v1/keys/{_segment(key_id.strip())}")
        return record

    async def maintenance(self, enabled: bool | None) -> JSONObject:
        """See :class:`~kronika.cli.operations.Operations`."""
        if enabled is not None:
            await self.call("POST", "/v1/admin/maintenance", {"enabled": enabled})
        status = await self.call("GET", "/status")
        return {key: status.get(key) for key in ("maintenance", "ready", "failing")}


def explained(error: KronikaError, settings: Settings) -> KronikaError:
    """``error`` with what to change added, when a server refused the credentials."""
    if settings.server is None or not isinstance(error, Unauthorized | Forbidden):
        return error
    if isinstance(error, Forbidden):
        hint = "use a key or token that allows it"
    elif settings.token is None:
        hint = "give an API key or JWT with --token or KRONIKA_TOKEN"
    else:
        hint = "check the key or token given with --token or KRONIKA_TOKEN"
    return type(error)(f"the server at {settings.server} refused: {error.message}; {hint}")
