"""``kronika retention``: show the effective policies, and apply them (a dry run by default)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kronika.cli import options, output
from kronika.cli.context import with_store
from kronika.store.protocol import EventStore

if TYPE_CHECKING:
    from kronika.ops.retention import Report
    from kronika.ops.retention_policy import RetentionPolicy
    from kronika.runtime.processor import Processor

__all__ = ["app"]

app = typer.Typer(
    help="Retention: remove old derived and operational data, truncate hidden events.",
    no_args_is_help=True,
)
SET = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="NAME=VALUE",
        help="Override a retention setting for this run, e.g. jobs_days=7 (repeatable).",
    ),
]
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
SHOWN_ACTIONS = 50
"""Actions listed in the table before the rest are summed up (``--json`` lists all)."""


def _policy(pairs: list[str] | None) -> RetentionPolicy:
    from kronika.ops.retention_policy import RetentionPolicy, parse_overrides

    return RetentionPolicy.from_env(os.environ, parse_overrides(pairs or []))


@app.command("show")
def show(set_: SET = None, json: JSON = False) -> None:
    """Print the effective retention policies: defaults, KRONIKA_RETENTION_*, --set."""
    from kronika.ops.retention_policy import ENV_PREFIX, SETTINGS

    values = _policy(set_).as_dict()
    if json:
        output.print_json(values)
        return
    table = Table("setting", "value", "variable", "meaning")
    for column in table.columns[:3]:
        column.no_wrap = True
    for name, setting in SETTINGS.items():
        table.add_row(
            name, _shown(name, values[name]), ENV_PREFIX + name.upper(), escape(setting.meaning)
        )
    output.out.print(table)


def _shown(name: str, value: object) -> str:
    if value is None:
        return "off" if name == "interval" else "never"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


@app.command("apply")
def apply(  # noqa: PLR0917 - Typer passes every option by keyword anyway
    ctx: typer.Context,
    do_it: Annotated[
        bool, typer.Option("--apply", help="Remove what the plan lists (default: a dry run).")
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Rows removed per transaction at most."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Rows removed in this run at most.")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="CATEGORY",
            help="Only these categories (repeatable): generations, jobs, dead-letters, "
            "snapshots, streams.",
        ),
    ] = None,
    set_: SET = None,
    app_ref: Annotated[
        str | None,
        typer.Option(
            "--app",
            envvar="KRONIKA_APP",
            help="Where the processors are ('package.module:attribute'): needed to drop "
            "read-model generations and stopped replays.",
        ),
    ] = None,
    json: JSON = False,
    quiet: options.QUIET = False,
) -> None:
    """List what the retention policies remove now; remove it with --apply."""
    from kronika.ops import retention
    from kronika.ops.retention_policy import parse_categories

    policy = _policy(set_).with_values(batch_size=batch_size)
    categories = parse_categories(only or [])
    processors = _processors(app_ref)

    async def go(store: EventStore) -> Report:
        found = await retention.plan(
            store, policy, processors=processors, categories=categories, limit=limit
        )
        if not do_it:
            return retention.dry_run(found)
        with output.ProgressBar(
            quiet or json, text="retention", counts=True, transient=False
        ) as bar:
            bar.phase("retention", found.total)
            return await retention.apply(store, found, progress=bar.advance)

    report = with_store(ctx, go)
    if json:
        output.print_json(retention.report_dict(report))
    else:
        _print(report)
    if report.failed:
        raise typer.Exit(1)


def _processors(reference: str | None) -> list[Processor]:
    if reference is None:
        return []
    from kronika.runtime.loading import load_processors

    return load_processors(reference)


def _print(report: Report) -> None:
    from kronika.ops.retention_rules import UNITS

    found = report.plan
    actions = Table("category", "target", "rows", "detail", *(["done"] if report.applied else []))
    for index, action in enumerate(found.actions[:SHOWN_ACTIONS]):
        done = [str(report.done.get(index, 0))] if report.applied else []
        rows = f"{action.count} {UNITS[action.category]}"
        actions.add_row(action.category.value, escape(action.target), rows, action.detail, *done)
    if found.actions:
        output.out.print(actions)
    if len(found.actions) > SHOWN_ACTIONS:
        more = len(found.actions) - SHOWN_ACTIONS
        output.out.print(f"... and {more} more actions (--json lists them all)")
    output.out.print(_categories(report))
    _summary(report)


def _categories(report: Report) -> Table:
    table = Table("category", "planned", "done", "batches", "notes")
    for tally in report.tallies.values():
        notes = "; ".join([*tally.notes, *([f"error: {tally.error}"] if tally.error else [])])
        done = (str(tally.done), str(tally.batches)) if report.applied else ("-", "-")
        table.add_row(tally.category.value, f"{tally.planned} {tally.unit}", *done, escape(notes))
    return table


def _summary(report: Report) -> None:
    total = report.plan.total
    if not report.applied:
        hint = " Run again with --apply to remove it." if total else ""
        output.err.print(f"dry run: nothing was removed.{hint}", markup=False)
        return
    done = sum(t.done for t in report.tallies.values())
    batches = sum(t.batches for t in report.tallies.values())
    output.err.print(f"removed {done} of {total} rows in {batches} transactions", markup=False)
