"""The one boundary where psycopg errors become Kronika errors.

Every database call of the backend runs inside :func:`translated`, so no driver exception
reaches a caller:

- the pool timing out, connections failing or dropping, the server shutting down or a
  statement timeout -> :class:`~kronika.errors.Unavailable` (a later call may work);
- the pool being closed -> :class:`~kronika.errors.StoreClosed`;
- missing tables or functions -> :class:`~kronika.errors.SchemaError`;
- anything else -> :class:`~kronika.errors.KronikaError` with the SQLSTATE in the message.

A handler's own SQL (``ctx.execute`` in a processing transaction) is translated the same
way, except that a missing table or function there is the handler's error, reported as
PostgreSQL words it, not a missing Kronika schema, and that a parameter which is not valid
text (a lone surrogate) is a :class:`~kronika.errors.ValidationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pgerrors
from psycopg_pool import PoolClosed, PoolTimeout

from kronika.errors import KronikaError, SchemaError, StoreClosed, Unavailable
from kronika.store.processing import unencodable_parameter

__all__ = ["describe", "translate", "translated"]

_MISSING_SCHEMA = (pgerrors.UndefinedTable, pgerrors.UndefinedFunction, pgerrors.InvalidSchemaName)


def describe(exc: BaseException) -> str:
    """The first line of a driver error's message, without the driver's noise."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def translate(exc: psycopg.Error) -> KronikaError:
    """The Kronika error that stands for ``exc``."""
    if isinstance(exc, PoolClosed):
        return StoreClosed()
    if isinstance(exc, PoolTimeout):
        return Unavailable(f"no PostgreSQL connection became free in time: {describe(exc)}")
    if isinstance(exc, psycopg.OperationalError):
        return Unavailable(f"PostgreSQL is unavailable: {describe(exc)}")
    if isinstance(exc, _MISSING_SCHEMA):
        return SchemaError(
            f"the Kronika schema is missing or incomplete ({describe(exc)}); run 'kronika migrate'"
        )
    return _plain(exc)


def _plain(exc: psycopg.Error) -> KronikaError:
    return KronikaError(
        f"PostgreSQL error {exc.sqlstate or ''}: {describe(exc)}".replace("  ", " ")
    )


@contextmanager
def translated(
    on_connection_lost: Callable[[], None] | None = None, *, handler_sql: bool = False
) -> Iterator[None]:
    """Translate psycopg errors raised in the block; call ``on_connection_lost`` when the
    failure suggests pooled connections went stale (e.g. after a database restart).
    ``handler_sql``: the block runs a handler's own SQL (see the module docstring)."""
    try:
        yield
    except psycopg.Error as exc:
        error = translate(exc)
        if handler_sql and isinstance(error, SchemaError):
            error = _plain(exc)
        if on_connection_lost is not None and type(error) is Unavailable:
            on_connection_lost()
        raise error from exc
    except UnicodeEncodeError as exc:
        if not handler_sql:
            raise
        raise unencodable_parameter(exc) from exc
