"""Tests of gameball_async._policy: retry and poll arithmetic (pure functions)."""

from __future__ import annotations

import math
import random
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameball_async import BatchState, PollPolicy, RetryPolicy
from gameball_async._policy import (
    _ETA_PAD,
    MAX_BET,
    TIMING_NOISE,
    Observation,
    RateBounds,
    aim_by_rate_bounds,
    capped_growth,
    narrowed,
    next_poll_delay,
    rate_bounds,
    retry_delay,
)

SEEDS = range(200)


def _obs(
    at: float, processed: int, total: int | None = 100, state: BatchState = BatchState.RUNNING
) -> Observation:
    return Observation(at=at, state=state, processed=processed, total=total)


class TestRetryDelay:
    @pytest.mark.parametrize("attempt", range(8))
    def test_full_jitter_within_the_exponential_cap(self, attempt: int) -> None:
        policy = RetryPolicy(backoff=0.5, max_backoff=20.0)
        cap = min(20.0, 0.5 * 2**attempt)
        delays = [
            retry_delay(policy, attempt, retry_after=None, rng=random.Random(seed))
            for seed in SEEDS
        ]
        assert all(0.0 <= d <= cap for d in delays)
        # jittered, not constant, and it uses the range
        assert len(set(delays)) > 100
        assert max(delays) > 0.8 * cap
        assert min(delays) < 0.2 * cap

    def test_capped_at_max_backoff(self) -> None:
        policy = RetryPolicy(backoff=1.0, max_backoff=3.0)
        delays = [
            retry_delay(policy, 30, retry_after=None, rng=random.Random(seed)) for seed in SEEDS
        ]
        assert max(delays) <= 3.0
        assert max(delays) > 2.5

    def test_retry_after_is_a_floor(self) -> None:
        policy = RetryPolicy(backoff=0.01, max_backoff=0.05)
        for seed in SEEDS:
            assert retry_delay(policy, 0, retry_after=2.0, rng=random.Random(seed)) == 2.0
        big = RetryPolicy(backoff=10.0, max_backoff=10.0)
        delays = [retry_delay(big, 3, retry_after=1.0, rng=random.Random(s)) for s in SEEDS]
        assert all(1.0 <= d <= 10.0 for d in delays)
        assert max(delays) > 1.0

    def test_zero_backoff(self) -> None:
        policy = RetryPolicy(backoff=0.0)
        assert retry_delay(policy, 5, retry_after=None, rng=random.Random(1)) == 0.0
        assert retry_delay(policy, 5, retry_after=0.5, rng=random.Random(1)) == 0.5

    @pytest.mark.parametrize(
        "kwargs",
        [{"attempts": 0}, {"backoff": -1}, {"max_backoff": -0.1}, {"max_retry_after": -1}],
    )
    def test_validation(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            RetryPolicy(**kwargs)

    def test_defaults(self) -> None:
        policy = RetryPolicy()
        assert policy.attempts >= 2
        assert policy.retry_rate_limited
        assert policy.retry_server_errors
        assert policy.retry_network_errors


class TestNextPollDelay:
    def _backoff(
        self, policy: PollPolicy, steps: int, seed: int = 0, retry_after: float | None = None
    ) -> float:
        return next_poll_delay(
            policy,
            previous=None,
            current=_obs(0.0, 0, state=BatchState.QUEUED),
            steps_without_progress=steps,
            retry_after=retry_after,
            rng=random.Random(seed),
        )

    def test_backoff_grows_then_caps(self) -> None:
        policy = PollPolicy(
            initial_delay=1.0, multiplier=2.0, max_delay=10.0, min_delay=0.1, jitter=0.0
        )
        delays = [self._backoff(policy, steps) for steps in range(8)]
        assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]

    def test_multiplier_one_is_constant(self) -> None:
        policy = PollPolicy(initial_delay=0.5, multiplier=1.0, jitter=0.0)
        assert {self._backoff(policy, steps) for steps in range(10)} == {0.5}

    def test_floor_at_min_delay(self) -> None:
        policy = PollPolicy(initial_delay=0.01, multiplier=1.5, min_delay=0.25, jitter=1.0)
        assert all(self._backoff(policy, 0, seed) >= 0.25 for seed in SEEDS)
        assert self._backoff(PollPolicy(initial_delay=0.0, min_delay=0.3, jitter=0.0), 0) == 0.3

    @pytest.mark.parametrize("jitter", [0.2, 0.5, 1.0])
    def test_jitter_bounds(self, jitter: float) -> None:
        policy = PollPolicy(
            initial_delay=4.0, multiplier=1.6, max_delay=30.0, min_delay=0.25, jitter=jitter
        )
        base = 4.0 * 1.6**2
        delays = [self._backoff(policy, 2, seed) for seed in SEEDS]
        low = max(base * (1.0 - jitter), 0.25)
        assert all(low <= d <= base for d in delays)
        assert len(set(delays)) > 100  # really randomised
        assert min(delays) < low + 0.25 * (base - low)

    def test_retry_after_wins_when_longer(self) -> None:
        policy = PollPolicy(initial_delay=1.0, max_delay=5.0, jitter=0.0)
        assert self._backoff(policy, 0, retry_after=60.0) == 60.0  # beyond max_delay too
        assert self._backoff(policy, 0, retry_after=0.1) == 1.0

    @staticmethod
    def _eta(
        policy: PollPolicy,
        previous: Observation,
        current: Observation,
        seed: int = 0,
        retry_after: float | None = None,
    ) -> float:
        return next_poll_delay(
            policy,
            previous=previous,
            current=current,
            steps_without_progress=0,
            retry_after=retry_after,
            rng=random.Random(seed),
        )

    def test_eta_from_two_observations(self) -> None:
        policy = PollPolicy(initial_delay=1.0, max_delay=60.0, min_delay=0.25, jitter=0.5)
        # a sharp estimate: 200 items/s over 10 s, 7,000 left -> about 35 s to go
        previous, current = _obs(0.0, 1000, total=10_000), _obs(10.0, 3000, total=10_000)
        delays = {self._eta(policy, previous, current, seed) for seed in range(20)}
        (delay,) = delays  # an estimate, not jittered
        assert 0.9 * 35.0 <= delay <= 1.1 * 35.0
        # twice the rate, half the wait
        faster = self._eta(policy, previous, _obs(10.0, 5000, total=11_000))
        assert 0.9 * 15.0 <= faster <= 1.1 * 15.0

    def test_rough_estimate_stays_near_the_eta(self) -> None:
        policy = PollPolicy(initial_delay=1.0, max_delay=30.0, min_delay=0.1)
        # 20 items/s over 1 s, 70 left: 3.5 s to go, known only roughly
        delay = self._eta(policy, _obs(10.0, 10), _obs(11.0, 30))
        assert 0.1 <= delay <= 1.2 * 3.5

    def test_from_the_exact_start_the_end_is_aimed_at_once(self) -> None:
        # issue 16: 100 of 380 items done 5 s after the job's start. From a poll
        # of ours, the count may be short by an item at either end: about 14 s
        # to go, give or take 0.28 s, too rough to aim past the end at once.
        policy = PollPolicy(initial_delay=1.0, max_delay=60.0, min_delay=0.25, jitter=0.0)
        current = _obs(5.0, 100, total=380)
        rough = self._eta(policy, _obs(0.0, 0, total=380), current)
        assert rough < 14.0
        # From its start nothing was under way: 14 s is the latest end, and the
        # earliest within the lag the rough rule accepts, so one poll sees it.
        start = Observation(at=0.0, state=BatchState.RUNNING, processed=0, total=380, exact=True)
        aimed = self._eta(policy, start, current)
        assert 14.0 < aimed <= 14.0 + 2 * policy.min_delay

    def test_eta_bounded(self) -> None:
        policy = PollPolicy(min_delay=0.5, max_delay=8.0)
        # sharp, and far beyond max_delay (which then bounds the aimed polls too)
        assert (
            self._eta(policy, _obs(0.0, 1000, total=100_000), _obs(10.0, 1100, total=100_000))
            == 8.0
        )
        stretched = attrs.evolve(policy, max_aimed_delay=40.0)
        assert (
            self._eta(stretched, _obs(0.0, 1000, total=100_000), _obs(10.0, 1100, total=100_000))
            == 40.0
        )
        # about to end
        assert self._eta(policy, _obs(0.0, 0), _obs(1.0, 99)) == 0.5
        assert self._eta(policy, _obs(0.0, 0), _obs(1.0, 100)) == 0.5
        assert self._eta(policy, _obs(0.0, 1, total=10_000), _obs(1.0, 2, total=10_000)) >= 0.5
        # Retry-After still wins over an estimate
        assert self._eta(policy, _obs(0.0, 0), _obs(1.0, 99), retry_after=3.0) == 3.0

    @pytest.mark.parametrize(
        ("previous", "current"),
        [
            (None, _obs(1.0, 50)),
            (_obs(0.0, 50), _obs(1.0, 50)),  # no progress
            (_obs(0.0, 10, total=None), _obs(1.0, 20, total=None)),  # no total
            (_obs(0.0, 0, state=BatchState.QUEUED), _obs(1.0, 0, state=BatchState.QUEUED)),
            (_obs(0.0, 10), _obs(1.0, 20, state=BatchState.UNKNOWN)),
            (_obs(1.0, 10), _obs(1.0, 20)),  # no time elapsed
        ],
    )
    def test_no_eta_falls_back_to_backoff(
        self, previous: Observation | None, current: Observation
    ) -> None:
        policy = PollPolicy(initial_delay=2.0, multiplier=3.0, max_delay=100.0, jitter=0.0)
        delay = next_poll_delay(
            policy,
            previous=previous,
            current=current,
            steps_without_progress=1,
            retry_after=None,
            rng=random.Random(0),
        )
        assert delay == 6.0

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"initial_delay": -1},
            {"multiplier": 0.5},
            {"max_delay": -1},
            {"min_delay": -1},
            {"jitter": 1.5},
            {"jitter": -0.1},
            {"timeout": 0},
            {"min_delay": 5.0, "max_delay": 1.0},
        ],
    )
    def test_validation(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match=r"delay|multiplier|jitter|timeout"):
            PollPolicy(**kwargs)


