"""How backups and restores report progress (the CLI draws it as a progress bar)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["NO_PROGRESS", "Progress"]


class Progress(Protocol):
    """Receives a phase's start and its progress; calls may come from a worker thread."""

    def phase(self, label: str, total: int) -> None:
        """A new phase begins: ``total`` rows or bytes are to be done."""
        ...

    def done(self, completed: int) -> None:
        """``completed`` rows or bytes of the current phase are done (a running total)."""
        ...


class _NoProgress:
    """Reports nowhere."""

    def phase(self, label: str, total: int) -> None:
        """Ignore the phase."""

    def done(self, completed: int) -> None:
        """Ignore the progress."""


NO_PROGRESS: Progress = _NoProgress()
"""The default: no reporting."""
