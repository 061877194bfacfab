"""Every Prometheus metric Kronika exports, defined here and nowhere else.

Names, types, labels and help texts live in this one module so that
``docs/reference/metrics.md`` can be checked against it both ways (a test does), and so
that label values stay bounded (E5): labels carry engines, error codes, processor,
command, aggregate and saga names, route *templates* and status codes, never stream ids,
event ids, keys or user ids.

Hot paths pay one counter increment and one histogram observation per call (an append
call, not each of its events); label children are looked up once and cached.

Gauges that need a query (head, positions, lag, failed keys, replay progress) are set by
:mod:`kronika.runtime.gauges`, at scrape time on the server (at most every few seconds)
and by a periodic task in workers, never by scanning the log on every scrape.

Applications add their own metrics to the same registry with :func:`counter`,
:func:`gauge` and :func:`histogram` (E6); their names must not start with ``kronika_``.
"""

from __future__ import annotations

import re
import time
import weakref
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Protocol, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from kronika.errors import ConfigurationError, KronikaError

__all__ = [
    "CONTENT_TYPE",
    "LABELS",
    "METRICS",
    "REGISTRY",
    "PoolStats",
    "PoolStatsSource",
    "counter",
    "exposition",
    "gauge",
    "histogram",
    "watch_pool",
]

T = TypeVar("T")

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The media type of :func:`exposition`'s output."""

PREFIX = "kronika_"

disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``*_created`` series: half the samples, nothing lost

FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds: appends, handlers and HTTP requests mostly take well under a second."""

# -- the event store ----------------------------------------------------------------------

EVENTS_APPENDED = Counter(
    "kronika_events_appended_total",
    "Events appended to the store (counted per event, by storage engine).",
    ["engine"],
)
APPEND_DURATION = Histogram(
    "kronika_append_duration_seconds",
    "Duration of one append call (one or several streams, any number of events).",
    ["engine"],
    buckets=FAST_BUCKETS,
)
APPENDS_FAILED = Counter(
    "kronika_appends_failed_total",
    "Append calls that raised, by storage engine and Kronika error code.",
    ["engine", "code"],
)

# -- the write side -----------------------------------------------------------------------

COMMANDS = Counter(
    "kronika_commands_total",
    "Commands dispatched, by command class name.",
    ["command"],
)
COMMAND_DURATION = Histogram(
    "kronika_command_duration_seconds",
    "Duration of dispatching one command, retries included.",
    ["command"],
    buckets=FAST_BUCKETS,
)
COMMAND_ERRORS = Counter(
    "kronika_command_errors_total",
    "Commands that raised, by command class name and Kronika error code.",
    ["command", "code"],
)
AGGREGATES_LOADED = Counter(
    "kronika_aggregates_loaded_total",
    "Aggregates loaded from the store, by aggregate class name.",
    ["aggregate"],
)
SNAPSHOT_HITS = Counter(
    "kronika_snapshot_hits_total",
    "Aggregate loads that started from a usable snapshot, by aggregate class name.",
    ["aggregate"],
)

# -- processing ---------------------------------------------------------------------------

HANDLER_DURATION = Histogram(
    "kronika_processor_handler_duration_seconds",
    "Duration of one processor handler call (one event), by processor name.",
    ["processor"],
    buckets=FAST_BUCKETS,
)
SAGA_EXECUTIONS = Counter(
    "kronika_saga_executions_total",
    "Saga handler runs, by saga name and outcome (ok or error).",
    ["saga", "outcome"],
)
SAGA_DURATION = Histogram(
    "kronika_saga_duration_seconds",
    "Duration of one saga handler run, by saga name.",
    ["saga"],
    buckets=FAST_BUCKETS,
)
HEAD_POSITION = Gauge(
    "kronika_head_position",
    "The newest global position in the store (refreshed periodically).",
)
PROCESSOR_POSITION = Gauge(
    "kronika_processor_position",
    "The processor's lowest partition checkpoint: every event up to here is handled.",
    ["processor"],
)
PROCESSOR_LAG_EVENTS = Gauge(
    "kronika_processor_lag_events",
    "Events of the processor's types not handled yet (counted up to a bounded scan).",
    ["processor"],
)
PROCESSOR_LAG_SECONDS = Gauge(
    "kronika_processor_lag_seconds",
    "Age in seconds of the processor's oldest unhandled event (0 when caught up).",
    ["processor"],
)
FAILED_KEYS = Gauge(
    "kronika_processor_failed_keys",
    "Failed partition keys of the processor, by state (parked or quarantined).",
    ["processor", "state"],
)
DEAD_LETTERS = Gauge(
    "kronika_processor_dead_letters",
    "Quarantined keys (dead letters) waiting for an operator's retry or skip.",
    ["processor"],
)
REPLAY_PROGRESS = Gauge(
    "kronika_replay_progress_ratio",
    "Progress of the processor's running replay job, from 0 to 1.",
    ["processor"],
)

# -- the HTTP server ----------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "kronika_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "kronika_http_request_duration_seconds",
    "Duration of HTTP requests until the response started, by method and route template.",
    ["method", "route"],
    buckets=FAST_BUCKETS,
)
HTTP_REJECTIONS = Counter(
    "kronika_http_rejections_total",
    "Requests refused by a limit: rate_limit, concurrency_limit or stream_limit.",
    ["reason"],
)
SSE_SUBSCRIBERS = Gauge(
    "kronika_sse_subscribers",
    "Server-sent event streams open now.",
)
READY = Gauge(
    "kronika_ready",
    "1 when the last readiness verdict said ready, 0 otherwise.",
)

# -- database pools (collected at scrape time) --------------------------------------------

POOL_METRICS: dict[str, tuple[str, str]] = {
    "kronika_db_pool_size": ("gauge", "Connections the pool holds now, by engine."),
    "kronika_db_pool_max": ("gauge", "The pool's maximum size, by engine."),
    "kronika_db_pool_in_use": ("gauge", "Connections lent out now, by engine."),
    "kronika_db_pool_waiting": ("gauge", "Requests waiting for a connection now, by engine."),
    "kronika_db_pool_acquire_timeouts_total": (
        "counter",
        "Connection requests that failed or timed out waiting, by engine.",
    ),
    "kronika_db_connection_errors_total": (
        "counter",
        "Failed attempts to open a database connection, by engine.",
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStats:
    """One store's connection pool as metrics see it."""

    engine: str
    """The storage engine (``postgresql``, ``sqlite``)."""
    size: int
    """Connections held now."""
    max: int
    """The configured maximum."""
    in_use: int
    """Connections lent out now."""
    waiting: int
    """Requests waiting for a connection."""
    acquire_timeouts: int
    """Requests that failed or timed out waiting (since the pool opened)."""
    connection_errors: int
    """Failed connection attempts (since the pool opened)."""