class TestRateBounds:
    def test_one_item_and_the_timing_noise_either_way(self) -> None:
        bounds = rate_bounds(_obs(10.0, 100), _obs(14.0, 180))
        assert bounds == pytest.approx((79 / (4 + TIMING_NOISE), 81 / (4 - TIMING_NOISE)))

    def test_from_an_exact_start_only_the_fastest_holds(self) -> None:
        start = Observation(at=8.0, state=BatchState.RUNNING, processed=0, total=100, exact=True)
        # the server's clock may be ahead of ours: the job may be older, so slower
        assert rate_bounds(start, _obs(10.0, 40)) == pytest.approx((0.0, 41 / (2 - TIMING_NOISE)))

    @pytest.mark.parametrize(
        ("previous", "current"),
        [
            (_obs(10.0, 40), _obs(12.0, 40)),  # no progress
            (_obs(10.0, 40), _obs(10.0 + TIMING_NOISE / 2, 41)),  # within the noise
            (_obs(10.0, 40), _obs(9.0, 50)),  # backwards
        ],
    )
    def test_none_without_a_span_to_measure(
        self, previous: Observation, current: Observation
    ) -> None:
        assert rate_bounds(previous, current) is None

    @given(
        rate=st.floats(0.5, 500.0),
        start=st.floats(0.0, 100.0),
        after=st.floats(0.0, 100.0),
        span=st.floats(0.0, 100.0),
        noise=st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)),
    )
    def test_the_true_rate_is_within(
        self, rate: float, start: float, after: float, span: float, noise: tuple[float, float]
    ) -> None:
        # two counts read ``after`` and ``after + span`` s into a steady run,
        # each reply's time up to half the timing noise off
        first = _obs(start + after + noise[0] * TIMING_NOISE, math.floor(after * rate), None)
        later = _obs(
            start + after + span + noise[1] * TIMING_NOISE,
            math.floor((after + span) * rate),
            None,
        )
        bounds = rate_bounds(first, later)
        if bounds is not None:
            assert bounds[0] <= rate <= bounds[1]

    def test_a_reply_held_past_the_noise_bounds_by_its_round_trip(self) -> None:
        # 20 items a second since 4.995; the second count is read at 13.71 but
        # a loaded loop takes its reply in only at 14.0, 290 ms late
        first = Observation(10.0, BatchState.RUNNING, 100, 1000, sent=9.99)
        later = Observation(14.0, BatchState.RUNNING, 174, 1000, sent=13.70)
        bounds = rate_bounds(first, later)
        assert bounds is not None
        assert bounds == pytest.approx((73 / (14.0 - 9.99), 75 / (13.70 - 10.0)))
        assert bounds[0] <= 20.0 <= bounds[1]
        # by the reply times alone, the noise allowed for misses it
        unsent = rate_bounds(attrs.evolve(first, sent=None), attrs.evolve(later, sent=None))
        assert unsent is not None
        assert unsent[1] < 20.0

    @given(
        rate=st.floats(0.5, 500.0),
        start=st.floats(0.0, 100.0),
        after=st.floats(0.0, 100.0),
        span=st.floats(0.0, 100.0),
        trips=st.tuples(*(st.floats(0.0, 2.0) for _ in range(4))),
    )
    def test_the_true_rate_is_within_however_long_the_round_trips(
        self, rate: float, start: float, after: float, span: float, trips: tuple[float, ...]
    ) -> None:
        # each count read ``after`` and ``after + span`` s into a steady run,
        # its request sent up to 2 s before and its reply taken in up to 2 s after
        read = (after, after + span)
        first, later = (
            Observation(
                start + at + trips[2 * n + 1],
                BatchState.RUNNING,
                math.floor(at * rate),
                None,
                sent=start + at - trips[2 * n],
            )
            for n, at in enumerate(read)
        )
        bounds = rate_bounds(first, later)
        if bounds is not None:
            assert bounds[0] <= rate <= bounds[1]


