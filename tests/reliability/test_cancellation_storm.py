"""Cancellation storms: hundreds of waiters and calls cancelled at random (seeded)
moments, sessions closed mid-poll, the closing task itself cancelled, and
``wait(timeout=...)`` running out while the poll sleeps in a retry backoff.

What must hold every time: cancellation propagates as cancellation (never as a
``GameballError``, never swallowed); the survivors finish with the right
outcome; abandoned jobs get no more polls; a closed session sends nothing and
wakes every waiter; no task and no connection outlives ``close()``.

``test_poller.py`` already cancels waiters all at one moment on a quiet
server; here the moments, the kinds of waiter and the server's faults vary.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _support import PATIENCE, FakeFactory, cashbacks, gets_by_job, make_session, until

from gameball_async import (
    AmbiguousSubmissionError,
    BatchJob,
    BatchState,
    BatchStatus,
    GameballError,
    GameballSession,
    PollPolicy,
    PollTimeoutError,
    RateLimit,
    RetryPolicy,
    SessionClosedError,
    Timeout,
    as_completed,
    wait_all,
)
from gameball_async.testing import FakeGameball, Faults, InjectedReply

pytestmark = pytest.mark.anyio

FAST_POLL = PollPolicy(initial_delay=0.05, min_delay=0.02, max_delay=0.3)
FAST_RETRY = RetryPolicy(attempts=6, backoff=0.02, max_backoff=0.1)


def sdk_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("gameball_async")]


def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()


class SkewedClock:
    """The fake's clock: real time plus a jump the test makes when it is ready.

    Jobs stay queued for 1,000 s of it, so however slow the machine none ends
    while waiters are being cancelled; one jump ends them all.
    """

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skew


def session(fake: FakeGameball, **options: Any) -> GameballSession:
    """A session (a context manager too) with this file's poll and retry policies."""
    return make_session(fake, **{"poll": FAST_POLL, "retry": FAST_RETRY, **options})


async def no_task_left(before: set[asyncio.Task[Any]]) -> None:
    """Every task started since ``before`` ends (the fake's handlers take a moment)."""
    await until(lambda: not (asyncio.all_tasks() - before), timeout=5)


def no_unclosed_resources() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught


# -- waiters -------------------------------------------------------------------------

KINDS = ("await", "wait", "wait_timeout", "watch", "as_completed", "wait_all", "scope")


async def run_waiter(kind: str, jobs: list[BatchJob]) -> Any:
    """Wait on ``jobs`` in one of the public ways; return what it saw at the end."""
    if kind == "await":
        return await jobs[0]
    if kind == "wait":
        return await jobs[0].wait(raise_on_failure=False)
    if kind == "wait_timeout":
        return await jobs[0].wait(timeout=10 * PATIENCE)
    if kind == "watch":
        seen: list[BatchStatus] = []
        async for status in jobs[0].watch():
            seen.append(status)
        return seen[-1]
    if kind == "as_completed":
        return [job async for job in as_completed(jobs)]
    if kind == "wait_all":
        return await wait_all(jobs)
    assert kind == "scope"  # cancelled through an anyio cancel scope, not task.cancel()
    return await jobs[0]


