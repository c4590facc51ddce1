"""The rate a session's jobs share (``_rates.py``): the book, and a job's bounds narrowed by it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameball_async import BatchState, Operation
from gameball_async._policy import TIMING_NOISE, Observation, rate_bounds
from gameball_async._rates import KEPT, MAX_AGE, MIN_JOBS, RateBook

CASHBACK = Operation.CASHBACK


def learnt(*bounds: tuple[float, float], at: float = 0.0) -> RateBook:
    """A book that learnt one job per bounds, all at ``at``."""
    book = RateBook()
    for n, each in enumerate(bounds):
        book.learn(f"j{n}", CASHBACK, each, at)
    return book


def seen(at: float, processed: int, *, exact: bool = False) -> Observation:
    return Observation(at, BatchState.RUNNING, processed, 1000, exact=exact)


class TestShared:
    def test_silent_below_min_jobs(self) -> None:
        bounds = [(19.0, 21.0)] * (MIN_JOBS - 1)
        book = learnt(*bounds)
        assert book.shared(CASHBACK, 1.0) is None
        book.learn("another", CASHBACK, (19.5, 20.5), 1.0)
        assert book.shared(CASHBACK, 1.0) == (19.5, 20.5)

    def test_the_intersection_of_every_job(self) -> None:
        book = learnt((19.0, 21.0), (19.8, 22.0), (18.0, 20.3))
        assert book.shared(CASHBACK, 1.0) == (19.8, 20.3)

    def test_silent_when_the_jobs_do_not_share_a_rate(self) -> None:
        # two at about 20 items/s, one at about 40: no one rate holds them all
        book = learnt((19.0, 21.0), (19.5, 20.5), (39.0, 41.0))
        assert book.shared(CASHBACK, 1.0) is None

    def test_per_operation(self) -> None:
        book = learnt((19.0, 21.0), (19.5, 20.5), (19.8, 20.2))
        assert book.shared(Operation.REDEEM, 1.0) is None
        assert book.shared(None, 1.0) is None

    def test_ages_out_after_max_age(self) -> None:
        book = learnt((19.0, 21.0), (19.5, 20.5), (19.8, 20.2), at=10.0)
        assert book.shared(CASHBACK, 10.0 + MAX_AGE) == (19.8, 20.2)
        assert book.shared(CASHBACK, 10.0 + MAX_AGE + 0.1) is None
        # gone, not only hidden: two fresh jobs are not enough again
        book.learn("a", CASHBACK, (19.0, 21.0), 200.0)
        book.learn("b", CASHBACK, (19.0, 21.0), 200.0)
        assert book.shared(CASHBACK, 200.0) is None

    def test_a_server_that_changed_pace_is_learnt_once_the_old_jobs_age_out(self) -> None:
        book = learnt((19.0, 21.0), (19.5, 20.5), (19.8, 20.2), at=0.0)
        for n in range(MIN_JOBS):
            book.learn(f"new{n}", CASHBACK, (29.0, 31.0), 100.0)
        assert book.shared(CASHBACK, 100.0) is None  # old and new disagree: silent
        assert book.shared(CASHBACK, MAX_AGE + 1.0) == (29.0, 31.0)

    def test_keeps_the_newest_jobs_only(self) -> None:
        book = RateBook()
        for n in range(MIN_JOBS):
            book.learn(f"odd{n}", CASHBACK, (39.0, 41.0), 0.0)
        for n in range(KEPT - 1):
            book.learn(f"j{n}", CASHBACK, (19.0, 21.0), 1.0)
        assert book.shared(CASHBACK, 1.0) is None  # one odd job still kept
        book.learn("last", CASHBACK, (19.0, 21.0), 1.0)
        assert book.shared(CASHBACK, 1.0) == (19.0, 21.0)
        assert len(book._books[CASHBACK]) == KEPT

    def test_a_jobs_newer_bounds_replace_its_older(self) -> None:
        book = learnt((10.0, 30.0), (19.0, 21.0), (19.0, 21.0))
        book.learn("j0", CASHBACK, (19.9, 20.1), 1.0)
        assert book.shared(CASHBACK, 1.0) == (19.9, 20.1)
        assert len(book._books[CASHBACK]) == 3

    @given(
        rate=st.floats(1.0, 200.0),
        looks=st.lists(
            st.tuples(st.floats(0.0, 50.0), st.floats(0.1, 60.0), st.floats(0.0, 1.0)),
            min_size=MIN_JOBS,
            max_size=40,
        ),
    )
    def test_jobs_at_one_rate_always_agree_on_it(
        self, rate: float, looks: list[tuple[float, float, float]]
    ) -> None:
        # each job: a first look ``after`` s into its run, a second ``span`` s
        # later, both replies ``noise`` of TIMING_NOISE off (one each way)
        book = RateBook()
        for n, (after, span, noise) in enumerate(looks):
            first = seen(after + noise * TIMING_NOISE / 2, math.floor(after * rate))
            later = seen(after + span - noise * TIMING_NOISE / 2, math.floor((after + span) * rate))
            bounds = rate_bounds(first, later)
            if bounds is not None:
                book.learn(str(n), CASHBACK, bounds, 0.0)
        shared = book.shared(CASHBACK, 0.0)
        if shared is not None:
            assert shared[0] <= rate <= shared[1]


class TestNarrow:
    @staticmethod
    def book() -> RateBook:
        return learnt((19.8, 20.3), (19.9, 20.2), (19.7, 20.4), at=0.0)

    def test_a_job_seen_once_takes_the_shared_bounds_and_keeps_its_own_fastest(self) -> None:
        # a start 2 s before the look (a claim made as young as it can be), 40 done
        look = seen(10.0, 40)
        bounds = self.book().narrow(
            "k",
            CASHBACK,
            first=look,
            current=look,
            reference=seen(8.0, 0, exact=True),
            learn_at=10.0,
        )
        assert bounds is not None
        assert (bounds.slowest, bounds.fastest) == (19.9, 20.2)
        assert bounds.own_fastest == pytest.approx(41 / (2.0 - TIMING_NOISE))

    def test_silent_book_silent_narrowing(self) -> None:
        book = learnt((19.8, 20.3), (19.9, 20.2))
        look = seen(10.0, 40)
        narrowed = book.narrow(
            "k", CASHBACK, first=look, current=look, reference=None, learn_at=None
        )
        assert narrowed is None

    def test_a_job_at_a_pace_of_its_own_is_not_narrowed(self) -> None:
        # seen twice, 4 s apart: about 40 items/s, not the others' 20
        book = self.book()
        assert (
            book.narrow(
                "k",
                CASHBACK,
                first=seen(10.0, 40),
                current=seen(14.0, 200),
                reference=None,
                learn_at=None,
            )
            is None
        )

    def test_learns_from_two_looks_of_its_own_only(self) -> None:
        book = learnt((19.0, 21.0), (19.0, 21.0))
        # one look and a start claim: nothing learnt (the claim's clock is the server's)
        look = seen(10.0, 40)
        book.narrow(
            "k",
            CASHBACK,
            first=look,
            current=look,
            reference=seen(8.0, 0, exact=True),
            learn_at=10.0,
        )
        assert book.shared(CASHBACK, 10.0) is None
        # nothing learnt when asked not to
        book.narrow(
            "k",
            CASHBACK,
            first=seen(10.0, 40),
            current=seen(14.0, 120),
            reference=None,
            learn_at=None,
        )
        assert book.shared(CASHBACK, 14.0) is None
        book.narrow(
            "k",
            CASHBACK,
            first=seen(10.0, 40),
            current=seen(14.0, 120),
            reference=None,
            learn_at=14.0,
        )
        assert book.shared(CASHBACK, 14.0) == rate_bounds(seen(10.0, 40), seen(14.0, 120))

    def test_states_of_two_runs_are_not_a_rate(self) -> None:
        book = learnt((19.0, 21.0), (19.0, 21.0))
        queued = Observation(9.0, BatchState.QUEUED, 0, 1000)
        book.narrow(
            "k", CASHBACK, first=queued, current=seen(14.0, 120), reference=None, learn_at=14.0
        )
        assert book.shared(CASHBACK, 14.0) is None
