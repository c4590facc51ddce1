"""Polling and retry policies, and their arithmetic as pure functions.

Nothing here sleeps or sends: each function takes the policy, what has been
observed and a random source, and returns a delay in seconds. The poller and
the transport own the waiting.
"""

from __future__ import annotations

import math
import random
from typing import Any, Final

import attrs

from ._models import BatchState

__all__ = [
    "DEFAULT_POLL_POLICY",
    "DEFAULT_RETRY_POLICY",
    "MAX_BET",
    "TIMING_NOISE",
    "Bounds",
    "Observation",
    "PollPolicy",
    "RateBounds",
    "RetryPolicy",
    "aim_by_rate_bounds",
    "capped_growth",
    "narrowed",
    "next_poll_delay",
    "optional_positive",
    "rate_bounds",
    "retry_delay",
]

DEFAULT_INITIAL_DELAY: Final = 1.0
DEFAULT_MULTIPLIER: Final = 1.6
DEFAULT_MAX_DELAY: Final = 30.0
# Gameball's batches run up to 1,000 items: at tens of items a second, a job
# seen early in its run ends 30-60 s later, one aimed poll away.
DEFAULT_MAX_AIMED_DELAY: Final = 60.0
DEFAULT_MIN_DELAY: Final = 0.25
DEFAULT_POLL_JITTER: Final = 0.2