class TestWaiterStorm:
    async def test_hundreds_of_waiters_cancelled_at_random_moments(self) -> None:
        rng = random.Random(20240612)
        clock = SkewedClock()
        before = set(asyncio.all_tasks())
        faults = Faults(latency=(0.0, 0.02), unknown_status=0.1)
        async with FakeGameball(
            processing_rate=1000,
            queue_delay=1000.0,
            clock=clock,
            enforce_rate_limit=False,
            faults=faults,
            seed=7,
        ) as fake:
            async with session(fake) as gb:
                jobs = await gb.submit_many(
                    "cashback", cashbacks(100 * 2, "t"), chunk_size=2, max_concurrency=8
                )
                waiters: list[tuple[str, list[BatchJob]]] = []
                for _ in range(400):
                    kind = rng.choice(KINDS)
                    width = rng.randint(2, 3) if kind in ("as_completed", "wait_all") else 1
                    waiters.append((kind, rng.sample(jobs, width)))
                doomed = set(rng.sample(range(len(waiters)), 280))
                scopes = {
                    i: anyio.CancelScope() for i, (kind, _) in enumerate(waiters) if kind == "scope"
                }
                survivors = {
                    j.job_id for i, (_, js) in enumerate(waiters) if i not in doomed for j in js
                }
                abandoned = {j.job_id for j in jobs} - survivors
                assert abandoned
                assert survivors

                async def scoped(i: int, kind: str, js: list[BatchJob]) -> Any:
                    with scopes[i]:
                        return await run_waiter(kind, js)
                    return "scope cancelled"

                tasks = [
                    asyncio.ensure_future(
                        scoped(i, kind, js) if i in scopes else run_waiter(kind, js)
                    )
                    for i, (kind, js) in enumerate(waiters)
                ]

                async def cancel_later(i: int, delay: float) -> None:
                    await anyio.sleep(delay)  # a random moment, not a synchronisation
                    if i in scopes:
                        scopes[i].cancel()
                    else:
                        tasks[i].cancel()

                async with anyio.create_task_group() as tg:
                    for i in doomed:
                        tg.start_soon(cancel_later, i, rng.uniform(0.0, 0.8))
                with anyio.fail_after(PATIENCE):
                    await asyncio.wait([tasks[i] for i in doomed])
                for i in doomed:
                    task = tasks[i]
                    if i in scopes:
                        assert task.result() == "scope cancelled"  # the scope caught it
                    else:
                        assert task.cancelled(), (waiters[i][0], task)
                assert not any(tasks[i].done() for i in range(len(tasks)) if i not in doomed)
                assert gb.stats().jobs_awaited == len(survivors)

                # Every poll started has reached the fake (one request each: the
                # faults here are latency and odd status words, never a retry).
                await until(lambda: fake.counts["status"] >= gb.stats().polls)
                snapshot = gets_by_job(fake)
                await until(lambda: all(gets_by_job(fake)[j] >= snapshot[j] + 2 for j in survivors))
                # an abandoned job keeps at most its one next due poll
                assert all(gets_by_job(fake)[j] <= snapshot[j] + 1 for j in abandoned)
                clock.skew = 2000.0  # every job ends now, on the fake's clock
                with anyio.fail_after(PATIENCE):
                    await asyncio.wait(tasks)
                for i, (kind, js) in enumerate(waiters):
                    if i in doomed:
                        continue
                    outcome = tasks[i].result()
                    if kind in ("as_completed",):
                        assert {j.job_id for j in outcome} == {j.job_id for j in js}
                    elif kind == "wait_all":
                        assert [s.state for s in outcome] == [BatchState.COMPLETED] * len(js)
                    else:
                        assert outcome.state is BatchState.COMPLETED, kind
                assert fake.counts["fault:unknown_status"] > 0  # the odd words did show
                final = gets_by_job(fake)
                assert all(final[j] <= snapshot[j] + 1 for j in abandoned)
                assert fake.counts["stop"] == 0  # cancelling never stops a remote job
            assert not sdk_tasks()
            assert all(fake.job_state(int(j)) == "Completed" for j in abandoned)
        await no_task_left(before)
        no_unclosed_resources()


# -- calls cancelled mid-request, mid-backoff, mid-rate-limit ------------------------------


