"""The client's error boundary: problem+json answers and transport failures become
:mod:`kronika.errors` exceptions, so code behaves the same embedded or remote.

A problem body carries ``code`` (``KronikaError.code``) and the fields the error's
``to_dict()`` adds; :func:`error_from_problem` rebuilds the same class with the same fields.
An unknown code maps by HTTP status to the base class of that status. httpx exceptions
never leave this module's :func:`translating_transport_errors`.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
import orjson

import kronika.errors as errors_module
from kronika.errors import (
    ConcurrencyError,
    ConditionFailed,
    ConflictError,
    DuplicateEventError,
    Forbidden,
    KronikaError,
    NotFound,
    RateLimited,
    StreamDeleted,
    StreamNotFound,
    Unauthorized,
    Unavailable,
    ValidationError,
)

__all__ = [
    "error_from_problem",
    "error_from_response",
    "retry_after_of",
    "translating_transport_errors",
]


def _error_classes() -> dict[str, type[KronikaError]]:
    """``code`` -> class, for every class in the exception tree."""
    found: dict[str, type[KronikaError]] = {}
    for name in errors_module.__all__:
        cls = getattr(errors_module, name)
        if isinstance(cls, type) and issubclass(cls, KronikaError):
            found.setdefault(cls.code, cls)
    return found


BY_CODE = _error_classes()

BY_STATUS: dict[int, type[KronikaError]] = {
    400: ValidationError,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: ConflictError,
    410: StreamDeleted,
    413: ValidationError,
    422: ValidationError,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}
"""The base class of each status, for codes this client does not know (a newer server)."""


def retry_after_of(headers: Mapping[str, str], body: Mapping[str, Any]) -> float:
    """Seconds from ``Retry-After`` (seconds or an HTTP date), else the body, else 1."""
    raw = headers.get("retry-after")
    if raw is not None:
        try:
            return max(0.0, float(raw))
        except ValueError:
            when = email.utils.parsedate_to_datetime(raw) if raw.strip() else None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    value = body.get("retry_after")
    return float(value) if isinstance(value, int | float) else 1.0


def _bare(cls: type[KronikaError], detail: str, **fields: Any) -> KronikaError:
    """An instance of ``cls`` with the server's message and fields, without its __init__
    (whose arguments the problem body may not carry; the message is the server's anyway)."""
    error = cls.__new__(cls)
    KronikaError.__init__(error, detail)
    for name, value in fields.items():
        setattr(error, name, value)
    return error


def _field_errors(body: Mapping[str, Any], detail: str) -> list[tuple[str, str]]:
    items = body.get("errors")
    if isinstance(items, list) and items:
        return [
            (str(i.get("field", "")), str(i.get("message", "")))
            for i in items
            if isinstance(i, Mapping)
        ]
    return [("", detail)]


def error_from_problem(
    status: int,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    stream: str | None = None,
) -> KronikaError:
    """The Kronika error a problem+json answer stands for.

    ``stream`` is the stream the request was about, for errors whose body does not repeat
    it (``StreamDeleted``, ``StreamNotFound``).
    """
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    cls = BY_CODE.get(str(body.get("code")))
    if cls is None:
        cls = BY_STATUS.get(status, KronikaError)
    named = body.get("stream", stream)
    if cls is ConcurrencyError:
        return ConcurrencyError(
            str(named), body.get("expected_version", "?"), body.get("actual_version")
        )
    if issubclass(cls, ValidationError):
        return cls(_field_errors(body, detail))
    return _bare(cls, detail, **_fields_of(cls, body, headers, named))


def _fields_of(
    cls: type[KronikaError], body: Mapping[str, Any], headers: Mapping[str, str], stream: Any
) -> dict[str, Any]:
    """The attributes ``cls`` carries, from the problem body (and Retry-After)."""
    fields: dict[str, Any]
    if issubclass(cls, RateLimited | Unavailable):
        fields = {"retry_after": retry_after_of(headers, body)}
    elif cls is ConditionFailed:
        fields = {"position": body.get("position")}
    elif cls is DuplicateEventError:
        fields = {"event_id": body.get("event_id")}
    elif cls is StreamDeleted or cls is StreamNotFound:
        fields = {"stream": stream}
    else:
        fields = {k: v for k, v in body.items() if k not in _PROBLEM_KEYS and k.isidentifier()}
    return fields


_PROBLEM_KEYS = frozenset({"type", "title", "status", "code", "detail", "instance", "message"})


def error_from_response(response: httpx.Response, *, stream: str | None = None) -> KronikaError:
    """The error for a non-2xx response, problem+json or not (e.g. a proxy's HTML page)."""
    body: Any = None
    with suppress(orjson.JSONDecodeError):
        body = orjson.loads(response.content)
    if isinstance(body, dict) and ("code" in body or "detail" in body):
        return error_from_problem(response.status_code, body, response.headers, stream=stream)
    cls = BY_STATUS.get(response.status_code, KronikaError)
    text = response.text.strip().replace("\n", " ")[:200]
    detail = f"HTTP {response.status_code} from {response.request.url.host}: {text or 'no body'}"
    if issubclass(cls, ValidationError):
        return cls([("", detail)])
    if issubclass(cls, RateLimited | Unavailable):
        return _bare(cls, detail, retry_after=retry_after_of(response.headers, {}))
    return _bare(cls, detail)


@asynccontextmanager
async def translating_transport_errors(shown_url: str) -> AsyncIterator[None]:
    """Turn httpx's transport failures into :class:`Unavailable` naming ``shown_url``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise Unavailable(
            f"the Kronika server at {shown_url} did not answer in time ({type(exc).__name__})"
        ) from None
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"cannot reach the Kronika server at {shown_url}: {type(exc).__name__}: {exc}"
        ) from None
