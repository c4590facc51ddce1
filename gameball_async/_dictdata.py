"""The JSON-ready dicts of ``to_dict``/``from_dict``: timestamps and typed reads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["Reader", "plain", "utc_text"]


def utc_text(value: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 UTC with microseconds and ``Z``.

    :raises ValueError: for a naive datetime (its zone would be a guess).
    """
    if value is None:
        return None
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone")
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


def plain(value: Any) -> Any:
    """``value`` with a read-only mapping made a dict (``json.dumps`` refuses one)."""
    return dict(value) if isinstance(value, MappingProxyType) else value


T = TypeVar("T")


class Reader:
    """Typed reads of a ``to_dict`` dict, with errors that name the field."""

    __slots__ = ("data", "what")

    def __init__(self, data: Mapping[str, Any], what: str) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"{what}: expected a dict, got {type(data).__name__}")
        self.data = data
        self.what = what

    def required(self, key: str, kind: type[T]) -> T:
        if key not in self.data:
            raise ValueError(f"{self.what}: {key!r} is missing")
        return self._typed(key, kind)

    def optional(self, key: str, kind: type[T], default: Any = None) -> Any:
        if self.data.get(key) is None:
            return default
        return self._typed(key, kind)

    def _typed(self, key: str, kind: type[T]) -> T:
        value = self.data[key]
        # bool is an int to isinstance, never a count or an index here
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(
                f"{self.what}: {key!r} is not {kind.__name__} but {type(value).__name__}"
            )
        return value

    def timestamp(self, key: str) -> datetime | None:
        text = self.optional(key, str)
        if text is None:
            return None
        try:
            # "Z" spelled as an offset: datetime.fromisoformat reads "Z" only from 3.11
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
        except ValueError:
            raise ValueError(f"{self.what}: {key!r} is not ISO 8601: {text[:40]!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{self.what}: {key!r} has no time zone: {text[:40]!r}")
        return parsed

    def results(self, key: str) -> list[Mapping[str, Any]]:
        value = self.optional(key, list, [])
        assert isinstance(value, list)
        return value