class TestCallStorm:
    async def test_calls_cancelled_anywhere_leave_no_trace(self) -> None:
        rng = random.Random(99)
        before = set(asyncio.all_tasks())
        faults = Faults(
            http_503=0.25,
            http_429=0.05,
            drop=0.05,
            latency=(0.0, 0.05),
            retry_after=0.05,
            routes={"status", "stop"},
        )
        per_second = 80
        async with FakeGameball(
            enforce_rate_limit=False, queue_delay=1000.0, seed=3, faults=faults
        ) as fake:
            limit = RateLimit(per_second=per_second, per_window=100_000)
            retry = RetryPolicy(attempts=40, backoff=0.05, max_backoff=0.2)
            async with session(fake, rate_limit=limit, retry=retry) as gb:
                jobs = await gb.submit_many("cashback", cashbacks(20, "s"), chunk_size=1)
                fake.faults = Faults(
                    http_503=0.25, http_429=0.05, drop=0.05, latency=(0.0, 0.05), retry_after=0.05
                )  # creations too

                def call(n: int) -> Callable[[], Any]:
                    job = rng.choice(jobs)
                    calls: list[Callable[[], Any]] = [
                        lambda: gb.get_status(job.job_id),
                        job.refresh,
                        lambda: gb.create_batch("cashback", cashbacks(2, f"c{n}-")),
                        lambda: gb.job(job.job_id).refresh(),
                    ]
                    return rng.choice(calls)

                tasks = [asyncio.ensure_future(call(n)()) for n in range(200)]
                doomed = rng.sample(range(len(tasks)), 100)

                hit: set[int] = set()  # cancelled while still running

                async def cancel_later(i: int, delay: float) -> None:
                    await anyio.sleep(delay)  # a random moment, not a synchronisation
                    if tasks[i].cancel():
                        hit.add(i)

                async with anyio.create_task_group() as tg:
                    for i in doomed:
                        tg.start_soon(cancel_later, i, rng.uniform(0.0, 1.5))
                with anyio.fail_after(3 * PATIENCE):
                    await asyncio.wait(tasks)
                assert len(hit) > 30  # most were caught mid-flight
                for i in hit:  # never swallowed, never turned into an error
                    assert tasks[i].cancelled(), tasks[i]
                for task in (t for i, t in enumerate(tasks) if i not in hit):
                    error = task.exception()
                    # a creation that dropped may be ambiguous; nothing else fails
                    assert error is None or isinstance(error, AmbiguousSubmissionError), error
                # No slot of the rate limiter was lost to a cancellation: the
                # next second's worth of calls all go, and nothing is held.
                limiter = gb._open().limiter
                assert limiter.in_flight == 0
                fake.faults = Faults()
                with anyio.fail_after(PATIENCE):
                    async with anyio.create_task_group() as tg:
                        for job in jobs * 2:
                            tg.start_soon(gb.get_status, job.job_id)
                assert limiter.in_flight == 0
                assert fake.counts["rate_limited"] == 0
                # a cancelled creation was never resent either
                assert set(fake.created_bodies.values()) == {1}
            assert not sdk_tasks()
        await no_task_left(before)
        no_unclosed_resources()


# -- sessions closed mid-poll ----------------------------------------------------------


