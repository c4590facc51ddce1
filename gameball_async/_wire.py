"""The one cattrs converter: records to wire JSON and back.

Records are unstructured to camelCase dicts with ``None`` fields left out and
``extra`` merged in. Datetimes stay datetime objects until the final JSON
encoding, so that validation (``_schema.py``) can name a naive one by item and
field before anything is formatted; the JSON encoder then writes them as UTC
with a ``Z`` suffix and refuses any naive one that slipped through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from ._json import make_dumps
from ._records import RECORD_CLASSES as _RECORDS
from ._records import typed_fields

__all__ = [
    "RECORD_CLASSES",
    "converter",
    "dumps",
    "format_datetime",
    "parse_datetime",
    "structure_record",
    "unstructure_record",
]

T = TypeVar("T")

#: Every record class the converter knows: those the records module declares.
RECORD_CLASSES: Final[tuple[type[Any], ...]] = tuple(_RECORDS)


def format_datetime(value: datetime) -> str:
    """Format an aware datetime as UTC ISO 8601 with milliseconds and ``Z``.

    :raises ValueError: for a naive datetime (its zone would be a guess).
    """
    if value.tzinfo is not timezone.utc:
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} has no time zone")
        value = value.astimezone(timezone.utc)
    # isoformat is C code; strftime would cost several times more per value.
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_datetime(value: str) -> datetime | None:
    """Read an ISO 8601 timestamp as the API writes it, or ``None`` if unreadable.

    Accepts a ``Z`` suffix and the 7 fractional digits .NET writes (which
    ``datetime.fromisoformat`` refuses before Python 3.11). A timestamp
    without a zone is read as UTC: that is what the API means by it.
    """
    text = value.strip()
    if not text:
        return None
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    dot = text.find(".", 10)
    if dot != -1:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        digits = text[dot + 1 : end][:6].ljust(6, "0")
        text = f"{text[:dot]}.{digits}{text[end:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"non-finite number {value}")
        return float(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if attrs.has(type(value)):
        return converter.unstructure(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# not Final: benchmarks/_common.pure_json swaps in the pure codec
_encode: Callable[[Any], bytes] = make_dumps(_json_default)


def dumps(value: Any) -> bytes:
    """Encode a value as compact UTF-8 JSON, datetimes as UTC ``Z`` strings.

    orjson does it when the ``speedups`` extra is installed (``_json.py``).

    :raises ValueError: for a naive datetime or a non-finite number.
    :raises TypeError: for a value JSON cannot hold.
    """
    return _encode(value)


def _make_converter() -> cattrs.Converter:
    conv = make_converter()
    # Kept as objects until ``dumps``: see the module docstring.
    conv.register_unstructure_hook(datetime, lambda value: value)
    conv.register_unstructure_hook(date, lambda value: value)

    def _structure_datetime(value: Any, _: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        if isinstance(value, str):
            parsed = parse_datetime(value)
            if parsed is not None:
                return parsed
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")

    conv.register_structure_hook(datetime, _structure_datetime)
    for cls in RECORD_CLASSES:
        _register_record(conv, cls)
    return conv


def _register_record(conv: cattrs.Converter, cls: type[Any]) -> None:
    fields = typed_fields(cls)
    renames: dict[str, Any] = {
        name: override(rename=spec.name, omit_if_default=True) for name, spec in fields
    }
    unstructure_known = make_dict_unstructure_fn(cls, conv, extra=override(omit=True), **renames)

    def unstructure(record: Any) -> dict[str, Any]:
        wire = unstructure_known(record)
        extra = record.extra
        if extra:
            wire.update(extra)
        return wire

    conv.register_unstructure_hook(cls, unstructure)

    known = frozenset(spec.name for _, spec in fields)
    structure_renames: dict[str, Any] = {name: override(rename=spec.name) for name, spec in fields}
    structure_known = make_dict_structure_fn(
        cls, conv, extra=override(omit=True), **structure_renames
    )

    def structure(data: Mapping[str, Any], _: Any) -> Any:
        record = structure_known(data, cls)
        extra = {key: value for key, value in data.items() if key not in known}
        return attrs.evolve(record, extra=extra) if extra else record

    conv.register_structure_hook(cls, structure)


#: The package's one converter.
converter: Final[cattrs.Converter] = _make_converter()

_unstructurers: Final[dict[type[Any], Callable[[Any], dict[str, Any]]]] = {
    cls: converter.get_unstructure_hook(cls) for cls in RECORD_CLASSES
}


def unstructure_record(record: Any) -> dict[str, Any]:
    """Turn a record into its wire dict (camelCase; datetimes still objects)."""
    return _unstructurers[type(record)](record)


def structure_record(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build a record from a wire dict; unknown keys land in ``extra``.

    :raises cattrs.errors.ClassValidationError: when the data does not fit the record.
    """
    return converter.structure(data, cls)
