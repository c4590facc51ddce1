"""The rate a session's jobs share, at work in the scheduler (issue 16 §2).

``Entry.reaim`` on its own first, on hand-made observations; then sessions
against ``FakeGameball``, whose jobs all run at one steady rate and report
``startedAt``: jobs attached by id cost fewer polls once the session has seen
others run, and a job at a pace of its own is not put off by theirs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import anyio
import attrs
import pytest
from _support import (
    PATIENCE,
    FakeFactory,
    ManualClock,
    Recorder,
    Reply,
    ScriptedFetch,
    cashbacks,
    gets_by_job,
    session,
    until,
)

from gameball_async import (
    BatchJob,
    BatchState,
    BatchStatus,
    GameballSession,
    Operation,
    PollPolicy,
    RateLimit,
)
from gameball_async._entry import Entry
from gameball_async._policy import _ETA_PAD, MAX_BET, Observation
from gameball_async._poller import LINGER, SCOUT_HOLD, SCOUT_WORTH, SCOUTS, Poller
from gameball_async._rates import MIN_JOBS, RateBook
from gameball_async._server_clock import ServerClock
from gameball_async.testing import FakeGameball

pytestmark = pytest.mark.anyio

CASHBACK = Operation.CASHBACK
WALL = 1_700_000_000.0  # the wall clock at monotonic 0.0, on both sides
POLICY = PollPolicy(initial_delay=1.0, min_delay=0.25, max_delay=120.0, jitter=0.0)


def running(processed: int, *, started: float, total: int = 300) -> BatchStatus:
    """A cashback job's status, running since monotonic ``started`` (by a clock like ours)."""
    return BatchStatus(
        job_id="k",
        operation=CASHBACK,
        state=BatchState.RUNNING,
        state_word="Running",
        total_count=total,
        finished_count=processed,
        started_at=datetime.fromtimestamp(WALL + started, timezone.utc),
    )


def known_clock() -> ServerClock:
    """A bound on the server's clock (about 70 ms), learnt from another job."""
    clock = ServerClock()
    first = Observation(1.0, BatchState.RUNNING, 20, 1000)
    assert clock.learn(0.0, first, Observation(5.0, BatchState.RUNNING, 100, 1000))
    return clock


def twenty_a_second() -> RateBook:
    """A book that saw three jobs run at 19.9 to 20.1 items a second."""
    book = RateBook()
    for n in range(3):
        book.learn(f"other{n}", CASHBACK, (19.9, 20.1), 0.0)
    return book


def first_look(
    *, server_clock: ServerClock, rates: RateBook | None, not_running_at: float | None = None
) -> tuple[Entry, float]:
    """A job of 300 items at 20 a second since 8.0, seen at 10.0: it ends at 23.0.

    :return: the entry and the time its next poll is due.
    """
    entry = Entry("k", CASHBACK, None, not_running_at)
    delay = entry.delay_after(
        running(40, started=8.0),
        POLICY,
        now=10.0,
        wall_now=WALL + 10.0,
        retry_after=None,
        rng=random.Random(0),
        server_clock=server_clock,
        rates=rates,
    )
    return entry, 10.0 + delay


