"""The records sent to the Batch API: one frozen attrs class per item kind.

The record classes are the one statement of the wire schema. Each typed field
carries its :class:`Kind` in its attrs metadata (see :func:`wire`); a field is
required when it has no default; its wire name is its camelCase name; the
operation a class serves is given where it is declared (see :func:`record`).
The validators, the converter hooks and the command's column handling are all
derived from the classes (:func:`wire_specs`, :data:`RECORD_CLASSES`,
:data:`OPERATION_RECORDS`).

The classes hold data only. Turning them into wire JSON (camelCase, UTC
datetimes) and back is the job of the one converter in ``_wire.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Final, Literal, TypeVar, cast

import attrs

from ._errors import InvalidBatchError
from ._frozen import reduce_frozen as _reduce_frozen

__all__ = [
    "OPERATION_RECORDS",
    "RECORD_CLASSES",
    "BalanceAdjustment",
    "BalanceInquiry",
    "Cashback",
    "Channel",
    "Customer",
    "CustomerAttributes",
    "Event",
    "Kind",
    "Order",
    "Redemption",
    "Spec",
    "camel",
    "nested_record",
    "record",
    "typed_fields",
    "wire",
    "wire_specs",
]

_T = TypeVar("_T")


class Kind(enum.Enum):
    """What a wire field takes; the value words a refusal (``must be ...``)."""

    ID = "a non-empty string"
    STR = "a string"
    NUMBER = "a finite number"
    INT = "an integer"
    BOOL = "a boolean"
    DATETIME = "an aware datetime or an ISO 8601 string with a zone"
    DATE = "a date or an ISO 8601 string"
    OBJECT = "an object (mapping)"
    EVENTS = "a non-empty object mapping event names to metadata objects"
    STRINGS = "a list of strings"
    ATTRIBUTES = "a customerAttributes object"
    CHANNEL = "one of mobile, pos, web, callcenter"


@attrs.frozen
class Spec:
    """One wire field of a schema: its wire name, its kind, whether it is required."""

    name: str
    kind: Kind
    required: bool = False


# Namespaced so that attrs metadata other code may add never collides with ours.
_KIND: Final = "gameball_async.kind"
_NESTED: Final = "gameball_async.nested"


def wire(kind: Kind, nested: type[Any] | None = None) -> dict[str, Any]:
    """The attrs metadata of a typed field: ``attrs.field(metadata=wire(Kind.ID))``.

    Written out as ``attrs.field`` in each class (not wrapped in a helper) so that
    type checkers still see which fields have defaults, i.e. which are required.

    :param kind: what the field takes on the wire.
    :param nested: the record class of a field of kind ``ATTRIBUTES``.
    """
    if (kind is Kind.ATTRIBUTES) != (nested is not None):
        raise TypeError("a nested record class goes with kind ATTRIBUTES, and only with it")
    return {_KIND: kind} if nested is None else {_KIND: kind, _NESTED: nested}


def camel(name: str) -> str:
    """``customer_id`` -> ``customerId``: the wire spelling of a field name."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


#: Every record class the converter knows, nested ones included, in declaration order.
RECORD_CLASSES: list[type[Any]] = []
#: The record class each operation (by its value) takes; order-transactions takes strings.
OPERATION_RECORDS: dict[str, type[Any]] = {}

_TYPED: dict[type[Any], tuple[tuple[str, Spec], ...]] = {}


