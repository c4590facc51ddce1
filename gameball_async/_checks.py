"""Field checks of the wire schema, and validators generated from them.

A batch of 1,000 records is checked field by field before it is sent; a
loop over field specs that calls a checker per field cost more than the JSON
encoding itself. So each schema gets one function, generated once at import
(as attrs and cattrs generate ``__init__`` and unstructure functions), that
tests each field inline on the common types and calls the general checker
only to word a refusal or to accept a rarer type (a ``Decimal``, a str
subclass).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from ._errors import InvalidBatchError
from ._records import Kind, Spec
from ._wire import format_datetime, parse_datetime

__all__ = [
    "FAST_CHECKS",
    "Kind",
    "Spec",
    "Validator",
    "checker",
    "compile_validator",
    "invalid",
    "misspelling",
    "missing",
]

_CHANNELS: Final = frozenset({"mobile", "pos", "web", "callcenter"})


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, Decimal) and value.is_finite()


def _wrong(kind: Kind, value: object) -> str:
    if kind is Kind.NUMBER and isinstance(value, (float, Decimal)):
        return f"must be {kind.value}, got {value}"
    return f"must be {kind.value}, got {type(value).__name__}"


def _timestamp_problem(value: object) -> str | None:
    if isinstance(value, str):
        if not _EXTENDED_ISO.fullmatch(value):
            return f"is not an ISO 8601 timestamp: {value[:40]!r}"
        try:
            # The C parser takes the usual "...Z" form in well under a microsecond.
            parsed: datetime | None = datetime.fromisoformat(value)
        except ValueError:
            parsed = parse_datetime(value)
            if parsed is None:
                return f"is not an ISO 8601 timestamp: {value[:40]!r}"
            return None if _has_zone(value) else f"has no time zone: {value[:40]!r}; add 'Z'"
        if parsed is not None and parsed.tzinfo is None:
            return f"has no time zone: {value[:40]!r}; add 'Z' or an offset"
        return None
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            return "is a naive datetime (no time zone); give an aware datetime"
        return None
    return _wrong(Kind.DATETIME, value)


# The extended form the API takes ("2024-10-16T08:13:29.290Z"); Python's parser
# also takes basic ("20241016T081329Z"), week and hour-only forms, which it refuses.
_EXTENDED_ISO: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
)


def _events_ok(value: object) -> bool:
    # the API refuses an empty events object (3003), so it is refused here too
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(
            isinstance(name, str) and name and isinstance(meta, Mapping)
            for name, meta in value.items()
        )
    )


def checker(kind: Kind) -> Callable[[Any], str | None]:
    """The check of one kind: the value's problem, or ``None`` when it fits."""
    if kind is Kind.DATETIME:
        return _timestamp_problem
    accepts: Callable[[Any], bool] = {
        Kind.ID: lambda v: isinstance(v, str) and bool(v.strip()),
        Kind.STR: lambda v: isinstance(v, str),
        Kind.CHANNEL: lambda v: isinstance(v, str) and v in _CHANNELS,
        Kind.NUMBER: _is_number,
        Kind.INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
        Kind.BOOL: lambda v: isinstance(v, bool),
        Kind.DATE: lambda v: isinstance(v, (date, str)),
        Kind.OBJECT: lambda v: isinstance(v, Mapping),
        Kind.EVENTS: _events_ok,
        Kind.STRINGS: lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
        Kind.ATTRIBUTES: lambda v: isinstance(v, Mapping),
    }[kind]

    def check(value: Any) -> str | None:
        return None if accepts(value) else _wrong(kind, value)

    return check


def _has_zone(text: str) -> bool:
    tail = text.strip()[10:]
    return tail.endswith(("Z", "z")) or "+" in tail or "-" in tail


#: ``validator(index, wire, owned) -> wire``: checks one item's wire mapping and
#: returns it with datetimes and dates formatted; a mapping the caller owns
#: (``owned`` false) is copied before it is changed, never changed in place.
Validator = Callable[[int, Mapping[str, Any], bool], Mapping[str, Any]]