# Three tries (two retries, openai-python's default): a service's request should
# fail fast when Gameball is down, not hold its caller for tens of seconds. The
# polls of a wait do not use this: each poll is one try, and the scheduler
# keeps polling through failures until the wait's own deadline.
DEFAULT_ATTEMPTS: Final = 3
DEFAULT_BACKOFF: Final = 0.5
DEFAULT_MAX_BACKOFF: Final = 8.0
DEFAULT_MAX_RETRY_AFTER: Final = 120.0


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _fraction(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within 0.0..1.0, got {value!r}")


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value >= 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


def optional_positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value!r}")


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How often a job's status is polled while it is awaited.

    Without progress to go on, the delay grows from ``initial_delay`` by
    ``multiplier`` up to ``max_delay``. While a running job reports rising
    counts, the next poll is aimed just after its estimated end, within
    ``min_delay`` and ``max_delay``, so the end is seen soon with few polls.
    A ``Retry-After`` from the server always wins when it asks for longer.

    :param initial_delay: seconds before the first poll, and the first backoff step.
    :param multiplier: growth of the delay between polls without progress (>= 1).
    :param max_delay: the longest delay between two polls of one job, except a
        poll aimed at a running job's end (see ``max_aimed_delay``).
    :param max_aimed_delay: the longest delay before a poll aimed at the
        estimated end of a running job (never shorter than ``max_delay``). A
        job that fails or is stopped partway through is seen at most this
        late. ``None``: 60 s while ``max_delay`` is at its default (30 s),
        else ``max_delay``, so a ``max_delay`` of your own bounds every poll.
    :param min_delay: the shortest delay between two polls of one job.
    :param jitter: share of each backoff delay that is randomised, 0.0 to 1.0;
        1.0 is "full jitter" (uniform between 0 and the delay, floored at
        ``min_delay``). Spreads the polls of jobs created together.
    :param timeout: default bound in seconds on a whole ``wait()``; ``None``
        waits as long as the job runs.
    """

    initial_delay: float = attrs.field(default=DEFAULT_INITIAL_DELAY, validator=_non_negative)
    multiplier: float = attrs.field(default=DEFAULT_MULTIPLIER, validator=_at_least_one)
    max_delay: float = attrs.field(default=DEFAULT_MAX_DELAY, validator=_non_negative)
    max_aimed_delay: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_non_negative)
    )
    min_delay: float = attrs.field(default=DEFAULT_MIN_DELAY, validator=_non_negative)
    jitter: float = attrs.field(default=DEFAULT_POLL_JITTER, validator=_fraction)
    timeout: float | None = attrs.field(default=None, validator=optional_positive)

    def __attrs_post_init__(self) -> None:
        if self.min_delay > self.max_delay:
            raise ValueError(
                f"min_delay ({self.min_delay}) must not exceed max_delay ({self.max_delay})"
            )

    @property
    def aim_cap(self) -> float:
        """The longest delay before a poll aimed at a running job's end."""
        if self.max_aimed_delay is not None:
            return max(self.max_delay, self.max_aimed_delay)
        if self.max_delay == DEFAULT_MAX_DELAY:
            return DEFAULT_MAX_AIMED_DELAY
        return self.max_delay


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a failed request is retried by the transport.

    Only failures that are safe to retry are retried: status reads and stops
    on 429, 5xx, timeouts and connection errors; creations only on 429, 503 and
    connections that were never made (anything else may have created a job).

    It applies to each call of the session (``create_batch``, ``get_status``,
    ``refresh``, ``stop``). The polls of a ``wait()`` are not retried here:
    each poll is one try, and a failed one is polled again with the poll
    policy's backoff until the wait's own deadline.

    :param attempts: tries of one request in all, the first included: the
        default 3 is the first try and two retries (1 disables retries). With
        the default backoff a creation against a down upstream fails in under
        about 1.5 s.
    :param backoff: base delay in seconds; try *n* waits a random time up to
        ``backoff * 2**n`` ("full jitter"), capped at ``max_backoff``.
    :param max_backoff: the longest wait between two tries.
    :param max_retry_after: the longest ``Retry-After`` honoured by waiting; a
        server asking for longer gets the error raised instead.
    :param retry_rate_limited: retry 429 replies.
    :param retry_server_errors: retry 5xx replies (creations: 503 only).
    :param retry_network_errors: retry timeouts and connection errors
        (creations: only connections never established).
    """

    attempts: int = attrs.field(default=DEFAULT_ATTEMPTS, validator=_at_least_one)
    backoff: float = attrs.field(default=DEFAULT_BACKOFF, validator=_non_negative)
    max_backoff: float = attrs.field(default=DEFAULT_MAX_BACKOFF, validator=_non_negative)
    max_retry_after: float = attrs.field(default=DEFAULT_MAX_RETRY_AFTER, validator=_non_negative)
    retry_rate_limited: bool = True
    retry_server_errors: bool = True
    retry_network_errors: bool = True


DEFAULT_POLL_POLICY: Final = PollPolicy()
DEFAULT_RETRY_POLICY: Final = RetryPolicy()


def capped_growth(base: float, factor: float, steps: int, cap: float) -> float:
    """``min(base * factor ** steps, cap)``, for any ``steps``, without overflow.

    A job can sit in Queued (or report an unknown status word) for days, so
    the count of polls without progress has no bound; ``factor ** steps``
    overflows a float after about 1,500 steps of 1.6. The power is taken only
    while it can still be below ``cap``.
    """
    if base <= 0.0 or steps <= 0:
        return min(max(base, 0.0), cap)
    if factor <= 1.0 or base >= cap:
        return min(base, cap)
    if not math.isfinite(cap):
        try:
            return base * factor**steps
        except OverflowError:
            return cap
    # steps beyond this reach the cap whatever their number
    reach = math.log(cap / base) / math.log(factor)
    if steps >= reach:
        return cap
    try:
        return min(base * factor**steps, cap)
    except OverflowError:  # rounding at the edge of ``reach``
        return cap


def retry_delay(
    policy: RetryPolicy,
    attempt: int,
    *,
    retry_after: float | None,
    rng: random.Random,
) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0).

    Full jitter below the exponential cap; never less than ``retry_after``.
    """
    cap = capped_growth(policy.backoff, 2.0, attempt, policy.max_backoff)
    delay = rng.uniform(0.0, cap) if cap > 0 else 0.0
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@attrs.frozen
class Observation:
    """What one poll saw, as far as timing the next poll is concerned.

    :ivar at: when the reply arrived (monotonic seconds).
    :ivar state: the job's state.
    :ivar processed: items processed so far (succeeded + failed).
    :ivar total: items in the job, when known.
    :ivar exact: ``at`` is when ``processed`` items were done with no other
        item under way: the job's start, from its ``startedAt``. A count read
        by a poll may have most of another item done.
    :ivar sent: when the request that read it was sent (monotonic), if
        known: the server counted ``processed`` between ``sent`` and ``at``,
        however long a loaded loop or a slow network held either end.
    """

    at: float
    state: BatchState
    processed: int
    total: int | None
    exact: bool = False
    sent: float | None = None

    def read_between(self) -> tuple[float, float]:
        """The earliest and latest time (monotonic) the server can have counted ``processed``.

        ``[sent, at]`` when the request's sending is known; otherwise ``at``
        give or take half of :data:`TIMING_NOISE`.
        """
        if self.sent is None or self.exact:
            return (self.at - TIMING_NOISE / 2, self.at + TIMING_NOISE / 2)
        return (self.sent, self.at)