class TestNarrowed:
    def test_the_intersection(self) -> None:
        assert narrowed((10.0, 30.0), None, (19.0, 40.0), (0.0, 21.0)) == (19.0, 21.0)

    def test_none_when_they_do_not_meet(self) -> None:
        assert narrowed((10.0, 15.0), (19.0, 40.0)) is None

    def test_nothing_known_is_every_rate(self) -> None:
        assert narrowed() == (0.0, math.inf)
        assert narrowed(None, None) == (0.0, math.inf)


class TestAimByRateBounds:
    POLICY = PollPolicy(initial_delay=1.0, max_delay=60.0, min_delay=0.25, jitter=0.0)

    def test_sharp_bounds_aim_just_past_the_latest_end(self) -> None:
        # 300 left at 19.9..20.1 items/s: ends within 14.9..15.08 s
        current = _obs(5.0, 100, total=400)
        delay = aim_by_rate_bounds(
            self.POLICY, current, RateBounds(slowest=19.9, fastest=20.1, own_fastest=20.1)
        )
        assert delay == pytest.approx(300 / 19.9 + TIMING_NOISE + _ETA_PAD)

    def test_rough_bounds_aim_at_the_earliest(self) -> None:
        current = _obs(5.0, 100, total=400)
        delay = aim_by_rate_bounds(
            self.POLICY, current, RateBounds(slowest=18.0, fastest=22.0, own_fastest=22.0)
        )
        assert delay == pytest.approx(299 / 22.0)

    def test_never_past_the_jobs_own_earliest_end_by_more_than_the_bet(self) -> None:
        # the others run at 20 items/s; this job's own looks allow 30
        current = _obs(5.0, 100, total=400)
        bounds = RateBounds(slowest=19.9, fastest=20.1, own_fastest=30.0)
        delay = aim_by_rate_bounds(self.POLICY, current, bounds)
        assert delay == pytest.approx(299 / 30.0 + MAX_BET)

    @pytest.mark.parametrize(
        "current",
        [
            _obs(5.0, 100, total=None),
            _obs(5.0, 0, state=BatchState.QUEUED),
            _obs(5.0, 100, state=BatchState.UNKNOWN),
        ],
    )
    def test_none_without_a_running_count_to_aim_from(self, current: Observation) -> None:
        bounds = RateBounds(slowest=19.9, fastest=20.1, own_fastest=20.1)
        assert aim_by_rate_bounds(self.POLICY, current, bounds) is None

    def test_none_without_a_slowest_rate(self) -> None:
        bounds = RateBounds(slowest=0.0, fastest=20.1, own_fastest=20.1)
        assert aim_by_rate_bounds(self.POLICY, _obs(5.0, 100), bounds) is None

    def test_within_min_and_max_delay(self) -> None:
        bounds = RateBounds(slowest=19.9, fastest=20.1, own_fastest=20.1)
        assert aim_by_rate_bounds(self.POLICY, _obs(5.0, 399, total=400), bounds) == 0.25
        far = aim_by_rate_bounds(self.POLICY, _obs(5.0, 100, total=100_000), bounds)
        assert far == self.POLICY.max_delay

    def test_a_poll_aimed_at_the_end_may_go_past_max_delay(self) -> None:
        # 900 left at 20 items/s: 45 s away, past the 30 s cap of the backoff
        # but within the aimed polls' 60 s: one poll at the end, not one at
        # 30 s and another at 45
        policy = PollPolicy(jitter=0.0)
        assert policy.max_delay == 30.0
        assert policy.aim_cap == 60.0
        bounds = RateBounds(slowest=19.99, fastest=20.01, own_fastest=20.01)
        current = _obs(5.0, 100, total=1000)
        at_the_end = 900 / 19.99 + TIMING_NOISE + _ETA_PAD
        assert aim_by_rate_bounds(policy, current, bounds) == pytest.approx(at_the_end)
        one_bound = attrs.evolve(policy, max_aimed_delay=30.0)
        assert aim_by_rate_bounds(one_bound, current, bounds) == 30.0
        # a max_delay of one's own bounds the aimed polls too, unless told otherwise
        own = PollPolicy(max_delay=20.0, jitter=0.0)
        assert aim_by_rate_bounds(own, current, bounds) == 20.0
        stretched = attrs.evolve(own, max_aimed_delay=50.0)
        assert aim_by_rate_bounds(stretched, current, bounds) == pytest.approx(at_the_end)
        # never held under the backoff's own cap
        longer = PollPolicy(max_delay=120.0, max_aimed_delay=10.0)
        assert longer.aim_cap == 120.0
        assert aim_by_rate_bounds(longer, current, bounds) == pytest.approx(at_the_end)

    def test_a_jobs_own_estimate_may_go_past_max_delay_too(self) -> None:
        # from its start (exact) to 200 of 1,000 items in 10 s: its end, about
        # 40 s on, is aimed at (early by the estimate's error), not 30 s on
        policy = PollPolicy(jitter=0.0)
        start = Observation(at=0.0, state=BatchState.RUNNING, processed=0, total=1000, exact=True)
        delay = next_poll_delay(
            policy,
            previous=start,
            current=_obs(10.0, 200, total=1000),
            steps_without_progress=0,
            retry_after=None,
            rng=random.Random(0),
        )
        assert policy.max_delay < delay < 800 / 20.0
        assert delay == pytest.approx(799 * 10.0 / 201 - 40.0 * TIMING_NOISE / 10.0)

    def test_backoff_stays_within_max_delay(self) -> None:
        # no rate to aim by: max_aimed_delay does not stretch the backoff
        policy = PollPolicy(max_delay=30.0, jitter=0.0)
        delay = next_poll_delay(
            policy,
            previous=None,
            current=_obs(10.0, 0, total=1000, state=BatchState.QUEUED),
            steps_without_progress=50,
            retry_after=None,
            rng=random.Random(0),
        )
        assert delay == 30.0

    def test_next_poll_delay_takes_the_bounds_over_its_own_estimate(self) -> None:
        # a rough estimate from two looks 1 s apart, sharp with the shared rate
        previous, current = _obs(4.0, 80, total=400), _obs(5.0, 100, total=400)
        bounds = RateBounds(slowest=19.9, fastest=20.1, own_fastest=20.1)
        kwargs: dict[str, Any] = {
            "previous": previous,
            "current": current,
            "steps_without_progress": 0,
            "retry_after": None,
            "rng": random.Random(0),
        }
        alone = next_poll_delay(self.POLICY, **kwargs)
        shared = next_poll_delay(self.POLICY, bounds=bounds, **kwargs)
        assert alone < 15.0 < shared == aim_by_rate_bounds(self.POLICY, current, bounds)
        # and a Retry-After still wins when longer
        assert (
            next_poll_delay(self.POLICY, bounds=bounds, **{**kwargs, "retry_after": 20.0}) == 20.0
        )

    @given(
        rate=st.floats(1.0, 200.0),
        remaining=st.integers(1, 5000),
        part=st.floats(0.0, 0.999),
        low=st.floats(0.0, 0.2),
        high=st.floats(0.0, 0.2),
        min_delay=st.floats(0.05, 1.0),
    )
    def test_within_bounds_the_end_is_never_overshot_by_more_than_the_lag_accepted(
        self, rate: float, remaining: int, part: float, low: float, high: float, min_delay: float
    ) -> None:
        # the job runs at ``rate``, within the bounds, with ``part`` of its
        # next item done: it ends ``(remaining - part) / rate`` s from now
        policy = PollPolicy(min_delay=min_delay, max_delay=1e9)
        bounds = RateBounds(
            slowest=rate * (1 - low), fastest=rate * (1 + high), own_fastest=rate * (1 + high)
        )
        current = _obs(0.0, 1000, total=1000 + remaining)
        delay = aim_by_rate_bounds(policy, current, bounds)
        assert delay is not None
        end = (remaining - part) / rate
        # early when rough (the next poll measures more), just past when sharp,
        # and never later than the lag the estimate accepts
        assert delay <= max(end + 2 * min_delay + _ETA_PAD, min_delay) + 1e-9

    @given(
        rate=st.floats(1.0, 200.0),
        others=st.floats(1.0, 200.0),
        remaining=st.integers(1, 5000),
        part=st.floats(0.0, 0.999),
        own=st.floats(1.0, 2.0),
    )
    def test_a_job_faster_than_the_others_pays_at_most_the_bet(
        self, rate: float, others: float, remaining: int, part: float, own: float
    ) -> None:
        # the others' rate may say nothing true of this job; its own fastest
        # bound (``own`` times its rate) does
        policy = PollPolicy(min_delay=0.25, max_delay=1e9)
        bounds = RateBounds(slowest=others * 0.99, fastest=others * 1.01, own_fastest=rate * own)
        current = _obs(0.0, 1000, total=1000 + remaining)
        delay = aim_by_rate_bounds(policy, current, bounds)
        assert delay is not None
        end = (remaining - part) / rate
        assert delay <= max(end + MAX_BET, policy.min_delay) + 1e-9


