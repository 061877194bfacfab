"""Named SQL queries kept in packaged ``.sql`` files.

A file holds blocks introduced by ``-- name: query_name`` lines; the comment lines right
after the name describe the query. Parameters are always bound by the driver; identifiers
are never spliced in with string formatting (see tests/unit/test_sql_static.py).
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["load_queries"]

_NAME = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def load_queries(package: str, filename: str) -> dict[str, str]:
    """Read ``filename`` from ``package`` and return its queries by name."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    matches = list(_NAME.finditer(text))
    if not matches:
        raise ValueError(f"{package}/{filename} has no '-- name:' blocks")
    queries: dict[str, str] = {}
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(text)
        body = text[match.end() : end].strip()
        name = match["name"]
        if name in queries:
            raise ValueError(f"{package}/{filename}: query {name!r} is defined twice")
        queries[name] = body
    return queries