class TestReaim:
    def test_an_unchecked_claim_puts_the_poll_early_and_marks_it(self) -> None:
        entry, due = first_look(server_clock=ServerClock(), rates=RateBook())
        assert entry.provisional
        assert due <= 10.0 + POLICY.initial_delay  # the backoff, or sooner

    def test_nothing_learnt_since_the_poll_goes_as_planned(self) -> None:
        clock = ServerClock()
        entry, _ = first_look(server_clock=clock, rates=RateBook())
        assert (
            entry.reaim(POLICY, server_clock=clock, rates=RateBook(), rng=random.Random(0)) is None
        )
        assert not entry.provisional

    def test_once_the_servers_clock_is_known_the_end_is_aimed_at(self) -> None:
        entry, due = first_look(server_clock=ServerClock(), rates=None)
        alone = entry.reaim(POLICY, server_clock=known_clock(), rates=None, rng=random.Random(0))
        assert alone is not None
        assert due < alone <= 23.0  # the claim, made younger, aims early: never late

    def test_with_the_shared_rate_it_is_aimed_just_past_the_end(self) -> None:
        entry, _ = first_look(server_clock=ServerClock(), rates=None)
        later = entry.reaim(
            POLICY, server_clock=known_clock(), rates=twenty_a_second(), rng=random.Random(0)
        )
        assert later is not None
        assert 23.0 <= later <= 23.0 + 2 * POLICY.min_delay + _ETA_PAD
        # once only: the poll it puts off is sent when it falls due again
        again = entry.reaim(
            POLICY, server_clock=known_clock(), rates=twenty_a_second(), rng=random.Random(0)
        )
        assert again is None

    def test_a_job_of_ours_is_never_provisional(self) -> None:
        # created at 7.9: its claim is checked against that, not put off later
        entry, _ = first_look(server_clock=ServerClock(), rates=RateBook(), not_running_at=7.9)
        assert not entry.provisional

    def test_the_shared_rate_aims_a_first_look_when_the_clock_is_known(self) -> None:
        alone_entry, alone = first_look(server_clock=known_clock(), rates=None)
        entry, shared = first_look(server_clock=known_clock(), rates=twenty_a_second())
        assert not entry.provisional
        assert not alone_entry.provisional
        assert alone < 23.0 <= shared <= 23.0 + 2 * POLICY.min_delay + _ETA_PAD

    def test_a_poll_aimed_early_is_put_later_once_the_shared_rate_is_sharp(self) -> None:
        # seen at 10.0 with a known server clock but no shared rate yet: aimed
        # early (the end is known to within about 0.7 s), due well before 23.0
        book = RateBook()
        entry, due = first_look(server_clock=known_clock(), rates=book)
        assert entry.aimed
        assert due < 22.5
        # nothing learnt since: as planned
        assert (
            entry.reaim(POLICY, server_clock=known_clock(), rates=book, rng=random.Random(0))
            is None
        )
        # three other jobs show the rate before it falls due
        entry.aimed = True
        for n in range(3):
            book.learn(f"other{n}", CASHBACK, (19.9, 20.1), 12.0)
        later = entry.reaim(POLICY, server_clock=known_clock(), rates=book, rng=random.Random(0))
        assert later is not None
        assert due < 23.0 <= later <= 23.0 + 2 * POLICY.min_delay + _ETA_PAD
        assert entry.aimed  # and again when it falls due, should the book learn more

    def test_a_retry_after_a_failure_is_never_put_off(self) -> None:
        book = twenty_a_second()
        entry, _ = first_look(server_clock=known_clock(), rates=book)
        entry.delay_after_failure(POLICY, retry_after=None, rng=random.Random(0))
        book.learn("another", CASHBACK, (19.95, 20.05), 12.0)
        assert (
            entry.reaim(POLICY, server_clock=known_clock(), rates=book, rng=random.Random(0))
            is None
        )

    def test_a_job_not_running_is_never_put_off(self) -> None:
        entry = Entry("k", CASHBACK, None)
        book = twenty_a_second()
        entry.delay_after(
            attrs.evolve(running(0, started=8.0), state=BatchState.QUEUED, state_word="Queued"),
            POLICY,
            now=10.0,
            wall_now=WALL + 10.0,
            retry_after=None,
            rng=random.Random(0),
            server_clock=known_clock(),
            rates=book,
        )
        assert not entry.aimed
        book.learn("another", CASHBACK, (19.95, 20.05), 12.0)
        assert (
            entry.reaim(POLICY, server_clock=known_clock(), rates=book, rng=random.Random(0))
            is None
        )


class TestReaimInThePoller:
    @staticmethod
    def poller(clock: ManualClock) -> Poller:
        return Poller(ScriptedFetch({}), POLICY, clock=clock, wall_clock=lambda: WALL + clock.now)

    async def test_a_poll_asked_for_soon_is_not_put_off(self) -> None:
        clock = ManualClock(10.0)
        poller = self.poller(clock)
        poller._server_clock = known_clock()
        poller._rates = twenty_a_second()
        entry = poller.subscribe("k", CASHBACK, None, Recorder())
        poller.feed("k", running(40, started=8.0))
        assert entry.aimed
        poller.poll_soon("k")  # e.g. right after a stop
        assert not entry.aimed
        assert not entry.provisional
        assert not poller._reaimed(entry, entry.due)
        await poller.aclose()

    async def test_a_lingering_job_whose_poll_moves_past_the_linger_is_let_go(self) -> None:
        # its last waiter left with its poll (aimed early, at about 22.2) under
        # LINGER away; the shared rate puts it at the end, 23.1, past LINGER:
        # none is sent, as if it had been that far off when the waiter left
        clock = ManualClock(10.0)
        poller = self.poller(clock)
        poller._server_clock = known_clock()
        waiter = Recorder()
        entry = poller.subscribe("k", CASHBACK, None, waiter)
        poller.feed("k", running(40, started=8.0))
        clock.advance(entry.due - clock.now - 0.9 * LINGER)
        poller.unsubscribe(entry, waiter)
        assert poller.holds("k")  # lingering for its next poll
        for n in range(3):
            poller._rates.learn(f"other{n}", CASHBACK, (19.9, 20.1), clock.now)
        assert poller._reaimed(entry, entry.due)
        assert not poller.holds("k")
        assert entry.due >= 23.0  # a later wait picks it up there
        await poller.aclose()


