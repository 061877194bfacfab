"""Finding an application's processors from a ``module:attribute`` reference (``--app``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from kronika.errors import ConfigurationError
from kronika.runtime.processor import Processor

__all__ = ["import_module", "load_processors"]


def import_module(name: str, option: str) -> ModuleType:
    """Import an application's module named by a CLI option; the working directory is
    importable, as with ``python -m``. A failure names the option."""
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(f"{option}: cannot import {name!r}: {exc}") from None


def load_processors(reference: str) -> list[Processor]:
    """The processors named by ``"package.module:attribute"``.

    The attribute may be a processor, a processor class, an iterable of either, or a
    function returning one of those. The working directory is importable, as with
    ``python -m``.
    """
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"--app must look like 'package.module:attribute', got {reference!r}"
        )
    module = import_module(module_name, "--app")
    try:
        target = getattr(module, attribute)
    except AttributeError:
        raise ConfigurationError(f"--app: {module_name!r} has no attribute {attribute!r}") from None
    if callable(target) and not isinstance(target, type):
        target = target()
    items = (
        [target] if isinstance(target, (Processor, type)) else list(_iterable(target, reference))
    )
    processors: list[Processor] = []
    for item in items:
        made = item() if isinstance(item, type) else item
        if not isinstance(made, Processor):
            raise ConfigurationError(f"--app {reference}: {item!r} is not a processor")
        processors.append(made)
    if not processors:
        raise ConfigurationError(f"--app {reference} names no processors")
    return processors


def _iterable(target: object, reference: str) -> Iterable[object]:
    if not isinstance(target, Iterable):
        raise ConfigurationError(
            f"--app {reference}: expected processors, got {type(target).__name__}"
        )
    return target
