"""The archive's sections are well formed and every backend can export, count and import
each of them (the SQL files are checked as text, without a database: the round trips in
tests/backup prove the queries right)."""

from __future__ import annotations

import re

import pytest

from kronika.store.archive import KINDS, NOT_ARCHIVED, SECTIONS, section
from kronika.store.sqlfiles import load_queries

BACKENDS = ("kronika.store.sqlite", "kronika.store.postgres")


def test_sections_have_unique_names_and_known_kinds() -> None:
    names = [s.name for s in SECTIONS]
    assert len(set(names)) == len(names)
    for s in SECTIONS:
        assert s.columns[0].name == "namespace", f"{s.name}: every table is keyed by namespace"
        assert len(set(s.names)) == len(s.names)
        assert {c.kind for c in s.columns} <= KINDS, s.name
    assert section("events") is SECTIONS[1] and section("backups") is None
    assert SECTIONS[1].names[:2] == ("namespace", "position")  # the reader relies on it


def test_left_out_tables_and_columns_are_not_archived() -> None:
    archived = {s.name for s in SECTIONS} | {
        f"{s.name}.{c.name}" for s in SECTIONS for c in s.columns
    }
    assert not archived & set(NOT_ARCHIVED)


@pytest.mark.parametrize("package", BACKENDS)
def test_every_section_has_its_queries(package: str) -> None:
    queries = load_queries(package, "archive.sql")
    for s in SECTIONS:
        for kind in ("count", "export", "import"):
            assert f"{kind}_{s.name}" in queries, f"{package}: add {kind}_{s.name} to archive.sql"
        statement = re.sub(r"--[^\n]*", "", queries[f"import_{s.name}"])
        imported = re.search(r"\((?P<cols>[^)]*)\)", statement)
        assert imported is not None
        columns = {c.strip() for c in imported["cols"].split(",")}
        extra = {"category"} if s.name == "events" and "sqlite" in package else set()
        assert set(columns) - extra == set(s.names), f"{package}: import_{s.name} columns"
