"""A9: every SQL statement is parameterised. A static check over ``src/kronika``.

Two rules, both on the syntax tree:

1. The query given to ``.execute()``, ``.executemany()`` or ``.executescript()`` is never
   built at the call: no f-string, no ``%`` or ``+``, no ``str.format``. psycopg's
   ``sql.SQL("...").format(sql.Identifier(...))`` is the one allowed composition.
2. Nowhere is a string that looks like SQL built with an f-string, ``%``, ``+`` or
   ``.format`` (this catches a query built first and executed later).

A line may opt out with a comment ``# sql-static: allow <reason>``, for statements that
cannot take parameters (e.g. a PRAGMA whose value was checked against a fixed set).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import kronika

SOURCE = Path(kronika.__file__).parent
EXECUTE_METHODS = frozenset({"execute", "executemany", "executescript"})
ALLOW = "# sql-static: allow"
SQL_LOOKING = re.compile(
    r"\b(SELECT\b.*\bFROM|INSERT\s+INTO|UPDATE\b.*\bSET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX|UNIQUE|SCHEMA|TRIGGER|FUNCTION|VIEW|ROLE)|"
    r"DROP\s+(TABLE|INDEX|SCHEMA|TRIGGER|FUNCTION|VIEW|ROLE)|ALTER\s+TABLE|"
    r"TRUNCATE\s|GRANT\s|REVOKE\s|PRAGMA\s|SET\s+search_path)",
    re.DOTALL,
)


@dataclass(frozen=True)
class Finding:
    """One place where SQL is built from strings."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def _is_sql_composition(node: ast.expr) -> bool:
    """``sql.SQL("...")`` or ``SQL("...")``: psycopg's safe query composition."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name == "SQL"


def _format_receiver(node: ast.expr) -> ast.expr | None:
    """The object ``.format`` is called on, if ``node`` is such a call."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    return node.func.value if node.func.attr == "format" else None


def _built_string(node: ast.expr) -> str | None:
    """Why ``node`` builds a string at run time (f-string, %, +, .format), else None."""
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return "'%' formatting"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return "'+' concatenation"
    receiver = _format_receiver(node)
    if receiver is not None and not _is_sql_composition(receiver):
        return "str.format"
    return None


def _constant_text(node: ast.AST) -> str:
    """All string constants inside ``node``, joined."""
    return " ".join(
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    )


def _only_constants(node: ast.BinOp) -> bool:
    return all(isinstance(n, (ast.Constant, ast.BinOp, ast.operator)) for n in ast.walk(node))


def _execute_findings(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in EXECUTE_METHODS or not node.args:
            continue
        how = _built_string(node.args[0])
        if how is not None:
            found.append((node.lineno, f".{node.func.attr}() is given a query built with {how}"))
    return found


def _sql_string_findings(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.JoinedStr, ast.BinOp, ast.Call)):
            continue
        how = _built_string(node)
        if how is None or (isinstance(node, ast.BinOp) and _only_constants(node)):
            continue
        if SQL_LOOKING.search(_constant_text(node)):
            found.append((node.lineno, f"SQL text is built with {how}"))
    return found


def check_source(source: str, path: str = "<sample>") -> list[Finding]:
    """Every place in ``source`` where SQL is built from strings, minus allowed lines."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found = {*_execute_findings(tree), *_sql_string_findings(tree)}
    return [
        Finding(path, line, reason)
        for line, reason in sorted(found)
        if ALLOW not in lines[line - 1]
    ]


def test_no_sql_is_built_from_strings_in_the_package() -> None:
    findings = [
        finding
        for path in sorted(SOURCE.rglob("*.py"))
        for finding in check_source(path.read_text(encoding="utf-8"), str(path.relative_to(SOURCE)))
    ]
    assert not findings, "SQL must use bound parameters:\n" + "\n".join(map(str, findings))


BAD = [
    "cur.execute(f\"SELECT * FROM events WHERE stream = '{stream}'\")",
    "cur.execute(\"SELECT * FROM events WHERE stream = '%s'\" % stream)",
    'cur.execute("SELECT * FROM events WHERE stream = " + stream)',
    "cur.execute(\"SELECT * FROM events WHERE stream = '{}'\".format(stream))",
    'conn.executemany(f"INSERT INTO {table} VALUES (?)", rows)',
    'conn.executescript("DROP TABLE " + name)',
    'query = f"DELETE FROM events WHERE id = {event_id}"',
    'query = "UPDATE streams SET version = %d" % version',
    'query = "CREATE INDEX {} ON events (type)".format(name)',
]

GOOD = [
    'cur.execute("SELECT * FROM events WHERE stream = %s", (stream,))',
    'cur.execute("SELECT * FROM events WHERE stream = ?", [stream])',
    'cur.execute(QUERIES["read_stream"], {"stream": stream})',
    'cur.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))',
    'cur.execute(SQL("DROP SCHEMA {} CASCADE").format(Identifier(schema)))',
    'query = ("SELECT position FROM events " "WHERE stream = %s")',
    'query = "SELECT position FROM events " + "WHERE stream = %s"',
    'message = f"stream {stream!r} does not exist"',
    'message = "select the {} option".format(name)',
    'conn.execute(f"PRAGMA synchronous={level}")  # sql-static: allow level is from a fixed set',
]


@pytest.mark.parametrize("source", BAD)
def test_checker_flags_sql_built_from_strings(source: str) -> None:
    assert check_source(source), source


@pytest.mark.parametrize("source", GOOD)
def test_checker_passes_parameterised_sql(source: str) -> None:
    assert check_source(source) == [], source
