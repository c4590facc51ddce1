"""The models: operations, states, and the status read back from the Batch API.

The records sent (``Customer``, ``Order``...) live in ``_records.py`` and are
re-exported here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, overload

import attrs

from ._errors import InvalidBatchError
from ._frozen import reduce_frozen as _reduce_frozen
from ._records import (
    BalanceAdjustment,
    BalanceInquiry,
    Cashback,
    Customer,
    CustomerAttributes,
    Event,
    Order,
    Redemption,
    camel,
)

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
    "camel",
]

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


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
