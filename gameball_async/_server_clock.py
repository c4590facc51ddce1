"""How far behind ours the server's clock may be, learnt from the jobs a session polls.

A job's ``startedAt`` is the server's clock. Read against ours it gives, from
the first poll that sees a job running, the job's processing rate, so the next
poll can be aimed at its end: two polls a job. But a server clock *behind* ours
makes every job look older, so slower, and that poll late (a clock ahead only
makes polls early, which costs a poll, not lag). A job this process created, or
saw ``Queued``, has a floor to check the claim against; a job attached by its id
has none, and without a bound its claim may only bring a poll forward, which
costs two or three extra polls on a long job (issue 16).

:class:`ServerClock` is that bound. Every job polled twice while running gives
one, and each later poll of it a tighter one: counting back from our own two
observations at the rate they show, the job started no later than a time of
ours, and its claimed start can be behind that by at most the difference
(counts are whole items, so one item each way is allowed for). Each sample is
an upper bound, so the smallest of the recent ones is too; a claim shifted
forward by it can only make a job look younger, its rate faster and the next
poll early, never late. This assumes a job does not process faster at its
start than later, true of the fake's steady rate and of a real server's
warm-up alike.

:func:`start_hint` reads a claim with that bound, or against a floor of ours
where the job has one (its creation, a Queued reply).
"""

from __future__ import annotations

from collections import deque
from typing import Final

from ._models import BatchState, BatchStatus
from ._policy import TIMING_NOISE, Observation

__all__ = ["CLAIM_TOLERANCE", "ServerClock", "claimed_start", "start_hint"]

#: Recent samples the bound is the smallest of: a server clock stepped further
#: behind is learnt once this many polls of running jobs have shown it.
SAMPLES: Final = 8
# Fewer items processed between our own two observations make too loose a bound.
_MIN_ITEMS: Final = 4


class ServerClock:
    """The session's bound on how far the server's clock runs behind ours."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=SAMPLES)

    @property
    def behind_at_most(self) -> float | None:
        """Seconds the server's clock may be behind ours at most, ``None`` while unknown."""
        return min(self._samples) if self._samples else None

    def learn(self, claimed_start: float, first: Observation, later: Observation) -> bool:
        """Take one job's sample: its claimed start against two observations of ours.

        :param claimed_start: the job's ``startedAt`` read on our monotonic clock.
        :param first: the first observation of ours that saw the job running.
        :param later: a later one, while it still ran.
        :return: whether they made a sample (enough items processed between them).
        """
        done = later.processed - first.processed
        # the shortest span the two reads allow (a round trip each, or the noise)
        span = later.read_between()[0] - first.read_between()[1]
        if done < _MIN_ITEMS or span <= 0.0:
            return False
        fastest = (done + 1) / span
        latest_start = first.at - max(first.processed - 1, 0) / fastest
        self._samples.append(max(latest_start - claimed_start, 0.0))
        return True


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
