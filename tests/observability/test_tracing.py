"""Spans and trace context, in process, recorded by the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pydantic
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import kronika
from kronika import NewEvent, RecordedEvent
from kronika.cqrs.commands import CommandBus
from kronika.cqrs.repository import Repository, Session
from kronika.observability import tracing
from kronika.runtime import Context, Projection, Worker, on
from kronika.server.app import create_app
from kronika.server.settings import ServerSettings


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Kronika's spans, recorded in memory for the test (tracing is off again after it)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.02)


async def test_tracing_is_off_without_a_provider(memory_url: str) -> None:
    assert not tracing.tracing_enabled()
    assert tracing.current_traceparent() is None
    with tracing.span("nothing") as span:
        assert span is None
    async with kronika.open_store(memory_url) as store:
        await store.append("order-1", [NewEvent(type="Placed", data={})])
        [event] = await store.read_stream("order-1")
    assert "traceparent" not in event.metadata


async def test_an_append_is_one_span_and_its_events_carry_its_traceparent(
    memory_url: str, spans: InMemorySpanExporter
) -> None:
    async with kronika.open_store(memory_url) as store:
        events = [NewEvent(type="Placed", data={}), NewEvent(type="Paid", data={})]
        await store.append("order-1", events)
        stored = await store.read_stream("order-1")
    [append] = named(spans, "kronika.append")
    assert append.kind is SpanKind.CLIENT
    assert append.attributes is not None
    assert append.attributes["db.system.name"] == "memory"
    assert append.attributes["kronika.event_count"] == 2
    assert append.attributes["kronika.stream"] == "order-1"
    context = append.get_span_context()
    assert context is not None
    flags = int(context.trace_flags)
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
    assert [e.metadata["traceparent"] for e in stored] == [expected, expected]
    assert len(named(spans, "kronika.read_stream")) == 1


async def test_a_failed_append_records_the_error(
    memory_url: str, spans: InMemorySpanExporter
) -> None:
    async with kronika.open_store(memory_url) as store:
        await store.append("order-1", [NewEvent(type="Placed", data={})])
        with pytest.raises(kronika.ConcurrencyError):
            await store.append(
                "order-1", [NewEvent(type="Placed", data={})], expected_version="no_stream"
            )
    failed = named(spans, "kronika.append")[-1]
    assert not failed.status.is_ok
    assert failed.events[0].name == "exception"


async def test_an_explicit_traceparent_in_metadata_is_kept(
    memory_url: str, spans: InMemorySpanExporter
) -> None:
    async with kronika.open_store(memory_url) as store:
        await store.append(
            "order-1", [NewEvent(type="Placed", data={}, metadata={"traceparent": CALLER})]
        )
        [event] = await store.read_stream("order-1")
    assert event.metadata["traceparent"] == CALLER


class Open(pydantic.BaseModel):
    order_id: str


async def test_a_command_span_is_the_parent_of_its_appends(
    memory_url: str, spans: InMemorySpanExporter
) -> None:
    async with kronika.open_store(memory_url) as store:
        bus = CommandBus(Repository(store))

        @bus.handler(Open)
        async def handle(command: Open, session: Session) -> None:
            await store.append(f"order-{command.order_id}", [NewEvent(type="Opened", data={})])

        await bus.dispatch(Open(order_id="7"))
    [command] = named(spans, "kronika.command")
    [append] = named(spans, "kronika.append")
    assert command.attributes is not None
    assert command.attributes["kronika.command"] == "Open"
    assert parent_of(append) == command.context.span_id


class Orders(Projection):
    name = "orders"

    def __init__(self) -> None:
        self.seen: list[RecordedEvent] = []

    @on("Placed")
    async def placed(self, event: RecordedEvent, ctx: Context) -> None:
        self.seen.append(event)


async def test_one_trace_runs_from_the_request_through_the_append_to_the_projection(
    memory_url: str, spans: InMemorySpanExporter
) -> None:
    app = create_app(ServerSettings.from_env({}, database_url=memory_url))
    projection = Orders()
    async with app.router.lifespan_context(app), kronika.open_store(memory_url) as store:
        worker = Worker(store, [projection], lease_ttl=1.0, drain_timeout=5)
        task = asyncio.create_task(worker.run())
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kronika") as http:
                answer = await http.post(
                    "/v1/streams/order-1",
                    json={"events": [{"type": "Placed", "data": {"total": 3}}]},
                    headers={"X-Correlation-ID": "checkout-42"},
                )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-correlation-id"] == "checkout-42"

            async def handled() -> bool:
                return bool(named(spans, "kronika.handle"))

            await wait_for(handled)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)
    [request] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    [append] = named(spans, "kronika.append")
    [handle] = named(spans, "kronika.handle")
    assert request.name == "POST /v1/streams/{stream}"
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/v1/streams/{stream}"
    assert request.attributes["http.response.status_code"] == 200
    assert "order-1" not in request.name
    trace_id = request.context.trace_id
    assert append.context.trace_id == trace_id
    assert handle.context.trace_id == trace_id
    assert parent_of(append) == request.context.span_id
    assert parent_of(handle) == append.context.span_id
    assert handle.kind is SpanKind.CONSUMER
    assert handle.attributes is not None
    assert handle.attributes["kronika.processor"] == "orders"
    [event] = projection.seen
    assert event.metadata["correlation_id"] == "checkout-42"


async def test_a_callers_traceparent_continues_its_trace(
    memory_url: str, spans: InMemorySpanExporter
) -> None:
    app = create_app(ServerSettings.from_env({}, database_url=memory_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kronika") as http:
            answer = await http.post(
                "/v1/streams/order-1",
                json={"events": [{"type": "Placed", "data": {}}]},
                headers={"traceparent": CALLER},
            )
    assert answer.status_code == 200
    generated = answer.headers["x-correlation-id"]
    assert len(generated) == 32
    [request] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert f"{request.context.trace_id:032x}" == CALLER.split("-")[1]
    assert parent_of(request) == int(CALLER.split("-")[2], 16)


async def test_with_tracing_off_the_callers_traceparent_still_reaches_the_events(
    memory_url: str,
) -> None:
    app = create_app(ServerSettings.from_env({}, database_url=memory_url))
    async with app.router.lifespan_context(app), kronika.open_store(memory_url) as store:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kronika") as http:
            answer = await http.post(
                "/v1/streams/order-1",
                json={"events": [{"type": "Placed", "data": {}}]},
                headers={"traceparent": CALLER, "X-Correlation-ID": "bad id with spaces"},
            )
        assert answer.status_code == 200
        [event] = await store.read_stream("order-1")
    assert event.metadata["traceparent"] == CALLER
    assert answer.headers["x-correlation-id"] != "bad id with spaces"
    assert event.metadata["correlation_id"] == answer.headers["x-correlation-id"]


def test_configure_tracing_is_off_without_an_endpoint() -> None:
    assert tracing.configure_tracing("kronika-test", {}) is False
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
    assert tracing.configure_tracing("t", {**endpoint, "OTEL_SDK_DISABLED": "true"}) is False
    assert tracing.configure_tracing("t", {**endpoint, "OTEL_TRACES_EXPORTER": "none"}) is False


async def test_a_multi_stream_append_counts_its_streams_and_events(
    memory_url: str, spans: InMemorySpanExporter
) -> None:
    async with kronika.open_store(memory_url) as store:
        await store.append_multi(
            [
                kronika.StreamAppend("order-1", [NewEvent(type="Placed", data={})]),
                kronika.StreamAppend(
                    "stock-1",
                    [NewEvent(type="Reserved", data={}), NewEvent(type="Reserved", data={})],
                ),
            ]
        )
        [first, *_] = await store.read_stream("stock-1")
    [append] = named(spans, "kronika.append_multi")
    assert append.attributes is not None
    assert append.attributes["kronika.event_count"] == 3
    assert append.attributes["kronika.stream_count"] == 2
    assert "kronika.stream" not in append.attributes
    assert first.metadata["traceparent"].split("-")[2] == f"{append.context.span_id:016x}"


async def test_probes_make_no_spans_but_answer_a_correlation_id(
    memory_url: str, spans: InMemorySpanExporter
) -> None:
    app = create_app(ServerSettings.from_env({}, database_url=memory_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kronika") as http:
            live = await http.get("/livez")
            head = await http.get("/v1/head")
    assert live.status_code == head.status_code == 200
    assert live.headers["x-correlation-id"]
    assert [s.name for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER] == [
        "GET /v1/head"
    ]
