"""Tests of the shared poll scheduler (``_poller.py``): unit tests with a scripted
fetch function, then its behaviour behind a session against ``FakeGameball``."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _support import (
    FAST_POLL,
    PATIENCE,
    FakeFactory,
    ManualClock,
    Recorder,
    Reply,
    ScriptedFetch,
    cashbacks,
    gets_by_job,
    make_session,
    make_status,
    session,
    until,
)

from gameball_async import (
    BatchJob,
    BatchState,
    BatchStatus,
    GameballError,
    GameballSession,
    NotFoundError,
    Operation,
    PollPolicy,
    RateLimit,
    SessionClosedError,
    as_completed,
    wait_all,
)
from gameball_async._entry import Entry
from gameball_async._poller import Poller

pytestmark = pytest.mark.anyio

SCHEDULER_NAME = "gameball_async poller"


def scheduler_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == SCHEDULER_NAME]


# -- unit tests: a Poller with a scripted fetch ------------------------------


def finished(entry: Entry) -> Callable[[], bool]:
    return lambda: entry.finished


UNIT_POLL = PollPolicy(initial_delay=0.01, min_delay=0.005, max_delay=0.05)


class TestPollerUnit:
    async def test_polls_until_terminal_then_the_task_ends(self) -> None:
        fetch = ScriptedFetch(
            {
                "1": [
                    make_status("1", BatchState.QUEUED),
                    make_status("1", BatchState.RUNNING, 4),
                    make_status("1", BatchState.RUNNING, 4),  # no change: no news
                    make_status("1", BatchState.COMPLETED, 10),
                ]
            }
        )
        poller = Poller(fetch, UNIT_POLL)
        recorder = Recorder()
        entry = poller.subscribe("1", None, None, recorder)
        assert poller.running
        assert poller.awaited_jobs == 1
        await until(lambda: entry.finished)
        assert fetch.calls == ["1"] * 4
        assert poller.polls_sent == 4
        assert recorder.states == [BatchState.QUEUED, BatchState.RUNNING, BatchState.COMPLETED]
        assert poller.awaited_jobs == 0
        await until(lambda: not poller.running)
        assert scheduler_tasks() == []
        await poller.aclose()

    async def test_subscribers_of_one_job_share_one_entry(self) -> None:
        replies = [make_status("7", BatchState.RUNNING, n) for n in range(5)]
        fetch = ScriptedFetch({"7": [*replies, make_status("7", BatchState.COMPLETED, 10)]})
        poller = Poller(fetch, UNIT_POLL)
        recorders = [Recorder() for _ in range(5)]
        entries = {id(poller.subscribe("7", None, None, r)) for r in recorders}
        assert len(entries) == 1
        assert poller.awaited_jobs == 1
        await until(lambda: not poller.running)
        assert fetch.calls == ["7"] * 6
        assert fetch.max_in_flight_per_job == 1
        for recorder in recorders:
            assert recorder.states[-1] is BatchState.COMPLETED
        await poller.aclose()

    async def test_an_error_ends_only_its_own_job(self) -> None:
        missing = NotFoundError("no such job", http_status=404)
        fetch = ScriptedFetch(
            {
                "bad": [missing],
                "good": [
                    make_status("good", BatchState.RUNNING, 1),
                    make_status("good", BatchState.RUNNING, 5),
                    make_status("good", BatchState.COMPLETED, 10),
                ],
            }
        )
        poller = Poller(fetch, UNIT_POLL)
        bad, good = Recorder(), Recorder()
        bad_entry = poller.subscribe("bad", None, None, bad)
        good_entry = poller.subscribe("good", None, None, good)
        await until(lambda: bad_entry.finished and good_entry.finished)
        assert bad_entry.error is missing
        assert bad.seen == [(None, missing)]
        assert good_entry.error is None
        assert good.states[-1] is BatchState.COMPLETED
        assert fetch.calls.count("bad") == 1  # no poll after the error
        await poller.aclose()

    async def test_last_unsubscribe_takes_the_job_off_the_schedule(self) -> None:
        fetch = ScriptedFetch({"x": [make_status("x", BatchState.RUNNING, 1)]})
        poller = Poller(fetch, UNIT_POLL)
        first, second = Recorder(), Recorder()
        entry = poller.subscribe("x", None, None, first)
        poller.subscribe("x", None, None, second)
        await until(lambda: len(fetch.calls) >= 2)
        poller.unsubscribe(entry, first)
        assert poller.awaited_jobs == 1  # one subscriber left: still polled
        calls = len(fetch.calls)
        await until(lambda: len(fetch.calls) > calls)
        poller.unsubscribe(entry, second)
        assert poller.awaited_jobs == 0
        # The scheduler task ends, so nothing can poll the job any more.
        await until(lambda: not poller.running)
        calls = len(fetch.calls)
        assert fetch.in_flight["x"] == 0
        assert len(fetch.calls) == calls
        await poller.aclose()

    async def test_polls_in_flight_are_bounded(self) -> None:
        jobs = [str(n) for n in range(10)]
        fetch = ScriptedFetch({j: [make_status(j, BatchState.COMPLETED, 10)] for j in jobs})
        fetch.gate = anyio.Event()  # every poll blocks until released
        poller = Poller(fetch, UNIT_POLL, max_in_flight=3)
        entries = [poller.subscribe(j, None, None, Recorder()) for j in jobs]
        await until(lambda: sum(fetch.in_flight.values()) == 3)
        # More checkpoints do not let a fourth one through.
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        assert sum(fetch.in_flight.values()) == 3
        fetch.gate.set()
        await until(lambda: all(e.finished for e in entries))
        assert fetch.max_in_flight == 3
        assert sorted(fetch.calls) == sorted(jobs)
        await poller.aclose()

    async def test_a_burst_of_new_jobs_does_not_starve_an_old_one(self) -> None:
        clock = ManualClock(100.0)
        new = [f"new{n}" for n in range(200)]
        fetch = ScriptedFetch(
            {j: [make_status(j, BatchState.COMPLETED, 10)] for j in ["old", *new]}
        )
        policy = PollPolicy(initial_delay=1.0, jitter=0.0, min_delay=0.1, max_delay=5.0)
        poller = Poller(fetch, policy, max_in_flight=1, clock=clock)
        old = poller.subscribe("old", None, None, Recorder())
        clock.now += 0.5  # the old job falls due at 101.0, the burst at 101.5
        entries = [poller.subscribe(j, None, None, Recorder()) for j in new]
        clock.now += 10.0  # all of them are due: one poll at a time, in due order
        await until(lambda: old.finished and all(e.finished for e in entries))
        assert fetch.calls[0] == "old"
        assert fetch.calls[1:] == new
        await poller.aclose()

    async def test_first_poll_is_jittered_and_retry_after_is_honoured(self) -> None:
        clock = ManualClock(100.0)
        policy = PollPolicy(initial_delay=0.05, min_delay=0.01, max_delay=1.0, jitter=0.5)
        fetch = ScriptedFetch({"9": [(make_status("9", BatchState.RUNNING, 1), 5.0)]})
        poller = Poller(fetch, policy, clock=clock)
        entry = poller.subscribe("9", None, None, Recorder())
        assert 100.0 + 0.05 * 0.5 <= entry.due <= 100.05
        assert fetch.calls == []  # not due yet on this clock
        clock.now = 101.0
        await until(lambda: entry.status is not None)
        # Retry-After (5 s) wins over the policy's max_delay (1 s).
        assert entry.due == pytest.approx(106.0)
        # poll_soon brings it back to the policy's floor.
        poller.poll_soon("9")
        assert entry.due == pytest.approx(101.0 + policy.min_delay)
        await poller.aclose()

    async def test_progress_aims_the_next_poll_at_the_estimated_end(self) -> None:
        clock = ManualClock(0.0)
        policy = PollPolicy(
            initial_delay=1.0, multiplier=1.6, min_delay=0.1, max_delay=60.0, jitter=0.0
        )
        fetch = ScriptedFetch({"5": [make_status("5", BatchState.RUNNING)]})
        fetch.gate = anyio.Event()  # the scheduler's own polls never return
        poller = Poller(fetch, policy, clock=clock)
        entry = poller.subscribe("5", None, None, Recorder())
        clock.now = 10.0
        poller.feed("5", make_status("5", BatchState.RUNNING, 100, 1000))
        assert entry.due == pytest.approx(11.0)  # no rate yet: initial delay
        clock.now = 11.0
        poller.feed("5", make_status("5", BatchState.RUNNING, 200, 1000))
        # 100 items/s with 800 to go: about 8 s, neither the backoff nor the cap.
        assert 11.0 + 6.0 <= entry.due <= 11.0 + 10.0
        clock.now = 20.0
        poller.feed("5", make_status("5", BatchState.RUNNING, 200, 1000))
        # No progress: back to exponential backoff.
        assert entry.due == pytest.approx(20.0 + 1.0 * 1.6)
        clock.now = 21.0
        poller.feed("5", make_status("5", BatchState.COMPLETED, 1000, 1000))
        assert entry.finished
        assert poller.awaited_jobs == 0
        await poller.aclose()

    async def test_close_wakes_subscribers_and_refuses_new_ones(self) -> None:
        fetch = ScriptedFetch({j: [make_status(j, BatchState.RUNNING, 1)] for j in ("a", "b")})
        fetch.gate = anyio.Event()
        poller = Poller(fetch, UNIT_POLL)
        recorders = [Recorder(), Recorder()]
        entries = [
            poller.subscribe(j, None, None, r) for j, r in zip(("a", "b"), recorders, strict=True)
        ]
        await until(lambda: len(fetch.calls) == 2)
        await poller.aclose()
        assert not poller.running
        assert scheduler_tasks() == []
        for entry, recorder in zip(entries, recorders, strict=True):
            assert isinstance(entry.error, SessionClosedError)
            assert isinstance(recorder.seen[-1][1], SessionClosedError)
        assert sum(fetch.in_flight.values()) == 0  # the blocked polls were cancelled
        with pytest.raises(SessionClosedError):
            poller.subscribe("c", None, None, Recorder())
        await poller.aclose()  # idempotent

    async def test_sequential_subscriptions_after_idle_are_served(self) -> None:
        # Regression: a job subscribed while the task was winding down was never polled.
        script: dict[str, Sequence[Reply]] = {
            str(n): [make_status(str(n), BatchState.COMPLETED)] for n in range(30)
        }
        fetch = ScriptedFetch(script)
        poller = Poller(fetch, UNIT_POLL)
        for n in range(30):
            entry = poller.subscribe(str(n), None, None, Recorder())
            await until(finished(entry), timeout=5.0)
            await anyio.lowlevel.checkpoint()
        assert len(fetch.calls) == 30
        await poller.aclose()


# -- behind a session, against the fake -----------------------------------------


class ProbeSession(GameballSession):
    """A session that watches its scheduler from inside every status poll."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.awaited_at_poll: list[int] = []
        self.max_scheduler_tasks = 0
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight_per_job = 0

    async def _poll_once(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        self.awaited_at_poll.append(self._poller.awaited_jobs)
        self.max_scheduler_tasks = max(self.max_scheduler_tasks, len(scheduler_tasks()))
        self.in_flight[job_id] += 1
        self.max_in_flight_per_job = max(self.max_in_flight_per_job, self.in_flight[job_id])
        try:
            return await super()._poll_once(job_id, operation)
        finally:
            self.in_flight[job_id] -= 1


class TestSharedPolls:
    async def test_waiters_on_one_job_share_one_stream_of_polls(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=100, queue_delay=0.05)
        async with session(fake, ProbeSession) as gb:
            solo = await gb.create_batch("cashback", cashbacks(80, "s"))
            with anyio.fail_after(PATIENCE):
                await solo
        solo_polls = gets_by_job(fake)[solo.job_id]

        async with session(fake, ProbeSession) as gb:
            job = await gb.create_batch("cashback", cashbacks(80, "m"))
            statuses: list[BatchStatus] = []
            watched: list[BatchStatus] = []

            async def waiter(handle: BatchJob) -> None:
                statuses.append(await handle)

            async def watcher() -> None:
                watched.extend([s async for s in job.watch()])

            async def collector() -> None:
                statuses.extend(await wait_all([job, gb.job(job.job_id)]))

            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    for _ in range(5):
                        tg.start_soon(waiter, job)
                    tg.start_soon(waiter, gb.job(job.job_id))
                    tg.start_soon(waiter, gb.job(int(job.job_id), "cashback"))
                    tg.start_soon(watcher)
                    tg.start_soon(collector)
            max_in_flight = gb.max_in_flight_per_job

        assert len(statuses) == 9
        assert {s.state for s in statuses} == {BatchState.COMPLETED}
        assert watched[-1].state is BatchState.COMPLETED
        gets = [r for r in fake.requests if r.route == "status" and r.path.endswith(job.job_id)]
        # Never two polls of the job at once, and never two close together.
        assert max_in_flight == 1
        arrivals = [r.arrived_at for r in gets]
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert min(gaps, default=1.0) >= FAST_POLL.min_delay - 0.005
        # Nine waiters cost about what one costs (jitter aside), not nine times it.
        assert len(gets) <= 2 * solo_polls + 2

    @pytest.mark.scale
    async def test_two_thousand_jobs_one_scheduler_within_the_rate_limit(
        self, fake_factory: FakeFactory
    ) -> None:
        count = 2000
        per_second = 500
        # Client and fake share one thread: a stalled loop delays arrivals, then
        # lets them through together. The margin (seconds added to each window)
        # covers such stalls on a busy CI machine.
        limit = RateLimit(per_second=per_second, per_window=100_000, window=30.0, margin=0.5)
        fake = await fake_factory(
            processing_rate=10_000,
            queue_delay=0.05,
            enforce_rate_limit=True,
            rate_per_second=per_second,
            rate_per_window=100_000,
            rate_window=30.0,
        )
        poll = PollPolicy(initial_delay=0.2, min_delay=0.05, max_delay=1.0)
        async with session(fake, ProbeSession, poll=poll, rate_limit=limit) as gb:
            with anyio.fail_after(60):
                jobs = await gb.submit_many(
                    "cashback", cashbacks(count), chunk_size=1, max_concurrency=16
                )
                assert len(jobs) == count
                finished = [job async for job in as_completed(jobs)]
                await until(lambda: not gb._poller.running)
            assert gb.stats().jobs_awaited == 0
            awaited_at_poll = gb.awaited_at_poll
            max_scheduler_tasks = gb.max_scheduler_tasks
            polls = gb.stats().polls

        assert len(finished) == count
        assert len({job.job_id for job in finished}) == count
        assert all(job.done() and job.status is not None for job in finished)
        assert {job.status.state for job in finished if job.status} == {BatchState.COMPLETED}
        # All 2,000 were awaited at once (the first poll saw them all), by one task.
        assert awaited_at_poll[0] == count
        assert max_scheduler_tasks == 1
        assert polls >= count
        assert fake.counts["rate_limited"] == 0
        assert fake.max_requests_in(1.0) <= per_second
        print(f"\n2,000 jobs: {polls} polls ({polls / count:.2f} per job)")

    async def test_scheduler_starts_lazily_ends_when_idle_and_restarts(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=1000, queue_delay=0.02)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(5))
            assert not gb._poller.running
            assert scheduler_tasks() == []
            with anyio.fail_after(PATIENCE):
                waiting = asyncio.ensure_future(job.wait())
                await until(lambda: gb._poller.running)
                assert len(scheduler_tasks()) == 1
                await waiting
                await until(lambda: not gb._poller.running)
            assert scheduler_tasks() == []

            again = await gb.create_batch("cashback", cashbacks(5, "u"))
            with anyio.fail_after(PATIENCE):
                status = await again
            assert status.state is BatchState.COMPLETED
            await until(lambda: not gb._poller.running)
        assert scheduler_tasks() == []


