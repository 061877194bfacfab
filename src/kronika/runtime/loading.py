"""Finding an application's processors from a ``module:attribute`` reference (``--app``)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from kronika.errors import ConfigurationError
from kronika.runtime.inline import InlineProjection
from kronika.runtime.processor import Processor

__all__ = ["import_module", "load_app", "load_inline", "load_processors"]


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
    function returning one of those. Inline projections among them are left out (they run
    in the appending process: see :func:`load_inline`). The working directory is
    importable, as with ``python -m``.
    """
    processors = [item for item in _load(reference) if isinstance(item, Processor)]
    if not processors:
        raise ConfigurationError(f"--app {reference} names no processors")
    return processors


def load_inline(reference: str) -> list[InlineProjection]:
    """The inline projections among what ``"package.module:attribute"`` names (the same
    forms as :func:`load_processors`; processors are left out). May be empty."""
    return [item for item in _load(reference) if isinstance(item, InlineProjection)]


def load_app(reference: str) -> tuple[list[Processor], list[InlineProjection]]:
    """The processors and the inline projections ``"package.module:attribute"`` names, for a
    process that serves appends and reports on processors (``kronika serve``); there must be
    at least one of either."""
    items = _load(reference)
    processors = [item for item in items if isinstance(item, Processor)]
    inline = [item for item in items if isinstance(item, InlineProjection)]
    if not items:
        raise ConfigurationError(f"--app {reference} names no processors")
    return processors, inline


def _load(reference: str) -> list[Processor | InlineProjection]:
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
    single = isinstance(target, (Processor, InlineProjection, type))
    items = [target] if single else list(_iterable(target, reference))
    found: list[Processor | InlineProjection] = []
    for item in items:
        made = item() if isinstance(item, type) else item
        if not isinstance(made, (Processor, InlineProjection)):
            raise ConfigurationError(f"--app {reference}: {item!r} is not a processor")
        found.append(made)
    return found


def _iterable(target: object, reference: str) -> Iterable[object]:
    if not isinstance(target, Iterable):
        raise ConfigurationError(
            f"--app {reference}: expected processors, got {type(target).__name__}"
        )
    return target
