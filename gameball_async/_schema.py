"""Local validation of batch items against the wire schema of each operation.

Records and plain dicts go through the same checks, on their wire form, so a
batch is refused before anything is sent whatever the caller built it from.
Every refusal is an :class:`InvalidBatchError` naming the item index and the
field (its wire name).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
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
from ._wire import converter, dumps, parse_datetime, unstructure_record

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


def _problem(kind: Kind, value: object) -> str | None:
    """Why ``value`` is not of ``kind``, or ``None`` when it is."""
    ok: bool
    if kind is Kind.ID:
        ok = isinstance(value, str) and bool(value.strip())
    elif kind is Kind.STR or kind is Kind.CHANNEL:
        ok = isinstance(value, str) and (kind is Kind.STR or value in _CHANNELS)
    elif kind is Kind.NUMBER:
        ok = _is_number(value)
    elif kind is Kind.INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is Kind.BOOL:
        ok = isinstance(value, bool)
    elif kind is Kind.DATETIME:
        if isinstance(value, datetime):
            if value.utcoffset() is None:
                return "is a naive datetime (no time zone); give an aware datetime"
            return None
        if isinstance(value, str):
            parsed = parse_datetime(value)
            if parsed is None:
                return f"is not an ISO 8601 timestamp: {value[:40]!r}"
            if not _has_zone(value):
                return f"has no time zone: {value[:40]!r}; add 'Z' or an offset"
            return None
        ok = False
    elif kind is Kind.DATE:
        ok = isinstance(value, (date, str))
    elif kind is Kind.OBJECT:
        ok = isinstance(value, Mapping)
    elif kind is Kind.EVENTS:
        ok = isinstance(value, Mapping) and all(
            isinstance(name, str) and name and isinstance(meta, Mapping)
            for name, meta in value.items()
        )
    elif kind is Kind.STRINGS:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    else:  # Kind.ATTRIBUTES is checked field by field by the caller
        ok = isinstance(value, Mapping)
    if ok:
        return None
    if kind is Kind.NUMBER and isinstance(value, (float, Decimal)):
        return f"must be {kind.value}, got {value}"
    return f"must be {kind.value}, got {type(value).__name__}"


def _has_zone(text: str) -> bool:
    tail = text.strip()[10:]
    return tail.endswith(("Z", "z")) or "+" in tail or "-" in tail


def _check_fields(index: int, wire: Mapping[str, Any], specs: Sequence[Spec], prefix: str) -> None:
    for spec in specs:
        value = wire.get(spec.name)
        if value is None:
            if spec.required:
                raise InvalidBatchError(
                    f"item {index}: required field {prefix}{spec.name!r} is missing",
                    index=index,
                    field=prefix + spec.name,
                )
            continue
        problem = _problem(spec.kind, value)
        if problem is not None:
            raise InvalidBatchError(
                f"item {index}: field {prefix}{spec.name!r} {problem}",
                index=index,
                field=prefix + spec.name,
            )
        if spec.kind is Kind.ATTRIBUTES:
            _check_fields(index, value, _CUSTOMER_ATTRIBUTES, f"{spec.name}.")


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
    wire: Mapping[str, Any]
    if type(item) is record_cls:
        wire = unstructure_record(item)
    elif isinstance(item, Mapping):
        wire = item
    else:
        raise InvalidBatchError(
            f"item {index}: operation {operation.value} takes {record_cls.__name__} records "
            f"or mappings, got {type(item).__name__}",
            index=index,
        )
    _check_fields(index, wire, _SCHEMAS[operation], "")
    return wire


def wire_items(operation: Operation, items: Iterable[Any]) -> list[Any]:
    """Validate items and return their wire form (datetimes not yet formatted).

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
