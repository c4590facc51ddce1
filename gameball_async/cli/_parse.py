"""What reading one input record gives: a wire item, or a reject naming line and field.

Shared by the JSONL and CSV readers, and by the passes that consume them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Check", "InputError", "Read", "Reject", "decode_json"]


class InputError(Exception):
    """The input as a whole cannot be used (unreadable, a CSV without a required column)."""


@attrs.frozen
class Reject:
    """An invalid record: its input line, the field at fault, why, and the record.

    :ivar record: the parsed record, or the raw text when it could not be parsed.
    """

    line: int
    field: str | None
    error: str
    record: Any

    def to_json(self) -> dict[str, Any]:
        """The rejects-file form."""
        return {"line": self.line, "field": self.field, "error": self.error, "record": self.record}

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


#: One record read: its line number, and either its wire form or why it is refused.
Read = tuple[int, Any, "Reject | None"]

#: Validates one parsed record: ``(line, value) -> (wire_item, None)`` or ``(None, reject)``.
Check = Callable[[int, Any], "tuple[Any, Reject | None]"]


def _refuse_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which the API (and JSON) does not.
    raise ValueError(f"{name} is not a JSON number")


# One decoder for every line: json.loads(..., parse_constant=...) builds a new one per call.
decode_json = json.JSONDecoder(parse_constant=_refuse_constant).decode
