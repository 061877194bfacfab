"""The HTTP client backend (``http://`` and ``https://``): a store on a ``kronika serve``."""

from kronika.store.http.config import OPTIONS
from kronika.store.http.store import HttpEventStore

__all__ = ["OPTIONS", "HttpEventStore"]
