"""What the benchmark commands share: their options, the backends they pick, the run over
the backends, the facts about the run in the table's title and the JSON report, and the
exit status. A benchmark's ``main`` comes down to::

    args = options("verify", __doc__, scales=SCALES, default_scale="full").parse_args(argv)
    return run_and_report("verify", args, run, render, title="...", scale=asdict(scale))

where ``run`` measures the backends (``measure_each(make_backends(...), measure)``) and
``render`` prints their table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

import kronika
from benchmarks.backends import Backend, MemoryBackend, PostgresBackend, SQLiteBackend

__all__ = [
    "ALL_BACKENDS",
    "RunClock",
    "exit_status",
    "git_revision",
    "make_backends",
    "measure_each",
    "missed_a_target",
    "options",
    "run_and_report",
    "write_report",
]

ALL_BACKENDS = ("memory", "sqlite", "postgres", "postgresql", "all")
"""What ``--backend`` takes by default: one engine (two spellings of PostgreSQL), or
``all`` for SQLite and PostgreSQL."""

POSTGRES_URL_HELP = (
    "server for the postgresql backend (default $KRONIKA_BENCH_POSTGRES_URL, "
    "$KRONIKA_TEST_POSTGRES_URL or postgresql://postgres@127.0.0.1:5432/test)"
)

Result = dict[str, Any]


def options(
    module: str,
    doc: str | None,
    *,
    scales: Iterable[str],
    default_scale: str,
    scale_help: str | None = None,
    backends: Sequence[str] = ALL_BACKENDS,
    default_backend: str = "all",
    backend_help: str = "backend to measure; all = sqlite and postgres (default)",
    repeats: str | None = None,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """The parser of ``python -m benchmarks.MODULE`` with the options every benchmark has:
    ``--backend``, ``--scale``, ``--repeats`` (when ``repeats`` gives its help), ``--json``,
    ``--postgres-url`` and ``--strict``. The caller may add its own before parsing.

    ``description`` defaults to the first line of ``doc`` (the module's docstring).
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{module}",
        description=description or (doc or "").split("\n")[0],
    )
    parser.add_argument(
        "--backend", choices=list(backends), default=default_backend, help=backend_help
    )
    parser.add_argument("--scale", choices=list(scales), default=default_scale, help=scale_help)
    if repeats is not None:
        parser.add_argument("--repeats", type=int, default=None, help=repeats)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--postgres-url", default=None, help=POSTGRES_URL_HELP)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser


def make_backends(
    backend: str, postgres_url: str | None, options: Mapping[str, str] | None = None
) -> list[Backend]:
    """The backends ``--backend`` names (``all``: SQLite, then PostgreSQL at
    ``postgres_url``); ``options`` are store options for the Kronika side."""
    names = ["sqlite", "postgresql"] if backend == "all" else [backend]
    return [_backend(name, dict(options or {}), postgres_url) for name in names]


def _backend(name: str, options: dict[str, str], postgres_url: str | None) -> Backend:
    if name == "memory":
        return MemoryBackend(options)
    if name == "sqlite":
        return SQLiteBackend(options)
    return PostgresBackend(options, postgres_url)


async def measure_each(
    backends: Iterable[Backend], measure: Callable[[Backend], Awaitable[Result]]
) -> list[Result]:
    """``measure`` every backend in turn, closing each afterwards. A backend that cannot
    run here, or whose measurement fails, gives ``{"backend": name, "error": why}`` and the
    others still run."""
    results: list[Result] = []
    for backend in backends:
        try:
            reason, _ = await backend.unavailable()
            if reason:
                results.append({"backend": backend.name, "error": reason})
                continue
            results.append(await measure(backend))
        except Exception as exc:  # reported in the table; the other backends still run
            results.append({"backend": backend.name, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            await backend.close()
    return results


def git_revision() -> str | None:
    """The commit of the working tree (with ``+dirty`` if it has changes), if known."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


@dataclass(frozen=True, slots=True, kw_only=True)
class RunClock:
    """When a run started and how busy the machine was then."""

    started: datetime
    """The start (UTC)."""
    load: list[float]
    """The 1, 5 and 15 minute load averages at the start."""

    @classmethod
    def start(cls) -> RunClock:
        """Now."""
        return cls(started=datetime.now(UTC), load=list(os.getloadavg()))

    def header(self) -> str:
        """The end of a table's title: start time, CPUs and load."""
        return (
            f"{self.started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
            f"load {self.load[0]:.2f} at start"
        )

    def metadata(self, module: str, scale: Mapping[str, Any]) -> dict[str, Any]:
        """The ``run`` block of a JSON report: versions, machine, load, scale, command."""
        return {
            "started": self.started.isoformat(),
            "kronika_version": kronika.__version__,
            "git": git_revision(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": self.load,
            "load_average_at_end": list(os.getloadavg()),
            "scale": dict(scale),
            "command": ["python", "-m", f"benchmarks.{module}", *sys.argv[1:]],
        }


def write_report(
    path: Path | None, results: list[Result], run: Callable[[], Mapping[str, Any]]
) -> None:
    """Write ``{"run": run(), "results": results}`` as JSON to ``path``, if one is given."""
    if path is not None:
        path.write_text(json.dumps({"run": run(), "results": results}, indent=2) + "\n")


def missed_a_target(result: Result) -> bool:
    """Whether any of the result's ``verdicts`` is ``FAIL``."""
    return "FAIL" in result["verdicts"].values()


def exit_status(
    results: list[Result], *, strict: bool, failed: Callable[[Result], bool] = missed_a_target
) -> int:
    """1 when a backend reported an error, or with ``strict`` when a result ``failed`` its
    target; else 0."""
    if any("error" in r for r in results):
        return 1
    return 1 if strict and any(failed(r) for r in results) else 0


def run_and_report(
    module: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, Console], Coroutine[Any, Any, list[Result]]],
    render: Callable[[list[Result], Console, str], None],
    *,
    title: str,
    scale: Mapping[str, Any],
    failed: Callable[[Result], bool] = missed_a_target,
) -> int:
    """Run ``python -m benchmarks.MODULE``: ``run`` the measurements (progress on stderr),
    ``render`` the results on stdout under ``title`` and when and where they were taken,
    write the JSON report (``--json``, with ``scale`` in its run block), and return the
    exit status (see :func:`exit_status`)."""
    out, log = Console(width=160), Console(stderr=True)
    clock = RunClock.start()
    results = asyncio.run(run(args, log))
    render(results, out, f"{title}, {clock.header()}")
    write_report(args.json, results, lambda: clock.metadata(module, scale))
    return exit_status(results, strict=args.strict, failed=failed)
