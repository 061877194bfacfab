"""The table of every check ``kronika doctor`` runs, in the order it runs them.

Each row is a :class:`~kronika.ops.doctor.model.Check`: a stable id (the anchor of its
section in docs/operations/doctor.md, and what ``--skip`` takes), the area it looks at, a
title, and the function. A test walks this table and the page, so a check cannot go
undocumented.
"""

from __future__ import annotations

from kronika.ops.doctor import (
    backups,
    config,
    database,
    inline,
    processors,
    remote,
    tracing,
    verification,
)
from kronika.ops.doctor.model import Check

__all__ = ["CHECKS", "check_ids", "security_ids"]

_CONFIG, _STORE, _PROCESSORS, _SERVER = "configuration", "store", "processors", "server"

CHECKS: tuple[Check, ...] = (
    Check(id="DR-CONFIG", area=_CONFIG, title="Settings valid", run=config.settings_valid),
    Check(
        id="DR-STORE-ENGINE",
        area=_CONFIG,
        title="Storage engine",
        run=config.storage_engine,
        security=True,
    ),
    Check(id="DR-AUTH", area=_CONFIG, title="Authentication on", run=config.auth, security=True),
    Check(id="DR-SECRET", area=_CONFIG, title="Secret strength", run=config.secrets, security=True),
    Check(id="DR-CORS", area=_CONFIG, title="CORS origins", run=config.cors, security=True),
    Check(
        id="DR-TLS", area=_CONFIG, title="TLS and certificate expiry", run=config.tls, security=True
    ),
    Check(
        id="DR-RATE-LIMIT", area=_CONFIG, title="Rate limits", run=config.rate_limit, security=True
    ),
    Check(
        id="DR-PROXY",
        area=_CONFIG,
        title="Trusted proxies",
        run=config.trusted_proxies,
        security=True,
    ),
    Check(id="DR-TRACING", area=_CONFIG, title="Tracing exporter", run=tracing.tracing),
    Check(id="DR-STORE-REACH", area=_STORE, title="Store reachable", run=database.store_reachable),
    Check(id="DR-SCHEMA", area=_STORE, title="Schema current", run=database.schema_current),
    Check(
        id="DR-DB-ROLE",
        area=_STORE,
        title="Least-privilege database role",
        run=database.database_role,
        security=True,
    ),
    Check(
        id="DR-DB-TLS", area=_STORE, title="Database TLS", run=database.database_tls, security=True
    ),
    Check(id="DR-POOL", area=_STORE, title="Pool sizing", run=database.pool_sizing),
    Check(id="DR-DISK", area=_STORE, title="Disk space (SQLite)", run=database.disk_space),
    Check(
        id="DR-SNAPSHOTS",
        area=_STORE,
        title="Snapshots of long streams",
        run=database.snapshot_policy,
    ),
    Check(id="DR-BACKUP", area=_STORE, title="Backups recent and verified", run=backups.backups),
    Check(
        id="DR-INLINE",
        area=_STORE,
        title="Inline projections complete",
        run=inline.inline_projections,
    ),
    Check(
        id="DR-VERIFY",
        area=_STORE,
        title="Event log verified recently",
        run=verification.verification,
    ),
    Check(
        id="DR-PROC-FAILING",
        area=_PROCESSORS,
        title="Failing keys (failed partitions)",
        run=processors.failing_keys,
    ),
    Check(
        id="DR-PROC-QUARANTINED",
        area=_PROCESSORS,
        title="Quarantined keys",
        run=processors.quarantined_keys,
    ),
    Check(
        id="DR-PROC-DEAD-LETTERS",
        area=_PROCESSORS,
        title="Dead letters waiting",
        run=processors.dead_letters,
    ),
    Check(
        id="DR-PROC-STALLED",
        area=_PROCESSORS,
        title="Stalled processors",
        run=processors.stalled,
    ),
    Check(id="DR-PROC-LAG", area=_PROCESSORS, title="Projection lag", run=processors.lag),
    Check(
        id="DR-RECOMMEND",
        area=_PROCESSORS,
        title="Recommendations",
        run=processors.recommendations,
    ),
    Check(id="DR-HTTP-REACH", area=_SERVER, title="Server reachable", run=remote.server_reachable),
    Check(id="DR-HTTP-READY", area=_SERVER, title="Readiness", run=remote.readiness),
    Check(
        id="DR-HTTP-AUTH",
        area=_SERVER,
        title="Authentication enforced",
        run=remote.auth_enforced,
        security=True,
    ),
    Check(
        id="DR-HTTP-TLS",
        area=_SERVER,
        title="HTTPS and certificate expiry",
        run=remote.server_tls,
        security=True,
    ),
    Check(id="DR-HTTP-METRICS", area=_SERVER, title="Metrics reachable", run=remote.metrics),
)
"""Every check, in the order they run."""


def check_ids() -> list[str]:
    """The id of every check."""
    return [check.id for check in CHECKS]


def security_ids() -> frozenset[str]:
    """The ids of the security checks (``--security``)."""
    return frozenset(check.id for check in CHECKS if check.security)
