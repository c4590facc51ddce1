"""Records sent to the Batch API, and the status model read back from it.

The classes here hold data only. Turning them into wire JSON (camelCase, UTC
datetimes) and back is the job of the one converter in ``_wire.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from types import MappingProxyType
from typing import Any, Final, Literal, overload

import attrs

from ._errors import InvalidBatchError

__all__ = [
    "BalanceAdjustment",
    "BalanceInquiry",
    "BatchState",
    "BatchStatus",
    "Cashback",
    "Customer",
    "CustomerAttributes",
    "Event",
    "ItemResult",
    "ItemResults",
    "Operation",
    "Order",
    "Redemption",
]

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


def _reduce_frozen(self: Any) -> tuple[Any, ...]:
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


class Operation(str, enum.Enum):
    """A batch operation; the value is the name the API and this package use for it."""

    CUSTOMERS = "customers"
    ORDERS = "orders"
    ORDER_TRANSACTIONS = "order-transactions"
    BALANCE_INQUIRY = "balance-inquiry"
    BALANCE_ADJUSTMENT = "balance-adjustment"
    CASHBACK = "cashback"
    REDEEM = "redeem"
    EVENTS = "events"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Operation | str) -> Operation:
        """Return the :class:`Operation` for an operation or its string value.

        :raises InvalidBatchError: when the value names no operation.
        """
        if isinstance(value, Operation):
            return value
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(op.value for op in cls)
            raise InvalidBatchError(
                f"unknown operation {value!r}; expected one of: {known}"
            ) from None


class BatchState(str, enum.Enum):
    """The state of a batch job, normalised from the words the API uses."""

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    #: A status word this package does not know; the job is polled on.
    UNKNOWN = "Unknown"

    @property
    def is_terminal(self) -> bool:
        """``True`` for ``Completed``, ``Failed`` and ``Stopped``."""
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


_TERMINAL: Final = frozenset({BatchState.COMPLETED, BatchState.FAILED, BatchState.STOPPED})


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


@attrs.frozen(kw_only=True)
class ItemResult:
    """The outcome of one item of a job, as the status endpoint reported it.

    :ivar index: the item's position in the batch, when the server said it.
    :ivar ok: ``True`` for a succeeded item, ``False`` for a failed one.
    :ivar code: Gameball's error code for a failed item (e.g. 7000, 9004, 9008).
    :ivar message: the server's message for a failed item.
    :ivar raw: the entry exactly as received.
    """

    __reduce__ = _reduce_frozen

    index: int | None
    ok: bool
    code: int | None = None
    message: str | None = None
    raw: Any = attrs.field(default=None, eq=False, repr=False)


class ItemResults(Sequence[ItemResult]):
    """An immutable sequence of per-item results, decoded on first use.

    A status poll of a running 1,000-item job carries up to 1,000 results that
    the poller never looks at; decoding them only when read keeps polls cheap.
    It compares equal to a tuple of the same results.
    """

    __slots__ = ("_decode", "_items", "_raw")

    def __init__(self, items: Iterable[ItemResult] = ()) -> None:
        self._items: tuple[ItemResult, ...] | None = tuple(items)
        self._raw: Sequence[Any] = ()
        self._decode: Callable[[Any], ItemResult] | None = None

    @classmethod
    def lazy(cls, raw: Sequence[Any], decode: Callable[[Any], ItemResult]) -> ItemResults:
        """Results decoded from ``raw`` entries by ``decode`` when first read."""
        results = cls()
        results._items = None
        results._raw = raw
        results._decode = decode
        return results

    def _all(self) -> tuple[ItemResult, ...]:
        items = self._items
        if items is None:
            assert self._decode is not None
            items = self._items = tuple(map(self._decode, self._raw))
            self._raw = ()
            self._decode = None
        return items

    def __len__(self) -> int:
        return len(self._raw) if self._items is None else len(self._items)

    @overload
    def __getitem__(self, index: int) -> ItemResult: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[ItemResult, ...]: ...

    def __getitem__(self, index: int | slice) -> ItemResult | tuple[ItemResult, ...]:
        return self._all()[index]

    def __iter__(self) -> Iterator[ItemResult]:
        return iter(self._all())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (ItemResults, tuple, list)):
            return self._all() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._all())

    def __repr__(self) -> str:
        return f"<ItemResults: {len(self)} items>"

    def __reduce__(self) -> tuple[Any, ...]:
        # Decoded first: the decoder of a lazy sequence need not be picklable.
        return (ItemResults, (self._all(),))


def _results(value: Iterable[ItemResult] | ItemResults) -> ItemResults:
    return value if isinstance(value, ItemResults) else ItemResults(value)


_NO_RESULTS: Final = ItemResults()


@attrs.frozen(kw_only=True)
class BatchStatus:
    """One reading of a batch job's status.

    :ivar job_id: the job's id (always a string: the newer API spec uses strings).
    :ivar operation: the job's operation, when known.
    :ivar state: the normalised state.
    :ivar state_word: the status word exactly as the server sent it.
    :ivar total_count: items in the job, when reported.
    :ivar finished_count: items that succeeded so far.
    :ivar error_count: items that failed so far.
    :ivar created_at: when the job was created, when reported and readable.
    :ivar started_at: when processing started, when reported and readable.
    :ivar succeeded: per-item results of succeeded items, as reported (a
        tuple-like :class:`ItemResults`; any iterable of results is accepted).
    :ivar failed: per-item results of failed items, as reported.
    :ivar raw: the decoded JSON reply this status was read from.
    """

    __reduce__ = _reduce_frozen

    job_id: str
    operation: Operation | None
    state: BatchState
    state_word: str
    total_count: int | None = None
    finished_count: int = 0
    error_count: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    succeeded: ItemResults = attrs.field(default=_NO_RESULTS, converter=_results, repr=False)
    failed: ItemResults = attrs.field(default=_NO_RESULTS, converter=_results, repr=False)
    raw: Mapping[str, Any] = attrs.field(default=_EMPTY, eq=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        """``True`` when the job will not change any more."""
        return self.state in _TERMINAL

    @property
    def processed_count(self) -> int:
        """Items processed so far, succeeded or failed."""
        return self.finished_count + self.error_count

    @property
    def progress(self) -> float | None:
        """The share of items processed, 0.0 to 1.0, or ``None`` when unknown."""
        total = self.total_count
        if total is None:
            return None
        if total <= 0:
            return 1.0 if self.is_terminal else 0.0
        return min(1.0, self.processed_count / total)
