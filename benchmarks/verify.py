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
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import kronika
from benchmarks.backends import Backend, MemoryBackend, PostgresBackend, SQLiteBackend
from benchmarks.common import EVENT_TYPE, METADATA, order_data
from benchmarks.store import git_revision
from kronika import NewEvent, open_store
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.verify", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--backend",
        choices=["memory", "sqlite", "postgres", "postgresql", "all"],
        default="all",
        help="backend to measure; all = sqlite and postgres (default)",
    )
    parser.add_argument("--scale", choices=list(SCALES), default="full")
    parser.add_argument("--repeats", type=int, default=None, help="full runs (the best is kept)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--postgres-url", default=None, help="as for benchmarks.store")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser.parse_args(argv)


def make_backends(args: argparse.Namespace) -> list[Backend]:
    """The backends the command line asks for."""
    names = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    made: list[Backend] = []
    for name in names:
        if name == "memory":
            made.append(MemoryBackend({}))
        elif name == "sqlite":
            made.append(SQLiteBackend({}))
        else:
            made.append(PostgresBackend({}, args.postgres_url))
    return made


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

    def say(text: str) -> None:
        log.print(f"  {backend.name} {text}")

    async with (
        backend.fresh_kronika_url("verify") as url,
        open_store(url, **backend.options) as store,
    ):
        begin = time.perf_counter()
        await load(store, scale)
        say(f"loaded {scale.events:,} events in {time.perf_counter() - begin:.1f}s")
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
    results = []
    for backend in make_backends(args):
        try:
            reason, _ = await backend.unavailable()
            if reason:
                results.append({"backend": backend.name, "error": reason})
                continue
            results.append(await measure(backend, scale, log))
        except Exception as exc:  # reported in the table; the other backends still run
            results.append({"backend": backend.name, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            await backend.close()
    return results


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


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (and write JSON); return the exit status."""
    args = parse_args(argv)
    out, log = Console(width=160), Console(stderr=True)
    started, load_avg = datetime.now(UTC), list(os.getloadavg())
    results = asyncio.run(run(args, log))
    title = (
        f"kronika verify benchmark, scale {args.scale}, {started:%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs, load {load_avg[0]:.2f} at start"
    )
    render(results, out, title)
    if args.json:
        meta = {
            "started": started.isoformat(),
            "kronika_version": kronika.__version__,
            "git": git_revision(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load_avg,
            "load_average_at_end": list(os.getloadavg()),
            "scale": asdict(SCALES[args.scale]),
            "command": ["python", "-m", "benchmarks.verify", *sys.argv[1:]],
        }
        args.json.write_text(json.dumps({"run": meta, "results": results}, indent=2) + "\n")
    if any("error" in r for r in results):
        return 1
    failed = any(r["verdict"] == "FAIL" for r in results)
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