# Inline tests of the common case; anything else goes to the kind's checker.
FAST_CHECKS: Final[dict[Kind, str]] = {
    Kind.ID: "v.__class__ is str and v and not v.isspace()",
    Kind.STR: "v.__class__ is str",
    Kind.NUMBER: "v.__class__ is int or (v.__class__ is float and v - v == 0.0)",
    Kind.INT: "v.__class__ is int",
    Kind.BOOL: "v.__class__ is bool",
}


def _fold(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def misspelling(name: str, keys: Iterable[object]) -> str | None:
    """A key among ``keys`` that spells the wire name ``name`` another way, if any.

    ``customer_id``, ``CustomerID`` and ``customer-id`` all spell ``customerId``:
    the same letters, whatever the case and the ``_``/``-`` separators.
    """
    folded = _fold(name)
    for key in keys:
        if isinstance(key, str) and key != name and _fold(key) == folded:
            return key
    return None


def missing(index: int, field: str, name: str, wire: Mapping[str, Any]) -> InvalidBatchError:
    """The refusal of item ``index`` for its missing ``field`` (wire name ``name``),
    naming a key of ``wire`` that spells it another way, if there is one."""
    # Only on the error path: a valid item never pays for the search below.
    message = f"item {index}: required field {field!r} is missing"
    found = misspelling(name, wire)
    if found is not None:
        where = field[: len(field) - len(name)]  # the nested object's prefix, if any
        message += f" (found {where + found!r}: use the camelCase wire name {field!r})"
    return InvalidBatchError(message, index=index, field=field)


def invalid(index: int, field: str, problem: str) -> InvalidBatchError:
    """The refusal of item ``index`` for a ``field`` whose value has ``problem``."""
    return InvalidBatchError(f"item {index}: field {field!r} {problem}", index=index, field=field)


def compile_validator(
    specs: Sequence[Spec], *, attributes: Sequence[Spec] = (), prefix: str = ""
) -> Validator:
    """Generate the validator of one schema (see :data:`Validator`).

    :param attributes: the schema of a field of kind ``ATTRIBUTES``.
    :param prefix: put before field names in messages (nested objects).
    """
    namespace: dict[str, Any] = {
        "missing": missing,
        "invalid": invalid,
        "format_datetime": format_datetime,
        "dict": dict,
        "str": str,
        "float": float,
        "int": int,
        "bool": bool,
        "isinstance": isinstance,
    }
    lines = ["def validate(index, wire, owned):"]
    for n, spec in enumerate(specs):
        name, field = spec.name, prefix + spec.name
        namespace[f"check_{n}"] = checker(spec.kind)
        lines += [f"    v = wire.get({name!r})", "    if v is None:"]
        lines.append(
            f"        raise missing(index, {field!r}, {name!r}, wire)"
            if spec.required
            else "        ..."
        )
        lines.append("    else:")
        fast = FAST_CHECKS.get(spec.kind)
        indent = "        "
        if fast is not None:
            lines.append(f"        if not ({fast}):")
            indent += "    "
        lines += [
            f"{indent}problem = check_{n}(v)",
            f"{indent}if problem is not None:",
            f"{indent}    raise invalid(index, {field!r}, problem)",
        ]
        formatted = None
        if spec.kind is Kind.DATETIME:
            # Formatted here, not by the JSON encoder's per-value Python fallback.
            formatted = "format_datetime(v)"
        elif spec.kind is Kind.DATE:
            formatted = "v.isoformat()"
        elif spec.kind is Kind.ATTRIBUTES:
            namespace[f"nested_{n}"] = compile_validator(attributes, prefix=f"{field}.")
            formatted = f"nested_{n}(index, v, owned)"
        if formatted is not None:
            # a str subclass is a string too: it goes as it is
            guard = "not isinstance(v, str)" if spec.kind is not Kind.ATTRIBUTES else "True"
            lines += [
                f"        if {guard}:",
                f"            new = {formatted}",
                "            if new is not v:",
                "                if not owned:",
                "                    wire = dict(wire)",
                "                    owned = True",
                f"                wire[{name!r}] = new",
            ]
    lines.append("    return wire")
    exec("\n".join(lines), namespace)
    validate: Validator = namespace["validate"]
    return validate
