"""Backup and restore: ``kronika backup``, ``backup verify`` and ``restore`` on a large store.

    python -m benchmarks.backup [--backend sqlite|postgres|all] [--scale tiny|small|full]
                                [--json out.json] [--strict]

Per backend, a fresh store is loaded with the scale's events (untimed; every event has
tags and metadata, streams of 500 events). Then the real CLI runs in a child process, so
its wall-clock time and peak memory (VmHWM) are its own: ``kronika backup`` of the store,
``kronika backup verify`` of the archive, ``kronika restore`` into a fresh store of the same
engine and, with ``--backend all``, into the other engine. The restored store's event
count and last position are checked. Targets (issue 7): backup and restore of 1,000,000
events each under 120 s; peak memory that does not grow with the store's size (compare
the scales). See docs/benchmarks.md ("Backup and restore").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.backends import Backend
from benchmarks.cli import make_backends, options, run_and_report
from benchmarks.common import METADATA, order_data
from kronika import NewEvent, open_store

__all__ = ["main"]


@dataclass(frozen=True, kw_only=True)
class BackupScale:
    """How many events the store holds."""

    name: str
    events: int
    stream_events: int = 500
    """Events per stream, appended in one call."""


SCALES = {
    "tiny": BackupScale(name="tiny", events=2_000),
    "small": BackupScale(name="small", events=100_000),
    "full": BackupScale(name="full", events=1_000_000),
}
TARGET_SECONDS = 120.0
"""Backup and restore of 1M events, each (issue 7)."""
WRITERS = 4
"""Concurrent appenders while loading (untimed)."""


async def load(url: str, scale: BackupScale) -> int:
    """Fill the store; return its last position."""
    async with open_store(url) as store:
        streams = scale.events // scale.stream_events
        queue = iter(range(streams))

        async def writer() -> None:
            for s in queue:
                base = s * scale.stream_events
                events = [
                    NewEvent(
                        "OrderPlaced",
                        order_data(base + i),
                        METADATA,
                        tags=("order", f"customer-{(base + i) % 100}"),
                    )
                    for i in range(scale.stream_events)
                ]
                await store.append(f"order-{s}", events)

        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        return await store.head_position()


PEAK = """
import runpy, sys
report, sys.argv = sys.argv[1], ["kronika", *sys.argv[2:]]
try:
    runpy.run_module("kronika", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status, open(report, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM")))
"""
"""Runs the CLI, then writes its peak resident memory (kB). VmHWM belongs to the process's
own address space: ru_maxrss would include the (large) parent it was forked from."""


def cli(args: list[str], folder: Path) -> dict[str, float]:
    """Run ``kronika ARGS`` in a child process: its seconds and peak memory (MiB)."""
    report = folder / "peak"
    command = [sys.executable, "-c", PEAK, str(report), *args]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"kronika {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return {"seconds": seconds, "peak_mib": int(report.read_text()) / 1024}


async def restored(url: str) -> tuple[int, int]:
    """Events and last position of a restored store."""
    async with open_store(url) as store:
        head = await store.head_position()
        count, position = 0, 0
        while page := await store.read_all(from_position=position + 1, limit=10_000):
            count += len(page)
            position = page[-1].position
        return count, head


@contextlib.asynccontextmanager
async def fresh(backend: Backend, label: str) -> AsyncIterator[str]:
    """A fresh store URL on ``backend``."""
    async with backend.fresh_kronika_url(label) as url:
        yield url


async def measure(
    source: Backend, targets: list[Backend], scale: BackupScale, folder: Path, log: Console
) -> dict[str, Any]:
    """Load one store, back it up, verify the archive, restore it into each target."""
    archive = folder / f"{source.name}.kar"
    result: dict[str, Any] = {"backend": source.name, "events": scale.events}
    async with fresh(source, "src") as url:
        begin = time.perf_counter()
        head = await load(url, scale)
        log.print(
            f"  {source.name}: loaded {scale.events:,} events in {time.perf_counter() - begin:.1f}s"
        )
        result["backup"] = cli(["--url", url, "backup", str(archive), "--quiet"], folder)
        result["archive_bytes"] = archive.stat().st_size
        log.print(f"  {source.name}: backup {result['backup']['seconds']:.1f}s")
    result["verify"] = cli(["backup", "verify", str(archive), "--quiet"], folder)
    result["restores"] = {}
    for target in targets:
        async with fresh(target, "dst") as url:
            measured = cli(["--url", url, "restore", str(archive), "--quiet"], folder)
            count, last = await restored(url)
            if count != scale.events or last < head:
                raise RuntimeError(f"restored {count} events up to {last}, expected {scale.events}")
            result["restores"][target.name] = measured
            log.print(f"  {source.name} -> {target.name}: restore {measured['seconds']:.1f}s")
    archive.unlink()
    return result


def verdict(seconds: float, scale: BackupScale) -> str:
    """PASS/FAIL against the 1M-event target, scaled linearly below 1M (n/a for tiny)."""
    if scale.name == "tiny":
        return "n/a"
    limit = TARGET_SECONDS * scale.events / 1_000_000
    return "PASS" if seconds < limit else "FAIL"


async def run(args: argparse.Namespace, log: Console) -> list[dict[str, Any]]:
    """Measure every selected backend (and cross-engine restores when both are)."""
    scale = SCALES[args.scale]
    backends = make_backends(args.backend, args.postgres_url)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kronika-backup-bench-") as folder:
        try:
            for backend in backends:
                reason, _ = await backend.unavailable()
                if reason:
                    results.append({"backend": backend.name, "error": reason})
                    continue
                targets = [backend, *(b for b in backends if b is not backend)]
                try:
                    results.append(await measure(backend, targets, scale, Path(folder), log))
                except Exception as exc:  # reported in the table; the others still run
                    results.append({"backend": backend.name, "error": f"{exc}"})
        finally:
            for backend in backends:
                await backend.close()
    for r in results:
        if "error" not in r:
            r["verdicts"] = {
                "backup": verdict(r["backup"]["seconds"], scale),
                **{
                    f"restore->{name}": verdict(m["seconds"], scale)
                    for name, m in r["restores"].items()
                },
            }
    return results


def render(results: list[dict[str, Any]], out: Console, title: str) -> None:
    """The results as a table on stdout."""
    table = Table(title=title)
    for column in ("source", "step", "seconds", "events/s", "peak MiB", "verdict"):
        table.add_column(column)
    for r in results:
        if "error" in r:
            table.add_row(r["backend"], "error", r["error"], "", "", "ERROR")
            continue
        steps = [
            ("backup", r["backup"], r["verdicts"]["backup"]),
            ("verify", r["verify"], "n/a"),
            *(
                (f"restore -> {name}", m, r["verdicts"][f"restore->{name}"])
                for name, m in r["restores"].items()
            ),
        ]
        for step, m, mark in steps:
            rate = r["events"] / m["seconds"]
            table.add_row(
                r["backend"], step, f"{m['seconds']:.1f}", f"{rate:,.0f}",
                f"{m['peak_mib']:.0f}", mark,
            )  # fmt: skip
        mib = r["archive_bytes"] / 2**20
        table.add_row(r["backend"], f"archive: {mib:.1f} MiB", "", "", "", "")
    out.print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (and write JSON); return the exit status."""
    args = options(
        "backup",
        __doc__,
        scales=SCALES,
        default_scale="small",
        backends=["sqlite", "postgres", "postgresql", "all"],
        backend_help="backend to measure; all = sqlite and postgres, plus cross-engine restores",
    ).parse_args(argv)
    scale = SCALES[args.scale]
    return run_and_report(
        "backup",
        args,
        run,
        render,
        title=f"Kronika backup benchmark, scale {args.scale} ({scale.events:,} events)",
        scale=asdict(scale),
    )


if __name__ == "__main__":
    sys.exit(main())
