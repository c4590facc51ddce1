"""The poll scheduler over a long life (issue 9, points 1-8): it never dies, one
job never hurts another, outages and short waits do not end or starve waits,
stale replies never overwrite news, and every waiter raises with its own frames."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest
from _support import (
    PATIENCE,
    FakeFactory,
    ManualClock,
    Recorder,
    ScriptedFetch,
    cashbacks,
    gets_by_job,
    make_status,
    session,
    until,
)
from aiohttp import web

from gameball_async import (
    BatchJob,
    BatchState,
    BatchStatus,
    GameballSession,
    NotFoundError,
    Operation,
    PollPolicy,
    PollTimeoutError,
    ProtocolError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SessionClosedError,
    Timeout,
    TransportError,
    as_completed,
)
from gameball_async._policy import Observation
from gameball_async._poller import LINGER, Poller
from gameball_async._server_clock import start_hint
from gameball_async.testing import FakeGameball

pytestmark = pytest.mark.anyio

QUICK = PollPolicy(initial_delay=0.01, min_delay=0.005, max_delay=0.05)


class Backend:
    """What a job handle needs from a session, around a bare Poller."""

    def __init__(self, poller: Poller, reads: list[BatchStatus] | None = None) -> None:
        self._scheduler = poller
        self.reads = reads or []
        self.gate = anyio.Event()
        self.gate.set()

    @property
    def _poller(self) -> Poller:
        return self._scheduler

    async def _fetch_status(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        await self.gate.wait()
        return self.reads.pop(0), None

    async def _send_stop(self, job_id: str, operation: Operation | None) -> BatchStatus | None:
        return None


class BrokenStatus(BatchStatus):
    """A status whose handling raises, as a bug in the scheduler's arithmetic would."""

    @property
    def processed_count(self) -> int:
        raise OverflowError("boom")


def broken(job_id: str) -> BrokenStatus:
    return BrokenStatus(
        job_id=job_id, operation=None, state=BatchState.RUNNING, state_word="Running"
    )


class TestTheSchedulerNeverDies:
    async def test_a_job_stuck_for_days_keeps_polling(self) -> None:
        # 1,500 polls without progress overflowed the backoff and killed the task.
        fetch = ScriptedFetch({"q": [make_status("q", BatchState.QUEUED)]})
        poller = Poller(fetch, QUICK)
        entry = poller.subscribe("q", None, None, Recorder())
        entry.steps = 5_000
        await until(lambda: len(fetch.calls) >= 3)
        assert poller.running
        assert entry.error is None
        assert entry.steps >= 5_002
        await poller.aclose()

    async def test_a_reply_that_breaks_the_handling_ends_that_job_only(self) -> None:
        fetch = ScriptedFetch(
            {
                "bad": [broken("bad")],
                "good": [
                    make_status("good", BatchState.RUNNING, 2),
                    make_status("good", BatchState.COMPLETED, 10),
                ],
            }
        )
        poller = Poller(fetch, QUICK)
        bad = poller.subscribe("bad", None, None, Recorder())
        good = poller.subscribe("good", None, None, Recorder())
        await until(lambda: bad.finished and good.finished)
        assert isinstance(bad.error, ProtocolError)
        assert isinstance(bad.error.__cause__, OverflowError)
        assert good.error is None
        assert good.status is not None
        assert good.status.state is BatchState.COMPLETED
        # and the scheduler still serves new jobs
        fetch.script["later"] = [make_status("later", BatchState.COMPLETED)]
        later = poller.subscribe("later", None, None, Recorder())
        await until(lambda: later.finished)
        assert later.error is None
        await poller.aclose()


