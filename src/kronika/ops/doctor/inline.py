"""Inline projections: a read model registered on a log that already held its events is
incomplete until it is rebuilt (K8, K15: "projection X needs a rebuild")."""

from __future__ import annotations

from kronika.ops.doctor.context import DoctorContext
from kronika.ops.doctor.model import Finding, Severity
from kronika.store.inline import inline_status

__all__ = ["inline_projections"]


async def inline_projections(ctx: DoctorContext) -> list[Finding]:
    """DR-INLINE: every inline projection recorded in the store has a complete read model."""
    records = await inline_status(ctx.require_store())
    severity = Severity.HIGH if ctx.production else Severity.MEDIUM
    return [
        Finding(
            check="DR-INLINE",
            severity=severity,
            title=f"inline projection {record.name} needs a rebuild",
            found=f"events of its types were stored before it handled them (registered at "
            f"position {record.registered_position}); its read model misses them",
            action=f"run kronika inline rebuild {record.name} --app MODULE:ATTRIBUTE "
            "(appends wait while it runs) or drop it with kronika inline drop",
        )
        for record in records
        if record.needs_rebuild
    ]