def next_poll_delay(
    policy: PollPolicy,
    *,
    previous: Observation | None,
    current: Observation,
    steps_without_progress: int,
    retry_after: float | None,
    rng: random.Random,
    bounds: RateBounds | None = None,
) -> float:
    """Seconds from ``current`` until the next poll of a job that is not terminal.

    :param previous: the last observation before ``current`` with different
        counts, or ``None``; two of them give a processing rate.
    :param steps_without_progress: polls in a row that saw no new progress;
        drives the exponential backoff.
    :param retry_after: a ``Retry-After`` the reply carried, in seconds.
    :param bounds: the job's rate bounds narrowed by those the session's
        recent jobs share (see ``_rates``); they aim the poll when they bound
        the rate from both sides.
    """
    delay = None
    if bounds is not None:
        delay = aim_by_rate_bounds(policy, current, bounds)
    if delay is None:
        delay = _estimate_to_end(policy, previous, current)
    if delay is None:
        base = capped_growth(
            policy.initial_delay, policy.multiplier, steps_without_progress, policy.max_delay
        )
        base = min(max(base, policy.min_delay), policy.max_delay)
        delay = base - policy.jitter * rng.uniform(0.0, base)
        delay = max(delay, policy.min_delay)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


# How far an estimate of a job's end can be off: counts are whole items (one
# item of ``done`` is the quantisation error) and reply times carry network
# and timestamp noise of a few tens of milliseconds over the observed span.
TIMING_NOISE: Final = 0.05
_ETA_PAD: Final = 0.02


def _estimate_to_end(
    policy: PollPolicy, previous: Observation | None, current: Observation
) -> float | None:
    """Seconds until the next poll, aimed by the job's processing rate, or ``None``.

    When the estimate is sharp, aim just past the end: the end is then seen
    with one poll. When it is not (few items seen, short span), aim early by
    the error bound instead: that poll measures the rate over a longer span,
    and the next one lands just past the end, instead of overshooting it by
    the whole error.

    From an exact ``previous`` (the job's start) the count's error is one-sided:
    ``done`` items are done and less than one more, so the estimate is the
    latest end and the earliest is about one item's share sooner. The end is
    then aimed at once when that span, with the timing noise either side, is
    within the lag the two-sided rule accepts (twice ``min_delay``).
    """
    if previous is None or current.total is None or current.state is not BatchState.RUNNING:
        return None
    done = current.processed - previous.processed
    elapsed = current.at - previous.at
    if done <= 0 or elapsed <= 0:
        return None
    remaining = max(current.total - current.processed, 0)
    eta = remaining * elapsed / done
    timing = eta * TIMING_NOISE / elapsed
    if previous.exact:
        # at the rate of done + 1 items, with one item less to go
        earliest = (remaining - 1) * elapsed / (done + 1) - timing
        if eta + timing - earliest <= 2.0 * policy.min_delay:
            delay = eta + timing + _ETA_PAD
        else:
            delay = earliest
    else:
        error = eta / done + timing
        delay = eta + error + _ETA_PAD if error <= policy.min_delay else eta - error
    return min(max(delay, policy.min_delay), policy.aim_cap)


