"""``kronika keys``: create, list and revoke the server's API keys; generate a bootstrap key.

A key's secret is printed once, by ``create`` (or ``generate``), and never stored: the
store keeps its hash. ``create`` prints the key alone on stdout (so a script can capture
it) and what it grants on stderr.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kronika.cli import output
from kronika.cli.operations import NewKey, Operations, operate
from kronika.server.security import apikeys, management

__all__ = ["app", "keys_table"]

app = typer.Typer(
    help="Manage the server's API keys: create (shown once), list, revoke.",
    no_args_is_help=True,
)
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DATABASE_URL = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Store URL, as the global --url (which reads KRONIKA_DATABASE_URL).",
        show_default="the global --url or --server",
    ),
]


@app.command("create")
def create(
    ctx: typer.Context,
    *,
    role: Annotated[
        list[str],
        typer.Option("--role", "-r", help="reader, writer, operator or admin; repeat for several."),
    ],
    category: Annotated[
        list[str] | None,
        typer.Option(help="Limit the key to this stream category; repeat for several."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the key, such as ci-deploy.")] = "",
    expires_in: Annotated[
        str | None,
        typer.Option(help="Lifetime, such as 90d, 12h or 2w.", show_default="never expires"),
    ] = None,
    database_url: DATABASE_URL = None,
    as_json: JSON = False,
) -> None:
    """Create an API key and print it once: it cannot be shown again."""
    lifetime = management.parse_duration(expires_in) if expires_in else None
    management.parse_roles(role)  # refuse a bad role before anything is sent

    key = NewKey(
        roles=tuple(role),
        categories=None if category is None else tuple(category),
        name=name,
        expires_in=lifetime,
    )

    async def action(ops: Operations) -> tuple[str, dict[str, Any]]:
        return await ops.create_key(key)

    token, record = operate(ctx, action, database_url=database_url)
    if as_json:
        output.print_json({**record, "key": token})
        return
    output.out.print(token, markup=False)
    scope = ", ".join(record["categories"]) if record["categories"] else "all"
    output.err.print(
        f"Created API key {record['id']} (roles: {', '.join(record['roles'])}; categories: "
        f"{scope}; expires: {record['expires_at'] or 'never'}). Store it now: it is shown "
        "only once.",
        markup=False,
    )


@app.command("list")
def list_keys(ctx: typer.Context, database_url: DATABASE_URL = None, as_json: JSON = False) -> None:
    """List API keys (never their secrets), oldest first."""
    rows = operate(ctx, lambda ops: ops.keys(), database_url=database_url)
    if as_json:
        for row in rows:
            output.print_json(row)
        return
    output.out.print(keys_table(rows))


def keys_table(rows: list[dict[str, Any]]) -> Table:
    """API keys (``key_dict``): id, name, roles, categories, status and times."""
    table = Table()
    table.add_column("id", no_wrap=True, min_width=16)
    for column in ("name", "roles", "categories", "status", "created", "expires", "last used"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"],
            escape(row["name"]),
            ", ".join(row["roles"]),
            escape(", ".join(row["categories"])) if row["categories"] else "all",
            row["status"],
            _short(row["created_at"]),
            _short(row["expires_at"]) or "never",
            _short(row["last_used_at"]) or "never",
        )
    return table


def _short(stamp: str | None) -> str:
    return "" if stamp is None else datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (from keys list).")],
    database_url: DATABASE_URL = None,
    as_json: JSON = False,
) -> None:
    """Revoke an API key; servers refuse it within their key cache time (5 s by default)."""
    record = operate(ctx, lambda ops: ops.revoke_key(key_id), database_url=database_url)
    if as_json:
        output.print_json(record)
        return
    output.out.print(f"Revoked API key {record['id']} at {record['revoked_at']}", markup=False)


@app.command("generate")
def generate() -> None:
    """Print a fresh API key without storing it (for KRONIKA_BOOTSTRAP_ADMIN_KEY)."""
    output.out.print(apikeys.generate_key().token, markup=False)