class TestCloseMidPoll:
    async def test_sessions_closed_at_random_moments_while_others_go_on(self) -> None:
        rng = random.Random(4242)
        clock = SkewedClock()
        before = set(asyncio.all_tasks())
        faults = Faults(http_503=0.2, latency=(0.0, 0.05), retry_after=0.05, routes={"status"})
        # Enough attempts that a poll never runs out of them by bad luck (0.2 ** 12):
        # every failure seen below is then the close's doing.
        retry = RetryPolicy(attempts=12, backoff=0.02, max_backoff=0.1)
        async with (
            FakeGameball(
                queue_delay=1000.0, clock=clock, enforce_rate_limit=False, faults=faults, seed=11
            ) as fake,
            AsyncExitStack() as stack,
        ):
            sessions = [
                await stack.enter_async_context(session(fake, retry=retry)) for _ in range(4)
            ]
            jobs: list[list[BatchJob]] = []
            tasks: list[list[asyncio.Task[Any]]] = []

            async def refresher(job: BatchJob) -> None:
                while True:  # until the session closes under it
                    await job.refresh()

            for n, gb in enumerate(sessions):
                mine = await gb.submit_many("cashback", cashbacks(15, f"s{n}-"), chunk_size=1)
                jobs.append(mine)
                mine_tasks = [
                    asyncio.ensure_future(run_waiter(rng.choice(KINDS[:4]), [job]))
                    for job in mine
                    for _ in range(2)
                ]
                mine_tasks += [asyncio.ensure_future(refresher(job)) for job in mine[:5]]
                stack.callback(cancel_all, mine_tasks)  # when the test fails
                tasks.append(mine_tasks)
            closing, survivor = sessions[:3], sessions[3]
            closed_ids = {j.job_id for js in jobs[:3] for j in js}
            survivor_ids = {j.job_id for j in jobs[3]}

            await until(lambda: set(gets_by_job(fake)) >= closed_ids | survivor_ids)
            moments = sorted(rng.uniform(0.0, 0.5) for _ in closing)
            started = time.monotonic()
            for gb, moment in zip(closing, moments, strict=True):
                await anyio.sleep(max(0.0, started + moment - time.monotonic()))
                with anyio.fail_after(PATIENCE):  # close never waits for a reply
                    await gb.close()
                assert gb.closed
            for mine_tasks in tasks[:3]:
                with anyio.fail_after(PATIENCE):
                    await asyncio.wait(mine_tasks)
                for task in mine_tasks:
                    assert isinstance(task.exception(), SessionClosedError), task
            # Every task of the closed sessions has ended, so none can send again;
            # a request written just before its close may still be on its way to
            # the fake: the survivor's next polls let it land before the snapshot.
            settled = gets_by_job(fake)
            await until(lambda: all(gets_by_job(fake)[j] >= settled[j] + 2 for j in survivor_ids))
            snapshot = gets_by_job(fake)
            await until(lambda: all(gets_by_job(fake)[j] >= snapshot[j] + 3 for j in survivor_ids))
            clock.skew = 2000.0
            with anyio.fail_after(PATIENCE):
                statuses = await wait_all(jobs[3])
            assert [s.state for s in statuses] == [BatchState.COMPLETED] * len(jobs[3])
            await survivor.close()
            with anyio.fail_after(PATIENCE):
                await asyncio.wait(tasks[3])
            for task in tasks[3]:
                error = task.exception()
                # waiters finished; refreshers were stopped by the close
                assert error is None or isinstance(error, SessionClosedError), error
            final = gets_by_job(fake)
            assert {j: final[j] for j in closed_ids} == {j: snapshot[j] for j in closed_ids}
            assert fake.counts["stop"] == 0
            assert not sdk_tasks()
        await no_task_left(before)
        no_unclosed_resources()

    @pytest.mark.parametrize("times", [1, 3])
    async def test_cancelling_the_closing_task_still_closes(self, times: int) -> None:
        before = set(asyncio.all_tasks())
        async with FakeGameball(queue_delay=1000.0, enforce_rate_limit=False) as fake:
            gb = session(fake)
            await gb.__aenter__()
            jobs = await gb.submit_many("cashback", cashbacks(10, "x"), chunk_size=1)
            # one poll stuck on the server, so closing has something to wait for
            fake.inject("status", InjectedReply(action="slow", delay=60))
            waiters = [asyncio.ensure_future(job.wait()) for job in jobs]
            await until(lambda: fake.counts["status"] >= len(jobs))
            closer = asyncio.ensure_future(gb.close())
            for _ in range(times):
                await anyio.lowlevel.checkpoint()  # close() has started (and goes on)
                closer.cancel()
            with anyio.fail_after(PATIENCE):
                await asyncio.wait([closer])
            assert closer.cancelled()  # the caller's cancellation is not lost
            assert gb.closed
            # ...but the closing was finished all the same: every waiter is woken
            with anyio.fail_after(PATIENCE):
                await asyncio.wait(waiters)
            for waiter in waiters:
                assert isinstance(waiter.exception(), SessionClosedError)
            # the close goes on in the background (the caller's cancellation took
            # effect at once); close() again waits for it to end
            with anyio.fail_after(PATIENCE):
                await gb.close()
            assert not sdk_tasks()
        await no_task_left(before)
        no_unclosed_resources()  # the owned aiohttp session was closed