class PoolStatsSource(Protocol):
    """Anything that can describe its connection pool (a store's database)."""

    def pool_stats(self) -> PoolStats: ...


_pools: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_pool(source: PoolStatsSource) -> None:
    """Export ``source``'s pool figures until it is garbage collected (or unwatched)."""
    _pools.add(source)


def unwatch_pool(source: PoolStatsSource) -> None:
    """Stop exporting ``source``'s pool figures (on close)."""
    _pools.discard(source)


class _PoolCollector(Collector):
    """Reads every watched pool at scrape time, summed per engine."""

    def collect(self) -> Iterable[Any]:
        totals: dict[str, dict[str, int]] = {}
        for source in list(_pools):
            stats = source.pool_stats()
            row = totals.setdefault(stats.engine, dict.fromkeys(POOL_METRICS, 0))
            for name, value in _pool_values(stats).items():
                row[name] += value
        for name, (kind, help_text) in POOL_METRICS.items():
            family: Any = (
                CounterMetricFamily(name.removesuffix("_total"), help_text, labels=["engine"])
                if kind == "counter"
                else GaugeMetricFamily(name, help_text, labels=["engine"])
            )
            for engine, row in sorted(totals.items()):
                family.add_metric([engine], row[name])
            yield family


def _pool_values(stats: PoolStats) -> dict[str, int]:
    return {
        "kronika_db_pool_size": stats.size,
        "kronika_db_pool_max": stats.max,
        "kronika_db_pool_in_use": stats.in_use,
        "kronika_db_pool_waiting": stats.waiting,
        "kronika_db_pool_acquire_timeouts_total": stats.acquire_timeouts,
        "kronika_db_connection_errors_total": stats.connection_errors,
    }


REGISTRY.register(_PoolCollector())

