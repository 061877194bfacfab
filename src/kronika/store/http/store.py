"""The HTTP client backend: the :class:`~kronika.EventStore` of a remote ``kronika serve``.

``open_store("http://host:8080", token=...)`` gives the same interface as an embedded store,
so code moves from embedded to remote by changing a URL. Arguments are validated here
before anything is sent (by :class:`~kronika.store.base.StoreBase`, like every backend),
correlation and causation ids are stamped here (they come from the caller's context), and
the server's problem+json answers come back as the same :mod:`kronika.errors` classes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import orjson

from kronika.domain import names
from kronika.domain.events import (
    AppendCondition,
    MultiAppendResult,
    RecordedEvent,
    Snapshot,
    StreamInfo,
)
from kronika.errors import ConfigurationError
from kronika.store.base import DEFAULT_BATCH_SIZE, GlobalFilter, PreparedAppend, StoreBase
from kronika.store.http import wire
from kronika.store.http.config import HttpConfig
from kronika.store.http.live import LiveFeed
from kronika.store.http.problems import error_from_response
from kronika.store.http.transport import Transport, stream_path
from kronika.store.inline import InlineHandlers
from kronika.store.listing import PAGE_LIMIT, StreamSelection
from kronika.store.migrations import Migration, SchemaStatus

__all__ = ["HttpEventStore"]


class HttpEventStore(StoreBase):
    """An event store on a Kronika server, over HTTP API v1."""

    engine = "http"

    def __init__(self, config: HttpConfig) -> None:
        super().__init__(namespace=config.namespace)
        self.config = config
        self._transport: Transport | None = None
        self._feeds: set[LiveFeed] = set()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> HttpEventStore:
        """``http://host:port`` or ``https://host:port`` plus options (see configuration.md)."""
        return cls(HttpConfig.from_url(url, **options))

    def __repr__(self) -> str:
        return f"<HttpEventStore {self.config.base_url} namespace={self.namespace!r}>"

    @property
    def _http(self) -> Transport:
        assert self._transport is not None  # StoreBase checks the store is open first
        return self._transport

    def _accept_inline(self, handlers: InlineHandlers) -> None:
        raise ConfigurationError(
            "inline projections run where the database is, inside each append's transaction: "
            "register them on the store that opens the database (sqlite:// or postgresql://), "
            "not on a client of a kronika server (a server that runs them is not supported yet)"
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def _open(self) -> None:
        self._transport = Transport(self.config)

    async def _close(self) -> None:
        feeds, self._feeds = self._feeds, set()
        for feed in feeds:
            await feed.aclose()
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def schema_status(self) -> SchemaStatus:
        """The server database's schema, from ``GET /status`` (works before ``open()``)."""
        transport = self._transport or Transport(self.config)
        try:
            body = await transport.json("GET", "/status")
        finally:
            if transport is not self._transport:
                await transport.aclose()
        schema = body.get("schema") if isinstance(body, dict) else None
        if not isinstance(schema, dict):
            raise ConfigurationError(
                f"the server at {self.config.base_url} does not report its schema in /status"
            )
        current, latest = int(schema.get("current", 0)), int(schema.get("latest", 0))
        return SchemaStatus(current=current, latest=latest, pending=())

    async def migrate(self) -> list[Migration]:
        """Refused: a client never changes the server's database schema."""
        raise ConfigurationError(
            "a remote store cannot migrate the server's database: run `kronika migrate` "
            "against the server's database (with its KRONIKA_DATABASE_URL) instead"
        )

    # -- writes -------------------------------------------------------------------------

    async def _append(
        self, appends: list[PreparedAppend], condition: AppendCondition | None
    ) -> MultiAppendResult:
        if len(appends) == 1 and appends[0].events:
            [append] = appends
            body = await self._http.json(
                "POST",
                stream_path(append.stream),
                body=wire.append_body(append, condition),
                stream=append.stream,
            )
            result = wire.append_result(body)
            return MultiAppendResult(streams={append.stream: result}, position=result.position)
        # Several streams, or an append without events that only checks the version (the
        # single-stream route requires at least one event).
        body = await self._http.json(
            "POST", "/v1/append", body=wire.append_multi_body(appends, condition)
        )
        return wire.multi_result(body)

    async def _delete_stream(self, stream: str, *, hard: bool) -> None:
        await self._http.call(
            "DELETE", stream_path(stream), params={"hard": _flag(hard)}, stream=stream
        )

    async def _truncate_stream(self, stream: str, before_version: int) -> None:
        body = orjson.dumps({"before_version": before_version})
        await self._http.call("POST", stream_path(stream, "/truncate"), body=body, stream=stream)

    async def _set_stream_metadata(
        self, stream: str, max_age: float | None, max_count: int | None, metadata: dict[str, Any]
    ) -> StreamInfo:
        body = orjson.dumps({"max_age": max_age, "max_count": max_count, "metadata": metadata})
        answer = await self._http.json(
            "PUT", stream_path(stream, "/metadata"), body=body, stream=stream
        )
        return wire.stream_info_from_json(answer)

    async def _write_snapshot(
        self, stream: str, version: int, schema_version: int, state: bytes
    ) -> None:
        body = orjson.dumps(
            {
                "version": version,
                "state": orjson.Fragment(state),
                "schema_version": schema_version,
            }
        )
        await self._http.call("PUT", stream_path(stream, "/snapshot"), body=body, stream=stream)

    # -- reads --------------------------------------------------------------------------

    async def _read_snapshot(self, stream: str) -> Snapshot | None:
        response = await self._http.call(
            "GET", stream_path(stream, "/snapshot"), stream=stream, allow=(404,)
        )
        if response.status_code == 404:
            if _problem_code(response) in ("snapshot_not_found", "stream_not_found"):
                return None
            raise error_from_response(response, stream=stream)
        return wire.snapshot_from_json(self._http.decode(response))

    async def _read_stream(
        self, stream: str, from_version: int | None, backwards: bool, limit: int | None
    ) -> list[RecordedEvent]:
        params: dict[str, str | int] = {"backwards": _flag(backwards)}
        if from_version is not None:
            params["from_version"] = from_version
        if limit is not None:
            params["limit"] = limit
        body = await self._http.json("GET", stream_path(stream), params=params, stream=stream)
        return wire.events_from_json(body)

    async def _read_all(
        self, from_position: int, limit: int | None, filters: GlobalFilter
    ) -> list[RecordedEvent]:
        params: dict[str, str | int | list[str]] = {"from_position": from_position}
        if limit is not None:
            params["limit"] = limit
        params.update(wire.filter_params(filters))
        return wire.events_from_json(await self._http.json("GET", "/v1/all", params=params))

    async def _head_position(self) -> int:
        body = await self._http.json("GET", "/v1/head")
        return int(body["position"])

    async def _stream_info(self, stream: str) -> StreamInfo:
        body = await self._http.json("GET", stream_path(stream, "/info"), stream=stream)
        return wire.stream_info_from_json(body)

    async def _list_streams(self, selection: StreamSelection) -> list[StreamInfo]:
        found: list[StreamInfo] = []
        after = selection.after
        while selection.limit is None or len(found) < selection.limit:
            want = PAGE_LIMIT if selection.limit is None else selection.limit - len(found)
            params = wire.list_params(selection, after, min(want, PAGE_LIMIT))
            body = await self._http.json("GET", "/v1/streams", params=params)
            page = [wire.stream_info_from_json(item) for item in body.get("streams", [])]
            found += page
            after = body.get("next")
            if not page or after is None:
                break
        return found

    async def subscribe(
        self,
        *,
        from_position: int = 0,
        types: Sequence[str] | None = None,
        categories: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``from_position`` (inclusive), then stay live, over SSE.

        A dropped connection is resumed after the last delivered position (``Last-Event-ID``)
        with exponential backoff; the iterator ends when the store is closed. ``batch_size``
        bounds the events buffered ahead of the consumer.
        """
        position = names.check_position(from_position)
        names.check_limit(batch_size, "batch_size")
        filters = self._filters(types, categories, tags)
        self._check_open()
        feed = LiveFeed(self._http, position, filters, buffer=batch_size)
        self._feeds.add(feed)
        try:
            async for event in feed.events():
                yield event
        finally:
            self._feeds.discard(feed)
            await feed.aclose()


def _problem_code(response: httpx.Response) -> object:
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
        return orjson.loads(response.content).get("code")
    return None


def _flag(value: bool) -> str:
    return "true" if value else "false"