# -- wait(timeout=...) expiring during a retry backoff -------------------------------------


class _Retrying(logging.Handler):
    """Sets an event when the transport logs that it sleeps before a retry."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("retrying GET"):
            self.event.set()


@pytest.fixture
def retrying(caplog: pytest.LogCaptureFixture) -> Iterable[_Retrying]:
    caplog.set_level(logging.DEBUG, logger="gameball_async")
    handler = _Retrying()
    logger = logging.getLogger("gameball_async")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


class TestTimeoutDuringBackoff:
    @pytest.mark.parametrize("stall", ["503 Retry-After 2", "reply 60 s late"])
    async def test_wait_times_out_mid_backoff_and_waiting_again_completes(self, stall: str) -> None:
        # A poll is one request: a 503's Retry-After puts the job's next poll
        # off (the scheduler waits, no worker sleeps), and a stalled reply
        # holds the job's poll for at most one request timeout.
        before = set(asyncio.all_tasks())
        async with FakeGameball(queue_delay=0.0, enforce_rate_limit=False) as fake:
            async with session(
                fake,
                retry=RetryPolicy(attempts=3, backoff=0.01, max_retry_after=120),
                timeout=Timeout(total=2.0),
            ) as gb:
                job = await gb.create_batch("cashback", cashbacks(5, "b"))
                if stall.startswith("503"):
                    fake.inject("status", InjectedReply(status=503, headers={"Retry-After": "2"}))
                else:
                    fake.inject("status", InjectedReply(action="slow", delay=60))
                # A first waiter gets the job's one poll failed or stalled...
                first = asyncio.ensure_future(job.wait())
                with anyio.fail_after(PATIENCE):
                    await until(lambda: fake.counts["status"] == 1)
                    if stall.startswith("503"):
                        await until(lambda: gb.stats().polls_failed == 1)
                # ...and a second one, sharing that poll, runs out of time meanwhile.
                started = time.monotonic()
                with pytest.raises(PollTimeoutError) as info:
                    await job.wait(timeout=0.3)
                assert time.monotonic() - started >= 0.3
                assert isinstance(info.value, TimeoutError)
                # no poll has come back yet: only what the creation told
                assert info.value.last_status is not None
                assert info.value.last_status.state is BatchState.SUBMITTED
                assert fake.counts["status"] == 1  # the next poll has not gone out
                # The first waiter is cancelled (cancellation, not a timeout)...
                first.cancel()
                with anyio.fail_after(PATIENCE):
                    await asyncio.wait([first])
                assert first.cancelled()
                assert gb.stats().jobs_awaited == 0
                # ...and waiting again resumes polling and completes.
                with anyio.fail_after(PATIENCE):
                    status = await job.wait(timeout=PATIENCE)
                assert status.state is BatchState.COMPLETED
                assert len(status.succeeded) == 5
                assert fake.counts["status"] == 2
                with anyio.fail_after(PATIENCE):  # close does not wait out the stall
                    await gb.close()
            assert not sdk_tasks()
        await no_task_left(before)
        no_unclosed_resources()

    async def test_an_outer_cancellation_is_not_a_poll_timeout(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(queue_delay=1000.0)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(1, "o"))
            with anyio.move_on_after(0.2) as scope:
                await job.wait(timeout=PATIENCE)
            assert scope.cancelled_caught  # the scope's cancellation, not PollTimeoutError
            task = asyncio.ensure_future(job.wait(timeout=PATIENCE))
            await until(lambda: gb.stats().jobs_awaited == 1)
            task.cancel()
            with anyio.fail_after(PATIENCE):
                await asyncio.wait([task])
            assert task.cancelled()
            with pytest.raises(PollTimeoutError):
                await job.wait(timeout=0.05)
            assert not isinstance(PollTimeoutError("x"), asyncio.CancelledError)
            assert issubclass(PollTimeoutError, GameballError)
