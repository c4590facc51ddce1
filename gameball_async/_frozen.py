"""Pickling of the frozen attrs models, read-only mappings included."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import attrs

__all__ = ["reduce_frozen"]


def reduce_frozen(self: Any) -> tuple[Any, ...]:
    """Pickle a frozen model as its field values by name, read-only mappings included.

    ``MappingProxyType`` does not pickle (a status's default ``raw`` is one): such
    a field travels as a dict and is wrapped again on the way back. Unpickling
    sets the fields directly, as attrs' own pickling does, without validators.
    """
    state: dict[str, Any] = {}
    proxies: list[str] = []
    for field in attrs.fields(type(self)):
        value = getattr(self, field.name)
        if type(value) is MappingProxyType:
            value = dict(value)
            proxies.append(field.name)
        state[field.name] = value
    return (_rebuild_frozen, (type(self), state, tuple(proxies)))


def _rebuild_frozen(cls: type[Any], state: dict[str, Any], proxies: tuple[str, ...]) -> Any:
    for name in proxies:
        state[name] = MappingProxyType(state[name])
    model = object.__new__(cls)
    for field in attrs.fields(cls):
        if field.name in state:
            value = state[field.name]
        else:  # a field added since the pickle was made: its default
            factory = getattr(field.default, "factory", None)
            value = factory() if callable(factory) else field.default
        object.__setattr__(model, field.name, value)
    return model
