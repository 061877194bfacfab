"""Turning an aggregate's state into a snapshot (a JSON object) and back.

The state is the aggregate's annotated attributes (``balance: int = 0``), serialised with
pydantic, so dates, decimals, sets and nested models round-trip. An aggregate can take over
by defining ``snapshot_state(self) -> dict`` and ``restore_state(self, state: dict)``.
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar

import pydantic

from kronika.cqrs.registry import pydantic_errors
from kronika.domain.aggregate import Aggregate
from kronika.errors import ConfigurationError

__all__ = ["restore_state", "snapshot_state", "state_fields"]

_BASE_FIELDS = frozenset({"id", "version", "category", "snapshot_every", "snapshot_version"})


_MODELS: dict[type[Aggregate], type[pydantic.BaseModel]] = {}


def state_fields(cls: type[Aggregate]) -> type[pydantic.BaseModel]:
    """A pydantic model of the annotated instance attributes of ``cls`` (its state)."""
    model = _MODELS.get(cls)
    if model is None:
        model = _MODELS[cls] = _state_model(cls)
    return model


def _state_model(cls: type[Aggregate]) -> type[pydantic.BaseModel]:
    try:
        hints = typing.get_type_hints(cls)
    except NameError as exc:
        raise ConfigurationError(
            f"{cls.__name__}: cannot resolve a state annotation ({exc})"
        ) from None
    fields = {
        name: hint
        for name, hint in hints.items()
        if not name.startswith("_")
        and name not in _BASE_FIELDS
        and typing.get_origin(hint) is not ClassVar
        and hint is not ClassVar
    }
    if not fields:
        raise ConfigurationError(
            f"{cls.__name__} has no annotated state attributes to snapshot; annotate them "
            "(e.g. 'balance: int = 0') or define snapshot_state()/restore_state()"
        )
    definitions: dict[str, Any] = {name: (hint, ...) for name, hint in fields.items()}
    model: type[pydantic.BaseModel] = pydantic.create_model(f"{cls.__name__}State", **definitions)
    return model


def snapshot_state(aggregate: Aggregate) -> dict[str, Any]:
    """The aggregate's state as a JSON object."""
    custom = getattr(aggregate, "snapshot_state", None)
    if callable(custom):
        state: dict[str, Any] = custom()
        return state
    model = state_fields(type(aggregate))
    values = {name: getattr(aggregate, name) for name in model.model_fields}
    try:
        return model.model_validate(values).model_dump(mode="json")
    except pydantic.ValidationError as exc:
        raise pydantic_errors(exc, f"{aggregate.stream}.state") from None


def restore_state(aggregate: Aggregate, state: dict[str, Any]) -> None:
    """Set the aggregate's state from a snapshot; ``ValidationError`` if it no longer fits."""
    custom = getattr(aggregate, "restore_state", None)
    if callable(custom):
        custom(state)
        return
    try:
        values = state_fields(type(aggregate)).model_validate(state)
    except pydantic.ValidationError as exc:
        raise pydantic_errors(exc, "snapshot") from None
    for name in type(values).model_fields:
        setattr(aggregate, name, getattr(values, name))
