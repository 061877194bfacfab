"""What metrics cost on the append path: the same appends with instrumentation on and off.

    python -m benchmarks.metrics_overhead [--appends N] [--repeats N] [--postgres URL]

"Off" replaces ``metrics.timed_append`` (the one call the store makes per append) with a
plain ``await``; everything else is identical. Runs alternate (off, on, off, on, ...) on a
fresh store each time and the best of each side is compared. Single-event appends are the
worst case: the per-call cost is spread over one event. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import kronika
from kronika import NewEvent
from kronika.observability import metrics
from kronika.store import base

T = TypeVar("T")
INSTRUMENTED = metrics.timed_append


async def _plain(engine: str, events: int, call: Awaitable[T]) -> T:
    return await call


async def _run(url: str, appends: int, batch: int, instrumented: bool) -> float:
    base.metrics.timed_append = INSTRUMENTED if instrumented else _plain  # type: ignore[assignment]
    async with kronika.open_store(url) as store:
        batches = [[NewEvent("Numbered", {"n": n}) for n in range(batch)] for _ in range(appends)]
        started = time.perf_counter()
        for i, events in enumerate(batches):
            await store.append(f"bench-{i % 100}", events)
        return appends * batch / (time.perf_counter() - started)


async def _compare(url_of: Any, appends: int, batch: int, repeats: int) -> tuple[float, float]:
    best = {False: 0.0, True: 0.0}
    for _ in range(repeats):
        for instrumented in (False, True):
            best[instrumented] = max(
                best[instrumented], await _run(url_of(), appends, batch, instrumented)
            )
    base.metrics.timed_append = INSTRUMENTED  # type: ignore[assignment]
    return best[False], best[True]


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
    print("| backend | events per append | off (events/s) | on (events/s) | overhead |")
    print("| --- | --- | --- | --- | --- |")
    for name, url_of in backends.items():
        for batch in (1, 10):
            appends = args.appends if name != "postgresql" else args.appends // 3
            off, on = asyncio.run(_compare(url_of, appends, batch, args.repeats))
            print(f"| {name} | {batch} | {off:,.0f} | {on:,.0f} | {(off - on) / off:+.1%} |")


if __name__ == "__main__":
    main()
