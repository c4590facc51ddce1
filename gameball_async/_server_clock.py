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
"""

from __future__ import annotations

from collections import deque
from typing import Final

from ._policy import TIMING_NOISE, Observation

__all__ = ["ServerClock"]

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
        # reply times carry network noise: the span is taken that much shorter
        span = later.at - first.at - TIMING_NOISE
        if done < _MIN_ITEMS or span <= 0.0:
            return False
        fastest = (done + 1) / span
        latest_start = first.at - max(first.processed - 1, 0) / fastest
        self._samples.append(max(latest_start - claimed_start, 0.0))
        return True