#: A job's rate, as (slowest, fastest) items per second.
Bounds = tuple[float, float]

#: Seconds the rate the session's jobs share may put a poll past the earliest
#: end the job's own bounds allow: the lag a job running faster than the
#: others pays, at most, for the polls the shared rate saves the rest. A job
#: seen once early in its run knows its own rate to a few per cent, seconds
#: over a 30 s run: with less than this the bet is lost by an item or two.
MAX_BET: Final = 1.5


@attrs.frozen(kw_only=True)
class RateBounds:
    """A job's rate bounds, its own narrowed by those its session's jobs share.

    :param slowest: the slowest rate, items per second (> 0 to aim by it).
    :param fastest: the fastest rate, items per second.
    :param own_fastest: the fastest rate the job's own observations allow,
        ``inf`` when they set none: it alone is sure to hold for this job.
    """

    slowest: float
    fastest: float
    own_fastest: float


def rate_bounds(previous: Observation, current: Observation) -> Bounds | None:
    """Items per second a job ran at between two observations, as (slowest, fastest).

    Between two polls each count may have most of another item done, and
    each was read at some time within :meth:`Observation.read_between` (a
    request's round trip, or :data:`TIMING_NOISE` where its sending is not
    known): bounds from the shortest and the longest span those allow hold
    the job's rate however late a loaded loop took a reply in. From an exact
    ``previous`` (a start from the server's ``startedAt``, checked or made as
    young as it can be) only the fastest bound holds: the server's clock may
    be ahead of ours, and the job older than its claim, by any amount.

    :return: ``None`` when there was no progress or the span is within the noise.
    """
    done = current.processed - previous.processed
    previous_from, previous_to = previous.read_between()
    current_from, current_to = current.read_between()
    shortest = current_from - previous_to
    if done <= 0 or shortest <= 0.0:
        return None
    fastest = (done + 1) / shortest
    if previous.exact:
        return (0.0, fastest)
    return (max(done - 1, 0) / (current_to - previous_from), fastest)


def narrowed(*bounds: Bounds | None) -> Bounds | None:
    """The intersection of the rate bounds given (``None`` ones skipped), or ``None`` if empty.

    With none given it is every rate, ``(0.0, inf)``.
    """
    slowest, fastest = 0.0, math.inf
    for each in bounds:
        if each is not None:
            slowest, fastest = max(slowest, each[0]), min(fastest, each[1])
    return (slowest, fastest) if slowest <= fastest else None


def aim_by_rate_bounds(
    policy: PollPolicy, current: Observation, bounds: RateBounds
) -> float | None:
    """Seconds until the next poll of a job whose rate is within ``bounds``, or ``None``.

    The count has less than one more item done: the end is between
    ``remaining - 1`` items at the fastest rate and ``remaining`` at the
    slowest. Aimed just past the latest when that span is within the lag the
    estimate accepts (twice ``min_delay``), else at the earliest. Either way
    no later than :data:`MAX_BET` past the earliest end of the job's own
    fastest bound: the shared bounds are the other jobs' rate, not proof of
    this one's.
    """
    if current.total is None or current.state is not BatchState.RUNNING:
        return None
    if bounds.slowest <= 0.0:
        return None
    remaining = max(current.total - current.processed, 0)
    earliest = max(remaining - 1, 0) / bounds.fastest
    latest = remaining / bounds.slowest + TIMING_NOISE
    sharp = latest - earliest <= 2.0 * policy.min_delay
    delay = latest + _ETA_PAD if sharp else earliest
    delay = min(delay, max(remaining - 1, 0) / bounds.own_fastest + MAX_BET)
    return min(max(delay, policy.min_delay), policy.aim_cap)