class TestArithmeticIsTotal:
    """Issue 9.1: a job stuck for days must not overflow the backoff arithmetic."""

    def test_thousands_of_polls_without_progress(self) -> None:
        # 1,500 steps of 1.6 overflowed a float (about 11 hours stuck in Queued).
        policy = PollPolicy()
        for steps in (1_500, 10_000, 10**9):
            delay = next_poll_delay(
                policy,
                previous=None,
                current=_obs(0.0, 0, state=BatchState.QUEUED),
                steps_without_progress=steps,
                retry_after=None,
                rng=random.Random(0),
            )
            assert policy.min_delay <= delay <= policy.max_delay

    def test_retry_delay_for_any_attempt(self) -> None:
        policy = RetryPolicy(backoff=0.5, max_backoff=20.0)
        for attempt in (1_100, 10**6):
            delay = retry_delay(policy, attempt, retry_after=None, rng=random.Random(1))
            assert 0.0 <= delay <= 20.0

    @given(
        base=st.floats(min_value=0.0, max_value=1e6),
        factor=st.floats(min_value=1.0, max_value=1e3),
        steps=st.integers(min_value=-5, max_value=10**12),
        cap=st.floats(min_value=0.0, max_value=1e9) | st.just(math.inf),
    )
    def test_capped_growth_never_raises_and_stays_capped(
        self, base: float, factor: float, steps: int, cap: float
    ) -> None:
        value = capped_growth(base, factor, steps, cap)
        assert 0.0 <= value <= cap
        if steps <= 0:
            assert value == min(base, cap)
