"""The polling state of one awaited job, and the arithmetic of its next poll.

An :class:`Entry` is what the scheduler (``_poller.py``) keeps per job: the
newest status, what ended polling, the backoff and the progress estimate. Job
handles keep theirs between waits. Deciding when to poll next from what a poll
saw is plain arithmetic over an entry, so it lives here, apart from the heap
and the tasks.
"""

from __future__ import annotations

import random
from types import TracebackType
from typing import TYPE_CHECKING, Final, Protocol

from ._errors import ProtocolError, RateLimitError, ServerError, TransportError
from ._models import BatchState, BatchStatus, Operation
from ._policy import (
    TIMING_NOISE,
    Observation,
    PollPolicy,
    aim_by_rate_bounds,
    capped_growth,
    next_poll_delay,
)
from ._server_clock import claimed_start, start_hint

if TYPE_CHECKING:
    from ._policy import RateBounds
    from ._rates import RateBook
    from ._server_clock import ServerClock

__all__ = [
    "Entry",
    "Subscriber",
    "is_transient",
    "status_changed",
]

# Failures after which the same read may well succeed: the wait goes on.
_TRANSIENT: Final = (TransportError, ServerError, RateLimitError, ProtocolError)


def is_transient(error: BaseException) -> bool:
    """Whether a failed status read is worth repeating (a wait keeps polling).

    5xx, 429, network failures and undecodable replies are; final answers
    (401/403/404, other 4xx, redirects), a closed session and bugs are not.
    """
    return isinstance(error, _TRANSIENT)


class Subscriber(Protocol):
    """Something told about an entry's news: a waiter, a watcher, a collector."""

    def notify(self, entry: Entry) -> None:
        """Called (synchronously) when the entry has a new status or an error."""


