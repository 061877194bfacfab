"""``kronika verify``: recompute the log's hash chains and report what does not match.

It reads the database directly (``--url``; never through ``--server``), walks the
namespace's events in position order and checks each event's chain hash, the global chain
against its recorded checkpoints, and every stream row against its newest event (see
:mod:`kronika.store.verify`). Exit status 0: clean; 1: problems found (each listed);
2: bad input. A progress bar is drawn on stderr when it is a terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kronika.cli import options, output
from kronika.cli.context import run, settings_of
from kronika.store.integrity import chains_of
from kronika.store.protocol import EventStore
from kronika.store.verify import (
    DEFAULT_CHECKPOINT_EVERY,
    VerifyProgress,
    VerifyReport,
)
from kronika.store.verify import (
    verify as verify_chains,
)

__all__ = ["verify"]


def verify(
    ctx: typer.Context,
    *,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Start after the newest checkpoint (where the last run stopped)."
        ),
    ] = False,
    from_position: Annotated[
        int | None,
        typer.Option(
            "--from-position",
            min=1,
            help="Check only the events from this position on (the global chain is skipped).",
            show_default=False,
        ),
    ] = None,
    max_events: Annotated[
        int | None,
        typer.Option(
            "--max-events",
            min=1,
            help="Stop after about this many events; --resume carries on.",
            show_default=False,
        ),
    ] = None,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            "--checkpoint-every", min=1, help="Record a global checkpoint every N chained events."
        ),
    ] = DEFAULT_CHECKPOINT_EVERY,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiet: options.QUIET = False,
) -> None:
    """Verify the event log's hash chains; exit 1 if an event was altered, removed or reordered."""
    store = settings_of(ctx).database_store()
    text = "verify {task.fields[events]:>12,} events"
    with output.ProgressBar(quiet or as_json, text=text) as bar:
        bar.phase("verify", None, events=0)
        report = run(
            _verify(
                store,
                resume=resume,
                from_position=from_position,
                max_events=max_events,
                checkpoint_every=checkpoint_every,
                progress=_follow(bar),
            )
        )
    if as_json:
        output.print_json({"namespace": store.namespace, **report.to_dict()})
    else:
        _print(report, store.namespace)
    if not report.clean:
        raise typer.Exit(1)


async def _verify(
    store: EventStore,
    *,
    resume: bool,
    from_position: int | None,
    max_events: int | None,
    checkpoint_every: int,
    progress: Callable[[VerifyProgress], None],
) -> VerifyReport:
    async with store:
        return await verify_chains(
            chains_of(store),
            resume=resume,
            from_position=from_position,
            max_events=max_events,
            checkpoint_every=checkpoint_every,
            progress=progress,
        )


def _follow(bar: output.ProgressBar) -> Callable[[VerifyProgress], None]:
    """Move ``bar`` with the verifier (positions are not dense: the bar follows them)."""

    def update(progress: VerifyProgress) -> None:
        total = max(1, progress.upto - progress.start)
        bar.done(progress.position - progress.start, total=total, events=progress.events)

    return update


def _print(report: VerifyReport, namespace: str) -> None:
    out = output.out
    span = (
        f"positions {report.start + 1}-{report.last_position}" if report.events else "nothing new"
    )
    out.print(
        f"checked {report.events:,} events ({span}) of namespace {namespace} in "
        f"{report.elapsed:.2f} s ({report.rate:,.0f} events/s)",
        markup=False,
    )
    if report.resumed_from is not None:
        out.print(f"resumed after the checkpoint at {report.resumed_from.position}", markup=False)
    if report.global_hash is not None:
        out.print(
            f"global chain: {report.global_hash.hex()} over {report.global_events:,} events; "
            f"checkpoints: {report.checkpoints_checked} checked, "
            f"{report.checkpoints_recorded} recorded",
            markup=False,
        )
    _print_notes(report)
    if report.clean:
        out.print("clean: no event was altered, removed or reordered", markup=False)
        return
    out.print(_problems_table(report))
    shown = len(report.problems)
    more = f" (the first {shown} are shown)" if shown < report.problems_total else ""
    output.err.print(f"{report.problems_total} problem(s) found{more}", markup=False)


def _print_notes(report: VerifyReport) -> None:
    notes = []
    if report.unchained:
        notes.append(f"{report.unchained:,} events were stored before hash chains (unchained)")
    if report.complete:
        notes.append(f"{report.streams:,} stream rows compared with their newest events")
    else:
        notes.append(f"stopped after {report.events:,} events: run with --resume to carry on")
    if report.purged_meanwhile:
        notes.append("a stream was purged meanwhile: no (further) checkpoint was recorded")
    for note in notes:
        output.out.print(note, markup=False)


def _problems_table(report: VerifyReport) -> Table:
    table = Table(title="problems")
    for name, justify in (("pos", "right"), ("stream", "left"), ("ver", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("kind", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for p in report.problems:
        cells = [p.position, p.stream, p.version, p.kind.value, p.detail]
        table.add_row(*(escape("-" if c is None else str(c)) for c in cells))
    return table