def record(operation: str | None = None) -> Callable[[type[_T]], type[_T]]:
    """Register a record class (above ``@attrs.frozen``), for an operation if given.

    Its specs are derived here, once: every field but ``extra`` must carry a
    kind (:func:`wire`), so a field cannot reach the wire unchecked.

    :raises TypeError: for a field without a kind, or an operation given twice.
    """

    def register(cls: type[_T]) -> type[_T]:
        typed: list[tuple[str, Spec]] = []
        for field in attrs.fields(cast(Any, cls)):
            if field.name == "extra":
                continue
            kind = field.metadata.get(_KIND)
            if not isinstance(kind, Kind):
                raise TypeError(f"{cls.__name__}.{field.name} has no wire kind; see wire()")
            required = field.default is attrs.NOTHING
            typed.append((field.name, Spec(camel(field.name), kind, required=required)))
        if operation is not None:
            if operation in OPERATION_RECORDS:
                raise TypeError(f"operation {operation!r} already takes a record class")
            OPERATION_RECORDS[operation] = cls
        _TYPED[cls] = tuple(typed)
        RECORD_CLASSES.append(cls)
        return cls

    return register


def typed_fields(cls: type[Any]) -> tuple[tuple[str, Spec], ...]:
    """A record class's typed fields, in order: (attribute name, wire spec)."""
    return _TYPED[cls]


def wire_specs(cls: type[Any]) -> tuple[Spec, ...]:
    """A record class's wire schema, in field order (``extra`` is not in it)."""
    return tuple(spec for _, spec in _TYPED[cls])


def nested_record(cls: type[Any]) -> type[Any] | None:
    """The record class of ``cls``'s field of kind ``ATTRIBUTES``, if it has one."""
    for field in attrs.fields(cls):
        nested: type[Any] | None = field.metadata.get(_NESTED)
        if nested is not None:
            return nested
    return None


_WIRE_NAMES: dict[type[Any], frozenset[str]] = {}


def _wire_names(cls: type[Any]) -> frozenset[str]:
    names = _WIRE_NAMES.get(cls)
    if names is None:
        names = frozenset(camel(a.name) for a in attrs.fields(cls) if a.name != "extra")
        _WIRE_NAMES[cls] = names
    return names


