"""Kronika's testing kit: the store conformance suite and fixtures users and backends reuse.

Importing it needs ``pytest`` (and ``pytest-asyncio`` for the async suites).
"""

from kronika.testing.services import postgres_server_url, require_service

__all__ = ["postgres_server_url", "require_service"]