def job_running(n: int, processed: int, *, started: float = 8.0) -> BatchStatus:
    """Job ``k<n>`` of 300 items at 20 a second since ``started`` (ends at 23.0)."""
    return attrs.evolve(running(processed, started=started), job_id=f"k{n}")


class TestScouts:
    """A burst of first looks: a few second looks go, the rest wait for what they teach."""

    JOBS = 3 * SCOUTS

    @staticmethod
    def burst(clock: ManualClock, script: dict[str, Sequence[Reply]]) -> tuple[Poller, list[Entry]]:
        # every job seen once at 10.0, 40 items done: with neither the
        # server's clock nor a shared rate known, each one's next poll is
        # provisional, early (its start claim unchecked)
        fetch = ScriptedFetch(script)
        fetch.gate = anyio.Event()  # the polls block until the test lets them reply
        poller = Poller(fetch, POLICY, clock=clock, wall_clock=lambda: WALL + clock.now)
        entries = []
        for n in range(TestScouts.JOBS):
            entries.append(poller.subscribe(f"k{n}", CASHBACK, None, Recorder()))
            poller.feed(f"k{n}", job_running(n, 40))
        assert all(entry.provisional for entry in entries)
        assert max(entry.due for entry in entries) < 20.0
        return poller, entries

    @staticmethod
    def due(
        clock: ManualClock, script: dict[str, Sequence[Reply]]
    ) -> tuple[Poller, list[Entry], ScriptedFetch]:
        """The burst, its second looks then fallen due (at 12.0)."""
        poller, entries = TestScouts.burst(clock, script)
        fetch = poller._fetch
        assert isinstance(fetch, ScriptedFetch)
        clock.advance(2.0)
        poller._wakeup.set()
        return poller, entries, fetch

    async def test_only_a_few_second_looks_go_before_the_rest_can_be_aimed(self) -> None:
        clock = ManualClock(10.0)
        # their second looks, at 12.0, show the rate: 80 items since 8.0
        script: dict[str, Sequence[Reply]] = {
            f"k{n}": [job_running(n, 80)] for n in range(self.JOBS)
        }
        poller, entries, fetch = self.due(clock, script)
        with anyio.fail_after(PATIENCE):
            await until(lambda: len(fetch.calls) >= SCOUTS)
            held = [entry for entry in entries if not entry.in_flight]
            assert len(held) == self.JOBS - SCOUTS
            # the dispatcher went over every due poll before the scouts ran:
            # the others wait, still provisional, for a moment each
            assert all(entry.scheduled and entry.provisional for entry in held)
            assert all(entry.due == clock.now + SCOUT_HOLD for entry in held)
            fetch.gate.set()
            await until(lambda: not any(entry.in_flight for entry in entries))
            assert poller._server_clock.behind_at_most is not None  # what they taught
            clock.advance(SCOUT_HOLD)
            poller._wakeup.set()
            # looked at again, the held polls are aimed at the jobs' end
            await until(lambda: all(entry.due > 20.0 for entry in held))
        assert len(fetch.calls) == SCOUTS
        await poller.aclose()

    async def test_a_job_near_its_end_is_not_held(self) -> None:
        clock = ManualClock(10.0)
        script: dict[str, Sequence[Reply]] = {
            f"k{n}": [job_running(n, 80)] for n in range(self.JOBS)
        }
        script["near"] = [attrs.evolve(job_running(0, 300), job_id="near")]
        poller, _, fetch = self.due(clock, script)
        with anyio.fail_after(PATIENCE):
            await until(lambda: len(fetch.calls) >= SCOUTS)
            assert poller._scouts == SCOUTS  # the others are held
            # then a job seen with 290 of 300 done at 20 a second: half a
            # second to go, its next look most likely sees it end
            near = poller.subscribe("near", CASHBACK, None, Recorder())
            poller.feed("near", attrs.evolve(job_running(0, 290, started=-2.5), job_id="near"))
            assert near.provisional
            left = near.seconds_left()
            assert left is not None
            assert left < SCOUT_WORTH
            clock.advance(near.due - clock.now)
            poller._wakeup.set()
            await until(lambda: "near" in fetch.calls)
        assert len(fetch.calls) == SCOUTS + 1
        fetch.gate.set()
        await poller.aclose()

    async def test_second_looks_that_teach_nothing_do_not_hold_the_rest_for_ever(self) -> None:
        clock = ManualClock(10.0)
        # every job is over when looked at again: nothing to learn a rate from
        script: dict[str, Sequence[Reply]] = {
            f"k{n}": [
                attrs.evolve(
                    job_running(n, 300), state=BatchState.COMPLETED, state_word="Completed"
                )
            ]
            for n in range(self.JOBS)
        }
        poller, entries = self.burst(clock, script)
        fetch = poller._fetch
        assert isinstance(fetch, ScriptedFetch)
        clock.advance(2.0)
        fetch.gate.set()

        def moved_on() -> bool:
            # the held polls fall due again each SCOUT_HOLD (of the clock's)
            clock.advance(SCOUT_HOLD)
            poller._wakeup.set()
            return all(entry.finished for entry in entries)

        with anyio.fail_after(PATIENCE):
            await until(moved_on)
        assert sorted(fetch.calls) == sorted(f"k{n}" for n in range(self.JOBS))
        assert fetch.max_in_flight <= SCOUTS
        assert poller._scouts == 0
        await poller.aclose()


