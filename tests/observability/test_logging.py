"""Structured logs: JSON lines with bound context, per-logger levels and redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

import kronika
from kronika import NewEvent, RecordedEvent
from kronika.domain.retry import RetryPolicy
from kronika.errors import ConfigurationError
from kronika.observability.logging import (
    ENVIRONMENT,
    REDACTED,
    configure_logging,
    event_log_context,
    log_context,
    parse_levels,
)
from kronika.runtime import Context, Projection, Worker, on

SECRET = "s3cr3t-Pa55word-do-not-log"
EMAIL = "ann.person@example.org"


class Captured(io.StringIO):
    def __init__(self, tty: bool = False) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines() if line.strip()]


@pytest.fixture
def configure() -> Iterator[Any]:
    """``configure(env=..., tty=...)`` -> the captured stream; logging is restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    touched: list[str] = []

    def run(env: dict[str, str] | None = None, tty: bool = False, **options: Any) -> Captured:
        stream = Captured(tty)
        environ = env or {}
        touched.extend(parse_levels(environ.get("KRONIKA_LOG_LEVELS", "")))
        configure_logging("kronika-test", environ=environ, stream=stream, **options)
        return stream

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in touched:
        logging.getLogger(name).setLevel(logging.NOTSET)
    structlog.reset_defaults()


def test_stdlib_extras_become_json_fields_with_the_bound_context(configure: Any) -> None:
    out = configure(fields={"namespace": "shop"})
    with kronika.caused_by("cmd-1", "corr-1"), log_context({"correlation_id": "corr-1"}):
        logging.getLogger("kronika.runtime").warning(
            "handler failed", extra={"action": "park", "partition": 3}
        )
    [line] = out.records()
    assert line["event"] == "handler failed"
    assert line["level"] == "warning"
    assert line["logger"] == "kronika.runtime"
    assert line["service"] == "kronika-test"
    assert line["namespace"] == "shop"
    assert line["action"] == "park"
    assert line["partition"] == 3
    assert line["correlation_id"] == "corr-1"
    assert "timestamp" in line


def test_structlog_loggers_write_the_same_lines(configure: Any) -> None:
    out = configure()
    structlog.get_logger("app").info("order placed", order_id="o-1")
    [line] = out.records()
    assert line["event"] == "order placed"
    assert line["order_id"] == "o-1"
    assert line["service"] == "kronika-test"


def test_levels_per_logger(configure: Any) -> None:
    out = configure({"KRONIKA_LOG_LEVEL": "warning", "KRONIKA_LOG_LEVELS": "kronika.runtime=debug"})
    logging.getLogger("kronika.runtime").debug("shown")
    logging.getLogger("kronika.server").info("hidden")
    assert [line["event"] for line in out.records()] == ["shown"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KRONIKA_LOG_LEVEL", "loud"),
        ("KRONIKA_LOG_LEVELS", "kronika.runtime"),
        ("KRONIKA_LOG_LEVELS", "kronika=verbose"),
        ("KRONIKA_LOG_FORMAT", "xml"),
    ],
)
def test_bad_settings_name_the_variable(configure: Any, variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        configure_logging("kronika-test", environ={variable: value}, stream=Captured())


def test_a_terminal_gets_readable_lines(configure: Any) -> None:
    out = configure(tty=True)
    logging.getLogger("kronika.server").info("request", extra={"status": 200})
    text = out.getvalue()
    assert "request" in text
    assert "status=200" in text
    assert not text.lstrip().startswith("{")


def test_secrets_are_redacted(configure: Any) -> None:
    out = configure({"KRONIKA_LOG_SENSITIVE": "iban"})
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJlLXZhbHVl"
    logging.getLogger("kronika").info(
        f"connecting with Bearer {SECRET}",
        extra={
            "password": SECRET,
            "jwt_secret": SECRET,
            "api_key": SECRET,
            "headers": {"Authorization": f"Bearer {SECRET}"},
            "url": f"postgresql://kronika:{SECRET}@db.internal:5432/app",
            "detail": f"token was {jwt}",
            "iban": "DE89370400440532013000",
        },
    )
    text = out.getvalue()
    assert SECRET not in text
    assert jwt not in text
    assert "DE89370400440532013000" not in text
    [line] = out.records()
    assert line["password"] == REDACTED
    assert line["url"] == f"postgresql://kronika:{REDACTED}@db.internal:5432/app"
    assert line["headers"] == {"Authorization": REDACTED}


def test_values_marked_personal_in_the_handled_event_are_redacted(configure: Any) -> None:
    out = configure()
    event = RecordedEvent(
        id=kronika.NewEvent(type="x", data={}).event_id,
        stream="customer-1",
        version=0,
        position=1,
        type="Registered",
        data={"email": EMAIL, "plan": "gold"},
        metadata={"kronika.pii": ["email"], "correlation_id": "corr-9"},
        tags=(),
        recorded_at=datetime.now(UTC),
    )
    with event_log_context("welcome", 2, event):
        logging.getLogger("kronika.runtime").warning(
            "handler failed", extra={"error": f"ValueError: cannot mail {EMAIL}"}
        )
    assert EMAIL not in out.getvalue()
    [line] = out.records()
    assert line["error"] == f"ValueError: cannot mail {REDACTED}"
    assert line["processor"] == "welcome"
    assert line["partition"] == 2
    assert line["stream"] == "customer-1"
    assert line["event_type"] == "Registered"
    assert line["correlation_id"] == "corr-9"


def test_exporter_errors_are_rate_limited(configure: Any) -> None:
    out = configure()
    exporter = logging.getLogger("opentelemetry.exporter.otlp.common.http")
    for _ in range(50):
        exporter.error("Failed to export %s batch: %s", "spans", "connection refused")
    assert len(out.records()) == 1


class Welcome(Projection):
    name = "welcome"
    retry = RetryPolicy(max_attempts=1, initial_delay=0.01, max_delay=0.01, jitter=False)

    @on("Registered")
    async def registered(self, event: RecordedEvent, ctx: Context) -> None:
        raise ValueError(f"cannot send a welcome mail to {event.data['email']}")


async def test_a_failing_handler_logs_the_correlation_id_but_not_the_personal_value(
    configure: Any, memory_url: str
) -> None:
    out = configure()
    async with kronika.open_store(memory_url) as store:
        with kronika.caused_by("signup-1", "corr-signup-1"):
            await store.append(
                "customer-1",
                [
                    NewEvent(
                        type="Registered",
                        data={"email": EMAIL},
                        metadata={"kronika.pii": ["email"]},
                    )
                ],
            )
        worker = Worker(store, [Welcome()], lease_ttl=1.0, drain_timeout=5)
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(10):
                while True:
                    if "handler failed" in out.getvalue():
                        break
                    await asyncio.sleep(0.02)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 15)
    assert EMAIL not in out.getvalue()
    [failed] = [line for line in out.records() if line["event"] == "handler failed"]
    assert failed["correlation_id"] == "corr-signup-1"
    assert REDACTED in failed["error"]


DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("variable", [*ENVIRONMENT, "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_every_logging_and_tracing_variable_is_documented(variable: str) -> None:
    config = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    assert f"`{variable}`" in config
    reference = (DOCS / "reference" / "observability.md").read_text(encoding="utf-8")
    assert variable in reference or variable.startswith("KRONIKA_LOG_")
