"""The processing rate the jobs of one session share, learnt from their polls.

One poll of a running job bounds its rate only to within one item of what it
had done: a job seen 1 s into a 40 s run, 20 items done, ends somewhere in a
span of about 2 s, so its end takes a poll aimed early and one more. But the
jobs of one account are processed by one server, and where they all run at
one rate, every job's bounds hold that rate: their intersection is much
narrower than any one of them, and a job's end can be aimed at from its first
look (issue 16).

:class:`RateBook` keeps, per operation, the newest bounds of the jobs polled
lately and gives their intersection, or nothing: when fewer than
:data:`MIN_JOBS` jobs are known, or when the bounds do not all meet (the jobs
do not share a rate, the server changed pace), the book says nothing and each
job is timed by its own polls alone. Its bounds are only ever intersected with
a job's own, and a job whose own bounds miss them is timed alone too.

The shared bounds stay a bet on each new job: one running faster than the
others, seen once, cannot be told from them. So the job's own fastest bound
is handed on with them, and the estimate never aims more than
``_policy.MAX_BET`` seconds past the earliest end that bound allows
(:func:`~gameball_async._policy.next_poll_delay`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Final

from ._models import Operation
from ._policy import Bounds, Observation, RateBounds, narrowed, rate_bounds

__all__ = ["KEPT", "MAX_AGE", "MIN_JOBS", "RateBook"]

#: Jobs whose bounds must agree before the book tells anything.
MIN_JOBS: Final = 3
#: Seconds a job's bounds count for: a server's pace drifts.
MAX_AGE: Final = 120.0
#: Jobs remembered per operation (the newest), a bound on memory and CPU.
KEPT: Final = 32


class RateBook:
    """The rate bounds of the jobs a session polled lately, by operation."""

    __slots__ = ("_books", "learnt_at")

    def __init__(self) -> None:
        self._books: dict[Operation | None, OrderedDict[str, tuple[float, Bounds]]] = {}
        #: When the book last learnt (monotonic): a poll aimed before may be aimed better.
        self.learnt_at = -math.inf

    def learn(self, job_id: str, operation: Operation | None, bounds: Bounds, now: float) -> None:
        """Take a job's newest bounds (slowest, fastest), read at ``now`` (monotonic).

        A job's newer bounds replace its older ones, which they contain.
        """
        book = self._books.get(operation)
        if book is None:
            book = self._books[operation] = OrderedDict()
        book[job_id] = (now, bounds)
        self.learnt_at = max(self.learnt_at, now)
        book.move_to_end(job_id)
        if len(book) > KEPT:
            book.popitem(last=False)

    def shared(self, operation: Operation | None, now: float) -> Bounds | None:
        """The rate every recent job of ``operation`` ran at, as bounds, or ``None``.

        ``None`` while fewer than :data:`MIN_JOBS` jobs were learnt in the last
        :data:`MAX_AGE` seconds, or when their bounds do not all meet.
        """
        book = self._books.get(operation)
        if book is None:
            return None
        # the book is in the order of learning: the oldest go first
        while book:
            seen, _ = next(iter(book.values()))
            if now - seen <= MAX_AGE:
                break
            book.popitem(last=False)
        if len(book) < MIN_JOBS:
            return None
        return narrowed(*(bounds for _, bounds in book.values()))

    def narrow(
        self,
        job_id: str,
        operation: Operation | None,
        *,
        first: Observation | None,
        current: Observation,
        reference: Observation | None,
        learn_at: float | None,
    ) -> RateBounds | None:
        """One job's rate bounds, its own narrowed by the shared ones, or ``None``.

        The book learns only from two observations of our own (``first`` and
        ``current``), which bound the rate from both sides whatever the
        server's clock says; ``reference`` (a start claim, shifted by the bound
        on the server's clock) may add a fastest bound of the job's own.

        :param learn_at: the time to learn ``current`` at, ``None`` to learn nothing.
        :return: ``None`` when the book is silent, or when the job's own
            bounds miss the shared ones (it runs at a pace of its own).
        """
        own = None
        if first is not None and first is not current and first.state is current.state:
            own = rate_bounds(first, current)
            if own is not None and learn_at is not None:
                self.learn(job_id, operation, own, learn_at)
        shared = self.shared(operation, current.at)
        if shared is None:
            return None
        from_anchor = rate_bounds(reference, current) if reference is not None else None
        mine = narrowed(own, from_anchor)
        if mine is None:
            return None
        both = narrowed(mine, shared)
        if both is None:
            return None
        return RateBounds(slowest=both[0], fastest=both[1], own_fastest=mine[1])
