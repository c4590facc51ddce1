"""The fake's job model: per-item outcomes, the lazy lifecycle and status bodies.

Nothing here does I/O or reads a clock: every time-dependent method takes
``now`` (a reading of the server's clock), so the lifecycle is a pure function
of time and is computed lazily when someone asks, with no task per job.

Lifecycle of a job created at ``t0``: ``Queued`` until ``t0 + queue_delay``,
then ``Running``, revealing ``processing_rate`` items per second in item order,
then ``Completed``. A job marked to fail (``fail_at``) ends ``Failed`` once
``fail_at`` items are processed; :meth:`FakeJob.stop` and :meth:`FakeJob.fail`
freeze the counts at the moment they are called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from ._wire import error_type

__all__ = [
    "OPENAPI_WORDS",
    "STATES",
    "TERMINAL_STATES",
    "UNKNOWN_STATUS_WORD",
    "FakeJob",
    "ItemOutcome",
    "Ledger",
    "render_status",
]

#: The canonical status words, as the developer guide spells them.
STATES: Final[tuple[str, ...]] = ("Queued", "Running", "Completed", "Failed", "Stopped")
TERMINAL_STATES: Final[frozenset[str]] = frozenset({"Completed", "Failed", "Stopped"})
#: The spelling of each state in the OpenAPI shape.
OPENAPI_WORDS: Final[Mapping[str, str]] = {
    "Queued": "pending",
    "Running": "processing",
    "Completed": "completed",
    "Failed": "failed",
    "Stopped": "stopped",
}
#: The status word of an ``unknown_status`` fault; nobody documents it.
UNKNOWN_STATUS_WORD: Final = "Reticulating"

StatusShape = Literal["guide", "openapi"]


@attrs.frozen
class ItemOutcome:
    """The outcome of one item, decided when its job is created.

    :param ok: whether the item succeeds.
    :param result: the result object of a success.
    :param code: Gameball error code of a failure (0 on success).
    :param message: error message of a failure.
    """

    ok: bool
    result: Mapping[str, Any] | None = None
    code: int = 0
    message: str = ""

    @classmethod
    def success(cls, **result: Any) -> ItemOutcome:
        """A successful outcome.

        :param result: the fields of the result object.
        :return: the outcome.
        """
        return cls(ok=True, result=result)

    @classmethod
    def failure(cls, code: int, message: str) -> ItemOutcome:
        """A failed outcome.

        :param code: Gameball error code (7000, 9004, 9008, ...).
        :param message: the message.
        :return: the outcome.
        """
        return cls(ok=False, code=code, message=message)


def _ok_prefix(outcomes: Sequence[ItemOutcome]) -> tuple[int, ...]:
    counts = [0]
    for outcome in outcomes:
        counts.append(counts[-1] + (1 if outcome.ok else 0))
    return tuple(counts)


@attrs.define(eq=False)
class FakeJob:
    """A batch job held by the fake.

    :param job_id: the id replied on creation.
    :param operation: the batch operation.
    :param items: the submitted items, as decoded.
    :param outcomes: the per-item outcomes, one per item.
    :param created_at: server clock reading at creation.
    :param queue_delay: seconds the job stays ``Queued``.
    :param processing_rate: items processed per second while ``Running``.
    :param fail_at: when not ``None``, the job ends ``Failed`` after this many
        items are processed.
    :param body_sha256: sha256 hex digest of the creation request body.
    """

    job_id: int
    operation: str
    items: tuple[Any, ...]
    outcomes: tuple[ItemOutcome, ...]
    created_at: float
    queue_delay: float
    processing_rate: float
    fail_at: int | None = None
    body_sha256: str = ""
    #: ``"Stopped"`` or ``"Failed"`` once forced by :meth:`stop` / :meth:`fail`.
    forced_state: str | None = None
    #: items processed when the state was forced.
    forced_count: int = 0
    #: server clock reading when the state was forced.
    forced_at: float | None = None
    _ok_prefix: tuple[int, ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if len(self.outcomes) != len(self.items):
            raise ValueError("one outcome per item is required")
        self._ok_prefix = _ok_prefix(self.outcomes)

    @property
    def total_count(self) -> int:
        """Number of items in the job."""
        return len(self.items)

    @property
    def started_at(self) -> float:
        """Server clock reading at which the job leaves ``Queued``."""
        return self.created_at + self.queue_delay

    def _natural_count(self, now: float) -> int:
        if now < self.started_at:
            return 0
        # the epsilon keeps float noise (e.g. 0.3 * 10 == 2.999...) from losing an item
        elapsed = (now - self.started_at) * self.processing_rate + 1e-9
        return min(self.total_count, int(elapsed))

    def processed(self, now: float) -> int:
        """Items processed (succeeded or failed) at ``now``.

        :param now: server clock reading.
        :return: a count in ``0..total_count``.
        """
        if self.forced_state is not None:
            return self.forced_count
        count = self._natural_count(now)
        if self.fail_at is not None:
            count = min(count, self.fail_at)
        return count

    def state(self, now: float) -> str:
        """The canonical status word at ``now``.

        :param now: server clock reading.
        :return: one of :data:`STATES`.
        """
        if self.forced_state is not None:
            return self.forced_state
        natural = self._natural_count(now)
        if self.fail_at is not None and natural >= self.fail_at and now >= self.started_at:
            return "Failed"
        if now < self.started_at:
            return "Queued"
        return "Completed" if natural >= self.total_count else "Running"

    def is_terminal(self, now: float) -> bool:
        """Whether the job is ``Completed``, ``Failed`` or ``Stopped`` at ``now``.

        :param now: server clock reading.
        :return: ``True`` when terminal.
        """
        return self.state(now) in TERMINAL_STATES

    def counts(self, now: float) -> tuple[int, int]:
        """Revealed successes and failures at ``now``.

        :param now: server clock reading.
        :return: ``(finished_count, error_count)``.
        """
        processed = self.processed(now)
        finished = self._ok_prefix[processed]
        return finished, processed - finished

    def _force(self, state: str, now: float) -> bool:
        if self.is_terminal(now):
            return False
        self.forced_count = self.processed(now)
        self.forced_state = state
        self.forced_at = now
        return True

    def stop(self, now: float) -> bool:
        """Stop the job: freeze its counts and set ``Stopped``.

        :param now: server clock reading.
        :return: ``False`` (and no change) when the job was already terminal.
        """
        return self._force("Stopped", now)

    def fail(self, now: float) -> bool:
        """End the job ``Failed`` now, freezing its counts.

        :param now: server clock reading.
        :return: ``False`` (and no change) when the job was already terminal.
        """
        return self._force("Failed", now)


@attrs.define
class Ledger:
    """The fake's account state: customers, balances and seen ids.

    Outcomes are decided at creation in item order, and their effects (new
    customers, balance changes, consumed transaction ids) apply at once.

    :param customers_must_exist: unknown customers fail with 7000.
    :param default_balance: starting balance of a customer the fake has not
        seen yet (auto-known or created through ``/batch/customers``).
    """

    customers_must_exist: bool = False
    default_balance: float = 1000.0
    balances: dict[str, float] = attrs.field(factory=dict)
    created: set[str] = attrs.field(factory=set)
    transaction_ids: set[str] = attrs.field(factory=set)
    order_ids: set[str] = attrs.field(factory=set)

    def add_customer(self, customer_id: str, balance: float) -> None:
        """Create (or overwrite) a customer with a balance.

        :param customer_id: the customer id.
        :param balance: its balance.
        """
        self.created.add(customer_id)
        self.balances[customer_id] = float(balance)

    def add_customers(self, customers: Mapping[str, float | None] | Iterable[str]) -> None:
        """Create customers: a mapping of id to balance, or ids with ``default_balance``.

        A balance of ``None`` also means ``default_balance``.

        :param customers: the customers.
        """
        if isinstance(customers, Mapping):
            for customer_id, balance in customers.items():
                self.add_customer(customer_id, self.default_balance if balance is None else balance)
        else:
            for customer_id in customers:
                self.add_customer(customer_id, self.default_balance)

    def known(self, customer_id: str) -> bool:
        """Whether items for this customer succeed (no 7000).

        :param customer_id: the customer id.
        :return: ``True`` when the customer was created or need not exist.
        """
        return not self.customers_must_exist or customer_id in self.created

    def balance(self, customer_id: str) -> float:
        """A customer's balance.

        :param customer_id: the customer id.
        :return: the balance (``default_balance`` for one not seen yet).
        :raises KeyError: when customers must exist and this one was never created.
        """
        if not self.known(customer_id):
            raise KeyError(customer_id)
        return self.balances.get(customer_id, self.default_balance)

    def decide(self, operation: str, items: Sequence[Any]) -> tuple[ItemOutcome, ...]:
        """Decide every item's outcome, in order, applying its effects.

        :param operation: the batch operation.
        :param items: validated items.
        :return: one outcome per item.
        """
        return tuple(self._decide_one(operation, item) for item in items)

    def _decide_one(self, operation: str, item: Any) -> ItemOutcome:
        if operation == "order-transactions":
            return ItemOutcome.success(orderId=item)
        customer_id: str = item["customerId"]
        if operation == "customers":
            self.created.add(customer_id)
            self.balances.setdefault(customer_id, self.default_balance)
            return ItemOutcome.success(customerId=customer_id)
        if not self.known(customer_id):
            return ItemOutcome.failure(7000, f"Customer not found: {customer_id!r}")
        balance = self.balance(customer_id)
        if operation == "orders":
            order_id: str = item["orderId"]
            if order_id in self.order_ids:
                return ItemOutcome.failure(9004, f"Duplicate transaction id: order {order_id!r}")
            self.order_ids.add(order_id)
            return ItemOutcome.success(customerId=customer_id, orderId=order_id)
        if operation == "balance-inquiry":
            return ItemOutcome.success(customerId=customer_id, balance=balance)
        if operation == "events":
            return ItemOutcome.success(customerId=customer_id, events=list(item["events"]))
        if operation == "balance-adjustment":
            new_balance = balance + item["amount"]
            if new_balance < 0:
                return ItemOutcome.failure(9008, f"Insufficient balance: {balance}")
            self.balances[customer_id] = new_balance
            return ItemOutcome.success(customerId=customer_id, balance=new_balance)
        # cashback and redeem share one transaction id space
        transaction_id: str = item["transactionId"]
        if transaction_id in self.transaction_ids:
            return ItemOutcome.failure(9004, f"Duplicate transaction id: {transaction_id!r}")
        if operation == "cashback":
            new_balance = balance + item["amount"]
        else:
            points = item.get("points")
            cost = points if points is not None else item.get("amount") or 0
            if cost > balance:
                return ItemOutcome.failure(9008, f"Insufficient balance: {balance} < {cost}")
            new_balance = balance - cost
        self.transaction_ids.add(transaction_id)
        self.balances[customer_id] = new_balance
        return ItemOutcome.success(
            customerId=customer_id, transactionId=transaction_id, balance=new_balance
        )


def _entries(job: FakeJob, processed: int) -> tuple[list[Any], list[Any]]:
    succeeded: list[Any] = []
    failed: list[Any] = []
    for index in range(processed):
        item, outcome = job.items[index], job.outcomes[index]
        if outcome.ok:
            succeeded.append({"index": index, "item": item, "result": dict(outcome.result or {})})
        else:
            failed.append(
                {
                    "index": index,
                    "item": item,
                    "code": outcome.code,
                    "type": error_type(outcome.code),
                    "message": outcome.message,
                }
            )
    return succeeded, failed


def render_status(
    job: FakeJob,
    now: float,
    shape: StatusShape,
    timestamp: Callable[[float], str],
    *,
    word: str | None = None,
) -> dict[str, Any]:
    """The JSON status object of a job.

    :param job: the job.
    :param now: server clock reading.
    :param shape: ``"guide"`` (developer guide) or ``"openapi"`` (OpenAPI file).
    :param timestamp: turns a server clock reading into an ISO 8601 ``Z`` string.
    :param word: a status word replacing the real one (``unknown_status`` fault).
    :return: the status object, ready for ``json.dumps``.
    """
    state = job.state(now)
    processed = job.processed(now)
    finished, errors = job.counts(now)
    succeeded, failed = _entries(job, processed)
    if shape == "openapi":
        total = job.total_count
        return {
            "batchId": str(job.job_id),
            "status": word.lower() if word is not None else OPENAPI_WORDS[state],
            "progress": round(100.0 * processed / total, 2) if total else 100.0,
            "totalItems": total,
            "processedItems": processed,
            "failedItems": errors,
            "results": succeeded,
            "errors": failed,
        }
    until = job.forced_at if job.forced_at is not None else now
    started = until >= job.started_at
    return {
        "jobId": job.job_id,
        "operation": job.operation,
        "status": word if word is not None else state,
        "totalCount": job.total_count,
        "finishedCount": finished,
        "errorCount": errors,
        "createdAt": timestamp(job.created_at),
        "startedAt": timestamp(job.started_at) if started else None,
        "response": {"succeeded": succeeded, "failed": failed},
    }
