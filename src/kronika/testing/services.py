"""Finding the external services that integration tests need.

A test that needs a service calls :func:`require_service` when it cannot reach it: the test
is skipped with the reason, unless ``KRONIKA_REQUIRE_SERVICES=1`` is set (as CI does), in
which case it fails, so a missing service can never turn a red build green.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["postgres_server_url", "require_service", "services_required"]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def services_required() -> bool:
    """Whether a missing service is a failure rather than a skip."""
    return os.environ.get("KRONIKA_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes"}


def require_service(name: str, reason: str) -> NoReturn:
    """Skip (or fail, when services are required) because ``name`` is unavailable."""
    message = f"{name} is not available: {reason}"
    if services_required():
        pytest.fail(f"{message} (KRONIKA_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def postgres_server_url() -> str:
    """The PostgreSQL server tests use: ``$KRONIKA_TEST_POSTGRES_URL`` or the local default."""
    return os.environ.get("KRONIKA_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
