"""Helpers shared by the tests: sessions on a FakeGameball, items, clocks, and the
scripted stand-ins a bare poll scheduler is tested with.

The fixtures built on them (``fake_factory``, ``fake``, ``gb``) are in ``conftest.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol

import anyio
import anyio.lowlevel
import pytest

from gameball_async import (
    BatchState,
    BatchStatus,
    GameballSession,
    InvalidJobIdError,
    Operation,
    PollPolicy,
    RateLimit,
    RetryPolicy,
)
from gameball_async._entry import Entry
from gameball_async.testing import FakeGameball

WHEN = "2024-10-16T08:13:29.290Z"
FAST_POLL = PollPolicy(initial_delay=0.05, min_delay=0.02, max_delay=0.5)
FAST_RETRY = RetryPolicy(backoff=0.01, max_backoff=0.05)
# Bound on any single wait: generous, it only turns a hang into a failure.
PATIENCE = 20.0
# The operations of the Batch API, as their route words (a contract: add, never rename).
OPERATION_WORDS: Final = frozenset(
    {
        "customers",
        "orders",
        "order-transactions",
        "balance-inquiry",
        "balance-adjustment",
        "cashback",
        "redeem",
        "events",
    }
)
# A fake that answers at once: no server-side rate limit, jobs start running at once.
QUIET_FAKE: Final[dict[str, Any]] = {"enforce_rate_limit": False, "queue_delay": 0.0}


class FakeFactory(Protocol):
    """The ``fake_factory`` fixture: starts a FakeGameball in the test's loop,
    closed after the test."""

    async def __call__(self, **settings: Any) -> FakeGameball:
        """:param settings: FakeGameball keyword arguments, over ``QUIET_FAKE``."""


async def until(predicate: Callable[[], bool], timeout: float = PATIENCE) -> None:
    """Wait, bounded, for a condition that other tasks make true.

    The conditions are counters and states (the fake's, the scheduler's) that
    no event announces, so they are checked every few milliseconds.
    """
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.005)


def make_session(
    fake: FakeGameball, cls: type[GameballSession] = GameballSession, **options: Any
) -> GameballSession:
    """A session (not yet opened) on ``fake`` with fast polls and retries and no
    client rate limit; ``options`` (``api_key`` and ``secret_key`` too) override."""
    settings: dict[str, Any] = {
        "base_url": fake.base_url,
        "poll": FAST_POLL,
        "retry": FAST_RETRY,
        "rate_limit": RateLimit.disabled(),
        **options,
    }
    api_key = settings.pop("api_key", fake.api_key)
    secret_key = settings.pop("secret_key", fake.secret_key)
    return cls(api_key, secret_key, **settings)


@asynccontextmanager
async def session(
    fake: FakeGameball, cls: type[GameballSession] = GameballSession, **options: Any
) -> AsyncIterator[Any]:
    """:func:`make_session`, opened for the ``async with`` block and closed after it."""
    async with make_session(fake, cls, **options) as gb:
        yield gb


async def assert_job_id_refused(gb: GameballSession, job_id: Any) -> None:
    """Each call that names a job by its id refuses this one (before sending anything)."""
    with pytest.raises(InvalidJobIdError):
        await gb.get_status(job_id)
    with pytest.raises(InvalidJobIdError):
        await gb.stop(job_id)
    with pytest.raises(InvalidJobIdError):
        gb.job(job_id)


def cashbacks(count: int, prefix: str = "t") -> list[dict[str, Any]]:
    """``count`` valid cashback items of customer ``c1``, transactions ``{prefix}{n}``."""
    return [
        {
            "customerId": "c1",
            "transactionId": f"{prefix}{n}",
            "transactionTime": WHEN,
            "amount": 1.0,
        }
        for n in range(count)
    ]


def gets_by_job(fake: FakeGameball) -> Counter[str]:
    """How many status polls the fake served, by job id."""
    return Counter(r.path.rsplit("/", 1)[-1] for r in fake.requests if r.route == "status")


class ManualClock:
    """A monotonic clock moved by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` on."""
        self.now += seconds


# -- a bare Poller's stand-ins (test_poller.py, test_poller_life.py) ---------------------


def make_status(job_id: str, state: BatchState, processed: int = 0, total: int = 10) -> BatchStatus:
    """A cashback job's status, ``processed`` of ``total`` items done."""
    return BatchStatus(
        job_id=job_id,
        operation=Operation.CASHBACK,
        state=state,
        state_word=state.value,
        total_count=total,
        finished_count=processed,
    )


Reply = BatchStatus | BaseException | tuple[BatchStatus, float]


class ScriptedFetch:
    """A fetch function: each job's replies in order, the last one repeated.

    It records every call and how many polls of one job were in flight at once;
    while ``gate`` is not set, polls block (like a slow server).
    """

    def __init__(self, script: dict[str, Sequence[Reply]]) -> None:
        self.script = {job_id: list(replies) for job_id, replies in script.items()}
        self.calls: list[str] = []
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight_per_job = 0
        self.max_in_flight = 0
        self.gate = anyio.Event()
        self.gate.set()

    async def __call__(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        self.calls.append(job_id)
        self.in_flight[job_id] += 1
        self.max_in_flight_per_job = max(self.max_in_flight_per_job, self.in_flight[job_id])
        self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
        try:
            await anyio.lowlevel.checkpoint()  # a real request yields at least once
            await self.gate.wait()
            replies = self.script[job_id]
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
        finally:
            self.in_flight[job_id] -= 1
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, tuple):
            return reply
        return reply, None


class Recorder:
    """A subscriber that keeps every notification."""

    def __init__(self) -> None:
        self.seen: list[tuple[BatchStatus | None, BaseException | None]] = []

    def notify(self, entry: Entry) -> None:
        self.seen.append((entry.status, entry.error))

    @property
    def states(self) -> list[BatchState]:
        return [status.state for status, _ in self.seen if status is not None]
