"""``kronika keys``: create, list and revoke the server's API keys; generate a bootstrap key.

A key's secret is printed once, by ``create`` (or ``generate``), and never stored: the
store keeps its hash. ``create`` prints the key alone on stdout (so a script can capture
it) and what it grants on stderr.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from kronika.cli import output
from kronika.cli.context import Settings, run, settings_of
from kronika.server.security import apikeys, management
from kronika.store.keys import ApiKeyRecord
from kronika.store.protocol import EventStore

__all__ = ["app"]

app = typer.Typer(
    help="Manage the server's API keys: create (shown once), list, revoke.",
    no_args_is_help=True,
)
T = TypeVar("T")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
DATABASE_URL = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Store URL, as the global --url (which reads KRONIKA_DATABASE_URL).",
        show_default="the global --url",
    ),
]


def _with_store(
    ctx: typer.Context, database_url: str | None, action: Callable[[EventStore], Awaitable[T]]
) -> T:
    """Open the store (``--database-url``, else the global one), run ``action``, close it."""
    settings = settings_of(ctx)
    if database_url:
        settings = Settings.from_options(database_url, settings.namespace)
    store = settings.make_store()

    async def go() -> T:
        async with store:
            return await action(store)

    return run(go())


def key_to_dict(record: ApiKeyRecord, now: datetime) -> dict[str, Any]:
    """A key as a JSON-ready dict: everything stored except the secret's hash."""

    def stamp(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": record.id,
        "name": record.name,
        "roles": list(record.roles),
        "categories": None if record.categories is None else list(record.categories),
        "status": _status(record, now),
        "created_at": stamp(record.created_at),
        "expires_at": stamp(record.expires_at),
        "revoked_at": stamp(record.revoked_at),
        "last_used_at": stamp(record.last_used_at),
    }


def _status(record: ApiKeyRecord, now: datetime) -> str:
    if record.revoked_at is not None:
        return "revoked"
    return "expired" if record.expired(now) else "active"


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

    async def action(store: EventStore) -> tuple[str, ApiKeyRecord]:
        return await management.create_key(
            store, role, categories=category, name=name, expires_in=lifetime
        )

    token, record = _with_store(ctx, database_url, action)
    if as_json:
        output.print_json({**key_to_dict(record, record.created_at), "key": token})
        return
    output.out.print(token, markup=False)
    scope = ", ".join(record.categories) if record.categories else "all"
    expiry = record.expires_at.isoformat() if record.expires_at else "never"
    output.err.print(
        f"Created API key {record.id} (roles: {', '.join(record.roles)}; categories: "
        f"{scope}; expires: {expiry}). Store it now: it is shown only once.",
        markup=False,
    )


@app.command("list")
def list_keys(ctx: typer.Context, database_url: DATABASE_URL = None, as_json: JSON = False) -> None:
    """List API keys (never their secrets), oldest first."""

    async def action(store: EventStore) -> list[ApiKeyRecord]:
        return await management.keys_of(store).keys()

    records = _with_store(ctx, database_url, action)
    now = datetime.now(UTC)
    if as_json:
        for record in records:
            output.print_json(key_to_dict(record, now))
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=16)
    for column in ("name", "roles", "categories", "status", "created", "expires", "last used"):
        table.add_column(column)
    for record in records:
        row = key_to_dict(record, now)
        table.add_row(
            record.id,
            escape(record.name),
            ", ".join(record.roles),
            escape(", ".join(record.categories)) if record.categories else "all",
            row["status"],
            _short(record.created_at),
            _short(record.expires_at) or "never",
            _short(record.last_used_at) or "never",
        )
    output.out.print(table)


def _short(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (from keys list).")],
    database_url: DATABASE_URL = None,
    as_json: JSON = False,
) -> None:
    """Revoke an API key; servers refuse it within their key cache time (5 s by default)."""

    async def action(store: EventStore) -> ApiKeyRecord:
        return await management.revoke_key(store, key_id)

    record = _with_store(ctx, database_url, action)
    if as_json:
        output.print_json(key_to_dict(record, datetime.now(UTC)))
        return
    revoked = record.revoked_at.isoformat() if record.revoked_at else ""
    output.out.print(f"Revoked API key {record.id} at {revoked}", markup=False)


@app.command("generate")
def generate() -> None:
    """Print a fresh API key without storing it (for KRONIKA_BOOTSTRAP_ADMIN_KEY)."""
    output.out.print(apikeys.generate_key().token, markup=False)