class Entry:
    """The polling state of one job.

    :ivar status: the newest status applied (never replaced once terminal).
    :ivar error: the final error that ended polling, if any.
    :ivar ticket: the ticket of the request whose reply gave ``status``; a reply
        to an older request is dropped.
    """

    __slots__ = (
        "aimed",
        "anchor",
        "claim",
        "due",
        "error",
        "error_tb",
        "failures",
        "first",
        "hint",
        "in_flight",
        "job_id",
        "last",
        "not_running_at",
        "operation",
        "provisional",
        "scheduled",
        "scout",
        "soon",
        "status",
        "steps",
        "subscribers",
        "ticket",
    )

    def __init__(
        self,
        job_id: str,
        operation: Operation | None,
        status: BatchStatus | None,
        not_running_at: float | None = None,
    ):
        self.job_id = job_id
        self.operation = operation
        self.status = status
        self.error: BaseException | None = None
        self.error_tb: TracebackType | None = None
        self.subscribers: set[Subscriber] = set()
        self.due = 0.0
        self.scheduled = False
        self.in_flight = False
        self.soon = False
        self.steps = 0
        self.failures = 0
        self.ticket = 0
        # ``anchor``: first observation while Running, for the processing rate;
        # ``hint``: an anchor derived from the server's startedAt, used only
        # until there are two observations of our own; ``last``: the previous
        # observation, to tell whether there was progress; ``not_running_at``:
        # the latest local time the job was known not to be running yet (its
        # creation, a Queued reply), a floor under what startedAt may claim;
        # ``first``: the first observation of this run, and ``claim``: the
        # start startedAt claimed then (our monotonic clock), a sample for the
        # session's ServerClock once a later observation shows the rate.
        self.anchor: Observation | None = None
        self.first: Observation | None = None
        self.claim: float | None = None
        self.hint: Observation | None = None
        self.last: Observation | None = None
        self.not_running_at = not_running_at
        # the next poll was put early on an unchecked start claim: when it is
        # due, what the session has learnt since may aim it better (reaim)
        self.provisional = False
        # a provisional poll in flight, counted among the poller's scouts
        self.scout = False
        # the next poll was aimed by the job's count: a rate the session's
        # jobs share, learnt before it falls due, may put it later (reaim)
        self.aimed = False

    @property
    def finished(self) -> bool:
        """Polling is over: a terminal status or an error."""
        return self.error is not None or (self.status is not None and self.status.is_terminal)

    def fail(self, error: BaseException) -> None:
        """End polling with ``error``, keeping the traceback it has now.

        Every waiter re-raises the error with this traceback, so each raise
        carries only its own frames (as :class:`asyncio.Future` does).
        """
        self.error = error
        self.error_tb = error.__traceback__

    def raise_error(self) -> None:
        """Raise the error that ended polling (see :meth:`fail`)."""
        error = self.error
        if error is not None:
            raise error.with_traceback(self.error_tb)

    def delay_after_failure(
        self, policy: PollPolicy, *, retry_after: float | None, rng: random.Random
    ) -> float:
        """Seconds until the next poll after a transient failure.

        The failures in a row drive a jittered exponential backoff (the poll
        policy's), never shorter than a ``Retry-After`` the reply gave.
        """
        self.failures += 1
        self.provisional = self.aimed = False  # a retry, not an aim: never put off
        base = capped_growth(
            max(policy.initial_delay, policy.min_delay),
            policy.multiplier,
            self.failures - 1,
            policy.max_delay,
        )
        delay = max(base - policy.jitter * rng.uniform(0.0, base), policy.min_delay)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def delay_after(
        self,
        status: BatchStatus,
        policy: PollPolicy,
        *,
        now: float,
        wall_now: float,
        retry_after: float | None,
        rng: random.Random,
        sent_at: float | None = None,
        server_clock: ServerClock | None = None,
        rates: RateBook | None = None,
    ) -> float:
        """Take in a non-terminal status read at ``now``; seconds until the next poll.

        Tracks progress (the backoff steps and the processing rate's anchor)
        and aims the next poll by it (see :func:`next_poll_delay`).

        :param sent_at: when the request that read it was sent (monotonic); a
            Queued reply proves the job was not running then, not at ``now``.
        :param server_clock: the session's bound on the server's clock, which
            checks ``startedAt`` where no floor of ours does, and learns from
            this job in turn.
        :param rates: the session's book of the rate its jobs share, which
            narrows this job's estimate and learns from it in turn.
        """
        self.failures = 0
        current = Observation(
            now, status.state, status.processed_count, status.total_count, sent=sent_at
        )
        last = self.last
        progressed = last is not None and current.processed > last.processed
        if last is not None and last.state is not status.state:
            self.steps = 0
            self.anchor = self.hint = self.first = None
            self.claim = None
        if status.state is BatchState.QUEUED:
            self.not_running_at = now if sent_at is None else sent_at
        if progressed:
            self.steps = 0
        elif last is not None:
            self.steps += 1
        behind = server_clock.behind_at_most if server_clock is not None else None
        if status.state is BatchState.RUNNING:
            if self.first is None:
                self.first = current
                self.claim = claimed_start(status, current, wall_now=wall_now)
            elif progressed and self.claim is not None and server_clock is not None:
                # every later observation gives a bound, tighter as the span grows
                server_clock.learn(self.claim, self.first, current)
        reference: Observation | None = self.anchor if progressed else None
        if (
            progressed
            and reference is not None
            and not reference.exact
            and self.not_running_at is None
            and server_clock is not None
        ):
            # the server's clock is bounded now: its start claim, shifted by the
            # bound, anchors the rate over a longer span than our own first look
            bound = server_clock.behind_at_most
            if bound is not None:
                upgraded = start_hint(
                    status, current, not_running_at=None, wall_now=wall_now, behind_at_most=bound
                )
                if upgraded is not None and upgraded.at < reference.at:
                    self.anchor = reference = upgraded
        if self.anchor is None and status.state is BatchState.RUNNING:
            hint = start_hint(
                status,
                current,
                not_running_at=self.not_running_at,
                wall_now=wall_now,
                behind_at_most=behind,
            )
            if hint is not None and (self.not_running_at is not None or behind is not None):
                # checked against a floor of ours, or shifted by the bound on
                # the server's clock: at worst it makes the job look faster and
                # the next poll early, so it anchors the rate
                self.anchor = reference = hint
            else:
                self.anchor = current
                self.hint = hint
        self.last = current
        self.provisional = False
        self.aimed = status.state is BatchState.RUNNING
        bounds = self._narrow(rates, current, reference, learn_at=now)
        delay = next_poll_delay(
            policy,
            previous=reference,
            current=current,
            steps_without_progress=self.steps,
            retry_after=retry_after,
            rng=rng,
            bounds=bounds,
        )
        if reference is None and self.hint is not None and self.anchor is current:
            self.provisional = self.claim is not None
            # One observation of our own and an unchecked start time: it may
            # bring the next poll forward, never put it off.
            hinted = next_poll_delay(
                policy,
                previous=self.hint,
                current=current,
                steps_without_progress=self.steps,
                retry_after=retry_after,
                rng=rng,
            )
            delay = min(delay, hinted)
        return delay

    def reaim(
        self,
        policy: PollPolicy,
        *,
        server_clock: ServerClock,
        rates: RateBook | None,
        rng: random.Random,
    ) -> float | None:
        """When an aimed poll falls due: the time (monotonic) it should be sent instead, if any.

        Two things learnt since the poll was aimed may put it later. A poll
        put early because the job's start claim could not be checked
        (``provisional``): once the session bounds the server's clock, the
        claim made younger by that bound is a start the job cannot have
        passed. And a poll aimed by the job's count alone (``aimed``): the
        rate the session's jobs share, learnt since from others, may show the
        end is later (within ``MAX_BET`` of what the job's own looks allow).
        Either way the poll is aimed once more when it falls due again.

        :return: ``None`` to send the poll as planned, else a time, which may
            be no later than the poll's due time (then send it now).
        """
        provisional, aimed = self.provisional, self.aimed
        self.provisional = self.aimed = False
        last = self.last
        if last is None or last.state is not BatchState.RUNNING or last.processed <= 0:
            return None
        delay: float | None = None
        anchor = self._checked_claim(server_clock) if provisional else None
        if anchor is not None:
            self.anchor, self.hint = anchor, None
            delay = next_poll_delay(
                policy,
                previous=anchor,
                current=last,
                steps_without_progress=self.steps,
                retry_after=None,
                rng=rng,
                bounds=self._narrow(rates, last, anchor, learn_at=None),
            )
        elif (provisional or aimed) and rates is not None and rates.learnt_at > last.at:
            bounds = self._narrow(rates, last, self.anchor, learn_at=None)
            delay = None if bounds is None else aim_by_rate_bounds(policy, last, bounds)
        if delay is None:
            return None
        self.aimed = True
        return last.at + delay

    def seconds_left(self) -> float | None:
        """A rough guess at the seconds until the job's end, from its start claim
        (or first look) to its last look; ``None`` without a count to go on.

        For scheduling choices only, never to aim a poll by.
        """
        last = self.last
        start = self.hint if self.hint is not None else self.anchor
        if last is None or start is None or last.total is None:
            return None
        done = last.processed - start.processed
        elapsed = last.at - start.at
        if done <= 0 or elapsed <= 0:
            return None
        return max(last.total - last.processed, 0) * elapsed / done

    def _checked_claim(self, server_clock: ServerClock) -> Observation | None:
        """The job's start claim made younger by the bound on the server's clock, if known."""
        last, claim, behind = self.last, self.claim, server_clock.behind_at_most
        if last is None or claim is None or behind is None:
            return None
        start = claim + max(behind - TIMING_NOISE, 0.0)
        if not start < last.at:
            return None
        return Observation(start, BatchState.RUNNING, 0, last.total, exact=True)

    def _narrow(
        self,
        rates: RateBook | None,
        current: Observation,
        reference: Observation | None,
        *,
        learn_at: float | None,
    ) -> RateBounds | None:
        """The job's rate bounds narrowed by the session's book (see :meth:`RateBook.narrow`)."""
        if rates is None:
            return None
        return rates.narrow(
            self.job_id,
            self.operation,
            first=self.first,
            current=current,
            reference=reference,
            learn_at=learn_at,
        )


def status_changed(old: BatchStatus | None, new: BatchStatus) -> bool:
    """Whether ``new`` tells a waiter anything ``old`` did not (state or counts)."""
    return (
        old is None
        or old.state is not new.state
        or old.state_word != new.state_word
        or old.finished_count != new.finished_count
        or old.error_count != new.error_count
        or old.total_count != new.total_count
    )
