"""The HTTP client operator tools use to talk to a running server (doctor, smoke)."""

from __future__ import annotations

import ssl

import httpx

__all__ = ["answer_detail", "server_client"]


def server_client(
    url: str, *, token: str | None, cacert: str | None, timeout: float
) -> httpx.AsyncClient:
    """A client for the server at ``url``: the bearer ``token`` on every request, the
    system's CA certificates or those in the PEM file ``cacert``, ``timeout`` seconds."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cacert) if cacert else True
    return httpx.AsyncClient(
        base_url=url.rstrip("/"), headers=headers, timeout=timeout, verify=verify
    )


def answer_detail(answer: httpx.Response) -> str:
    """What a refusing answer says: a problem document's ``detail`` (or ``title``), else
    the start of its text."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200] or answer.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:200]
    return str(body)[:200]