class Room:
    """The rate limiter's room as the scheduler sees it: ``free`` less the polls out."""

    def __init__(self, fetch: ScriptedFetch, free: int) -> None:
        self.fetch = fetch
        self.free = free

    def room(self, now: float) -> int | None:
        return self.free - sum(self.fetch.in_flight.values())

    def delay(self, now: float) -> float:
        return 0.0 if self.room(now) else 60.0  # the test wakes the scheduler itself


class TestRoom:
    """When the rate limiter lacks room for every poll due, the likely ends go first."""

    @staticmethod
    def poller(clock: ManualClock, script: dict[str, Sequence[Reply]]) -> tuple[Poller, Room]:
        fetch = ScriptedFetch(script)
        fetch.gate = anyio.Event()  # the polls block until the test lets them reply
        room = Room(fetch, 0)
        poller = Poller(fetch, POLICY, clock=clock, wall_clock=lambda: WALL + clock.now, pace=room)
        return poller, room

    async def test_no_more_polls_go_out_than_the_limiter_has_room_for(self) -> None:
        clock = ManualClock(10.0)
        script: dict[str, Sequence[Reply]] = {f"f{n}": [job_running(n, 80)] for n in range(5)}
        poller, room = self.poller(clock, script)
        entries = [poller.subscribe(f"f{n}", CASHBACK, None, Recorder()) for n in range(5)]
        fetch = room.fetch
        room.free = 2
        clock.advance(POLICY.initial_delay)
        with anyio.fail_after(PATIENCE):
            poller._wakeup.set()
            await until(lambda: len(fetch.calls) >= 2)
            # the rest wait in the scheduler, where a likelier end may overtake
            # them, not in the limiter's queue
            assert sum(entry.in_flight for entry in entries) == 2
            assert len(poller._ready) == 3
            poller._wakeup.set()  # asked again with no more room: nothing more goes
            await until(lambda: poller._wakeup.is_set() is False)
            assert len(fetch.calls) == 2
            room.free = 5
            poller._wakeup.set()
            await until(lambda: len(fetch.calls) == 5)
        assert sorted(fetch.calls) == [f"f{n}" for n in range(5)]
        fetch.gate.set()
        await poller.aclose()

    @staticmethod
    def ending(poller: Poller, clock: ManualClock, *, provisional: bool) -> Entry:
        """Job ``end``, of 300 items at 20 a second, seen at ``clock`` with 290 done:
        its next poll aimed at its end, half a second on."""
        end = poller.subscribe("end", CASHBACK, None, Recorder())
        if not provisional:
            # two looks of its own a second apart: the rate is the job's own
            clock.advance(-1.0)
            poller.feed("end", attrs.evolve(job_running(0, 270, started=-4.5), job_id="end"))
            clock.advance(1.0)
        poller.feed("end", attrs.evolve(job_running(0, 290, started=-4.5), job_id="end"))
        assert end.aimed
        assert end.provisional is provisional
        left = end.seconds_left()
        assert left is not None
        assert left <= 1.0
        return end

    async def first_looks_then_end(
        self, *, provisional: bool
    ) -> tuple[list[str], list[Entry], Entry, Poller, Room]:
        """Four first looks fall due at 9.0 while the limiter has no room; at 10.0
        job ``end`` is seen near its end; once its poll is due, room for one."""
        clock = ManualClock(8.0)
        script: dict[str, Sequence[Reply]] = {f"f{n}": [job_running(n, 80)] for n in range(4)}
        script["end"] = [
            attrs.evolve(
                job_running(0, 300), job_id="end", state=BatchState.COMPLETED, state_word="Done"
            )
        ]
        poller, room = self.poller(clock, script)
        firsts = [poller.subscribe(f"f{n}", CASHBACK, None, Recorder()) for n in range(4)]
        assert all(entry.due == 9.0 for entry in firsts)
        clock.advance(2.0)
        poller._wakeup.set()
        end = self.ending(poller, clock, provisional=provisional)
        assert end.due > 9.0
        clock.advance(max(0.0, end.due - clock.now) + 0.01)
        room.free = 1
        poller._wakeup.set()
        await until(lambda: len(room.fetch.calls) >= 1)
        return room.fetch.calls, firsts, end, poller, room

    async def test_a_poll_aimed_at_an_end_near_goes_before_first_looks_due_earlier(
        self,
    ) -> None:
        with anyio.fail_after(PATIENCE):
            calls, firsts, end, poller, room = await self.first_looks_then_end(provisional=False)
            assert calls == ["end"]  # the first looks due before it wait
            assert not any(entry.in_flight for entry in firsts)
            room.fetch.gate.set()
            await until(lambda: end.finished)
            room.free = 4
            poller._wakeup.set()
            await until(lambda: len(calls) == 5)
        assert calls[0] == "end"
        await poller.aclose()

    async def test_a_provisional_poll_waits_its_turn(self) -> None:
        # aimed from a start it could not check, it is early on purpose: it
        # does not take a first look's room
        with anyio.fail_after(PATIENCE):
            calls, _, end, poller, room = await self.first_looks_then_end(provisional=True)
            assert calls == ["f0"]
            room.fetch.gate.set()
            room.free = 5
            poller._wakeup.set()
            await until(lambda: end.finished)
        assert calls[-1] == "end"
        await poller.aclose()


