"""The authorize() matrix: every role against every permission, and category limits."""

from __future__ import annotations

import pytest

from kronika.errors import Forbidden
from kronika.server.principal import Permission, Principal, Role, authorize

GRANTED = {
    Role.READER: {Permission.READ},
    Role.WRITER: {Permission.READ, Permission.WRITE},
    Role.OPERATOR: {Permission.READ, Permission.OPERATE},
    Role.ADMIN: set(Permission),
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_each_role_against_each_permission(role: Role, permission: Permission) -> None:
    principal = Principal("k1", frozenset({role}))
    if permission in GRANTED[role]:
        authorize(principal, permission, stream="orders-1")
        authorize(principal, permission)
    else:
        with pytest.raises(Forbidden, match=f"k1 lacks the '{permission.value}' permission"):
            authorize(principal, permission, stream="orders-1")


def test_roles_add_up() -> None:
    principal = Principal("k1", frozenset({Role.WRITER, Role.OPERATOR}))
    for permission in (Permission.READ, Permission.WRITE, Permission.OPERATE):
        authorize(principal, permission)
    with pytest.raises(Forbidden):
        authorize(principal, Permission.ADMIN)


def test_no_roles_no_permissions() -> None:
    principal = Principal("k1", frozenset())
    for permission in Permission:
        with pytest.raises(Forbidden):
            authorize(principal, permission)


def test_category_limits_apply_to_streams() -> None:
    principal = Principal("k1", frozenset({Role.WRITER}), categories=frozenset({"orders"}))
    authorize(principal, Permission.WRITE, stream="orders-42")
    authorize(principal, Permission.READ, stream="orders")
    with pytest.raises(Forbidden, match="may not reach stream category 'users'"):
        authorize(principal, Permission.READ, stream="users-7")
    with pytest.raises(Forbidden, match="'ordersx'"):
        authorize(principal, Permission.WRITE, stream="ordersx-1")


def test_category_limited_reads_of_the_global_log_must_filter_within_them() -> None:
    principal = Principal("k1", frozenset({Role.READER}), categories=frozenset({"orders", "users"}))
    authorize(principal, Permission.READ, categories=["orders"])
    authorize(principal, Permission.READ, categories=["orders", "users"])
    with pytest.raises(Forbidden, match="filter the global log"):
        authorize(principal, Permission.READ)
    with pytest.raises(Forbidden, match="filter the global log"):
        authorize(principal, Permission.READ, categories=["orders", "billing"])


def test_an_unlimited_principal_reads_the_whole_log() -> None:
    authorize(Principal("k1", frozenset({Role.READER})), Permission.READ)
