"""Fixtures for the security tests: a store URL per backend."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_url(request: pytest.FixtureRequest) -> str:
    """A fresh store URL on each backend in turn."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url
