"""What tracing costs on the append path: stripped, off (no endpoint) and on.

    python -m benchmarks.tracing_overhead [--appends N] [--repeats N] [--postgres URL]

- **stripped**: the span decorator of ``append`` and the ``traceparent`` lookup taken out, as
  if the code had no tracing at all (the baseline);
- **off**: as shipped with no ``OTEL_EXPORTER_OTLP_ENDPOINT`` (no SDK provider);
- **on**: an SDK provider with a ``BatchSpanProcessor`` whose exporter drops the spans, so
  the number is the in-process cost of recording (export runs on its own thread anyway).

Runs alternate on a fresh store each time and the best of each side is compared;
single-event appends are the worst case. See docs/benchmarks.md, "Tracing overhead".
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import kronika
from kronika import NewEvent
from kronika.observability import tracing
from kronika.store import base

SHIPPED = base.StoreBase.append
STRIPPED = SHIPPED.__wrapped__  # type: ignore[attr-defined]
TRACEPARENT = tracing.current_traceparent
MODES = ("stripped", "off", "on")


class Dropping(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _set(mode: str, provider: TracerProvider) -> None:
    base.StoreBase.append = STRIPPED if mode == "stripped" else SHIPPED  # type: ignore[method-assign]
    tracing.current_traceparent = (  # type: ignore[assignment]
        (lambda: None) if mode == "stripped" else TRACEPARENT
    )
    tracing.use_tracer_provider(provider if mode == "on" else None)


async def _run(url: str, appends: int, batch: int) -> float:
    async with kronika.open_store(url) as store:
        batches = [[NewEvent("Numbered", {"n": n}) for n in range(batch)] for _ in range(appends)]
        started = time.perf_counter()
        for i, events in enumerate(batches):
            await store.append(f"bench-{i % 100}", events)
        return appends * batch / (time.perf_counter() - started)


def _compare(url_of: Any, appends: int, batch: int, repeats: int) -> dict[str, float]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    best = dict.fromkeys(MODES, 0.0)
    try:
        for _ in range(repeats):
            for mode in MODES:
                _set(mode, provider)
                best[mode] = max(best[mode], asyncio.run(_run(url_of(), appends, batch)))
    finally:
        _set("off", provider)
        provider.shutdown()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL to include")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kronika-bench-"))
    backends: dict[str, Any] = {
        "memory": lambda: f"memory://{uuid.uuid4().hex}",
        "sqlite": lambda: f"sqlite:///{tmp / uuid.uuid4().hex}.db",
    }
    if args.postgres:
        backends["postgresql"] = lambda: f"{args.postgres}?schema=b{uuid.uuid4().hex[:12]}"
    print(
        "| backend | events per append | stripped (events/s) | off | on | off vs stripped "
        "| on vs stripped |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, url_of in backends.items():
        for batch in (1, 10):
            appends = args.appends if name != "postgresql" else args.appends // 3
            got = _compare(url_of, appends, batch, args.repeats)
            bare = got["stripped"]
            print(
                f"| {name} | {batch} | {bare:,.0f} | {got['off']:,.0f} | {got['on']:,.0f} "
                f"| {(got['off'] - bare) / bare:+.1%} | {(got['on'] - bare) / bare:+.1%} |"
            )


if __name__ == "__main__":
    main()