class TestOutages:
    async def test_transient_failures_keep_a_wait_polling(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        failures: list[Any] = [
            ServerError("down", http_status=503),
            TransportError("connection refused"),
            ProtocolError("a proxy's HTML page"),
            RateLimitError("slow down", http_status=429),
            ServerError("still down", http_status=500),
        ]
        fetch = ScriptedFetch({"j": [*failures, make_status("j", BatchState.COMPLETED, 10)]})
        poller = Poller(fetch, QUICK)
        recorder = Recorder()
        caplog.set_level(logging.INFO, logger="gameball_async")
        entry = poller.subscribe("j", None, None, recorder)
        await until(lambda: entry.finished)
        assert entry.error is None
        assert recorder.states == [BatchState.COMPLETED]
        assert len(fetch.calls) == 6
        assert poller.polls_failed == 5
        records = [r for r in caplog.records if r.name == "gameball_async"]
        warnings = [r for r in records if r.levelno == logging.WARNING]
        infos = [r for r in records if r.levelno == logging.INFO]
        # once per outage, not once per attempt
        assert len(warnings) == 1
        assert "failing" in warnings[0].getMessage()
        assert len(infos) == 1
        assert "recovered after 5 failed polls" in infos[0].getMessage()
        await poller.aclose()

    async def test_a_final_answer_still_ends_the_wait(self) -> None:
        missing = NotFoundError("no such job", http_status=404)
        fetch = ScriptedFetch({"j": [ServerError("down", http_status=503), missing]})
        poller = Poller(fetch, QUICK)
        entry = poller.subscribe("j", None, None, Recorder())
        await until(lambda: entry.finished)
        assert entry.error is missing
        assert len(fetch.calls) == 2
        await poller.aclose()

    @pytest.mark.parametrize(
        "limited",
        [RateLimitError("slow down", http_status=429), ServerError("later", http_status=503)],
    )
    async def test_retry_after_of_a_failed_poll_spaces_the_next_one(
        self, limited: RateLimitError | ServerError
    ) -> None:
        clock = ManualClock(100.0)
        limited.retry_after = 7.0
        fetch = ScriptedFetch({"j": [limited, make_status("j", BatchState.RUNNING)]})
        poller = Poller(fetch, QUICK, clock=clock)
        entry = poller.subscribe("j", None, None, Recorder())
        clock.now = 101.0
        await until(lambda: len(fetch.calls) == 1 and not entry.in_flight)
        assert entry.due == pytest.approx(108.0)
        await poller.aclose()

    async def test_polls_of_a_left_job_stop_after_one_more(self) -> None:
        fetch = ScriptedFetch({"j": [ServerError("down", http_status=503)]})
        poller = Poller(fetch, QUICK)
        recorder = Recorder()
        entry = poller.subscribe("j", None, None, recorder)
        await until(lambda: len(fetch.calls) >= 2)
        poller.unsubscribe(entry, recorder)
        left_at = len(fetch.calls)
        await until(lambda: not poller.running)
        assert len(fetch.calls) <= left_at + 1
        assert entry.error is None  # nobody was told of a failure: it just stopped
        await poller.aclose()


class TestStaleReplies:
    async def test_a_terminal_status_fed_during_a_poll_is_not_overwritten(self) -> None:
        fetch = ScriptedFetch({"s": [make_status("s", BatchState.RUNNING, 3)]})
        fetch.gate = anyio.Event()
        poller = Poller(fetch, QUICK)
        backend = Backend(poller, [make_status("s", BatchState.COMPLETED, 10)])
        job = BatchJob(backend, "s")
        waiting: list[BatchStatus] = []

        async def waiter() -> None:
            waiting.append(await job)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await until(lambda: fetch.in_flight["s"] == 1)
            refreshed = await job.refresh()  # read after the poll was sent
            assert refreshed.state is BatchState.COMPLETED
            fetch.gate.set()  # the older poll's Running reply arrives now
        assert waiting[0].state is BatchState.COMPLETED
        assert job.done()
        assert job.status is not None
        assert job.status.state is BatchState.COMPLETED
        yielded = [j async for j in as_completed([job])]
        assert yielded == [job]
        assert all(j.done() for j in yielded)
        await poller.aclose()

    async def test_a_reply_to_an_older_request_is_dropped(self) -> None:
        fetch = ScriptedFetch({"s": [make_status("s", BatchState.RUNNING, 1)]})
        fetch.gate = anyio.Event()
        poller = Poller(fetch, QUICK)
        recorder = Recorder()
        entry = poller.subscribe("s", None, None, recorder)
        older = poller.ticket()  # e.g. a refresh() sent now...
        poller.feed("s", make_status("s", BatchState.RUNNING, 500, 1000))  # ...overtaken
        newest = poller.feed("s", make_status("s", BatchState.RUNNING, 300, 1000), older)
        assert newest is not None
        assert newest.finished_count == 500
        assert entry.status is not None
        assert entry.status.finished_count == 500
        await poller.aclose()


class TestShortWaits:
    async def test_repeated_short_waits_see_the_job_finish(self) -> None:
        # The first poll is due after 0.2-0.25 s; each wait lasts 0.05 s.
        policy = PollPolicy(initial_delay=0.25, min_delay=0.2, max_delay=1.0)
        fetch = ScriptedFetch({"w": [make_status("w", BatchState.COMPLETED, 5)]})
        poller = Poller(fetch, policy)
        job = BatchJob(Backend(poller), "w")
        outcome: BatchStatus | None = None
        with anyio.fail_after(PATIENCE):
            for _ in range(400):
                try:
                    outcome = await job.wait(timeout=0.05)
                    break
                except PollTimeoutError:
                    await anyio.lowlevel.checkpoint()
        assert outcome is not None
        assert outcome.state is BatchState.COMPLETED
        assert fetch.calls == ["w"]
        await poller.aclose()

    async def test_the_backoff_survives_a_gap_between_waits(self) -> None:
        fetch = ScriptedFetch({"g": [make_status("g", BatchState.QUEUED)]})
        poller = Poller(fetch, QUICK)
        job = BatchJob(Backend(poller), "g")
        with pytest.raises(PollTimeoutError):
            await job.wait(timeout=0.3)
        await until(lambda: not poller.running)
        entry = job._entry
        assert entry is not None
        steps = entry.steps
        assert steps >= 2
        with pytest.raises(PollTimeoutError):
            await job.wait(timeout=0.1)
        assert job._entry is entry  # the same state, not a fresh start
        assert entry.steps >= steps
        await poller.aclose()


def frames(error: BaseException) -> int:
    return len(list(traceback.walk_tb(error.__traceback__)))


class TestEachRaiseHasItsOwnFrames:
    async def test_two_thousand_waiters_on_a_404(self) -> None:
        missing = NotFoundError("no such job", http_status=404)
        fetch = ScriptedFetch({"x": [missing]})
        fetch.gate = anyio.Event()
        poller = Poller(fetch, QUICK)
        job = BatchJob(Backend(poller), "x")
        depths: list[int] = []

        async def waiter() -> None:
            try:
                await job.wait()
            except NotFoundError as exc:
                depths.append(frames(exc))

        async with anyio.create_task_group() as tg:
            for _ in range(2000):
                tg.start_soon(waiter)
            await until(lambda: poller.awaited_jobs == 1 and fetch.in_flight["x"] == 1)
            fetch.gate.set()
        assert len(depths) == 2000
        assert max(depths) < 20  # was 4,004 for the last one
        await poller.aclose()

    async def test_three_thousand_waiters_at_close(self) -> None:
        fetch = ScriptedFetch({"c": [make_status("c", BatchState.RUNNING)]})
        fetch.gate = anyio.Event()
        poller = Poller(fetch, QUICK)
        job = BatchJob(Backend(poller), "c")
        depths: list[int] = []

        async def waiter() -> None:
            try:
                await job.wait()
            except SessionClosedError as exc:
                depths.append(frames(exc))

        async with anyio.create_task_group() as tg:
            for _ in range(3000):
                tg.start_soon(waiter)
            await until(lambda: fetch.in_flight["c"] == 1)
            await poller.aclose()
        assert len(depths) == 3000
        assert max(depths) < 20


WALL = 1_700_000_000.0


def running(processed: int, started_at: float | None) -> BatchStatus:
    started = datetime.fromtimestamp(started_at, timezone.utc) if started_at is not None else None
    return BatchStatus(
        job_id="k",
        operation=None,
        state=BatchState.RUNNING,
        state_word="Running",
        total_count=1000,
        finished_count=processed,
        started_at=started,
    )


class TestClockSkew:
    """The server's startedAt is a hint, checked against what we saw."""

    @staticmethod
    async def first_due(status: BatchStatus, *, created: bool) -> float:
        clock = ManualClock(100.0)
        policy = PollPolicy(initial_delay=1.0, min_delay=0.1, max_delay=30.0, jitter=0.0)
        poller = Poller(ScriptedFetch({}), policy, clock=clock, wall_clock=lambda: WALL)
        entry = poller.subscribe(
            "k", None, None, Recorder(), not_running_at=99.0 if created else None
        )
        poller.feed("k", status)  # the clock stands still: no poll of its own
        due = entry.due - clock.now
        await poller.aclose()
        return due

    @pytest.mark.parametrize("created", [True, False])
    async def test_a_server_ten_seconds_behind_does_not_delay_the_next_poll(
        self, created: bool
    ) -> None:
        # Created 1 s ago, 250 of 1,000 done: the job ends in about 3 s. A
        # startedAt 10 s behind claimed 11 s of work: 30 s until the next poll.
        unhinted = await self.first_due(running(250, None), created=created)
        skewed = await self.first_due(running(250, WALL - 11.0), created=created)
        # created: the claim breaks what we saw, so it is not used; not created:
        # nothing to check it against, so it may not put the poll off
        assert skewed <= unhinted

    async def test_a_server_ahead_gives_no_hint(self) -> None:
        unhinted = await self.first_due(running(250, None), created=True)
        ahead = await self.first_due(running(250, WALL + 9.0), created=True)
        assert ahead == pytest.approx(unhinted)

    async def test_a_plausible_start_is_used(self) -> None:
        # right clocks: started 1 s ago at creation, 250 done: aim near 4 s
        due = await self.first_due(running(250, WALL - 1.0), created=True)
        assert 2.0 <= due <= 4.5

    @staticmethod
    async def attached_due(*, behind: float) -> float:
        """The next poll of a job attached by id, first seen 1 s into a 10 s run,
        in a session that saw another job run twice (a server ``behind`` s slow)."""
        clock = ManualClock(100.0)
        policy = PollPolicy(initial_delay=1.0, min_delay=0.1, max_delay=30.0, jitter=0.0)
        poller = Poller(
            ScriptedFetch({}), policy, clock=clock, wall_clock=lambda: WALL + clock.now - 100.0
        )
        for job_id in ("a", "k"):
            poller.subscribe(job_id, None, None, Recorder())
        # "a" runs 100 items a second since 1 s ago, on a clock ``behind`` s slow
        earlier = attrs.evolve(running(100, WALL - 1.0 - behind), job_id="a")
        poller.feed("a", earlier)
        clock.advance(2.0)
        poller.feed("a", attrs.evolve(earlier, finished_count=300))
        # "k": 100 of 1,000 items in the 1 s since its claimed start: it ends in 9 s
        poller.feed("k", running(100, WALL + 2.0 - 1.0 - behind))
        entry = poller._entries["k"]
        due = entry.due - clock.now
        await poller.aclose()
        return due

    @pytest.mark.parametrize("behind", [0.0, 10.0])
    async def test_a_known_server_clock_aims_an_attached_job_at_its_end(
        self, behind: float
    ) -> None:
        # Nothing of ours checks an attached job's startedAt; what the session
        # learnt of the server's clock from "a" does. Unchecked, the claim could
        # only bring the 1 s backoff forward: a poll at 1 s, then more (issue 16).
        due = await self.attached_due(behind=behind)
        # aimed at the end (9 s away), a little early by the estimate's error,
        # never late: a clock 10 s behind is shifted back, not trusted
        assert 7.5 <= due <= 9.0

    def test_a_claim_past_the_floor_by_rounding_still_counts(self) -> None:
        current = Observation(at=101.0, state=BatchState.RUNNING, processed=250, total=1000)
        # the job started as its creation arrived; startedAt, in whole
        # milliseconds, puts it 1 ms before the request was sent (issue 16)
        hint = start_hint(running(250, WALL - 1.001), current, not_running_at=100.0, wall_now=WALL)
        assert hint is not None
        assert hint.at == pytest.approx(100.0)

    def test_start_hint_is_checked_against_what_we_saw(self) -> None:
        current = Observation(at=101.0, state=BatchState.RUNNING, processed=250, total=1000)
        # 11 s of work claimed for a job seen not running 1 s ago: the server's
        # clock is off, so no hint (cut to 1 s, it would still claim too long)
        skewed = start_hint(running(250, WALL - 11.0), current, not_running_at=100.0, wall_now=WALL)
        assert skewed is None
        hint = start_hint(running(250, WALL - 0.6), current, not_running_at=100.0, wall_now=WALL)
        assert hint is not None
        assert hint.at == pytest.approx(100.4)
        assert (
            start_hint(running(250, WALL + 5.0), current, not_running_at=100.0, wall_now=WALL)
            is None
        )
        assert (
            start_hint(
                running(250, WALL - timedelta(days=3).total_seconds()),
                current,
                not_running_at=None,
                wall_now=WALL,
            )
            is None
        )


class TestAttachedJobs:
    async def test_a_job_attached_by_id_costs_two_polls(self, fake_factory: FakeFactory) -> None:
        # issue 16: one poll to see it running, one at its end. The session
        # learns the server's clock from another job it sees running twice.
        fake = await fake_factory(processing_rate=100)
        policy = PollPolicy(initial_delay=0.05, min_delay=0.25, max_delay=30.0, jitter=0.0)
        async with session(fake) as creator, session(fake, poll=policy) as gb:
            teacher = await creator.create_batch("cashback", cashbacks(1000, "a"))  # 10 s
            server_clock = gb._poller._server_clock
            async with anyio.create_task_group() as tg:
                tg.start_soon(gb.job(teacher.job_id, "cashback").wait)
                with anyio.fail_after(PATIENCE):
                    # a bound within about the noise a rate estimate allows for
                    await until(lambda: (server_clock.behind_at_most or 1.0) <= 0.1)
                    job = await creator.create_batch("cashback", cashbacks(400, "b"))  # 4 s
                    # "b" well into its run, by the fake's own clock
                    await until(
                        lambda: fake.jobs[int(job.job_id)].processed(time.monotonic()) >= 150
                    )
                    status = await gb.job(job.job_id, "cashback").wait()
                tg.cancel_scope.cancel()
        assert status.state is BatchState.COMPLETED
        assert gets_by_job(fake)[job.job_id] == 2


class TestLastWaiterLeaves:
    @staticmethod
    async def leave(fake: FakeGameball, gb: GameballSession, ready: Any) -> tuple[str, int]:
        """Await a long job, leave once ``ready(entry)``; its polls when left."""
        created = await gb.create_batch("cashback", cashbacks(10))
        job = gb.job(created.job_id, "cashback")
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(job.wait)
                await until(lambda: job._entry is not None and ready(job._entry))
                tg.cancel_scope.cancel()
        return job.job_id, gets_by_job(fake)[job.job_id]

    async def test_at_most_one_more_status_request(self, fake_factory: FakeFactory) -> None:
        fake = await fake_factory(queue_delay=1000.0)  # Queued throughout
        policy = PollPolicy(initial_delay=0.05, min_delay=0.02, max_delay=0.1)
        async with session(fake, poll=policy) as gb:
            job_id, polls = await self.leave(
                fake, gb, lambda entry: gets_by_job(fake)[entry.job_id] >= 3
            )
            with anyio.fail_after(PATIENCE):
                await until(lambda: not gb._poller.running)
                # every poll sent has reached the fake
                await until(lambda: fake.counts["status"] >= gb.stats().polls)
            assert not gb._poller.holds(job_id)
        assert gets_by_job(fake)[job_id] <= polls + 1

    async def test_none_when_the_next_poll_is_beyond_the_linger(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(queue_delay=1000.0)
        # the second poll of a job still Queued is 100x the first delay away
        policy = PollPolicy(initial_delay=0.05, min_delay=0.02, multiplier=100.0, jitter=0.0)
        async with session(fake, poll=policy) as gb:

            def far(entry: Any) -> bool:
                return bool(entry.scheduled and entry.due - time.monotonic() > LINGER)

            job_id, polls = await self.leave(fake, gb, far)
            assert not gb._poller.holds(job_id)  # dropped as the waiter left
            with anyio.fail_after(PATIENCE):
                await until(lambda: not gb._poller.running)
            assert gb.stats().polls == fake.counts["status"]
        assert gets_by_job(fake)[job_id] == polls


class TestStopDuringAPoll:
    async def test_a_stop_while_a_poll_is_in_flight_is_followed_by_a_quick_poll(self) -> None:
        clock = ManualClock(100.0)
        policy = PollPolicy(initial_delay=5.0, min_delay=0.01, max_delay=30.0, jitter=0.0)
        fetch = ScriptedFetch({"p": [make_status("p", BatchState.RUNNING, 1)]})
        fetch.gate = anyio.Event()
        poller = Poller(fetch, policy, clock=clock)
        entry = poller.subscribe("p", None, None, Recorder())
        clock.now = 106.0
        await until(lambda: fetch.in_flight["p"] == 1)
        poller.poll_soon("p")  # what job.stop() does after its DELETE
        fetch.gate.set()  # the poll sent before the stop comes back: Running
        await until(lambda: not entry.in_flight and entry.scheduled)
        assert entry.due <= clock.now + policy.min_delay + 1e-9
        await poller.aclose()


class TestHeadOfLine:
    """Issue 9.2: hanging polls of some jobs must not hold up the others."""

    async def test_a_done_job_is_seen_while_other_polls_hang(self) -> None:
        hang = anyio.Event()  # never set: those replies never come
        requests: dict[str, int] = {}

        async def status(request: web.Request) -> web.Response:
            job_id = request.match_info["job_id"]
            requests[job_id] = requests.get(job_id, 0) + 1
            if job_id.startswith("slow"):
                await hang.wait()
            return web.json_response(
                {"jobId": job_id, "status": "Completed", "totalCount": 1, "finishedCount": 1}
            )

        app = web.Application()
        app.router.add_get("/batch/{job_id}", status)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with GameballSession(
                "test-api-key",
                "test-secret-key",
                base_url=f"http://127.0.0.1:{port}",
                poll=QUICK,
                retry=RetryPolicy(attempts=6, backoff=0.01, max_backoff=0.02),
                rate_limit=RateLimit.disabled(),
                timeout=Timeout(total=0.5),
                max_in_flight_polls=2,
            ) as gb:
                slow = [gb.job("slow1"), gb.job("slow2")]
                waits = [asyncio.ensure_future(job.wait()) for job in slow]
                await until(lambda: bool(requests.get("slow1") and requests.get("slow2")))
                with anyio.fail_after(PATIENCE):
                    status_ = await gb.job("done").wait()
                assert status_.state is BatchState.COMPLETED
                # One request timeout freed a worker; the hanging jobs' polls did
                # not retry in it (six tries each held both workers for 3 s).
                assert requests["slow1"] <= 2
                assert requests["slow2"] <= 2
                for task in waits:
                    task.cancel()
                await asyncio.wait(waits)
        finally:
            hang.set()
            await runner.cleanup()