# Short first polls, but a cap of 1 s: then progress, not the cap, paces the polls.
DETECTION_POLL = PollPolicy(initial_delay=0.05, min_delay=0.02, max_delay=1.0)


class TestDetection:
    async def test_a_steady_job_is_seen_terminal_within_one_poll_interval(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=400, queue_delay=0.05)
        async with session(fake, poll=DETECTION_POLL) as gb:
            job = await gb.create_batch("cashback", cashbacks(1000))
            with anyio.fail_after(PATIENCE):
                status = await job
            returned = time.monotonic()
        fake_job = fake.jobs[int(job.job_id)]
        ended = fake_job.started_at + fake_job.total_count / fake_job.processing_rate
        polls = gets_by_job(fake)[job.job_id]

        assert status.state is BatchState.COMPLETED
        lag = returned - ended
        print(f"\ndetection lag {lag * 1000:.0f} ms after {polls} polls")
        assert 0.0 <= lag <= DETECTION_POLL.max_delay
        # About 2.5 s of work: polling every initial_delay would take ~50 polls,
        # and the max_delay cap alone needs 3.
        assert polls <= 8


class TestCancellationAndClose:
    async def test_random_cancellations_leave_no_polls_for_abandoned_jobs(
        self, fake_factory: FakeFactory
    ) -> None:
        rng = random.Random(20240611)
        # The fake's jobs stay queued for 1,000 s of its clock, which the test
        # moves forward once it has seen enough: however slow the machine, no
        # job ends while waiters are being cancelled.
        skew = [0.0]

        def clock() -> float:
            return time.monotonic() + skew[0]

        fake = await fake_factory(processing_rate=1000, queue_delay=1000.0, clock=clock)
        async with session(fake) as gb:
            jobs = await gb.submit_many(
                "cashback", cashbacks(200 * 4), chunk_size=4, max_concurrency=8
            )
            waiters: list[tuple[BatchJob, anyio.CancelScope]] = []
            for job in jobs:
                waiters.extend((job, anyio.CancelScope()) for _ in range(rng.randint(1, 2)))
            doomed = [w for w in waiters if rng.random() < 0.5]
            rng.shuffle(doomed)
            doomed_scopes = {id(scope) for _, scope in doomed}
            abandoned = {job.job_id for job in jobs} - {
                job.job_id for job, scope in waiters if id(scope) not in doomed_scopes
            }
            survivors = {job.job_id for job in jobs} - abandoned
            ended: list[tuple[BatchJob, anyio.CancelScope, Any]] = []

            async def waiter(job: BatchJob, scope: anyio.CancelScope) -> None:
                outcome: Any = None
                with scope:
                    outcome = await job
                ended.append((job, scope, outcome))

            def doomed_ended() -> bool:
                return sum(id(scope) in doomed_scopes for _, scope, _ in ended) == len(doomed)

            def survivors_polled_twice_more() -> bool:
                now = gets_by_job(fake)
                return all(now[j] >= snapshot[j] + 2 for j in survivors)

            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    for job, scope in waiters:
                        tg.start_soon(waiter, job, scope)
                    await until(lambda: gb.stats().jobs_awaited == len(jobs))
                    for _, scope in doomed:
                        scope.cancel()
                        await anyio.lowlevel.checkpoint()
                    await until(doomed_ended)
                    assert gb.stats().jobs_awaited == len(survivors)
                    # Every poll ever started has reached the fake: none of the
                    # abandoned jobs' polls is still on its way.
                    await until(lambda: fake.counts["status"] >= gb.stats().polls)
                    snapshot = gets_by_job(fake)
                    # Meanwhile the scheduler goes on polling the others.
                    await until(survivors_polled_twice_more)
                    assert {fake.job_state(int(j)) for j in abandoned} == {"Queued"}
                    skew[0] = 2000.0  # every job ends now, on the fake's clock
            await until(lambda: not gb._poller.running)

        assert abandoned
        assert survivors
        final = gets_by_job(fake)
        for job_id in abandoned:
            # at most the one poll an entry keeps after its last waiter left
            assert final[job_id] <= snapshot[job_id] + 1, job_id
        outcomes = {id(scope): outcome for _, scope, outcome in ended}
        for _, scope in waiters:
            if id(scope) in doomed_scopes:
                assert scope.cancelled_caught
                assert outcomes[id(scope)] is None
            else:
                assert outcomes[id(scope)].state is BatchState.COMPLETED
        # Abandoned jobs ran to their end on the server: nobody stopped them.
        assert fake.counts["stop"] == 0
        assert all(fake.job_state(int(j)) == "Completed" for j in abandoned)

    async def test_close_during_a_busy_fan_out_is_clean(self, fake_factory: FakeFactory) -> None:
        # Jobs that stay queued for the whole test, however slow the machine.
        fake = await fake_factory(queue_delay=1000.0)
        gb = make_session(fake)
        async with gb:
            jobs = await gb.submit_many(
                "cashback", cashbacks(50 * 10), chunk_size=10, max_concurrency=8
            )
            outcomes: list[BaseException | BatchStatus] = []

            async def waiter(job: BatchJob) -> None:
                try:
                    outcomes.append(await job)
                except GameballError as exc:
                    outcomes.append(exc)

            async def watcher(job: BatchJob) -> None:
                try:
                    async for _ in job.watch():
                        pass
                except GameballError as exc:
                    outcomes.append(exc)

            async def everything() -> None:
                try:
                    await wait_all(jobs)
                except GameballError as exc:
                    outcomes.append(exc)

            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    for job in jobs:
                        for _ in range(3):
                            tg.start_soon(waiter, job)
                        tg.start_soon(watcher, job)
                    tg.start_soon(everything)
                    await until(
                        lambda: (
                            gb.stats().jobs_awaited == len(jobs)
                            and fake.counts["status"] >= 2 * len(jobs)
                        )
                    )
                    poller = gb._poller
                    await gb.close()
            assert not poller.running
            assert gb.closed
        # Everyone was woken, with the same kind of error.
        assert len(outcomes) == 50 * 4 + 1
        assert all(isinstance(o, SessionClosedError) for o in outcomes)
        assert scheduler_tasks() == []
        assert fake.counts["stop"] == 0  # closing never stops remote jobs
        assert {fake.job_state(int(job.job_id)) for job in jobs} == {"Queued"}
        with pytest.raises(SessionClosedError):
            await jobs[0]
        with pytest.raises(SessionClosedError):
            await jobs[0].refresh()
        gc.collect()  # an unclosed aiohttp session would warn (an error) here

    async def test_close_ends_the_scheduler(self, fake_factory: FakeFactory) -> None:
        fake = await fake_factory(processing_rate=1)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(10))
            task = asyncio.ensure_future(job.wait())
            await until(lambda: gb._poller.running)
            poller = gb._poller
        assert not poller.running
        assert scheduler_tasks() == []
        with anyio.fail_after(PATIENCE):
            await asyncio.wait([task])
        assert isinstance(task.exception(), SessionClosedError)
        assert fake.counts["stop"] == 0

    async def test_cancelled_waiter_ends_cancelled(self, fake_factory: FakeFactory) -> None:
        fake = await fake_factory(processing_rate=1)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(10))
            task = asyncio.ensure_future(job.wait())
            await until(lambda: fake.counts["status"] >= 1)
            task.cancel()
            with anyio.fail_after(PATIENCE):
                await asyncio.wait([task])
            assert task.cancelled()
            assert gb.stats().jobs_awaited == 0
            await until(lambda: not gb._poller.running)
            assert fake.counts["stop"] == 0
