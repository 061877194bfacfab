"""Structured logs: JSON lines on stdout with bound context, per-logger levels, redaction.

Kronika's modules log with the standard library (``logging.getLogger("kronika.runtime")``
and ``extra={...}``); :func:`configure_logging` routes every stdlib record through structlog,
so the extras become JSON fields next to the bound context:

- ``service`` (and whatever else ``configure_logging`` is given, such as ``namespace``),
- what the ``providers`` given to :func:`configure_logging` return: ``kronika serve`` and
  ``kronika worker`` pass one that adds ``correlation_id`` / ``causation_id`` inside a
  :func:`kronika.caused_by` block (this module imports nothing of Kronika's above
  :mod:`kronika.errors`, so it is handed the function rather than importing it),
- ``trace_id`` / ``span_id`` of the current OpenTelemetry span,
- whatever :func:`log_context` binds (stream, event id, processor, partition).

Redaction runs last, on every line: values of keys that look secret (password, token,
secret, authorization, api_key, ...), of keys named in ``sensitive`` (``KRONIKA_LOG_SENSITIVE``)
and values marked personal in the event being handled (its metadata's ``kronika.pii`` lists
data fields, see :func:`log_context`) become ``"[redacted]"``; passwords in URLs and bearer
tokens inside any string are cut out too.

A terminal gets human-readable lines instead of JSON (``KRONIKA_LOG_FORMAT`` forces either).
The OpenTelemetry exporter's own errors (an unreachable collector) are rate-limited to one
line per message per minute, so a dead collector cannot flood the logs.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import IO, Any

import structlog

from kronika.errors import ConfigurationError
from kronika.observability.tracing import current_trace_ids, handling_span

__all__ = [
    "PII_KEY",
    "REDACTED",
    "ENVIRONMENT",
    "ContextProvider",
    "Redactor",
    "configure_logging",
    "event_log_context",
    "handling",
    "log_context",
    "parse_levels",
    "personal_values",
    "reset_event_log_context",
    "set_event_log_context",
]

ENVIRONMENT = (
    "KRONIKA_LOG_LEVEL",
    "KRONIKA_LOG_LEVELS",
    "KRONIKA_LOG_FORMAT",
    "KRONIKA_LOG_SENSITIVE",
)
"""The variables :func:`configure_logging` reads (documented in docs/reference)."""
REDACTED = "[redacted]"
MIN_PERSONAL = 2
"""Personal values shorter than this are not searched for (one character would blank out
every line it occurs in, and says nothing about anyone)."""
PII_KEY = "kronika.pii"
"""Event metadata key listing the data fields that hold personal values (never logged)."""
LEVELS = {"debug", "info", "warning", "error", "critical"}
SECRET_KEY = re.compile(
    r"passw(or)?d|passphrase|pwd|secret|token|authori[sz]ation|api[_-]?key|cookie|credential"
    r"|private[_-]?key|jwt|dsn",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^\s:/@]*:)[^\s@/]+(?P<at>@)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]+")
_JWT = re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]+")
_EXPORTER_LOGGERS = ("opentelemetry",)
_HANDLER_NAME = "kronika"

_NOTHING: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("kronika_log_context", default=_NOTHING)
_personal: ContextVar[frozenset[str]] = ContextVar("kronika_log_personal", default=frozenset())
_handling: ContextVar[tuple[str, int, Any] | None] = ContextVar("kronika_handling", default=None)


class event_log_context:  # noqa: N801 - used like contextlib's lower-case managers
    """Log lines inside name the event being handled, its processor and partition, and hide
    the event's personal values (fields its metadata's ``kronika.pii`` lists).

    A plain class, not a generator: it runs once per handled event, and costs one context
    variable set and reset; the fields are only worked out when a line is actually logged.
    """

    __slots__ = ("_token", "_value")

    def __init__(self, processor: str, partition: int, event: Any) -> None:
        self._value = (processor, partition, event)
        self._token: Token[tuple[str, int, Any] | None] | None = None

    def __enter__(self) -> None:
        self._token = _handling.set(self._value)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _handling.reset(self._token)


def set_event_log_context(
    processor: str, partition: int, event: Any
) -> Token[tuple[str, int, Any] | None]:
    """What entering :class:`event_log_context` does, for the runtime's hot path (one call
    per handled event); undo it with :func:`reset_event_log_context`."""
    return _handling.set((processor, partition, event))


reset_event_log_context = _handling.reset
"""Undo a :func:`set_event_log_context` (given its token)."""


class handling:  # noqa: N801
    """Everything observed about handling one event: its span (child of the event's
    ``traceparent``, see :func:`.tracing.handling_span`) and :class:`event_log_context`."""

    __slots__ = ("_log", "_span")

    def __init__(self, processor: str, partition: int, event: Any) -> None:
        self._span = handling_span(processor, partition, event)
        self._log = event_log_context(processor, partition, event)

    def __enter__(self) -> None:
        self._span.__enter__()
        self._log.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._log.__exit__()
        self._span.__exit__(*exc)


def _handled_personal() -> frozenset[str]:
    handled = _handling.get()
    if handled is None:
        return frozenset()
    event = handled[2]
    values = (str(v).strip() for v in personal_values(event.data, event.metadata))
    return frozenset(v for v in values if len(v) >= MIN_PERSONAL)


class log_context:  # noqa: N801 - used like the function it was: ``with log_context({...})``
    """Add ``fields`` to every log line inside the block; never log the ``personal`` values.

    ``personal`` values are hidden wherever they appear in a line, also inside an error
    message (a handler that fails with "bad address ann@example.org" is logged with
    "bad address [redacted]").

    A plain class, not a generator context manager: the server opens one per request.
    """

    __slots__ = ("_fields", "_personal", "_ptoken", "_token")

    def __init__(self, fields: Mapping[str, Any], *, personal: Iterable[object] = ()) -> None:
        self._fields = fields
        self._personal = personal
        self._token: Token[Mapping[str, Any]] | None = None
        self._ptoken: Token[frozenset[str]] | None = None

    def __enter__(self) -> None:
        self._token = _context.set({**_context.get(), **self._fields})
        if self._personal:
            values = {str(v).strip() for v in self._personal if v is not None}
            values = {v for v in values if len(v) >= MIN_PERSONAL}
            if values:
                self._ptoken = _personal.set(_personal.get() | values)

    def __exit__(self, *exc: object) -> None:
        if self._ptoken is not None:
            _personal.reset(self._ptoken)
            self._ptoken = None
        if self._token is not None:
            _context.reset(self._token)
            self._token = None


def personal_values(data: Mapping[str, Any], metadata: Mapping[str, Any]) -> list[object]:
    """The values of ``data`` fields that ``metadata['kronika.pii']`` marks personal."""
    marked = metadata.get(PII_KEY)
    if not isinstance(marked, list) or not isinstance(data, Mapping):
        return []
    return [data[name] for name in marked if isinstance(name, str) and name in data]


class Redactor:
    """A structlog processor that replaces secrets and personal values by ``[redacted]``."""

    def __init__(self, sensitive: Iterable[str] = ()) -> None:
        self.sensitive = frozenset(s.lower() for s in sensitive)

    def __call__(
        self, logger: object, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        personal = _personal.get() | _handled_personal()
        return {k: self._value(k, v, personal, 0) for k, v in event.items()}

    def _secret_key(self, key: object) -> bool:
        name = str(key)
        return name.lower() in self.sensitive or SECRET_KEY.search(name) is not None

    def _value(self, key: object, value: Any, personal: frozenset[str], depth: int) -> Any:
        if self._secret_key(key) and value not in (None, "", REDACTED):
            return REDACTED
        if isinstance(value, str):
            return _scrub(value, personal)
        if depth < 4 and isinstance(value, Mapping):
            return {k: self._value(k, v, personal, depth + 1) for k, v in value.items()}
        if depth < 4 and isinstance(value, list | tuple):
            return [self._value("", v, personal, depth + 1) for v in value]
        if value is not None and not isinstance(value, int | float | bool):
            return _scrub(str(value), personal)
        return value


def _scrub(text: str, personal: frozenset[str]) -> str:
    text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}\g<at>", text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    for value in personal:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


ContextProvider = Callable[[], Mapping[str, Any]]
"""A function returning fields to add to the current log line (called per line)."""


def _add_context(
    logger: object, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Bound fields and the current span's ids (fields set on the line itself win)."""
    for key, value in _context.get().items():
        event.setdefault(key, value)
    handled = _handling.get()
    if handled is not None:
        processor, partition, recorded = handled
        event.setdefault("processor", processor)
        event.setdefault("partition", partition)
        event.setdefault("stream", recorded.stream)
        event.setdefault("event_id", str(recorded.id))
        event.setdefault("event_type", recorded.type)
        correlation = recorded.metadata.get("correlation_id")
        if correlation is not None:
            event.setdefault("correlation_id", correlation)
    ids = current_trace_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event


