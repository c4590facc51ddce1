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
from ._policy import TIMING_NOISE, Observation, PollPolicy, capped_growth, next_poll_delay

if TYPE_CHECKING:
    from ._server_clock import ServerClock

__all__ = [
    "CLAIM_TOLERANCE",
    "Entry",
    "Subscriber",
    "claimed_start",
    "is_transient",
    "start_hint",
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
        "scheduled",
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
    ) -> float:
        """Take in a non-terminal status read at ``now``; seconds until the next poll.

        Tracks progress (the backoff steps and the processing rate's anchor)
        and aims the next poll by it (see :func:`next_poll_delay`).

        :param sent_at: when the request that read it was sent (monotonic); a
            Queued reply proves the job was not running then, not at ``now``.
        :param server_clock: the session's bound on the server's clock, which
            checks ``startedAt`` where no floor of ours does, and learns from
            this job in turn.
        """
        self.failures = 0
        current = Observation(now, status.state, status.processed_count, status.total_count)
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
        delay = next_poll_delay(
            policy,
            previous=reference,
            current=current,
            steps_without_progress=self.steps,
            retry_after=retry_after,
            rng=rng,
        )
        if reference is None and self.hint is not None and self.anchor is current:
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


# A server clock this far from ours is not one to estimate a rate from.
_MAX_PLAUSIBLE_RUN: Final = 86_400.0
# How far a claim may pass a floor of ours and still be read as meeting it:
# startedAt has millisecond resolution, and our wall and monotonic clocks,
# read a moment apart, may disagree by as much again.
CLAIM_TOLERANCE: Final = 0.005


def claimed_start(status: BatchStatus, current: Observation, *, wall_now: float) -> float | None:
    """The start ``startedAt`` claims, on the monotonic clock of ``current``, if it has one.

    :param wall_now: the local wall clock (``time.time()``) at ``current``.
    """
    if status.started_at is None:
        return None
    return current.at - (wall_now - status.started_at.timestamp())


def start_hint(
    status: BatchStatus,
    current: Observation,
    *,
    not_running_at: float | None,
    wall_now: float,
    behind_at_most: float | None = None,
) -> Observation | None:
    """An observation of zero progress at the job's reported start, if plausible.

    ``startedAt`` is the server's clock, which may be off by any amount (or a
    naive local time read as UTC), so it is checked against what this process
    saw: the job cannot have started before ``not_running_at`` (the creation
    request's sending, or that of a request answered Queued). A claim that
    breaks that by more than :data:`CLAIM_TOLERANCE` shows the server's clock
    is off, so it gives no hint at all (cutting it to the floor would still
    claim too long a run, and a too slow rate puts the next poll late); so
    does a claimed start in the future, or an implausibly old one. Without a
    floor, the claim is made younger by ``behind_at_most``, the session's
    bound on how far the server's clock is behind ours (see ``_server_clock``),
    less the :data:`TIMING_NOISE` the rate's error bound allows for anyway.

    :param current: the observation the status was read in (monotonic clock).
    :param not_running_at: monotonic time the job was last known not running.
    :param wall_now: the local wall clock (``time.time()``) at ``current``.
    :param behind_at_most: seconds the server's clock may be behind ours, if known.
    """
    if status.started_at is None or current.processed <= 0:
        return None
    elapsed = wall_now - status.started_at.timestamp()
    if not 0.0 < elapsed < _MAX_PLAUSIBLE_RUN:
        return None
    if not_running_at is not None:
        floor = current.at - not_running_at
        if elapsed > floor + CLAIM_TOLERANCE:
            return None
        elapsed = min(elapsed, floor)
    elif behind_at_most is not None:
        # the rate's error bound already allows TIMING_NOISE on the span
        elapsed -= max(behind_at_most - TIMING_NOISE, 0.0)
    if elapsed <= 0.0:
        return None
    return Observation(current.at - elapsed, BatchState.RUNNING, 0, current.total, exact=True)


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
