"""Tests of ``BatchJob`` (wait, refresh, stop, watch, reattach) and of fan-out:
``submit_many``, ``as_completed`` and ``wait_all``, against ``FakeGameball``."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import pickle
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _support import PATIENCE, WHEN, FakeFactory, cashbacks, session, until

from gameball_async import (
    AmbiguousSubmissionError,
    BatchFailedError,
    BatchJob,
    BatchState,
    BatchStatus,
    BatchStoppedError,
    GameballError,
    GameballSession,
    InvalidBatchError,
    InvalidJobIdError,
    InvalidRequestError,
    NotFoundError,
    Operation,
    PollPolicy,
    PollTimeoutError,
    RetryPolicy,
    SubmissionError,
    as_completed,
    wait_all,
)
from gameball_async.testing import FakeGameball, InjectedReply, RecordedRequest

pytestmark = pytest.mark.anyio


def cashback(n: int, *, transaction: str | None = None) -> dict[str, Any]:
    return {
        "customerId": "c1",
        "transactionId": transaction if transaction is not None else f"t{n}",
        "transactionTime": WHEN,
        "amount": 1.0,
    }


def transaction_ids(items: Any) -> list[str]:
    return [item["transactionId"] for item in items]


def status_gets(fake: FakeGameball, job_id: str) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.route == "status" and r.path.endswith(f"/{job_id}")]


@pytest.fixture
async def fake(fake_factory: FakeFactory) -> FakeGameball:
    # jobs stay queued a moment, then run fast: a wait sees Queued, Running, Completed
    return await fake_factory(processing_rate=1000, queue_delay=0.02)


class TestWait:
    async def test_await_returns_completed_with_every_item_result(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        # 30 items, the last 5 repeat earlier transaction ids: they fail with 9004.
        items = [cashback(n, transaction=f"t{n % 25}") for n in range(30)]
        job = await gb.create_batch(Operation.CASHBACK, items)
        # issue 12.3: what the creation told, and nothing more
        assert job.status is not None
        assert job.status.state is BatchState.SUBMITTED
        assert job.status.total_count == 30
        assert (job.status.finished_count, job.status.error_count) == (0, 0)
        assert job.status.progress == 0.0
        assert not job.status.is_terminal
        assert not job.done()
        assert gb.job(job.job_id).status is None  # a handle from an id knows nothing

        with anyio.fail_after(PATIENCE):
            status = await job

        assert status.state is BatchState.COMPLETED
        assert status.job_id == job.job_id
        assert status.total_count == 30
        assert (status.finished_count, status.error_count) == (25, 5)
        assert len(status.succeeded) + len(status.failed) == 30
        assert {r.index for r in status.failed} == set(range(25, 30))
        assert {r.code for r in status.failed} == {9004}
        assert status.progress == 1.0
        assert job.done()
        assert job.status is status

    async def test_awaiting_a_done_job_sends_nothing(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        job = await gb.create_batch("cashback", cashbacks(3))
        with anyio.fail_after(PATIENCE):
            first = await job
        before = fake.counts["requests"]
        assert await job.wait() is first
        assert await job is first
        assert fake.counts["requests"] == before

    async def test_failed_job_raises_with_final_status_and_results(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=100)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(300))
            with anyio.fail_after(PATIENCE):
                async with aclosing(job.watch()) as updates:
                    async for seen in updates:
                        if seen.processed_count > 0:
                            break
            fake.fail_job(int(job.job_id))
            frozen = fake.jobs[int(job.job_id)].forced_count
            assert 0 < frozen < 300

            with anyio.fail_after(PATIENCE), pytest.raises(BatchFailedError) as caught:
                await job

        status = caught.value.status
        assert status.state is BatchState.FAILED
        assert status.processed_count == frozen
        assert len(status.succeeded) + len(status.failed) == frozen
        assert job.done()
        assert job.status == status

    async def test_stopped_elsewhere_raises_batch_stopped(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        job = await gb.create_batch("cashback", cashbacks(1000))  # 1 s of work
        fake.stop_job(int(job.job_id))
        with anyio.fail_after(PATIENCE), pytest.raises(BatchStoppedError) as caught:
            await job
        assert caught.value.status.state is BatchState.STOPPED
        assert caught.value.status.job_id == job.job_id

    @pytest.mark.parametrize(
        ("end", "state"), [("fail_job", BatchState.FAILED), ("stop_job", BatchState.STOPPED)]
    )
    async def test_raise_on_failure_false_returns_the_terminal_status(
        self, fake: FakeGameball, gb: GameballSession, end: str, state: BatchState
    ) -> None:
        job = await gb.create_batch("cashback", cashbacks(1000))  # 1 s of work
        getattr(fake, end)(int(job.job_id))
        with anyio.fail_after(PATIENCE):
            status = await job.wait(raise_on_failure=False)
        assert status.state is state
        assert status.is_terminal
        # And the default still raises, from the status already seen.
        with pytest.raises(BatchFailedError if state is BatchState.FAILED else BatchStoppedError):
            await job

    async def test_timeout_raises_and_waiting_again_resumes(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=200)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(400))  # about 2 s of work
            with pytest.raises(PollTimeoutError) as caught:
                await job.wait(timeout=0.1)
            assert isinstance(caught.value, TimeoutError)
            assert not job.done()
            # the last status the wait had seen; the handle may have moved on
            # since, by the one poll a job keeps after its last waiter leaves
            last = caught.value.last_status
            assert last is not None
            assert job.status is not None
            assert job.status is last or job.status.processed_count >= last.processed_count
            # The timed-out wait left nothing behind on the scheduler.
            assert gb.stats().jobs_awaited == 0

            with anyio.fail_after(PATIENCE):
                status = await job
        assert status.state is BatchState.COMPLETED
        assert len(status.succeeded) == 400

    async def test_policy_timeout_bounds_a_plain_await(self, fake_factory: FakeFactory) -> None:
        fake = await fake_factory(processing_rate=10)
        async with session(
            fake, poll=PollPolicy(initial_delay=0.05, min_delay=0.02, timeout=0.1)
        ) as gb:
            job = await gb.create_batch("cashback", cashbacks(100))
            with anyio.fail_after(PATIENCE), pytest.raises(PollTimeoutError):
                await job
            assert fake.job_state(int(job.job_id)) == "Running"

    async def test_sequential_awaits_each_get_polled(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        # Regression: a job awaited while the scheduler task was winding down
        # (after the previous job ended) was never polled and hung forever.
        jobs = await gb.submit_many("cashback", cashbacks(12), chunk_size=1)
        for job in jobs:
            with anyio.fail_after(PATIENCE):
                status = await job
            assert status.state is BatchState.COMPLETED
            await anyio.lowlevel.checkpoint()  # let the scheduler see it has nothing left to do


class TestRefreshAndStop:
    async def test_refresh_is_exactly_one_get(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        job = await gb.create_batch("cashback", cashbacks(5))
        before = fake.counts["status"]
        status = await job.refresh()
        assert fake.counts["status"] == before + 1
        assert fake.counts["requests"] == 2  # the creation and this one poll
        assert status.job_id == job.job_id
        assert job.status is status

    async def test_refresh_wakes_waiters_with_its_news(self, fake: FakeGameball) -> None:
        # The waiter's scheduled poll is 30 s away: only refresh() can tell it.
        slow = PollPolicy(initial_delay=30.0, min_delay=30.0, max_delay=30.0, jitter=0.0)
        async with session(fake, poll=slow) as gb:
            job = await gb.create_batch("cashback", cashbacks(5))
            await until(lambda: fake.job_state(int(job.job_id)) == "Completed")
            results: list[BatchStatus] = []

            async def waiter() -> None:
                results.append(await job)

            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter)
                    await until(lambda: gb.stats().jobs_awaited == 1)
                    await job.refresh()
            assert [s.state for s in results] == [BatchState.COMPLETED]
            assert len(status_gets(fake, job.job_id)) == 1

    async def test_stop_sends_one_delete_and_waiters_see_stopped(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=20)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(200))  # 10 s of work
            outcomes: list[BaseException] = []

            async def waiter() -> None:
                try:
                    await job
                except GameballError as exc:
                    outcomes.append(exc)

            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter)
                    await until(lambda: gb.stats().jobs_awaited == 1)
                    stopped = await job.stop()
            assert fake.counts["stop"] == 1
            assert stopped is not None
            assert stopped.state is BatchState.STOPPED
            assert fake.job_state(int(job.job_id)) == "Stopped"
            assert len(outcomes) == 1
            assert isinstance(outcomes[0], BatchStoppedError)
            assert outcomes[0].status.state is BatchState.STOPPED
            with pytest.raises(BatchStoppedError):
                await job
            assert fake.counts["stop"] == 1

    async def test_stop_with_wait_returns_the_stopped_status(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=20)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(200))
            with anyio.fail_after(PATIENCE):
                status = await job.stop(wait=True)
        assert status is not None
        assert status.state is BatchState.STOPPED
        assert fake.counts["stop"] == 1
        assert job.done()

    async def test_stop_with_an_empty_reply_polls_until_stopped(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=20)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(200))
            # The DELETE answers 200 with no body; the job stops a moment later.
            fake.inject("stop", InjectedReply(status=200))
            assert await job.stop() is None
            fake.stop_job(int(job.job_id))
            with anyio.fail_after(PATIENCE), pytest.raises(BatchStoppedError):
                await job
            assert fake.counts["stop"] == 1


class TestWatch:
    async def test_watch_yields_changes_and_ends_after_the_terminal_one(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=200, queue_delay=0.05)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(200))
            seen: list[BatchStatus] = []
            with anyio.fail_after(PATIENCE):
                async for status in job.watch():  # ends on its own
                    seen.append(status)
            awaited = gb.stats().jobs_awaited
        assert awaited == 0
        assert len(seen) >= 2
        assert seen[-1].state is BatchState.COMPLETED
        assert len(seen[-1].succeeded) == 200
        assert all(not s.is_terminal for s in seen[:-1])
        processed = [s.processed_count for s in seen]
        assert processed == sorted(processed)
        for old, new in itertools.pairwise(seen):  # only changes are yielded
            assert (old.state, old.finished_count, old.error_count) != (
                new.state,
                new.finished_count,
                new.error_count,
            )
        assert job.status is seen[-1]

    async def test_unknown_status_word_shows_and_polling_goes_on(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        job = await gb.create_batch("cashback", cashbacks(3))
        odd = {
            "jobId": int(job.job_id),
            "operation": "cashback",
            "status": "Reticulating",
            "totalCount": 3,
            "finishedCount": 0,
            "errorCount": 0,
        }
        fake.inject("status", InjectedReply(status=200, body=odd))
        with anyio.fail_after(PATIENCE):
            seen = [status async for status in job.watch()]
        assert seen[0].state is BatchState.UNKNOWN
        assert seen[0].state_word == "Reticulating"
        assert seen[0].raw["status"] == "Reticulating"
        assert seen[-1].state is BatchState.COMPLETED
        assert len(status_gets(fake, job.job_id)) >= 2

    async def test_watch_of_a_done_job_yields_its_status_once(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        job = await gb.create_batch("cashback", cashbacks(3))
        with anyio.fail_after(PATIENCE):
            final = await job
        before = fake.counts["requests"]
        assert [s async for s in job.watch()] == [final]
        assert fake.counts["requests"] == before

    async def test_leaving_a_watch_early_unsubscribes(self, fake_factory: FakeFactory) -> None:
        fake = await fake_factory(processing_rate=10)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(100))
            with anyio.fail_after(PATIENCE):
                async with aclosing(job.watch()) as updates:
                    async for _ in updates:
                        assert gb.stats().jobs_awaited == 1
                        break
            assert gb.stats().jobs_awaited == 0


class TestFailureIsolation:
    async def test_not_found_fails_its_waiters_only(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        good = await gb.create_batch("cashback", cashbacks(50))
        missing = gb.job("999999")
        outcomes: dict[str, list[Any]] = {"good": [], "missing": []}

        async def waiter(name: str, job: BatchJob) -> None:
            try:
                outcomes[name].append(await job)
            except GameballError as exc:
                outcomes[name].append(exc)

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter, "good", good)
                tg.start_soon(waiter, "missing", missing)
                tg.start_soon(waiter, "missing", gb.job(999999))
        assert len(outcomes["missing"]) == 2
        for error in outcomes["missing"]:
            assert isinstance(error, NotFoundError)
            assert error.http_status == 404
        [status] = outcomes["good"]
        assert status.state is BatchState.COMPLETED
        assert len(status.succeeded) == 50
        # A 404 is final: one GET, shared by both waiters, never retried.
        assert len(status_gets(fake, "999999")) == 1

    async def test_injected_404_gives_not_found(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        job = await gb.create_batch("cashback", cashbacks(3))
        fake.inject("status", InjectedReply(status=404))
        with anyio.fail_after(PATIENCE), pytest.raises(NotFoundError):
            await job
        assert not job.done()

    async def test_a_wait_outlasts_polls_failing_past_the_retry_budget(
        self, fake: FakeGameball, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Issue 9.3: an outage longer than the retry budget failed every wait
        # with the last error although the jobs later completed.
        retry = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)
        async with session(fake, retry=retry) as gb:
            job = await gb.create_batch("cashback", cashbacks(3))
            fake.inject(
                "status",
                *[
                    InjectedReply(status=503, body={"code": 5003, "message": "down"}),
                    InjectedReply(status=500, body={"code": 5000, "message": "down"}),
                    InjectedReply(action="drop"),
                ]
                * 4,
            )
            with caplog.at_level(logging.INFO, logger="gameball_async"):
                with anyio.fail_after(PATIENCE):
                    status = await job
            assert status.state is BatchState.COMPLETED
            assert fake.counts["status"] >= 13
            assert gb.stats().jobs_awaited == 0
        failing = [r for r in caplog.records if "status polls are failing" in r.getMessage()]
        recovered = [r for r in caplog.records if "status polls recovered" in r.getMessage()]
        assert len(failing) == 1
        assert failing[0].levelno == logging.WARNING
        assert len(recovered) == 1


class TestReattach:
    async def test_job_reattaches_from_another_session(self, fake: FakeGameball) -> None:
        async with session(fake) as first:
            created = await first.create_batch("cashback", cashbacks(20))
        async with session(fake) as second:
            job = second.job(int(created.job_id))
            assert job.job_id == created.job_id
            assert job.operation is None
            with anyio.fail_after(PATIENCE):
                status = await job
        assert status.state is BatchState.COMPLETED
        assert len(status.succeeded) + len(status.failed) == 20

    async def test_a_created_handle_unread_pickles_and_shows_its_submitted_status(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        # nothing reads .status first: the pickle and the repr still hold what the
        # creation told
        pickled = pickle.loads(pickle.dumps(await gb.create_batch("cashback", cashbacks(3))))
        assert pickled.status is not None
        assert pickled.status.state is BatchState.SUBMITTED
        assert pickled.status.total_count == 3
        shown = await gb.create_batch("cashback", cashbacks(2))
        assert repr(shown) == f"<BatchJob {shown.job_id} cashback Submitted>"

    async def test_token_round_trip(self, fake: FakeGameball) -> None:
        async with session(fake) as first:
            created = await first.create_batch("cashback", cashbacks(20))
            token = created.to_token()
        data = json.loads(token)
        assert data == {"v": 1, "job_id": created.job_id, "operation": "cashback"}
        assert len(token) < 100
        assert fake.secret_key not in token
        assert fake.api_key not in token

        async with session(fake) as second:
            job = second.resume(token)
            assert (job.job_id, job.operation) == (created.job_id, Operation.CASHBACK)
            assert job.to_token() == token
            with anyio.fail_after(PATIENCE):
                status = await job
        assert status.state is BatchState.COMPLETED
        assert status.operation is Operation.CASHBACK

    def test_token_without_operation(self) -> None:
        job_id, operation = BatchJob.parse_token('{"v":1,"job_id":"42","operation":null}')
        assert (job_id, operation) == ("42", None)

    @pytest.mark.parametrize(
        "token",
        [
            "",
            "not json",
            "[]",
            "null",
            '{"job_id": "1"}',
            '{"v": 2, "job_id": "1"}',
            '{"v": "1", "job_id": "1"}',
            '{"v": 1}',
            '{"v": 1, "job_id": "../1"}',
            '{"v": 1, "job_id": "1?x=1"}',
            '{"v": 1, "job_id": true}',
            '{"v": 1, "job_id": "1", "operation": "teleport"}',
        ],
    )
    async def test_bad_tokens_are_refused(
        self, fake: FakeGameball, gb: GameballSession, token: str
    ) -> None:
        with pytest.raises(InvalidJobIdError):
            gb.resume(token)
        assert fake.counts["requests"] == 0

    @pytest.mark.parametrize("job_id", ["", "../1", "1/2", "1%2F2", "a b", True, 1.5, None])
    async def test_bad_job_ids_are_refused(
        self, fake: FakeGameball, gb: GameballSession, job_id: Any
    ) -> None:
        with pytest.raises(InvalidJobIdError):
            gb.job(job_id)
        assert fake.counts["requests"] == 0


class TestCancellation:
    async def test_cancelling_one_waiter_leaves_the_others(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        job = await gb.create_batch("cashback", cashbacks(1000))  # 1 s of work
        doomed = asyncio.ensure_future(job.wait())
        survivor = asyncio.ensure_future(job.wait())
        other_handle = asyncio.ensure_future(gb.job(job.job_id).wait())
        with anyio.fail_after(PATIENCE):
            await until(lambda: fake.counts["status"] >= 1)
            doomed.cancel()
            await asyncio.wait([doomed])
            statuses = await asyncio.gather(survivor, other_handle)
        assert doomed.cancelled()  # CancelledError passed through, not a GameballError
        assert [s.state for s in statuses] == [BatchState.COMPLETED] * 2
        assert fake.counts["stop"] == 0

    async def test_cancel_scope_around_await_is_clean(self, fake_factory: FakeFactory) -> None:
        fake = await fake_factory(processing_rate=10)
        async with session(fake) as gb:
            job = await gb.create_batch("cashback", cashbacks(100))
            with anyio.move_on_after(0.1) as scope:
                await job
            assert scope.cancelled_caught
            assert gb.stats().jobs_awaited == 0
            await until(lambda: not gb._poller.running)
            assert fake.counts["stop"] == 0
            assert fake.job_state(int(job.job_id)) == "Running"


class TestSubmitMany:
    @staticmethod
    def _as_list(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(items)

    @staticmethod
    def _as_generator(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        yield from items

    @staticmethod
    async def _as_async_generator(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        for item in items:
            await anyio.lowlevel.checkpoint()
            yield item

    @pytest.mark.parametrize("kind", ["_as_list", "_as_generator", "_as_async_generator"])
    async def test_jobs_come_back_in_input_order(
        self, fake: FakeGameball, gb: GameballSession, kind: str
    ) -> None:
        items = cashbacks(10)
        source = getattr(self, kind)(items)
        jobs = await gb.submit_many("cashback", source, chunk_size=3, max_concurrency=3)
        assert [len(fake.jobs[int(job.job_id)].items) for job in jobs] == [3, 3, 3, 1]
        for position, job in enumerate(jobs):
            expected = transaction_ids(items[position * 3 : position * 3 + 3])
            assert transaction_ids(fake.jobs[int(job.job_id)].items) == expected
            assert job.operation is Operation.CASHBACK
        assert fake.counts["create"] == 4
        with anyio.fail_after(PATIENCE):
            statuses = await wait_all(jobs)
        assert sum(s.total_count or 0 for s in statuses) == 10

    async def test_concurrency_is_bounded(self, fake: FakeGameball, gb: GameballSession) -> None:
        delay = 0.3
        fake.inject("create", *[InjectedReply(action="slow", delay=delay)] * 6)
        with anyio.fail_after(PATIENCE):
            jobs = await gb.submit_many("cashback", cashbacks(6), chunk_size=1, max_concurrency=2)
        assert len(jobs) == 6
        arrivals = sorted(r.arrived_at for r in fake.requests if r.route == "create")
        assert len(arrivals) == 6
        # Each creation takes at least `delay`: a third may only start once one
        # of the two before it has ended, so any three arrivals span >= delay.
        for first, third in zip(arrivals, arrivals[2:], strict=False):
            assert third - first >= delay - 0.01
        # And two did run at once (the bound is 2, not 1).
        assert arrivals[1] - arrivals[0] < delay

    async def test_failed_chunks_are_reported_with_their_items(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        items = cashbacks(10)
        fake.inject(
            "create",
            InjectedReply(action="slow", delay=0.0),  # chunk 0: created
            InjectedReply(status=422, body={"code": 3003, "message": "invalid value"}),
            InjectedReply(action="slow", delay=0.0),  # chunk 2: created
            InjectedReply(action="drop_after"),  # chunk 3: created, reply lost
        )  # chunk 4: created
        with anyio.fail_after(PATIENCE), pytest.raises(SubmissionError) as caught:
            await gb.submit_many("cashback", items, chunk_size=2, max_concurrency=1)
        error = caught.value

        assert [transaction_ids(fake.jobs[int(job.job_id)].items) for job in error.jobs] == [
            ["t0", "t1"],
            ["t4", "t5"],
            ["t8", "t9"],
        ]
        assert [transaction_ids(chunk) for chunk, _ in error.failed] == [["t2", "t3"], ["t6", "t7"]]
        rejected, ambiguous = (exc for _, exc in error.failed)
        assert isinstance(rejected, InvalidRequestError)
        assert rejected.http_status == 422
        assert isinstance(ambiguous, AmbiguousSubmissionError)
        assert transaction_ids(ambiguous.items) == ["t6", "t7"]
        # Nothing lost, nothing sent twice.
        created = sum(len(fake.jobs[int(job.job_id)].items) for job in error.jobs)
        assert created + sum(len(chunk) for chunk, _ in error.failed) == len(items)
        assert fake.counts["create"] == 5
        # The dropped reply did create a job: that is why it is ambiguous.
        assert len(fake.jobs) == 4

    async def test_invalid_item_in_a_later_chunk_names_its_global_index(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        items = cashbacks(10)
        del items[7]["amount"]
        with anyio.fail_after(PATIENCE), pytest.raises(SubmissionError) as caught:
            await gb.submit_many("cashback", items, chunk_size=3, max_concurrency=1)
        [(chunk, error)] = caught.value.failed
        assert isinstance(error, InvalidBatchError)
        assert error.index == 7
        assert error.field == "amount"
        assert "item 7" in str(error)
        assert transaction_ids(chunk) == ["t6", "t7", "t8"]
        assert len(caught.value.jobs) == 3
        assert fake.counts["create"] == 3  # the bad chunk was never sent


class TestWaitingOnMany:
    async def test_as_completed_yields_in_completion_order(self, fake_factory: FakeFactory) -> None:
        # At 10 items/s the jobs need 0.1 s, 10 s and 30 s; the test moves the
        # fake's clock past each end in turn, so the order cannot depend on
        # how fast this machine is.
        skew = [0.0]

        def clock() -> float:
            return time.monotonic() + skew[0]

        fake = await fake_factory(processing_rate=10, clock=clock)
        async with session(fake) as gb:
            long = await gb.create_batch("cashback", cashbacks(300, "l"))
            short = await gb.create_batch("cashback", cashbacks(1, "s"))
            middle = await gb.create_batch("cashback", cashbacks(100, "m"))
            order: list[BatchJob] = []

            async def consume() -> None:
                async for job in as_completed([long, short, middle]):
                    assert job.done()
                    order.append(job)

            with anyio.fail_after(PATIENCE):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume)
                    await until(lambda: len(order) == 1)
                    skew[0] = 15.0  # the middle job is done, the long one half-way
                    await until(lambda: len(order) == 2)
                    assert fake.job_state(int(long.job_id)) == "Running"
                    skew[0] = 40.0
        assert order == [short, middle, long]
        assert [len(job.status.succeeded) for job in order if job.status] == [1, 100, 300]

    async def test_as_completed_yields_a_job_whose_polls_failed(
        self, fake: FakeGameball, gb: GameballSession
    ) -> None:
        good = await gb.create_batch("cashback", cashbacks(3))
        missing = gb.job("999999")
        with anyio.fail_after(PATIENCE):
            seen = [job async for job in as_completed([good, missing])]
        assert sorted(seen, key=id) == sorted([good, missing], key=id)
        assert good.done()
        assert not missing.done()
        with pytest.raises(NotFoundError):
            await missing

    async def test_wait_all_returns_statuses_in_input_order(
        self, fake_factory: FakeFactory
    ) -> None:
        fake = await fake_factory(processing_rate=200)
        async with session(fake) as gb:
            jobs = [
                await gb.create_batch("cashback", cashbacks(100, "a")),
                await gb.create_batch("cashback", cashbacks(1, "b")),
                await gb.create_batch("cashback", cashbacks(20, "c")),
                await gb.create_batch("cashback", cashbacks(1000, "d")),
            ]
            fake.fail_job(int(jobs[3].job_id))
            twin = gb.job(jobs[0].job_id)
            with anyio.fail_after(PATIENCE):
                statuses = await wait_all([*jobs, twin])
        assert [s.job_id for s in statuses] == [*(job.job_id for job in jobs), jobs[0].job_id]
        assert [s.state for s in statuses] == [
            BatchState.COMPLETED,
            BatchState.COMPLETED,
            BatchState.COMPLETED,
            BatchState.FAILED,
            BatchState.COMPLETED,
        ]
        assert [s.total_count for s in statuses] == [100, 1, 20, 1000, 100]

    async def test_wait_all_raise_on_failure(self, fake: FakeGameball, gb: GameballSession) -> None:
        ok = await gb.create_batch("cashback", cashbacks(5, "a"))
        bad = await gb.create_batch("cashback", cashbacks(1000, "b"))  # 1 s of work
        fake.fail_job(int(bad.job_id))
        with anyio.fail_after(PATIENCE), pytest.raises(BatchFailedError) as caught:
            await wait_all([ok, bad], raise_on_failure=True)
        assert caught.value.status.job_id == bad.job_id
        assert ok.done()
        assert bad.done()
