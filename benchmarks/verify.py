"""``kronika verify``: how many events per second the hash-chain verifier checks.

    python -m benchmarks.verify [--backend memory|sqlite|postgres|all] [--scale tiny|small|full]
                                [--repeats N] [--json out.json] [--strict]

Per backend, one fresh store is loaded (untimed) with the scale's events, 100 per append,
round-robin over its streams; then a full verification from position 0 runs ``--repeats``
times (the first records checkpoints, the later ones compare them too), and a resumed run
checks only what is new. The target is the issue's: at least 100,000 events/s at the full
scale. See docs/benchmarks.md ("Verify").
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.backends import Backend
from benchmarks.cli import make_backends, measure_each, options, run_and_report
from benchmarks.common import EVENT_TYPE, METADATA, order_data
from kronika import NewEvent
from kronika.store.integrity import chains_of
from kronika.store.protocol import EventStore
from kronika.store.verify import VerifyReport, verify

__all__ = ["main"]

TARGET = 100_000
"""Events per second a full verification must check (issue 7, Speed)."""
BATCH = 100
"""Events per append while loading."""


@dataclass(frozen=True, kw_only=True)
class VerifyScale:
    """How big the verified log is."""

    name: str
    events: int
    streams: int
    repeats: int = 3


SCALES = {
    "tiny": VerifyScale(name="tiny", events=1_000, streams=20, repeats=2),
    "small": VerifyScale(name="small", events=10_000, streams=100),
    "full": VerifyScale(name="full", events=100_000, streams=1_000),
}


async def load(store: EventStore, scale: VerifyScale) -> None:
    """``scale.events`` order events, ``BATCH`` per append, round-robin over the streams."""
    written = 0
    while written < scale.events:
        count = min(BATCH, scale.events - written)
        events = [
            NewEvent(EVENT_TYPE, order_data(written + i), metadata=METADATA) for i in range(count)
        ]
        await store.append(f"order-{(written // BATCH) % scale.streams}", events)
        written += count


def _checked(report: VerifyReport, events: int) -> VerifyReport:
    if not report.clean or report.events != events:
        raise RuntimeError(
            f"verify found {report.problems_total} problems in {report.events} events "
            f"(expected a clean log of {events})"
        )
    return report


async def measure(backend: Backend, scale: VerifyScale, log: Console) -> dict[str, Any]:
    """Load one store, then time full and resumed verifications of it."""

    say = backend.teller(log)
    filled = backend.loaded_store("verify", lambda store: load(store, scale), scale.events, say)
    async with filled as (_, store):
        chains, rates = chains_of(store), []
        for rep in range(scale.repeats):
            gc.collect()
            report = _checked(await verify(chains), scale.events)
            rates.append(report.rate)
            say(f"full verify #{rep + 1}: {report.rate:>9,.0f} ev/s ({report.elapsed:.2f}s)")
        await load(store, VerifyScale(name="more", events=scale.events // 10, streams=10))
        gc.collect()
        resumed = _checked(await verify(chains, resume=True), scale.events // 10)
        say(f"resumed: {resumed.events:,} new events at {resumed.rate:,.0f} ev/s")
    return {
        "backend": backend.name,
        "events": scale.events,
        "streams": scale.streams,
        "rate": max(rates),
        "median": statistics.median(rates),
        "samples": rates,
        "resumed": {"events": resumed.events, "rate": resumed.rate},
        "verdict": "PASS" if max(rates) >= TARGET else "FAIL",
    }


async def run(args: argparse.Namespace, log: Console) -> list[dict[str, Any]]:
    """Measure every selected backend; a backend that fails is reported with its error."""
    scale = SCALES[args.scale]
    if args.repeats:
        scale = VerifyScale(**{**asdict(scale), "repeats": args.repeats})
    backends = make_backends(args.backend, args.postgres_url)
    return await measure_each(backends, lambda backend: measure(backend, scale, log))


def render(results: list[dict[str, Any]], out: Console, title: str) -> None:
    """The results as a table on stdout."""
    table = Table(title=title)
    for column in ("backend", "events", "verify ev/s (median)", "resumed ev/s", ">= 100k ev/s"):
        table.add_column(column)
    for r in results:
        if "error" in r:
            table.add_row(r["backend"], "", f"error: {r['error']}", "", "ERROR")
            continue
        table.add_row(
            r["backend"],
            f"{r['events']:,}",
            f"{r['rate']:,.0f} ({r['median']:,.0f})",
            f"{r['resumed']['rate']:,.0f}",
            r["verdict"],
        )
    out.print(table)


def _failed(result: dict[str, Any]) -> bool:
    return bool(result["verdict"] == "FAIL")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (and write JSON); return the exit status."""
    args = options(
        "verify",
        __doc__,
        scales=SCALES,
        default_scale="full",
        repeats="full runs (the best is kept)",
    ).parse_args(argv)
    return run_and_report(
        "verify",
        args,
        run,
        render,
        title=f"kronika verify benchmark, scale {args.scale}",
        scale=asdict(SCALES[args.scale]),
        failed=_failed,
    )


if __name__ == "__main__":
    sys.exit(main())