class _RateLimit(logging.Filter):
    """At most one line per (logger, message) per ``interval`` from the OTel exporter."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_EXPORTER_LOGGERS):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -self.interval) < self.interval:
                return False
            self._last[key] = now
        return True


def parse_levels(spec: str, field: str = "KRONIKA_LOG_LEVELS") -> dict[str, int]:
    """``"kronika.runtime=debug,uvicorn=warning"`` -> ``{logger: level}``."""
    levels: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, level = part.partition("=")
        if not sep or not name.strip() or level.strip().lower() not in LEVELS:
            raise ConfigurationError(
                f"{field}: {part!r} is not logger=level (levels: {', '.join(sorted(LEVELS))})"
            )
        levels[name.strip()] = _level(level, field)
    return levels


def _level(name: str, field: str) -> int:
    value = name.strip().lower()
    if value not in LEVELS:
        raise ConfigurationError(f"{field}: {name!r} is not one of {', '.join(sorted(LEVELS))}")
    return int(logging.getLevelName(value.upper()))


def _renderer(fmt: str, stream: IO[str]) -> Any:
    if fmt not in {"auto", "json", "console"}:
        raise ConfigurationError(f"KRONIKA_LOG_FORMAT: {fmt!r} is not auto, json or console")
    tty = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    if tty:
        return [structlog.dev.ConsoleRenderer(colors=False)]
    return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(default=str)]


def configure_logging(
    service: str,
    *,
    fields: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    stream: IO[str] | None = None,
    sensitive: Iterable[str] = (),
    providers: Iterable[ContextProvider] = (),
) -> None:
    """Route stdlib and structlog logging to ``stream`` (stdout) as configured by the env.

    ``KRONIKA_LOG_LEVEL`` (default info), ``KRONIKA_LOG_LEVELS`` (per logger),
    ``KRONIKA_LOG_FORMAT`` (auto, json, console) and ``KRONIKA_LOG_SENSITIVE`` (more field
    names to redact, comma-separated) are read from ``environ``. Calling it again replaces
    the previous configuration.
    """
    env = os.environ if environ is None else environ
    out = stream if stream is not None else sys.stdout
    root_level = _level(env.get("KRONIKA_LOG_LEVEL", "info"), "KRONIKA_LOG_LEVEL")
    levels = parse_levels(env.get("KRONIKA_LOG_LEVELS", ""))
    extra = [s.strip() for s in env.get("KRONIKA_LOG_SENSITIVE", "").split(",") if s.strip()]
    redactor = Redactor([*sensitive, *extra])
    static = {"service": service, **(fields or {})}
    dynamic = tuple(providers)

    def add_static(logger: object, method: str, event: dict[str, Any]) -> dict[str, Any]:
        event.pop("color_message", None)  # uvicorn's copy of the message with ANSI colours
        for key, value in static.items():
            event.setdefault(key, value)
        for provider in dynamic:
            for key, value in provider().items():
                event.setdefault(key, value)
        return event

    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_static,
        _add_context,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redactor,
            *_renderer(env.get("KRONIKA_LOG_FORMAT", "auto").strip().lower(), out),
        ],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    handler.addFilter(_RateLimit())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(root_level)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
