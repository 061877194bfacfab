"""Logs and traces for the long-running commands (``kronika serve``, ``kronika worker``).

Both configure the same way at start: JSON log lines on stdout (see
:mod:`kronika.observability.logging` for the ``KRONIKA_LOG_*`` variables) and, when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, OTLP export of spans. One-shot commands keep their
plain messages on stderr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kronika.domain.context import current_causation
from kronika.observability.logging import configure_logging
from kronika.observability.tracing import configure_tracing

__all__ = ["start_telemetry"]


def causation_fields() -> Mapping[str, Any]:
    """The ids of the :func:`kronika.caused_by` block a log line is written in, if any."""
    causation = current_causation()
    if causation is None:
        return {}
    return {"correlation_id": causation.correlation_id, "causation_id": causation.causation_id}


def start_telemetry(service: str, *, namespace: str | None = None) -> None:
    """Configure logging, then tracing (so that its own messages are structured already)."""
    fields = {"namespace": namespace} if namespace else {}
    configure_logging(service, fields=fields, environ=os.environ, providers=[causation_fields])
    configure_tracing(service, os.environ)
