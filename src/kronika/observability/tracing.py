"""OpenTelemetry spans for Kronika's work, and the W3C ``traceparent`` that links them.

Kronika always calls the OpenTelemetry *API*; spans are only recorded once an SDK tracer
provider exists: :func:`configure_tracing` installs one (``kronika serve`` and ``kronika
worker`` call it) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
is set, an application may set its own global provider, and tests pass one to
:func:`use_tracer_provider`. Without one every helper here returns a shared no-op context
manager after one global lookup, so an append pays well under a microsecond.

The trace crosses processes inside the events themselves: :func:`current_traceparent` is
stamped into each appended event's metadata (key ``traceparent``) and a processor handling
the event starts its span as a child of it (:func:`handling_span`), so one trace runs from
the HTTP request through the append to every projection and reactor.

Spans are exported in batches on a background thread (``BatchSpanProcessor``, whose queue is
bounded by ``OTEL_BSP_MAX_QUEUE_SIZE``): a slow or refusing collector drops spans, never slows
or fails the work. Its errors are logged, rate-limited (see :mod:`.logging`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "TRACEPARENT",
    "configure_tracing",
    "current_trace_ids",
    "current_traceparent",
    "handling_span",
    "remote_parent",
    "span",
    "traced_store_call",
    "tracing_enabled",
    "use_tracer_provider",
]

TRACEPARENT = "traceparent"
"""Metadata key of the W3C trace context an event was appended in."""
INSTRUMENTATION = "kronika"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_UNKNOWN = object()
_PROXY = trace.ProxyTracerProvider()
_ENV_PROVIDER = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("kronika.observability")
_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()
_PROPAGATOR = TraceContextTextMapPropagator()


class _State:
    """Which provider Kronika uses and the tracer last made from it (one lookup per call)."""

    override: Any = None
    cached: tuple[object, Tracer | None] = (None, None)


_state = _State()


def use_tracer_provider(provider: Any) -> None:
    """Send Kronika's spans to ``provider`` instead of the global one (``None``: global again).

    For tests and embedders that keep their own SDK provider; the global provider can be set
    only once per process.
    """
    _state.override = provider


def _tracer() -> Tracer | None:
    """Kronika's tracer, or ``None`` while no SDK provider is set (tracing off)."""
    provider = _state.override
    if provider is None:
        provider = _global_provider()
    cached = _state.cached
    if provider is cached[0]:
        return cached[1]
    off = isinstance(provider, ProxyTracerProvider | NoOpTracerProvider)
    tracer = None if off else provider.get_tracer(INSTRUMENTATION)
    _state.cached = (provider, tracer)
    return tracer


def _global_provider() -> Any:
    """``trace.get_tracer_provider()``, without its ~1 µs ``os.environ`` lookup per call.

    The getter reads the module's private global and, while it is unset, checks the
    environment for ``OTEL_PYTHON_TRACER_PROVIDER``; the lookup is done once here instead.
    """
    provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None and not _ENV_PROVIDER:
        return _PROXY
    return trace.get_tracer_provider() if provider is None or provider is _UNKNOWN else provider


def tracing_enabled() -> bool:
    """True when spans are recorded."""
    return _tracer() is not None


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span around a block, current inside it; a shared no-op when tracing is off.

    Exceptions leaving the block are recorded on the span and set its status to error.
    Attributes must be bounded values (engine, counts, names), never event data.
    """
    tracer = _tracer()
    if tracer is None:
        return _NULL
    return tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (or of a caller's remote one), if any."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex of the current span, for log lines."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@contextlib.contextmanager
def remote_parent(traceparent: object) -> Iterator[None]:
    """Make a caller's ``traceparent`` current, so new spans (or, with tracing off, new events)
    continue its trace. A missing or malformed value is ignored."""
    if not isinstance(traceparent, str) or not traceparent:
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract({TRACEPARENT: traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def handling_span(
    processor: str, partition: int, event: Any
) -> contextlib.AbstractContextManager[Span | None]:
    """A consumer span for one event, child of the ``traceparent`` it was appended in.

    One span per event (not per batch): each event may come from a different trace.
    """
    tracer = _tracer()
    if tracer is None:
        return _NULL
    traceparent = event.metadata.get(TRACEPARENT)
    parent = (
        _PROPAGATOR.extract({TRACEPARENT: traceparent}) if isinstance(traceparent, str) else None
    )
    attributes = {
        "kronika.processor": processor,
        "kronika.partition": partition,
        "kronika.event_type": event.type,
        "kronika.stream": event.stream,
        "kronika.position": event.position,
    }
    return tracer.start_as_current_span(
        "kronika.handle", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    )


def traced_store_call(
    name: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorate a store method with a ``kronika.<name>`` span (engine, namespace, stream, count).

    With tracing off the method's own coroutine is returned as it is: no extra frame.
    """

    def decorate(
        method: Callable[P, Coroutine[Any, Any, R]],
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        async def traced(tracer: Tracer, *args: P.args, **kwargs: P.kwargs) -> R:
            with tracer.start_as_current_span(
                f"kronika.{name}", kind=SpanKind.CLIENT, attributes=_store_attributes(args)
            ):
                return await method(*args, **kwargs)

        @functools.wraps(method)
        def call(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
            tracer = _tracer()
            if tracer is None:
                return method(*args, **kwargs)
            return traced(tracer, *args, **kwargs)

        return call

    return decorate


def _store_attributes(args: tuple[Any, ...]) -> dict[str, Any]:
    store = args[0]
    attributes: dict[str, Any] = {
        "db.system.name": getattr(store, "engine", "unknown"),
        "kronika.namespace": getattr(store, "namespace", ""),
    }
    if len(args) > 1 and isinstance(args[1], str):
        attributes["kronika.stream"] = args[1]
    if len(args) > 2 and isinstance(args[2], Sequence):
        attributes["kronika.event_count"] = len(args[2])
    elif len(args) > 1 and isinstance(args[1], Sequence) and not isinstance(args[1], str):
        attributes["kronika.event_count"] = sum(len(getattr(a, "events", ())) for a in args[1])
        attributes["kronika.stream_count"] = len(args[1])
    return attributes


def _wanted(environ: Mapping[str, str]) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def configure_tracing(service_name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Export spans over OTLP/HTTP when the standard ``OTEL_*`` variables ask for it.

    Off (returns False, installs nothing) unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the
    traces-only variant) is set; ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``
    turn it off too. ``OTEL_SERVICE_NAME`` overrides ``service_name``; the exporter reads
    its own variables (headers, timeout, compression, certificates) and the batch processor
    its ``OTEL_BSP_*`` ones. A provider an application already set is kept as it is.
    """
    env = os.environ if environ is None else environ
    if not _wanted(env):
        return False
    if not isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
        return True
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed: "
            "install kronika[otlp] to export spans",
            extra={"action": "tracing_off"},
        )
        return False
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("exporting spans over OTLP", extra={"action": "tracing_on"})
    return True
