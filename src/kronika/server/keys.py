"""Routes for the server's API keys: create (the secret is in the answer, once), list, revoke.

They call :mod:`kronika.server.security.management`, as ``kronika keys`` does, and need the
``admin`` permission. Keys live in the server's database, so a key created here works on
every replica at once; a revoked one is refused within the key cache time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from kronika.errors import ValidationError
from kronika.server.principal import Permission, Principal
from kronika.server.routing import Endpoint
from kronika.server.security import management
from kronika.server.state import state_of
from kronika.server.wire import CreateKeyBody, JSONResponse, parse_body

__all__ = ["ENDPOINTS"]

log = logging.getLogger("kronika.server")

_FIELDS = {"--role": "roles", "--category": "categories", "--name": "name"}
"""The management module names the CLI's options in its errors; here they are body fields."""


@contextmanager
def _body_fields() -> Iterator[None]:
    try:
        yield
    except ValidationError as exc:
        raise ValidationError([(_FIELDS.get(f, f), m) for f, m in exc.errors]) from None


async def create_key(request: Request, principal: Principal) -> Response:
    """Create a key; the answer holds its secret, which is never shown again."""
    body = await parse_body(request, CreateKeyBody)
    lifetime = None if body.expires_in is None else timedelta(seconds=body.expires_in)
    with _body_fields():
        token, record = await management.create_key(
            state_of(request).store,
            body.roles,
            categories=body.categories,
            name=body.name,
            expires_in=lifetime,
        )
    log.info(
        "API key %s created by %s",
        record.id,
        principal.name,
        extra={"action": "key_created", "key_id": record.id, "roles": list(record.roles)},
    )
    answer = {**management.key_dict(record, record.created_at), "key": token}
    return JSONResponse(answer, status_code=201, headers={"Cache-Control": "no-store"})


async def list_keys(request: Request, principal: Principal) -> Response:
    """Every key, oldest first, without secrets."""
    records = await management.keys_of(state_of(request).store).keys()
    now = datetime.now(UTC)
    return JSONResponse({"keys": [management.key_dict(r, now) for r in records]})


async def revoke_key(request: Request, principal: Principal) -> Response:
    """Revoke a key (idempotent); 404 if there is no such key."""
    record = await management.revoke_key(state_of(request).store, request.path_params["id"])
    log.info(
        "API key %s revoked by %s",
        record.id,
        principal.name,
        extra={"action": "key_revoked", "key_id": record.id},
    )
    return JSONResponse(management.key_dict(record, datetime.now(UTC)))


ENDPOINTS = [
    Endpoint(
        method="POST",
        path="/v1/keys",
        handler=create_key,
        permission=Permission.ADMIN,
        body=CreateKeyBody,
        status=201,
        summary="Create an API key (its secret is in this answer only).",
    ),
    Endpoint(
        method="GET",
        path="/v1/keys",
        handler=list_keys,
        permission=Permission.ADMIN,
        summary="List API keys (never their secrets).",
    ),
    Endpoint(
        method="DELETE",
        path="/v1/keys/{id}",
        handler=revoke_key,
        permission=Permission.ADMIN,
        summary="Revoke an API key.",
    ),
]
