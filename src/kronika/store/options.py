"""Store URLs and their options: parsed once, typed, and rejected with a clear message."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from kronika.errors import ConfigurationError

__all__ = ["parse_bool", "parse_options", "redact_url"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(value: object) -> bool:
    """``True``/``False`` or one of the usual spellings in a URL."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def _convert(name: str, value: Any, kind: Callable[[Any], Any]) -> Any:
    if kind is bool:
        kind = parse_bool
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"store option {name!r}: {exc}") from None


def parse_options(
    url: str,
    options: Mapping[str, Any],
    *,
    allowed: Mapping[str, Callable[[Any], Any]],
    passthrough: frozenset[str] = frozenset(),
) -> tuple[str, dict[str, Any]]:
    """Split Kronika's options out of ``url``'s query string and merge them with ``options``.

    Returns the URL without those options (query parameters in ``passthrough`` stay, e.g.
    libpq's ``sslmode``) and the typed options. Keyword options win over the URL. Unknown
    options raise ``ConfigurationError`` naming them.
    """
    parts = urlsplit(url)
    kept: list[tuple[str, str]] = []
    found: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in allowed:
            found[key] = value
        elif key in passthrough:
            kept.append((key, value))
        else:
            raise ConfigurationError(
                f"unknown store option {key!r} in the URL; known: {sorted(allowed)}"
            )
    for key, value in options.items():
        if key not in allowed:
            raise ConfigurationError(f"unknown store option {key!r}; known: {sorted(allowed)}")
        found[key] = value
    typed = {k: _convert(k, v, allowed[k]) for k, v in found.items()}
    # Cut the query off by hand: urlunsplit would turn "sqlite:////abs.db" into "sqlite://abs.db".
    base = url.split("?", 1)[0]
    # Percent-encode spaces (libpq reads "+" in a URL literally, not as a space).
    return (f"{base}?{urlencode(kept, quote_via=quote)}" if kept else base), typed


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to log or show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
