"""Kronika's event store against raw sqlite3 / psycopg doing the same work.

    python -m benchmarks.store [--backend sqlite|postgresql|memory|all] [--scale tiny|small|full]
                               [--only W1,W4] [--repeats N] [--json out.json]

Every measurement runs on a fresh database (a temporary SQLite file, or a new PostgreSQL
schema that is dropped afterwards). Raw and Kronika measurements alternate (raw, Kronika,
raw, Kronika, ...) and the best of each side is compared. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

import kronika
from benchmarks.backends import Backend
from benchmarks.cli import git_revision, make_backends, options
from benchmarks.common import SCALES, WORKLOADS, Sample, Scale
from benchmarks.report import Result, render, to_json, to_markdown
from kronika.store.options import redact_url

__all__ = ["main"]

TIMEOUTS = {"tiny": 60.0, "small": 180.0, "full": 900.0}
"""Seconds one measurement (set-up included) may take before it counts as an error."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = options(
        "store",
        __doc__,
        scales=SCALES,
        default_scale="small",
        scale_help="tiny (smoke test), small (~1 min, default) or full (published figures)",
        backends=["sqlite", "postgresql", "memory", "all"],
        backend_help="backend to measure; all = sqlite and postgresql (default)",
        repeats="measurements per side (best is kept)",
    )
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W4")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="store option for the Kronika side (repeatable)",
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the table as Markdown"
    )
    return parser.parse_args(argv)


def selected_workloads(only: str) -> list[str]:
    """Workloads named in ``--only`` (all when empty), in the canonical order."""
    wanted = {w.strip().upper() for w in only.split(",") if w.strip()}
    unknown = wanted - {w.upper() for w in WORKLOADS}
    if unknown:
        known = ", ".join(WORKLOADS)
        raise SystemExit(f"unknown workload(s): {', '.join(sorted(unknown))}; known: {known}")
    return [w for w in WORKLOADS if not wanted or w.upper() in wanted]


def store_options(items: list[str]) -> dict[str, str]:
    """``--option KEY=VALUE`` arguments as a dict."""
    bad = [item for item in items if "=" not in item]
    if bad:
        raise SystemExit(f"--option takes KEY=VALUE, got: {', '.join(bad)}")
    return dict(item.split("=", 1) for item in items)


async def attempt(run: Callable[[], Awaitable[Sample]], scale: Scale) -> Sample | str:
    """One measurement: its sample, or the error (or time-out) it ended with."""
    gc.collect()
    try:
        async with asyncio.timeout(TIMEOUTS[scale.name]):
            return await run()
    except TimeoutError:
        return f"timed out after {TIMEOUTS[scale.name]:g}s"
    except Exception as exc:  # reported in the table, the run goes on
        return f"{type(exc).__name__}: {exc}"


class Runner:
    """Measures workloads on one backend, alternating raw and Kronika."""

    def __init__(self, backend: Backend, scale: Scale, log: Console) -> None:
        self.backend, self.scale, self.log = backend, scale, log
        self.kronika_reason: str | None = None
        self.raw_reason: str | None = None

    async def prepare(self) -> None:
        """Find out which sides can run."""
        self.kronika_reason, self.raw_reason = await self.backend.unavailable()
        for reason in {self.kronika_reason, self.raw_reason} - {None}:
            self.log.print(f"[yellow]{self.backend.name}: {reason}[/]")

    async def _side(self, result: Result, side: str, workload: str, rep: int) -> None:
        label = f"{workload.lower()}_{rep}"
        run = self.backend.run_raw if side == "raw" else self.backend.run_kronika
        begin = time.perf_counter()
        outcome = await attempt(lambda: run(workload, self.scale, label), self.scale)
        where = f"  {self.backend.name} {workload:<3} {side:<7} #{rep + 1}:"
        if isinstance(outcome, str):
            setattr(result, f"{side}_error", outcome)
            self.log.print(f"{where} [red]{outcome}[/]")
            return
        getattr(result, side).append(outcome)
        extra = f", missed {outcome.missed}" if outcome.missed is not None else ""
        wall = time.perf_counter() - begin
        self.log.print(f"{where} {outcome.rate:>11,.0f} ev/s{extra} [dim]({wall:.1f}s in all)[/]")

    async def measure(self, workload: str) -> Result:
        """All repetitions of one workload, raw first in each round."""
        result = Result(backend=self.backend.name, workload=workload, has_raw=self.backend.has_raw)
        for rep in range(self.scale.repeats):
            if self.backend.has_raw and self.raw_reason is None and result.raw_error is None:
                await self._side(result, "raw", workload, rep)
            if self.kronika_reason is None and result.kronika_error is None:
                await self._side(result, "kronika", workload, rep)
        return result


def store_digest() -> str:
    """A digest of Kronika's store sources, to tell which backend code was measured."""
    root = Path(kronika.__file__).parent / "store"
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in {".py", ".sql"}:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
    }


async def run(args: argparse.Namespace, log: Console) -> tuple[list[Result], list[dict[str, Any]]]:
    """Measure every selected workload on every selected backend; describe the backends."""
    scale = SCALES[args.scale]
    if args.repeats:
        scale = replace(scale, repeats=args.repeats)
    results: list[Result] = []
    described: list[dict[str, Any]] = []
    for backend in make_backends(args.backend, args.postgres_url, store_options(args.option)):
        runner = Runner(backend, scale, log)
        try:
            await runner.prepare()
            results.extend([await runner.measure(w) for w in selected_workloads(args.only)])
        finally:
            await backend.close()
        described.append(backend.describe())
    return results, described


def describe_run(args: argparse.Namespace, started: datetime, load: list[float]) -> dict[str, Any]:
    """What the JSON report says about the run itself."""
    scale = SCALES[args.scale]
    return {
        "started": started.isoformat(),
        "kronika_version": kronika.__version__,
        "git": git_revision(),
        "store_digest": store_digest(),
        "machine": {**machine(), "load_average_at_start": load},
        "scale": asdict(replace(scale, repeats=args.repeats or scale.repeats)),
        "postgres_url": redact_url(args.postgres_url) if args.postgres_url else None,
        "command": ["python", "-m", "benchmarks.store", *sys.argv[1:]],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (and write JSON/Markdown); return the exit status."""
    args = parse_args(argv)
    out, log = Console(), Console(stderr=True)
    if not out.is_terminal:
        out = Console(width=max(out.width, 160))
    started, load, begin = datetime.now(UTC), list(os.getloadavg()), time.perf_counter()
    results, backends = asyncio.run(run(args, log))
    meta = {
        **describe_run(args, started, load),
        "backends": backends,
        "seconds": round(time.perf_counter() - begin, 1),
    }
    repeats = meta["scale"]["repeats"]
    title = (
        f"Kronika store benchmark, scale {args.scale}, best of {repeats} "
        f"(median in parentheses), {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs"
    )
    caption = (
        f"git {meta['git']}, store digest {meta['store_digest']}, load average "
        f"{load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end, {meta['seconds']}s"
    )
    render(results, out, title, caption)
    if args.json:
        args.json.write_text(json.dumps(to_json(results, meta), indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(to_markdown(results))
    if any(r.verdict == "ERROR" for r in results):
        return 1
    return 1 if args.strict and any(r.verdict == "FAIL" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
