"""``kronika replay``: rebuild a projection beside the live one, follow it, roll back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from kronika.cli import output
from kronika.cli.context import with_store
from kronika.cli.processors import JSON, _find, _load
from kronika.cli.worker import APP_OPTION
from kronika.errors import ValidationError
from kronika.store.protocol import EventStore

if TYPE_CHECKING:
    from kronika.runtime.replay import Generation, ReplayStatus
    from kronika.store.processing import Job

__all__ = ["app"]

app = typer.Typer(
    help="Replay projections blue/green: start, follow, stop, resume, delete, roll back.",
    no_args_is_help=True,
)
PROCESSOR = Annotated[str, typer.Argument(metavar="PROCESSOR", help="The projection.")]
JOB = Annotated[str, typer.Argument(metavar="JOB", help="The replay job's id.")]


def _replay() -> Any:
    """The runtime's replay module, imported when a command needs it (it loads pydantic)."""
    from kronika.runtime import replay

    return replay


def _projection(app_ref: str, name: str) -> Any:
    from kronika.runtime.processor import Projection

    found = _find(_load(app_ref), name)
    if not isinstance(found, Projection):
        raise ValidationError(f"{name!r} is not a projection; only projections are replayed")
    return found


@app.command("start")
def start(
    ctx: typer.Context, name: PROCESSOR, app_ref: Annotated[str, APP_OPTION], json: JSON = False
) -> None:
    """Start rebuilding a projection's read model from the first event, beside the live one.

    Running workers build the new generation; it takes over when it has caught up."""
    projection = _projection(app_ref, name)
    job: Job = with_store(ctx, lambda store: _replay().start_replay(store, projection))
    if json:
        output.print_json(_replay().job_dict(job))
        return
    output.err.print(
        f"replay {job.id} started: {name} generation {job.generation} (target {job.target})",
        markup=False,
    )


@app.command("status")
def status(ctx: typer.Context, app_ref: Annotated[str, APP_OPTION], json: JSON = False) -> None:
    """List replay jobs with their progress."""
    projections = {p.name: p for p in _load(app_ref)}
    states: list[ReplayStatus] = with_store(
        ctx, lambda store: _replay().replays(store, projections)
    )
    if json:
        for state in states:
            output.print_json(_replay().status_dict(state))
        return
    table = Table("job", "projection", "generation", "state", "progress", "lag", "failing", "note")
    for s in states:
        lag = f"{s.lag_events}{'+' if s.lag_capped else ''}"
        table.add_row(
            s.job.id,
            s.job.processor,
            str(s.job.generation),
            s.job.state.value,
            f"{s.progress:.0%}",
            lag,
            str(s.failing),
            s.job.error or "",
        )
    output.out.print(table)


@app.command("generations")
def generations(ctx: typer.Context, name: PROCESSOR, json: JSON = False) -> None:
    """List the kept generations of a projection's read model, newest first."""
    found: list[Generation] = with_store(ctx, lambda store: _replay().generations(store, name))
    if json:
        for g in found:
            output.print_json(_replay().generation_dict(g))
        return
    table = Table("generation", "state kept as", "live", "position", "building")
    for g in found:
        building = g.building.id if g.building else ""
        table.add_row(str(g.generation), g.name, "yes" if g.live else "", str(g.position), building)
    output.out.print(table)


def _move(ctx: typer.Context, action: str, job_id: str, verb: str) -> None:
    operation = getattr(_replay(), action)
    with_store(ctx, lambda store: operation(store, job_id))
    output.err.print(f"replay {job_id} {verb}", markup=False)


@app.command("stop")
def stop(ctx: typer.Context, job_id: JOB) -> None:
    """Stop a running replay; workers let it go and keep what it built."""
    _move(ctx, "stop_replay", job_id, "stopped")


@app.command("resume")
def resume(ctx: typer.Context, job_id: JOB) -> None:
    """Resume a stopped replay from where it stood."""
    _move(ctx, "resume_replay", job_id, "resumed")


@app.command("delete")
def delete(
    ctx: typer.Context,
    job_id: JOB,
    app_ref: Annotated[str, APP_OPTION],
    wait: Annotated[
        float,
        typer.Option("--wait", help="Seconds to wait for workers to let an unfinished job go."),
    ] = 60.0,
) -> None:
    """Delete a replay job; an unfinished one is stopped and what it built is dropped."""

    async def action(store: EventStore) -> None:
        replay = _replay()
        found = await replay.job(store, job_id)
        projection = _projection(app_ref, found.processor)
        await replay.delete_replay(store, projection, job_id, wait=wait)

    with_store(ctx, action)
    output.err.print(f"replay {job_id} deleted", markup=False)


@app.command("activate")
def activate(
    ctx: typer.Context,
    name: PROCESSOR,
    generation: Annotated[int, typer.Argument(metavar="GENERATION", help="A kept generation.")],
    app_ref: Annotated[str, APP_OPTION],
) -> None:
    """Make a kept generation live again without a replay (roll back a replay)."""
    projection = _projection(app_ref, name)
    with_store(ctx, lambda store: _replay().activate(store, projection, generation))
    output.err.print(f"{name}: generation {generation} is live", markup=False)
