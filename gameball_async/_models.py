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

from ._dictdata import Reader, plain, utc_text
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
            return _OPERATIONS[value]
        except (KeyError, TypeError):
            pass
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(op.value for op in cls)
            raise InvalidBatchError(
                f"unknown operation {value!r}; expected one of: {known}"
            ) from None


# Operation(value) goes through the enum machinery: a plain dict is four times faster.
_OPERATIONS: Final[dict[str, Operation]] = {op.value: op for op in Operation}


class BatchState(str, enum.Enum):
    """The state of a batch job, normalised from the words the API uses."""

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    #: A status word this package does not know; the job is polled on.
    UNKNOWN = "Unknown"
    #: Created by this session, not polled yet: the server has said nothing
    #: but the job id (the status holds the item count sent, nothing more).
    #: Never decoded from a reply, never terminal, never yielded by ``watch()``.
    SUBMITTED = "Submitted"

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

    def to_dict(self, *, raw: bool = False) -> dict[str, Any]:
        """This result as a JSON-ready dict: ``index``, ``ok``, ``code``, ``message``.

        :param raw: also give ``raw``, the entry as the server sent it (for a
            balance inquiry, say, the per-item answer is only there).
        :return: a new dict that ``json.dumps`` takes and :meth:`from_dict` reads.
        """
        data: dict[str, Any] = {
            "index": self.index,
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
        }
        if raw:
            data["raw"] = plain(self.raw)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ItemResult:
        """Rebuild a result from :meth:`to_dict` output (``raw`` when it is there).

        :raises ValueError: when ``data`` is not such a dict.
        """
        fields = Reader(data, "ItemResult")
        return cls(
            index=fields.optional("index", int),
            ok=fields.required("ok", bool),
            code=fields.optional("code", int),
            message=fields.optional("message", str),
            raw=fields.data.get("raw"),
        )


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
    :ivar raw: the decoded JSON reply this status was read from. A running
        job's status as the poller keeps it holds only the reply's top-level
        scalar fields here, and no per-item results (see ``decode_status``'s
        ``results``); a terminal status holds the whole reply.

    :meth:`to_dict` and :meth:`from_dict` turn a status into JSON-ready data
    and back, to return it from a web endpoint or keep it in a cache or queue.
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

    @classmethod
    def submitted(
        cls, job_id: str, operation: Operation | None, *, total_count: int | None
    ) -> BatchStatus:
        """What is known of a job the moment its creation reply names it.

        :param total_count: the items sent, when known.
        :return: a :attr:`BatchState.SUBMITTED` status with no counts beyond that.
        """
        return cls(
            job_id=job_id,
            operation=operation,
            state=BatchState.SUBMITTED,
            state_word="",
            total_count=total_count,
        )

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

    def to_dict(self, *, raw: bool = False) -> dict[str, Any]:
        """This status as a JSON-ready dict, per-item results included.

        Keys are the attribute names; datetimes are ISO 8601 UTC strings with a
        ``Z`` (microseconds kept), enums are their values, and ``succeeded`` and
        ``failed`` are lists of :meth:`ItemResult.to_dict`. ``json.dumps`` takes
        it as it is and :meth:`from_dict` reads it back to an equal status.

        :param raw: also give ``raw``, the reply as received, and each result's
            ``raw`` (the per-item entries are then present twice: JSON has no
            references).
        :return: a new dict (``raw`` values are shared with this status).
        :raises ValueError: for a naive datetime (only a status built by hand has one).
        """
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "operation": None if self.operation is None else self.operation.value,
            "state": self.state.value,
            "state_word": self.state_word,
            "total_count": self.total_count,
            "finished_count": self.finished_count,
            "error_count": self.error_count,
            "created_at": utc_text(self.created_at),
            "started_at": utc_text(self.started_at),
            "succeeded": [result.to_dict(raw=raw) for result in self.succeeded],
            "failed": [result.to_dict(raw=raw) for result in self.failed],
        }
        if raw:
            data["raw"] = plain(self.raw)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchStatus:
        """Rebuild a status from :meth:`to_dict` output (after JSON or not).

        Keys it does not know are ignored, so data written by a later version
        still reads; ``raw`` is restored when it is there.

        :raises ValueError: when ``data`` is not such a dict (a missing or
            mistyped field, an unknown state or operation, a timestamp that is
            not ISO 8601 with a zone).
        """
        fields = Reader(data, "BatchStatus")
        state = fields.required("state", str)
        operation = fields.optional("operation", str)
        try:
            parsed_state = BatchState(state)
            parsed_operation = None if operation is None else Operation(operation)
        except ValueError as exc:
            raise ValueError(f"BatchStatus: {exc}") from None
        raw = fields.data.get("raw")
        if raw is not None and not isinstance(raw, Mapping):
            raise ValueError(f"BatchStatus: 'raw' is not an object but {type(raw).__name__}")
        return cls(
            job_id=fields.required("job_id", str),
            operation=parsed_operation,
            state=parsed_state,
            state_word=fields.optional("state_word", str, state),
            total_count=fields.optional("total_count", int),
            finished_count=fields.optional("finished_count", int, 0),
            error_count=fields.optional("error_count", int, 0),
            created_at=fields.timestamp("created_at"),
            started_at=fields.timestamp("started_at"),
            succeeded=[ItemResult.from_dict(item) for item in fields.results("succeeded")],
            failed=[ItemResult.from_dict(item) for item in fields.results("failed")],
            raw=_EMPTY if raw is None else raw,
        )
