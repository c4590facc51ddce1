"""Local validation of batch items against the wire schema of each operation.

Records and plain dicts go through the same checks, on their wire form, so a
batch is refused before anything is sent whatever the caller built it from.
Every refusal is an :class:`InvalidBatchError` naming the item index and the
field (its wire name).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

import attrs

from ._errors import InvalidBatchError
from ._models import (
    BalanceAdjustment,
    BalanceInquiry,
    Cashback,
    Customer,
    Event,
    Operation,
    Order,
    Redemption,
)
from ._wire import converter, dumps, format_datetime, parse_datetime, unstructure_record

__all__ = ["MAX_BATCH_ITEMS", "RECORD_FOR", "encode_batch", "wire_items"]

#: The API's limit of items in one batch.
MAX_BATCH_ITEMS: Final = 1000


class Kind(enum.Enum):
    ID = "a non-empty string"
    STR = "a string"
    NUMBER = "a finite number"
    INT = "an integer"
    BOOL = "a boolean"
    DATETIME = "an aware datetime or an ISO 8601 string with a zone"
    DATE = "a date or an ISO 8601 string"
    OBJECT = "an object (mapping)"
    EVENTS = "an object mapping event names to metadata objects"
    STRINGS = "a list of strings"
    ATTRIBUTES = "a customerAttributes object"
    CHANNEL = "one of mobile, pos, web, callcenter"


@attrs.frozen
class Spec:
    name: str
    kind: Kind
    required: bool = False


_CUSTOMER_ATTRIBUTES: Final = (
    Spec("displayName", Kind.STR),
    Spec("firstName", Kind.STR),
    Spec("lastName", Kind.STR),
    Spec("email", Kind.STR),
    Spec("gender", Kind.STR),
    Spec("mobile", Kind.STR),
    Spec("dateOfBirth", Kind.DATE),
    Spec("joinDate", Kind.DATETIME),
    Spec("country", Kind.STR),
    Spec("city", Kind.STR),
    Spec("zip", Kind.STR),
    Spec("preferredLanguage", Kind.STR),
    Spec("source", Kind.STR),
    Spec("utms", Kind.STRINGS),
    Spec("devices", Kind.STRINGS),
    Spec("paymentMethods", Kind.STRINGS),
    Spec("totalSpent", Kind.NUMBER),
    Spec("lastOrderDate", Kind.DATETIME),
    Spec("totalOrders", Kind.INT),
    Spec("avgOrderAmount", Kind.NUMBER),
    Spec("channel", Kind.CHANNEL),
    Spec("custom", Kind.OBJECT),
)

_SCHEMAS: Final[dict[Operation, tuple[Spec, ...]]] = {
    Operation.CUSTOMERS: (
        Spec("customerId", Kind.ID, required=True),
        Spec("email", Kind.STR),
        Spec("mobile", Kind.STR),
        Spec("deviceToken", Kind.STR),
        Spec("osType", Kind.STR),
        Spec("referrerCode", Kind.STR),
        Spec("guest", Kind.BOOL),
        Spec("customerAttributes", Kind.ATTRIBUTES),
    ),
    Operation.ORDERS: (
        Spec("customerId", Kind.ID, required=True),
        Spec("orderId", Kind.ID, required=True),
        Spec("orderDate", Kind.DATETIME, required=True),
        Spec("totalPaid", Kind.NUMBER, required=True),
    ),
    Operation.BALANCE_INQUIRY: (Spec("customerId", Kind.ID, required=True),),
    Operation.BALANCE_ADJUSTMENT: (
        Spec("customerId", Kind.ID, required=True),
        Spec("amount", Kind.NUMBER, required=True),
        Spec("reason", Kind.STR),
    ),
    Operation.CASHBACK: (
        Spec("customerId", Kind.ID, required=True),
        Spec("transactionId", Kind.ID, required=True),
        Spec("transactionTime", Kind.DATETIME, required=True),
        Spec("amount", Kind.NUMBER, required=True),
        Spec("email", Kind.STR),
        Spec("mobile", Kind.STR),
    ),
    Operation.REDEEM: (
        Spec("customerId", Kind.ID, required=True),
        Spec("transactionId", Kind.ID, required=True),
        Spec("transactionTime", Kind.DATETIME, required=True),
        Spec("amount", Kind.NUMBER),
        Spec("points", Kind.INT),
        Spec("holdReference", Kind.STR),
        Spec("email", Kind.STR),
        Spec("mobile", Kind.STR),
    ),
    Operation.EVENTS: (
        Spec("customerId", Kind.ID, required=True),
        Spec("events", Kind.EVENTS, required=True),
    ),
}

#: The record class each operation takes (order-transactions takes strings).
RECORD_FOR: Final[dict[Operation, type[Any]]] = {
    Operation.CUSTOMERS: Customer,
    Operation.ORDERS: Order,
    Operation.BALANCE_INQUIRY: BalanceInquiry,
    Operation.BALANCE_ADJUSTMENT: BalanceAdjustment,
    Operation.CASHBACK: Cashback,
    Operation.REDEEM: Redemption,
    Operation.EVENTS: Event,
}

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


def _events_ok(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(name, str) and name and isinstance(meta, Mapping)
        for name, meta in value.items()
    )


def _checker(kind: Kind) -> Callable[[Any], str | None]:
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
        Kind.STRINGS: lambda v: isinstance(v, (list, tuple)) and all(
            isinstance(x, str) for x in v
        ),
        Kind.ATTRIBUTES: lambda v: isinstance(v, Mapping),
    }[kind]

    def check(value: Any) -> str | None:
        return None if accepts(value) else _wrong(kind, value)

    return check


def _has_zone(text: str) -> bool:
    tail = text.strip()[10:]
    return tail.endswith(("Z", "z")) or "+" in tail or "-" in tail


# (wire name, required, check, kind) per field, built once.
_Compiled = tuple[tuple[str, bool, Callable[[Any], "str | None"], Kind], ...]


def _compile(specs: Sequence[Spec]) -> _Compiled:
    return tuple((spec.name, spec.required, _checker(spec.kind), spec.kind) for spec in specs)


_COMPILED: Final[dict[Operation, _Compiled]] = {op: _compile(s) for op, s in _SCHEMAS.items()}
_COMPILED_ATTRIBUTES: Final = _compile(_CUSTOMER_ATTRIBUTES)


def _check_fields(
    index: int, wire: Mapping[str, Any], fields: _Compiled, prefix: str, owned: bool
) -> Mapping[str, Any]:
    """Check ``wire``; return it with datetimes and dates formatted for JSON.

    A mapping the caller gave (``owned`` false) is copied before it is
    changed, never changed in place.
    """
    for name, required, check, kind in fields:
        value = wire.get(name)
        if value is None:
            if required:
                raise InvalidBatchError(
                    f"item {index}: required field {prefix + name!r} is missing",
                    index=index,
                    field=prefix + name,
                )
            continue
        problem = check(value)
        if problem is not None:
            raise InvalidBatchError(
                f"item {index}: field {prefix + name!r} {problem}",
                index=index,
                field=prefix + name,
            )
        formatted: Any = value
        if kind is Kind.DATETIME or kind is Kind.DATE:
            if not isinstance(value, str):
                # Formatted here rather than by the JSON encoder's slow
                # Python fallback, which would run once per value.
                formatted = format_datetime(value) if kind is Kind.DATETIME else value.isoformat()
        elif kind is Kind.ATTRIBUTES:
            formatted = _check_fields(index, value, _COMPILED_ATTRIBUTES, f"{name}.", owned)
        if formatted is not value:
            if not owned:
                wire = dict(wire)
                owned = True
            wire[name] = formatted  # type: ignore[index]
    return wire


def _wire_item(operation: Operation, index: int, item: Any) -> Any:
    if operation is Operation.ORDER_TRANSACTIONS:
        if isinstance(item, str) and item.strip():
            return item
        raise InvalidBatchError(
            f"item {index}: order-transactions items are non-empty order-id strings, "
            f"got {type(item).__name__}",
            index=index,
        )
    record_cls = RECORD_FOR[operation]
    if type(item) is record_cls:
        return _check_fields(index, unstructure_record(item), _COMPILED[operation], "", True)
    if isinstance(item, Mapping):
        return _check_fields(index, item, _COMPILED[operation], "", False)
    raise InvalidBatchError(
        f"item {index}: operation {operation.value} takes {record_cls.__name__} records "
        f"or mappings, got {type(item).__name__}",
        index=index,
    )


def wire_items(operation: Operation, items: Iterable[Any]) -> list[Any]:
    """Validate items and return their wire form, ready for JSON.

    :raises InvalidBatchError: naming the first bad item and field.
    """
    return [_wire_item(operation, index, item) for index, item in enumerate(items)]


def encode_batch(operation: Operation, items: Sequence[Any]) -> bytes:
    """Validate a batch and encode its request body ``{"body": [...]}``.

    :raises InvalidBatchError: for an empty batch, more than 1,000 items, or a
        bad item (naming its index and field); nothing is sent then.
    """
    count = len(items)
    if count == 0:
        raise InvalidBatchError("a batch needs at least one item; got an empty list")
    if count > MAX_BATCH_ITEMS:
        raise InvalidBatchError(
            f"a batch takes at most {MAX_BATCH_ITEMS} items; got {count} "
            "(use submit_many to split them)"
        )
    wire = wire_items(operation, items)
    try:
        return dumps({"body": wire})
    except (TypeError, ValueError) as exc:
        raise _locate(wire, exc) from None


def _locate(wire: list[Any], exc: Exception) -> InvalidBatchError:
    """Find which item and field JSON encoding failed on (off the hot path)."""
    for index, item in enumerate(wire):
        path = _bad_path(item, "")
        if path is not None:
            where, why = path
            return InvalidBatchError(
                f"item {index}: field {where!r} {why}", index=index, field=where or None
            )
    return InvalidBatchError(f"the batch cannot be encoded as JSON: {exc}")


def _bad_path(value: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                return path, f"has a non-string key {key!r}"
            found = _bad_path(inner, f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        for position, inner in enumerate(value):
            found = _bad_path(inner, f"{path}[{position}]")
            if found is not None:
                return found
        return None
    if attrs.has(type(value)):
        return _bad_path(converter.unstructure(value), path)
    try:
        dumps(value)
    except (TypeError, ValueError) as exc:
        return path, f"cannot be sent: {exc}"
    return None