# -- against the fake ------------------------------------------------------------------

RATE = 100.0  # items a second, every job of the fake
LAG_TARGET = 1.5  # issue 16: the p99 of the lag after a job's end
ATTACHED = PollPolicy(initial_delay=0.05, min_delay=0.25, max_delay=30.0, jitter=0.0)


class SilentBook(RateBook):
    """A book that never tells a shared rate: the session times each job alone."""

    __slots__ = ()

    def shared(self, operation: Operation | None, now: float) -> tuple[float, float] | None:
        return None


def processed(fake: FakeGameball, job_id: str) -> int:
    return fake.jobs[int(job_id)].processed(time.monotonic())


def knows_the_clock(gb: GameballSession) -> Callable[[], bool]:
    """Whether the session has bounded the server's clock (from the jobs it polled)."""
    return lambda: gb._poller._server_clock.behind_at_most is not None


def sharpen(gb: GameballSession) -> None:
    """Hand the session's book three jobs' bounds, 1 % wide around the fake's rate.

    That is what three 4 s jobs show on a quiet machine. A loaded one takes
    replies in later, and their bounds widen by the round trips (still
    holding the rate, as the test below checks): a test of what a sharp book
    saves must not wait on the machine's load to be sharp.
    """
    now = time.monotonic()
    for n in range(MIN_JOBS):
        gb._poller._rates.learn(f"sharp{n}", CASHBACK, (0.995 * RATE, 1.005 * RATE), now)


