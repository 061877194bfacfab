"""Who is on the other end of a request: the peer, or the client a trusted proxy names.

``X-Forwarded-For`` is believed only when the peer is a configured trusted proxy, and then
read from the right: the first address that is not itself a trusted proxy is the client.
Anyone can send the header, so a rate limit keyed on it unchecked could be dodged by
changing it on every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

from kronika.server.settings import Network

__all__ = ["client_ip", "is_https"]


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def client_ip(scope: Scope, proxies: Sequence[Network]) -> str:
    """The client's address, honouring X-Forwarded-For only from trusted proxies."""
    peer = _peer(scope)
    if not proxies or not _trusted(peer, proxies):
        return peer
    forwarded = _header(scope, b"x-forwarded-for")
    if not forwarded:
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            return hop
    return hops[0] if hops else peer


def is_https(scope: Scope, proxies: Sequence[Network]) -> bool:
    """Whether the client reached us over TLS: directly, or per a trusted proxy."""
    if scope.get("scheme") == "https":
        return True
    if proxies and _trusted(_peer(scope), proxies):
        return (_header(scope, b"x-forwarded-proto") or "").strip().lower() == "https"
    return False
