"""Options that several commands take alike, defined once.

Typer reads an option's flags and help from the ``Annotated`` type of a command's
parameter, so a shared option is a shared type; each command keeps its own default.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kronika.errors import ValidationError

__all__ = ["CACERT", "JSON_DOCUMENT", "QUIET", "TOKEN", "http_url", "timeout"]

TOKEN = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API key or JWT for the server (else the global --token / $KRONIKA_TOKEN).",
        show_default=False,
    ),
]
"""``--token``: the bearer token for a server, instead of the global one."""

CACERT = Annotated[
    str | None,
    typer.Option("--cacert", help="PEM file of CA certificates to trust for the server."),
]
"""``--cacert``: CA certificates for a server's TLS (else the system's)."""

JSON_DOCUMENT = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
"""``--json`` for a command whose whole report is one JSON document."""

QUIET = Annotated[bool, typer.Option("--quiet", "-q", help="Draw no progress bar.")]
"""``--quiet`` for a command that draws a progress bar on stderr."""


def timeout(help_text: str) -> Any:
    """``--timeout SECONDS`` (at least 0.1) with this help; the command sets the default:
    ``timeout: Annotated[float, options.timeout("...")] = 10.0``."""
    return typer.Option("--timeout", help=help_text, min=0.1)


def http_url(value: str, option: str) -> str:
    """``value`` if it is an ``http(s)://`` URL, else a ``ValidationError`` naming ``option``."""
    if not value.startswith(("http://", "https://")):
        raise ValidationError(f"expected http(s)://HOST:PORT, got {value!r}", option)
    return value
