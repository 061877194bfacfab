"""The public API is curated: ``kronika.__all__`` is sorted, importable and documented."""

from __future__ import annotations

import re
from pathlib import Path

import kronika

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "api.md"
DOCUMENTED = re.compile(r"^\| `(?P<name>[A-Za-z_][A-Za-z0-9_]*)` \|", re.MULTILINE)


def test_all_is_sorted() -> None:
    assert kronika.__all__ == sorted(kronika.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(kronika.__all__)) == len(kronika.__all__)


def test_every_public_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from kronika import *", namespace)  # noqa: S102 - the star import is what we test
    missing = [name for name in kronika.__all__ if name not in namespace]
    assert not missing


def test_public_names_match_the_api_reference() -> None:
    documented = DOCUMENTED.findall(API_DOC.read_text(encoding="utf-8"))
    assert len(documented) == len(set(documented)), "a name is documented twice"
    assert set(documented) - set(kronika.__all__) == set(), "documented but not exported"
    assert set(kronika.__all__) - set(documented) == set(), "exported but not documented"


def test_public_classes_and_functions_have_docstrings() -> None:
    undocumented = [
        name
        for name in kronika.__all__
        if callable(obj := getattr(kronika, name)) and not (obj.__doc__ or "").strip()
    ]
    assert not undocumented
