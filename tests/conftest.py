"""Fixtures shared by every test directory: store URLs for each backend, isolated per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kronika.testing.services import postgres_server_url, require_service


@pytest.fixture
def memory_url() -> str:
    """A fresh named in-memory store, shared by every store opened on the URL."""
    return f"memory://test-{uuid.uuid4().hex}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'kronika.db'}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL server URL; skips (or fails under KRONIKA_REQUIRE_SERVICES=1) if down."""
    try:
        import psycopg
    except ImportError:
        require_service("PostgreSQL", "psycopg is not installed (pip install 'kronika[postgres]')")
    url = postgres_server_url()
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        require_service("PostgreSQL", f"cannot connect to {url}: {exc}")
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A store URL on the test server with a schema of its own, dropped after the test."""
    import psycopg

    schema = f"kronika_test_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in postgres_server else "?"
    yield f"{postgres_server}{separator}schema={schema}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