def _check_extra(instance: Any, attribute: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    # A key of ``extra`` that names a typed field would be silently overwritten
    # on the wire (or overwrite it): refuse it where the record is built.
    if value:
        clash = _wire_names(type(instance)).intersection(value)
        if clash:
            raise InvalidBatchError(
                f"{type(instance).__name__}.extra repeats typed fields {sorted(clash)}; "
                "set them through the record's own attributes",
                field="extra",
            )


def _extra() -> Any:
    return attrs.field(factory=dict, kw_only=True, repr=False, validator=_check_extra)


Channel = Literal["mobile", "pos", "web", "callcenter"]


@record()
@attrs.frozen(kw_only=True)
class CustomerAttributes:
    """Profile attributes of a customer (``customerAttributes`` on the wire).

    Every field is optional; unknown fields go in ``extra`` and are sent as they are.
    """

    __reduce__ = _reduce_frozen

    display_name: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    first_name: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    last_name: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    email: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    gender: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    mobile: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    date_of_birth: date | str | None = attrs.field(default=None, metadata=wire(Kind.DATE))
    join_date: datetime | str | None = attrs.field(default=None, metadata=wire(Kind.DATETIME))
    country: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    city: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    zip: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    preferred_language: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    source: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    utms: tuple[str, ...] | None = attrs.field(default=None, metadata=wire(Kind.STRINGS))
    devices: tuple[str, ...] | None = attrs.field(default=None, metadata=wire(Kind.STRINGS))
    payment_methods: tuple[str, ...] | None = attrs.field(default=None, metadata=wire(Kind.STRINGS))
    total_spent: float | None = attrs.field(default=None, metadata=wire(Kind.NUMBER))
    last_order_date: datetime | str | None = attrs.field(default=None, metadata=wire(Kind.DATETIME))
    total_orders: int | None = attrs.field(default=None, metadata=wire(Kind.INT))
    avg_order_amount: float | None = attrs.field(default=None, metadata=wire(Kind.NUMBER))
    channel: Channel | None = attrs.field(default=None, metadata=wire(Kind.CHANNEL))
    custom: Mapping[str, Any] | None = attrs.field(default=None, metadata=wire(Kind.OBJECT))
    extra: Mapping[str, Any] = _extra()


@record("customers")
@attrs.frozen(kw_only=True)
class Customer:
    """A customer to create or update (operation ``customers``)."""

    __reduce__ = _reduce_frozen

    customer_id: str = attrs.field(metadata=wire(Kind.ID))
    email: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    mobile: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    device_token: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    os_type: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    referrer_code: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    guest: bool | None = attrs.field(default=None, metadata=wire(Kind.BOOL))
    customer_attributes: CustomerAttributes | None = attrs.field(
        default=None, metadata=wire(Kind.ATTRIBUTES, CustomerAttributes)
    )
    extra: Mapping[str, Any] = _extra()


@record("orders")
@attrs.frozen(kw_only=True)
class Order:
    """An order to track (operation ``orders``).

    The single-order API accepts many more fields (line items, discounts,
    merchant...): put them in ``extra`` with their camelCase wire names.
    """

    __reduce__ = _reduce_frozen

    customer_id: str = attrs.field(metadata=wire(Kind.ID))
    order_id: str = attrs.field(metadata=wire(Kind.ID))
    order_date: datetime = attrs.field(metadata=wire(Kind.DATETIME))
    total_paid: float = attrs.field(metadata=wire(Kind.NUMBER))
    extra: Mapping[str, Any] = _extra()


@record("balance-inquiry")
@attrs.frozen(kw_only=True)
class BalanceInquiry:
    """A balance inquiry for one customer (operation ``balance-inquiry``)."""

    __reduce__ = _reduce_frozen

    customer_id: str = attrs.field(metadata=wire(Kind.ID))
    extra: Mapping[str, Any] = _extra()


@record("balance-adjustment")
@attrs.frozen(kw_only=True)
class BalanceAdjustment:
    """A manual balance adjustment (operation ``balance-adjustment``)."""

    __reduce__ = _reduce_frozen

    customer_id: str = attrs.field(metadata=wire(Kind.ID))
    amount: float = attrs.field(metadata=wire(Kind.NUMBER))
    reason: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    extra: Mapping[str, Any] = _extra()


@record("cashback")
@attrs.frozen(kw_only=True)
class Cashback:
    """A cashback award (operation ``cashback``)."""

    __reduce__ = _reduce_frozen

    customer_id: str = attrs.field(metadata=wire(Kind.ID))
    transaction_id: str = attrs.field(metadata=wire(Kind.ID))
    transaction_time: datetime = attrs.field(metadata=wire(Kind.DATETIME))
    amount: float = attrs.field(metadata=wire(Kind.NUMBER))
    email: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    mobile: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    extra: Mapping[str, Any] = _extra()


@record("redeem")
@attrs.frozen(kw_only=True)
class Redemption:
    """A redemption of points or amount (operation ``redeem``)."""

    __reduce__ = _reduce_frozen

    customer_id: str = attrs.field(metadata=wire(Kind.ID))
    transaction_id: str = attrs.field(metadata=wire(Kind.ID))
    transaction_time: datetime = attrs.field(metadata=wire(Kind.DATETIME))
    amount: float | None = attrs.field(default=None, metadata=wire(Kind.NUMBER))
    points: int | None = attrs.field(default=None, metadata=wire(Kind.INT))
    hold_reference: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    email: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    mobile: str | None = attrs.field(default=None, metadata=wire(Kind.STR))
    extra: Mapping[str, Any] = _extra()


@record("events")
@attrs.frozen(kw_only=True)
class Event:
    """Events for one customer (operation ``events``): event name -> metadata."""

    __reduce__ = _reduce_frozen

    customer_id: str = attrs.field(metadata=wire(Kind.ID))
    events: Mapping[str, Mapping[str, Any]] = attrs.field(metadata=wire(Kind.EVENTS))
    extra: Mapping[str, Any] = _extra()
