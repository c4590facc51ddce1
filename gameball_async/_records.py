"""The records sent to the Batch API: one frozen attrs class per item kind.

The classes hold data only. Turning them into wire JSON (camelCase, UTC
datetimes) and back is the job of the one converter in ``_wire.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal

import attrs

from ._errors import InvalidBatchError
from ._frozen import reduce_frozen as _reduce_frozen

__all__ = [
    "BalanceAdjustment",
    "BalanceInquiry",
    "Cashback",
    "Channel",
    "Customer",
    "CustomerAttributes",
    "Event",
    "Order",
    "Redemption",
    "camel",
]


def camel(name: str) -> str:
    """``customer_id`` -> ``customerId``: the wire spelling of a field name."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


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


@attrs.frozen(kw_only=True)
class CustomerAttributes:
    """Profile attributes of a customer (``customerAttributes`` on the wire).

    Every field is optional; unknown fields go in ``extra`` and are sent as they are.
    """

    __reduce__ = _reduce_frozen

    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    gender: str | None = None
    mobile: str | None = None
    date_of_birth: date | str | None = None
    join_date: datetime | str | None = None
    country: str | None = None
    city: str | None = None
    zip: str | None = None
    preferred_language: str | None = None
    source: str | None = None
    utms: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None
    payment_methods: tuple[str, ...] | None = None
    total_spent: float | None = None
    last_order_date: datetime | str | None = None
    total_orders: int | None = None
    avg_order_amount: float | None = None
    channel: Channel | None = None
    custom: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Customer:
    """A customer to create or update (operation ``customers``)."""

    __reduce__ = _reduce_frozen

    customer_id: str
    email: str | None = None
    mobile: str | None = None
    device_token: str | None = None
    os_type: str | None = None
    referrer_code: str | None = None
    guest: bool | None = None
    customer_attributes: CustomerAttributes | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Order:
    """An order to track (operation ``orders``).

    The single-order API accepts many more fields (line items, discounts,
    merchant...): put them in ``extra`` with their camelCase wire names.
    """

    __reduce__ = _reduce_frozen

    customer_id: str
    order_id: str
    order_date: datetime
    total_paid: float
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class BalanceInquiry:
    """A balance inquiry for one customer (operation ``balance-inquiry``)."""

    __reduce__ = _reduce_frozen

    customer_id: str
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class BalanceAdjustment:
    """A manual balance adjustment (operation ``balance-adjustment``)."""

    __reduce__ = _reduce_frozen

    customer_id: str
    amount: float
    reason: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Cashback:
    """A cashback award (operation ``cashback``)."""

    __reduce__ = _reduce_frozen

    customer_id: str
    transaction_id: str
    transaction_time: datetime
    amount: float
    email: str | None = None
    mobile: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Redemption:
    """A redemption of points or amount (operation ``redeem``)."""

    __reduce__ = _reduce_frozen

    customer_id: str
    transaction_id: str
    transaction_time: datetime
    amount: float | None = None
    points: int | None = None
    hold_reference: str | None = None
    email: str | None = None
    mobile: str | None = None
    extra: Mapping[str, Any] = _extra()


@attrs.frozen(kw_only=True)
class Event:
    """Events for one customer (operation ``events``): event name -> metadata."""

    __reduce__ = _reduce_frozen

    customer_id: str
    events: Mapping[str, Mapping[str, Any]]
    extra: Mapping[str, Any] = _extra()
