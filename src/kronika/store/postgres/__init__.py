"""The PostgreSQL backend (``postgresql://``): see :mod:`kronika.store.postgres.store`."""

from kronika.store.postgres.settings import OPTIONS, PASSTHROUGH
from kronika.store.postgres.store import PostgresEventStore

__all__ = ["OPTIONS", "PASSTHROUGH", "PostgresEventStore"]