_FAMILIES: tuple[MetricWrapperBase, ...] = (
    EVENTS_APPENDED,
    APPEND_DURATION,
    APPENDS_FAILED,
    COMMANDS,
    COMMAND_DURATION,
    COMMAND_ERRORS,
    AGGREGATES_LOADED,
    SNAPSHOT_HITS,
    HANDLER_DURATION,
    SAGA_EXECUTIONS,
    SAGA_DURATION,
    HEAD_POSITION,
    PROCESSOR_POSITION,
    PROCESSOR_LAG_EVENTS,
    PROCESSOR_LAG_SECONDS,
    FAILED_KEYS,
    DEAD_LETTERS,
    REPLAY_PROGRESS,
    HTTP_REQUESTS,
    HTTP_DURATION,
    HTTP_REJECTIONS,
    SSE_SUBSCRIBERS,
    READY,
)


def _exposed(metric: MetricWrapperBase) -> str:
    name: str = metric._name
    return name + ("_total" if metric._type == "counter" else "")


METRICS: dict[str, str] = {
    **{_exposed(m): str(m._type) for m in _FAMILIES},
    **{name: kind for name, (kind, _) in POOL_METRICS.items()},
}
"""Every Kronika metric name (as exposed) and its type; docs/reference/metrics.md lists
each, and a test keeps the two in step. Process metrics (``process_*``, ``python_*``) come
from prometheus-client itself."""

LABELS: dict[str, tuple[str, ...]] = {
    **{_exposed(m): tuple(m._labelnames) for m in _FAMILIES},
    **dict.fromkeys(POOL_METRICS, ("engine",)),
}
"""Every Kronika metric's label names (bounded values only: see the module docstring)."""

# -- helpers for the call sites -------------------------------------------------------------


class _Children:
    """Label children looked up once per label values, for the hot paths."""

    def __init__(self, metric: MetricWrapperBase) -> None:
        self.metric = metric
        self.cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.cache.get(values)
        if child is None:
            child = self.cache[values] = self.metric.labels(*values)
        return child


_appended = _Children(EVENTS_APPENDED)
_append_duration = _Children(APPEND_DURATION)
_append_failed = _Children(APPENDS_FAILED)
_commands = _Children(COMMANDS)
_command_duration = _Children(COMMAND_DURATION)
_command_errors = _Children(COMMAND_ERRORS)
_handler_duration = _Children(HANDLER_DURATION)
_http_requests = _Children(HTTP_REQUESTS)
_http_duration = _Children(HTTP_DURATION)
_rejections = _Children(HTTP_REJECTIONS)


def _code(exc: BaseException) -> str:
    return exc.code if isinstance(exc, KronikaError) else "internal_error"


_append_children: dict[str, tuple[Any, Any]] = {}


def _bind_append(engine: str) -> tuple[Any, Any]:
    children = (EVENTS_APPENDED.labels(engine), APPEND_DURATION.labels(engine))
    _append_children[engine] = children
    return children


async def timed_append(engine: str, events: int, call: Awaitable[T]) -> T:
    """Await one append call, counting its events on success and its error otherwise."""
    appended, duration = _append_children.get(engine) or _bind_append(engine)
    started = perf_counter()
    try:
        result = await call
    except Exception as exc:
        duration.observe(perf_counter() - started)
        _append_failed(engine, _code(exc)).inc()
        raise
    duration.observe(perf_counter() - started)
    appended.inc(events)
    return result


async def timed_command(command: str, call: Awaitable[T]) -> T:
    """Await one command dispatch, counting it, its duration and its error if any."""
    started = time.perf_counter()
    _commands(command).inc()
    try:
        return await call
    except Exception as exc:
        _command_errors(command, _code(exc)).inc()
        raise
    finally:
        _command_duration(command).observe(time.perf_counter() - started)


def aggregate_loaded(aggregate: str, *, from_snapshot: bool) -> None:
    """Count one aggregate load (and a snapshot hit when it started from one)."""
    AGGREGATES_LOADED.labels(aggregate).inc()
    if from_snapshot:
        SNAPSHOT_HITS.labels(aggregate).inc()


async def timed_handler(processor: str, call: Awaitable[T]) -> T:
    """Await one processor handler call and observe its duration."""
    started = time.perf_counter()
    try:
        return await call
    finally:
        _handler_duration(processor).observe(time.perf_counter() - started)


def handler_durations(processor: str, seconds: Sequence[float]) -> None:
    """Observe the durations of several handler calls (a batch's) at once.

    The same as one observation each, for a fraction of the cost: the sum is added once,
    and each bucket is incremented once by the number of values that fall in it.
    """
    if seconds:
        _observe_many(_handler_duration(processor), seconds)


