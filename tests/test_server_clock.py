"""The session's bound on how far behind ours the server's clock is (``_server_clock.py``)."""

from __future__ import annotations

import pytest

from gameball_async._models import BatchState
from gameball_async._policy import TIMING_NOISE, Observation
from gameball_async._server_clock import SAMPLES, ServerClock


def seen(at: float, processed: int) -> Observation:
    return Observation(at=at, state=BatchState.RUNNING, processed=processed, total=1000)


class TestServerClock:
    def test_unknown_until_a_job_was_seen_running_twice(self) -> None:
        assert ServerClock().behind_at_most is None

    def test_right_clocks_give_a_bound_of_about_one_item(self) -> None:
        clock = ServerClock()
        # 100 items a second since 99.0: 100 done at 100.0, 300 at 102.0
        assert clock.learn(99.0, seen(100.0, 100), seen(102.0, 300))
        bound = clock.behind_at_most
        assert bound is not None
        assert 0.0 <= bound <= TIMING_NOISE

    def test_a_server_ten_seconds_behind_is_bounded_by_at_least_that(self) -> None:
        clock = ServerClock()
        # the same job, its start claimed 10 s before it was
        assert clock.learn(89.0, seen(100.0, 100), seen(102.0, 300))
        bound = clock.behind_at_most
        assert bound is not None
        assert 10.0 <= bound <= 10.0 + TIMING_NOISE

    def test_a_server_ahead_bounds_it_at_zero(self) -> None:
        clock = ServerClock()
        assert clock.learn(104.0, seen(100.0, 100), seen(102.0, 300))
        assert clock.behind_at_most == 0.0

    @pytest.mark.parametrize(("later", "processed"), [(102.0, 102), (100.04, 150)])
    def test_too_few_items_or_too_short_a_span_give_no_sample(
        self, later: float, processed: int
    ) -> None:
        clock = ServerClock()
        assert not clock.learn(99.0, seen(100.0, 100), seen(later, processed))
        assert clock.behind_at_most is None

    def test_the_tightest_recent_sample_is_the_bound(self) -> None:
        clock = ServerClock()
        clock.learn(99.0, seen(100.0, 100), seen(100.5, 150))  # short span: loose
        loose = clock.behind_at_most
        clock.learn(99.0, seen(100.0, 100), seen(105.0, 600))  # long span: tight
        tight = clock.behind_at_most
        assert loose is not None
        assert tight is not None
        assert tight < loose
        # a clock that went on to run 10 s behind is learnt once it fills the samples
        for _ in range(SAMPLES):
            clock.learn(89.0, seen(100.0, 100), seen(105.0, 600))
        bound = clock.behind_at_most
        assert bound is not None
        assert bound >= 10.0
