"""``kronika maintenance``: force a running server's readiness off for maintenance, and back.

The switch lives in the server process (``POST /v1/admin/maintenance``, admin permission):
while it is on, that server's ``/readyz`` answers 503, so a load balancer takes it out of
rotation, and every other route keeps working. Each replica has its own switch; address
replicas one by one (not through the load balancer) to switch them all. It needs
``--server``: a database has no switch.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kronika.cli import output
from kronika.cli.context import settings_of
from kronika.cli.operations import operate

__all__ = ["app"]

app = typer.Typer(
    help="Force a server's /readyz to 503 for maintenance (needs --server), and back.",
    no_args_is_help=True,
)
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _switch(ctx: typer.Context, enabled: bool | None, as_json: bool) -> None:
    state: dict[str, Any] = operate(ctx, lambda ops: ops.maintenance(enabled))
    if as_json:
        output.print_json(state)
        return
    where = settings_of(ctx).shown_url
    mode = "on" if state["maintenance"] else "off"
    ready = "ready" if state["ready"] else f"not ready ({', '.join(state['failing'])})"
    output.out.print(f"{where}: maintenance {mode}; /readyz: {ready}", markup=False)


@app.command("on")
def on(ctx: typer.Context, as_json: JSON = False) -> None:
    """Force the server's /readyz to 503 until `kronika maintenance off`."""
    _switch(ctx, True, as_json)


@app.command("off")
def off(ctx: typer.Context, as_json: JSON = False) -> None:
    """Let the server's /readyz report its real readiness again."""
    _switch(ctx, False, as_json)


@app.command("status")
def status(ctx: typer.Context, as_json: JSON = False) -> None:
    """Show whether the switch is on and whether the server is ready."""
    _switch(ctx, None, as_json)
