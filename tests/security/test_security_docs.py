"""Every authentication setting is documented, in the security reference and among the
environment variables of the configuration reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from kronika.server.security.settings import ENVIRONMENT

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference"


@pytest.mark.parametrize("page", ["security.md", "configuration.md"])
def test_every_auth_variable_is_documented(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    missing = [name for name in ENVIRONMENT.values() if f"| `{name}` |" not in text]
    assert not missing, f"add a table row for these to {page}: {missing}"
