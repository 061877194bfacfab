"""``kronika replay``: rebuild a projection beside the live one, follow it, roll back.

Each command works on the database of ``--url`` or through the server of ``--server``
(see :mod:`kronika.cli.operations`) and renders the same rows either way.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from kronika.cli import output
from kronika.cli.operations import operate
from kronika.cli.processors import APP, JSON, print_rows

__all__ = ["app", "generations_table", "replays_table"]

app = typer.Typer(
    help="Replay projections blue/green: start, follow, stop, resume, delete, roll back.",
    no_args_is_help=True,
)
PROCESSOR = Annotated[str, typer.Argument(metavar="PROCESSOR", help="The projection.")]
JOB = Annotated[str, typer.Argument(metavar="JOB", help="The replay job's id.")]


@app.command("start")
def start(ctx: typer.Context, name: PROCESSOR, app_ref: APP = None, json: JSON = False) -> None:
    """Start rebuilding a projection's read model from the first event, beside the live one.

    Running workers build the new generation; it takes over when it has caught up."""
    job = operate(ctx, lambda ops: ops.start_replay(name), app=app_ref)
    if json:
        output.print_json(job)
        return
    output.err.print(
        f"replay {job['id']} started: {name} generation {job['generation']} "
        f"(target {job['target']})",
        markup=False,
    )


def replays_table(rows: list[dict[str, Any]]) -> Table:
    """Replay jobs (replay ``status_dict``): generation, state, progress, lag, failing keys."""
    table = Table("job", "projection", "generation", "state", "progress", "lag", "failing", "note")
    for row in rows:
        lag = f"{row['lag_events']}{'+' if row['lag_capped'] else ''}"
        table.add_row(
            row["id"],
            row["processor"],
            str(row["generation"]),
            row["state"],
            f"{row['progress']:.0%}",
            lag,
            str(row["failing"]),
            row["error"] or "",
        )
    return table


@app.command("status")
def status(ctx: typer.Context, app_ref: APP = None, json: JSON = False) -> None:
    """List replay jobs with their progress."""
    rows = operate(ctx, lambda ops: ops.replays(), app=app_ref)
    print_rows(rows, json, replays_table)


def generations_table(rows: list[dict[str, Any]]) -> Table:
    """Generations (``generation_dict``), newest first."""
    table = Table("generation", "state kept as", "live", "position", "building")
    for row in rows:
        table.add_row(
            str(row["generation"]),
            row["name"],
            "yes" if row["live"] else "",
            str(row["position"]),
            row["building"] or "",
        )
    return table


@app.command("generations")
def generations(ctx: typer.Context, name: PROCESSOR, json: JSON = False) -> None:
    """List the kept generations of a projection's read model, newest first."""
    rows = operate(ctx, lambda ops: ops.generations(name))
    print_rows(rows, json, generations_table)


@app.command("stop")
def stop(ctx: typer.Context, job_id: JOB) -> None:
    """Stop a running replay; workers let it go and keep what it built."""
    operate(ctx, lambda ops: ops.stop_replay(job_id))
    output.err.print(f"replay {job_id} stopped", markup=False)


@app.command("resume")
def resume(ctx: typer.Context, job_id: JOB) -> None:
    """Resume a stopped replay from where it stood."""
    operate(ctx, lambda ops: ops.resume_replay(job_id))
    output.err.print(f"replay {job_id} resumed", markup=False)


@app.command("delete")
def delete(
    ctx: typer.Context,
    job_id: JOB,
    app_ref: APP = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            help="Seconds to wait for workers to let an unfinished job go (a server waits 15).",
        ),
    ] = 60.0,
) -> None:
    """Delete a replay job; an unfinished one is stopped and what it built is dropped."""
    operate(ctx, lambda ops: ops.delete_replay(job_id, wait), app=app_ref)
    output.err.print(f"replay {job_id} deleted", markup=False)


@app.command("activate")
def activate(
    ctx: typer.Context,
    name: PROCESSOR,
    generation: Annotated[int, typer.Argument(metavar="GENERATION", help="A kept generation.")],
    app_ref: APP = None,
) -> None:
    """Make a kept generation live again without a replay (roll back a replay)."""
    operate(ctx, lambda ops: ops.activate(name, generation), app=app_ref)
    output.err.print(f"{name}: generation {generation} is live", markup=False)
