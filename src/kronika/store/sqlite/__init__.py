"""The SQLite backend (``sqlite:///relative.db``, ``sqlite:////absolute/path.db``)."""

from kronika.store.sqlite.config import OPTIONS
from kronika.store.sqlite.store import SQLiteEventStore

__all__ = ["OPTIONS", "SQLiteEventStore"]