def _observe_many(child: Any, values: Sequence[float]) -> None:
    """``child.observe(v)`` for every value, through the histogram child's own values
    (as ``observe`` does: the first bucket whose upper bound is at least the value)."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None:  # another prometheus-client
        for value in values:
            child.observe(value)
        return
    counts: dict[int, int] = {}
    for value in values:
        index = bisect_left(bounds, value)
        counts[index] = counts.get(index, 0) + 1
    total.inc(sum(values))
    for index, count in counts.items():
        buckets[index].inc(count)


@contextmanager
def saga_execution(saga: str) -> Iterator[None]:
    """Count and time one saga handler run."""
    started = time.perf_counter()
    try:
        yield
    except Exception:
        SAGA_EXECUTIONS.labels(saga, "error").inc()
        raise
    else:
        SAGA_EXECUTIONS.labels(saga, "ok").inc()
    finally:
        SAGA_DURATION.labels(saga).observe(time.perf_counter() - started)


_http_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    """Record one answered HTTP request (``route`` is the template, never the raw path)."""
    children = _http_children.get((method, route, status))
    if children is None:  # one lookup per request: both children for this answer at once
        children = _http_children[method, route, status] = (
            _http_requests(method, route, str(status)),
            _http_duration(method, route),
        )
    children[0].inc()
    children[1].observe(seconds)


def rejected(reason: str) -> None:
    """Count one request refused by a limit (rate_limit, concurrency_limit, stream_limit)."""
    _rejections(reason).inc()


def set_sse_subscribers(count: int) -> None:
    """Set how many event streams are open now."""
    SSE_SUBSCRIBERS.set(count)


def set_ready(ready: bool) -> None:
    """Record the latest readiness verdict."""
    READY.set(1 if ready else 0)


def set_head(position: int) -> None:
    """Record the store's newest global position."""
    HEAD_POSITION.set(position)


def set_processor(  # noqa: PLR0917 - one call per processor status, every figure named
    processor: str,
    position: int,
    lag_events: int,
    lag_seconds: float,
    parked: int,
    quarantined: int,
) -> None:
    """Record one processor's position, lag and failed keys."""
    PROCESSOR_POSITION.labels(processor).set(position)
    PROCESSOR_LAG_EVENTS.labels(processor).set(lag_events)
    PROCESSOR_LAG_SECONDS.labels(processor).set(lag_seconds)
    FAILED_KEYS.labels(processor, "parked").set(parked)
    FAILED_KEYS.labels(processor, "quarantined").set(quarantined)
    DEAD_LETTERS.labels(processor).set(quarantined)


def set_replay_progress(processor: str, progress: float | None) -> None:
    """Record a running replay's progress (``None``: no replay running, drop the series)."""
    if progress is None:
        with suppress(KeyError):
            REPLAY_PROGRESS.remove(processor)
        return
    REPLAY_PROGRESS.labels(processor).set(progress)


# -- the public API for applications (E6) ---------------------------------------------------

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _check_name(name: str, labels: Sequence[str]) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(f"metric name {name!r} is not a valid Prometheus name")
    if name.startswith(PREFIX):
        raise ConfigurationError(f"metric name {name!r}: the kronika_ prefix is Kronika's own")
    for label in labels:
        if not _NAME.match(label) or ":" in label or label.startswith("__"):
            raise ConfigurationError(f"label name {label!r} of {name!r} is not valid")


def _define(factory: Callable[..., T], name: str, help_text: str, labels: Sequence[str]) -> T:
    _check_name(name, labels)
    try:
        return factory(name, help_text, list(labels), registry=REGISTRY)
    except ValueError as exc:  # a duplicate name: prometheus-client's own error
        raise ConfigurationError(f"metric {name!r}: {exc}") from None


def counter(name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
    """A counter on Kronika's registry, exported at ``/metrics`` with Kronika's own."""
    return _define(Counter, name, help_text, labels)


def gauge(name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
    """A gauge on Kronika's registry."""
    return _define(Gauge, name, help_text, labels)


def histogram(name: str, help_text: str, labels: Sequence[str] = ()) -> Histogram:
    """A histogram on Kronika's registry (prometheus-client's default buckets)."""
    return _define(Histogram, name, help_text, labels)


def exposition(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The registry in Prometheus's text format, as served at ``/metrics``."""
    return generate_latest(registry)