async def teach(creator: GameballSession, *sessions: GameballSession) -> list[BatchJob]:
    """Three jobs of 4 s, to be awaited by id in each session from their creation on.

    :return: a handle on each in each session.
    """
    jobs = [await creator.create_batch("cashback", cashbacks(400, f"teach{n}-")) for n in range(3)]
    return [gb.job(job.job_id, "cashback") for gb in sessions for job in jobs]


class TestReadTimes:
    async def test_a_read_is_timed_from_when_its_request_went_out(
        self, fake_factory: FakeFactory
    ) -> None:
        # the poll waits 0.3 s for its rate-limiter slot: the fake counts what
        # it replies after that wait, so the read's window starts there, not
        # when the poll began (a window that wide would loosen the job's bounds)
        fake = await fake_factory(processing_rate=RATE)
        async with session(fake) as creator, session(fake, rate_limit=RateLimit()) as gb:
            job = await creator.create_batch("cashback", cashbacks(800, "timed"))
            await until(lambda: processed(fake, job.job_id) >= 1)
            paused_at = time.monotonic()
            gb._open().limiter.pause(0.3)
            handle = gb.job(job.job_id, "cashback")
            async with anyio.create_task_group() as tg:
                tg.start_soon(handle.wait)
                with anyio.fail_after(PATIENCE):
                    await until(lambda: job.job_id in gb._poller._entries)
                    entry = gb._poller._entries[job.job_id]
                    await until(lambda: entry.last is not None)
                tg.cancel_scope.cancel()
        assert entry.last is not None
        assert entry.last.sent is not None
        assert paused_at + 0.3 <= entry.last.sent <= entry.last.at


