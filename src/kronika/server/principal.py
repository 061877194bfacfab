"""Who is calling, and what they may do: the contract between the server and authentication.

The server asks an :class:`Authenticator` who sent a request (from its ``Authorization``
header) and gets a :class:`Principal`; every route names the :class:`Permission` it needs,
and :func:`authorize` says yes or raises :class:`~kronika.errors.Forbidden`.

Roles grant permissions (least privilege: an operator manages processors but does not
append business events)::

    reader    read
    writer    read, write
    operator  read, operate
    admin     read, write, operate, admin

A principal may be limited to some stream categories; it then reaches only streams of
those categories, and reads of the global log must be filtered to them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from kronika.domain.events import category_of
from kronika.errors import Forbidden

__all__ = [
    "ANONYMOUS_ADMIN",
    "AllowAll",
    "Authenticator",
    "Permission",
    "Principal",
    "Role",
    "authorize",
    "lacking",
]


class Permission(enum.Enum):
    """What a route needs."""

    READ = "read"
    WRITE = "write"
    OPERATE = "operate"
    ADMIN = "admin"


class Role(enum.Enum):
    """A named set of permissions given to a key or token."""

    READER = "reader"
    WRITER = "writer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def permissions(self) -> frozenset[Permission]:
        return _GRANTS[self]


_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.READER: frozenset({Permission.READ}),
    Role.WRITER: frozenset({Permission.READ, Permission.WRITE}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.OPERATE}),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    """A key's id or a token's subject: safe to log, never a secret."""
    roles: frozenset[Role]
    categories: frozenset[str] | None = None
    """Stream categories this caller may reach; ``None`` means all."""
    kind: str = "key"
    """How the caller authenticated: ``key``, ``jwt`` or ``anonymous``."""
    claims: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def permissions(self) -> frozenset[Permission]:
        granted = _PERMISSIONS.get(self.roles)
        if granted is None:  # a handful of role sets exist: each is worked out once
            granted = _PERMISSIONS[self.roles] = frozenset(
                permission for role in self.roles for permission in role.permissions
            )
        return granted

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions


_PERMISSIONS: dict[frozenset[Role], frozenset[Permission]] = {}
"""Permissions by role set (at most 2**4 keys)."""

ANONYMOUS_ADMIN = Principal("anonymous", frozenset({Role.ADMIN}), kind="anonymous")
"""Who every request is when authentication is off (the ``local`` mode only)."""


def lacking(principal: Principal, permission: Permission) -> Forbidden:
    """The refusal of a caller without ``permission``, naming the roles that have it."""
    roles = ", ".join(role.value for role in Role if permission in role.permissions)
    return Forbidden(
        f"{principal.name} lacks the {permission.value!r} permission (roles with it: {roles})"
    )


def authorize(
    principal: Principal,
    permission: Permission,
    *,
    stream: str | None = None,
    categories: Iterable[str] | None = None,
) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may do ``permission`` here.

    ``stream`` is the stream a route touches; ``categories`` the category filter of a read
    of the global log (a category-limited caller must name a subset of its categories).
    """
    if not principal.may(permission):
        raise lacking(principal, permission)
    allowed = principal.categories
    if allowed is None:
        return
    if stream is not None and category_of(stream) not in allowed:
        raise Forbidden(f"{principal.name} may not reach stream category {category_of(stream)!r}")
    if stream is None:
        asked = set(categories or ())
        if not asked or not asked <= allowed:
            raise Forbidden(
                f"{principal.name} is limited to categories {sorted(allowed)}; "
                "filter the global log with categories= within them"
            )


class Authenticator(Protocol):
    """Turns a request's credentials into a principal."""

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization`` header value (``None`` when absent).

        Raises :class:`~kronika.errors.Unauthorized` when credentials are missing,
        malformed, unknown, revoked or expired; the message says which, never the secret.
        """
        ...


class AllowAll:
    """Authentication off: everyone is an anonymous admin. Refused by the production mode."""

    async def authenticate(self, authorization: str | None) -> Principal:
        return ANONYMOUS_ADMIN