class TestSharedRate:
    async def test_the_book_learns_a_rate_that_holds_the_servers(
        self, fake_factory: FakeFactory
    ) -> None:
        # Three jobs awaited from their creation on, each seen twice running:
        # their bounds, timed by each read's round trip, all hold the fake's
        # rate and so meet around it, however late a loaded loop takes a
        # reply in (by the reply times alone, such a reply put them apart).
        fake = await fake_factory(processing_rate=RATE)
        async with session(fake) as creator, session(fake, poll=ATTACHED) as gb:
            fetch = gb._poller._fetch
            seen: set[str] = set()

            async def taken_in_late(job_id: str, operation: Operation | None) -> Any:
                # every reply after a job's first waits 0.3 s after the fake
                # counted, as on a loop busy elsewhere: six times the noise
                reply = await fetch(job_id, operation)
                if job_id in seen:
                    await anyio.sleep(0.3)
                seen.add(job_id)
                return reply

            gb._poller._fetch = taken_in_late
            teachers = await teach(creator, gb)
            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    for teacher in teachers:
                        tg.start_soon(teacher.wait)
            book = gb._poller._rates
            learnt = book._books[CASHBACK]
            assert sorted(learnt) == sorted(job.job_id for job in teachers)
            for _, (slowest, fastest) in learnt.values():
                assert slowest <= RATE <= fastest
            shared = book.shared(CASHBACK, time.monotonic())
            assert shared is not None
            assert shared[0] <= RATE <= shared[1]

    async def test_jobs_attached_by_id_cost_fewer_polls(self, fake_factory: FakeFactory) -> None:
        # Each job is first seen 1 s into an 8 s run: from its own look and its
        # startedAt its end is known to within about 0.7 s, too rough to aim
        # at, so it takes a poll aimed early and one at its end. The rate three
        # jobs of the session showed before aims at the end from the first look.
        fake = await fake_factory(processing_rate=RATE)
        async with (
            session(fake) as creator,
            session(fake, poll=ATTACHED) as gb,
            session(fake, poll=ATTACHED) as alone,
        ):
            alone._poller._rates = SilentBook()
            teachers = await teach(creator, gb, alone)
            async with anyio.create_task_group() as tg:
                for teacher in teachers:
                    tg.start_soon(teacher.wait)
                with anyio.fail_after(PATIENCE):
                    await until(knows_the_clock(gb))
                    await until(knows_the_clock(alone))
                    sharpen(gb)
                    jobs = {
                        (name, n): await creator.create_batch(
                            "cashback", cashbacks(800, f"{name}{n}-")
                        )
                        for name in ("shared", "alone")
                        for n in range(2)
                    }
                    await until(
                        lambda: all(processed(fake, j.job_id) >= RATE for j in jobs.values())
                    )
                    async with anyio.create_task_group() as waits:
                        for (name, _), job in jobs.items():
                            waiter = (gb if name == "shared" else alone).job(job.job_id, "cashback")
                            waits.start_soon(waiter.wait)
                tg.cancel_scope.cancel()
        polls = gets_by_job(fake)
        shared = [polls[job.job_id] for (name, _), job in jobs.items() if name == "shared"]
        by_itself = [polls[job.job_id] for (name, _), job in jobs.items() if name == "alone"]
        assert shared == [2, 2]  # one to see it running, one at its end
        assert sum(by_itself) > sum(shared)

    async def test_a_job_seen_before_the_rate_was_known_is_aimed_again(
        self, fake_factory: FakeFactory
    ) -> None:
        # The job is first seen 1 s into a 10 s run, while the session knows
        # no shared rate: its next poll is aimed early, at about 9 s. By then
        # the session knows the rate, and the poll is put at the end.
        fake = await fake_factory(processing_rate=RATE)
        async with (
            session(fake) as creator,
            session(fake, poll=ATTACHED) as gb,
            session(fake, poll=ATTACHED) as alone,
        ):
            # silent until the job's first look: it cannot be aimed by the
            # teachers' rate then, however late a loaded machine takes it
            gb._poller._rates = SilentBook()
            alone._poller._rates = SilentBook()
            teachers = await teach(creator, gb, alone)
            jobs = {
                name: await creator.create_batch("cashback", cashbacks(1000, name))
                for name in ("shared", "alone")
            }
            async with anyio.create_task_group() as tg:
                for teacher in teachers:
                    tg.start_soon(teacher.wait)
                with anyio.fail_after(PATIENCE):
                    await until(
                        lambda: all(processed(fake, j.job_id) >= RATE for j in jobs.values())
                    )
                    async with anyio.create_task_group() as waits:
                        waits.start_soon(gb.job(jobs["shared"].job_id, "cashback").wait)
                        waits.start_soon(alone.job(jobs["alone"].job_id, "cashback").wait)
                        job_id = jobs["shared"].job_id
                        await until(lambda: job_id in gb._poller._entries)
                        entry = gb._poller._entries[job_id]
                        await until(lambda: entry.last is not None)
                        # seen once, with nothing shared known: aimed early
                        assert entry.aimed
                        fake_job = fake.jobs[int(job_id)]
                        assert entry.due < fake_job.started_at + fake_job.total_count / RATE
                        # the book learns before that poll falls due
                        gb._poller._rates = RateBook()
                        sharpen(gb)
                tg.cancel_scope.cancel()
        polls = gets_by_job(fake)
        assert polls[jobs["shared"].job_id] == 2
        assert polls[jobs["alone"].job_id] >= 3  # early, then at the end

    @pytest.mark.parametrize("rate", [RATE / 2, RATE * 2])
    async def test_a_job_at_a_pace_of_its_own_is_not_put_off(
        self, fake_factory: FakeFactory, rate: float
    ) -> None:
        # The session saw three jobs run at 100 items a second; this one runs
        # at 50 or 200. Seen once, a faster one cannot be told from the
        # others: its next poll may be aimed by their rate, but never more
        # than MAX_BET past the earliest end its own look allows.
        fake = await fake_factory(processing_rate=RATE)
        async with session(fake) as creator, session(fake, poll=ATTACHED) as gb:
            teachers = await teach(creator, gb)
            async with anyio.create_task_group() as tg:
                for teacher in teachers:
                    tg.start_soon(teacher.wait)
                with anyio.fail_after(PATIENCE):
                    await until(knows_the_clock(gb))
                    sharpen(gb)
                    job = await creator.create_batch("cashback", cashbacks(int(4 * rate), "odd"))
                    fake_job = fake.jobs[int(job.job_id)]
                    fake_job.processing_rate = rate  # before anyone looked: 4 s of work
                    await until(lambda: processed(fake, job.job_id) >= rate)
                    handle = gb.job(job.job_id, "cashback")
                    tg.start_soon(handle.wait)
                    await until(lambda: gets_by_job(fake)[job.job_id] >= 1)
                    entry = gb._poller._entries[job.job_id]
                    await until(lambda: entry.last is not None)
                    end = fake_job.started_at + fake_job.total_count / rate
                    assert entry.last is not None
                    assert entry.last.state is BatchState.RUNNING
                    assert entry.due <= end + min(MAX_BET, LAG_TARGET)
                    status = await handle.wait()
                tg.cancel_scope.cancel()
        assert status.state is BatchState.COMPLETED
