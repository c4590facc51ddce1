"""Nothing created is lost, whatever the caller does (issue 9 points 9-11):
cancelled creations, the ``on_job`` channel, ``submit_many``'s every exit, and
``create_batch(timeout=)``."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from _support import PATIENCE, make_session, until
from aiohttp import web
from aiohttp.test_utils import TestServer

from gameball_async import (
    AmbiguousSubmissionError,
    AuthenticationError,
    BatchJob,
    CreationTimeoutError,
    GameballError,
    GameballSession,
    Operation,
    RateLimit,
    RetryPolicy,
    ServerError,
    SessionClosedError,
    SubmissionError,
)
from gameball_async._creation import Creations
from gameball_async._reply import CreationGuard
from gameball_async.testing import FakeGameball, InjectedReply

pytestmark = pytest.mark.anyio

ITEMS = [{"customerId": "c1"}, {"customerId": "c2"}]
# long enough that the caller is surely cancelled while the request is in flight
IN_FLIGHT = 0.5


class Calls:
    """Records ``on_job`` calls, in order, across channels."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, BatchJob]] = []

    def channel(self, name: str) -> Any:
        return lambda job: self.seen.append((name, job))

    def jobs(self, name: str) -> list[BatchJob]:
        return [job for channel, job in self.seen if channel == name]


def _session(fake: FakeGameball, calls: Calls | None = None, **options: Any) -> GameballSession:
    on_job = calls.channel("session") if calls is not None else None
    return make_session(fake, on_job=on_job, **options)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gameball_async" and r.levelno == logging.WARNING
    ]


def _assert_no_keys(fake: FakeGameball, caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert fake.secret_key not in record.getMessage()
        assert fake.api_key not in record.getMessage()


def _creation_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("gameball_async ")]


# -- point 9: a cancelled creation is never lost ----------------------------------------


async def test_a_native_cancel_in_flight_reports_the_job(
    fake: FakeGameball, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()
    caplog.set_level(logging.WARNING, "gameball_async")
    fake.inject("create", InjectedReply(action="slow", delay=IN_FLIGHT))
    async with _session(fake, calls) as gb:
        task = asyncio.get_running_loop().create_task(
            gb.create_batch("balance-inquiry", ITEMS, on_job=calls.channel("call"))
        )
        await until(lambda: fake.counts["create"] == 1)  # the request is in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: len(calls.seen) == 2)
    [(first, job), (second, same)] = calls.seen
    assert (first, second) == ("call", "session")  # per-call callback first
    assert job is same
    assert int(job.job_id) in fake.jobs
    assert job.input_range == range(2)
    [warning] = _warnings(caplog)
    assert job.job_id in warning
    assert "cancelled" in warning
    _assert_no_keys(fake, caplog)


async def test_an_anyio_cancel_scope_in_flight_reports_the_job(
    fake: FakeGameball, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()
    caplog.set_level(logging.WARNING, "gameball_async")
    fake.inject("create", InjectedReply(action="slow", delay=IN_FLIGHT))
    scope = anyio.CancelScope()
    finished: list[BatchJob] = []

    async def creator(gb: GameballSession) -> None:
        with scope:
            finished.append(await gb.create_batch("balance-inquiry", ITEMS))

    async with _session(fake, calls) as gb, anyio.create_task_group() as tg:
        tg.start_soon(creator, gb)
        await until(lambda: fake.counts["create"] == 1)
        scope.cancel()
    # close() waited for the request in flight: its job was reported before it returned
    assert finished == []
    [job] = calls.jobs("session")
    assert int(job.job_id) in fake.jobs
    assert any(job.job_id in warning for warning in _warnings(caplog))
    assert _creation_tasks() == []


async def test_wait_for_timing_out_in_flight_still_reports_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = Calls()
    caplog.set_level(logging.WARNING, "gameball_async")
    arrived, release = anyio.Event(), anyio.Event()

    async def create(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()  # held until the caller has surely gone
        return web.json_response({"jobId": 77})

    app = web.Application()
    app.router.add_post("/batch/balance-inquiry", create)
    async with TestServer(app, host="127.0.0.1") as server:
        base = str(server.make_url("")).rstrip("/")
        async with GameballSession("k", "s", base_url=base, on_job=calls.channel("session")) as gb:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(gb.create_batch("balance-inquiry", ITEMS), timeout=2.0)
            assert arrived.is_set()
            release.set()
    [job] = calls.jobs("session")
    assert job.job_id == "77"
    assert any("77" in warning for warning in _warnings(caplog))


async def test_a_caller_cancelled_before_sending_sends_nothing(fake: FakeGameball) -> None:
    calls = Calls()
    # one request per minute: the second creation waits for the limiter
    limit = RateLimit(per_second=1, per_window=1, window=60.0)
    async with _session(fake, calls, rate_limit=limit) as gb:
        await gb.create_batch("balance-inquiry", ITEMS)
        task = asyncio.get_running_loop().create_task(gb.create_batch("balance-inquiry", ITEMS))
        await until(lambda: len(_creation_tasks()) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert fake.counts["create"] == 1
    assert len(calls.jobs("session")) == 1
    assert _creation_tasks() == []


async def test_an_ambiguous_outcome_after_a_cancel_is_logged(
    fake: FakeGameball, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gameball_async")
    fake.inject("create", InjectedReply(action="drop_after", delay=IN_FLIGHT))
    async with _session(fake) as gb:
        task = asyncio.get_running_loop().create_task(gb.create_batch("balance-inquiry", ITEMS))
        await until(lambda: fake.counts["create"] == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # the transport's line (it may have landed) and the caller's (nobody got it)
    [warning] = [w for w in _warnings(caplog) if "caller was cancelled" in w]
    assert "may or may not have created a job" in warning
    assert len(fake.jobs) == 1  # it did
    _assert_no_keys(fake, caplog)


async def test_a_caller_gone_in_flight_is_not_retried(
    fake: FakeGameball, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gameball_async")
    fake.inject("create", InjectedReply(status=503, delay=IN_FLIGHT))
    async with _session(fake, retry=RetryPolicy(attempts=5, backoff=0.01)) as gb:
        task = asyncio.get_running_loop().create_task(gb.create_batch("balance-inquiry", ITEMS))
        await until(lambda: fake.counts["create"] == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert fake.counts["create"] == 1
    [warning] = _warnings(caplog)
    assert "created no job" in warning


async def test_a_raising_callback_loses_nothing(
    fake: FakeGameball, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()

    def broken(job: BatchJob) -> None:
        raise RuntimeError("the database is down")

    async with _session(fake, calls) as gb:
        job = await gb.create_batch("balance-inquiry", ITEMS, on_job=broken)
        # a partial's repr would show its arguments: the log names it only
        bound = functools.partial(lambda job, key: broken(job), key=fake.secret_key)
        other = await gb.create_batch("balance-inquiry", ITEMS, on_job=bound)
    assert calls.jobs("session") == [job, other]
    records = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert job.job_id in records[0].getMessage()
    assert other.job_id in records[1].getMessage()
    assert all(r.exc_info is not None for r in records)
    _assert_no_keys(fake, caplog)


async def test_close_while_waiting_to_send_is_a_session_closed_error(fake: FakeGameball) -> None:
    limit = RateLimit(per_second=1, per_window=1, window=60.0)
    async with _session(fake, rate_limit=limit) as gb:
        await gb.create_batch("balance-inquiry", ITEMS)
        task = asyncio.get_running_loop().create_task(gb.create_batch("balance-inquiry", ITEMS))
        await until(lambda: len(_creation_tasks()) == 1)
        await gb.close()
        with pytest.raises(SessionClosedError):
            await task
    assert fake.counts["create"] == 1


async def test_a_creation_cancelled_before_its_task_ran_is_a_session_closed_error() -> None:
    # close() may cancel a creation's task before its first step, so before the
    # coroutine that tells the caller it ended has run: the caller still hears of it.
    creations = Creations()
    sent: list[CreationGuard] = []

    async def send(guard: CreationGuard) -> BatchJob:
        sent.append(guard)
        raise AssertionError("never runs")

    def cancel_all() -> None:
        for task in list(creations._tasks):
            task.cancel()

    asyncio.get_running_loop().call_soon(cancel_all)  # before the task's first step
    with anyio.fail_after(PATIENCE), pytest.raises(SessionClosedError):
        await creations.run(send, operation=Operation.BALANCE_INQUIRY, items=ITEMS)
    assert not sent
    assert len(creations) == 0


# -- point 10: submit_many reports every exit -----------------------------------------


def _items(n: int) -> list[dict[str, str]]:
    return [{"customerId": f"c{i}"} for i in range(n)]


async def test_jobs_carry_their_input_range(fake: FakeGameball) -> None:
    calls = Calls()
    async with _session(fake, calls) as gb:
        jobs = await gb.submit_many(
            "balance-inquiry", _items(7), chunk_size=3, on_job=calls.channel("call")
        )
    assert [job.input_range for job in jobs] == [range(0, 3), range(3, 6), range(6, 7)]
    for job in jobs:
        ids = [item["customerId"] for item in fake.jobs[int(job.job_id)].items]
        assert job.input_range is not None
        assert ids == [f"c{i}" for i in job.input_range]
    assert sorted(calls.jobs("call"), key=_start) == jobs
    assert sorted(calls.jobs("session"), key=_start) == jobs


@pytest.mark.parametrize("asynchronous", [False, True], ids=["iterator", "async-iterator"])
async def test_an_input_that_raises_reports_the_jobs_and_the_unsent_items(
    fake: FakeGameball, asynchronous: bool
) -> None:
    calls = Calls()
    broken = ValueError("line 6 of the file is garbage")

    def produce() -> Iterator[dict[str, str]]:
        yield from _items(5)
        raise broken

    async def produce_async() -> AsyncIterator[dict[str, str]]:
        for item in produce():
            yield item

    source: Any = produce_async() if asynchronous else produce()
    async with _session(fake) as gb:
        with pytest.raises(SubmissionError) as info:
            await gb.submit_many(
                "balance-inquiry", source, chunk_size=2, on_job=calls.channel("call")
            )
    error = info.value
    assert error.__cause__ is broken
    assert error.input_error is broken
    assert [job.input_range for job in error.jobs] == [range(0, 2), range(2, 4)]
    assert error.not_sent == [(4, {"customerId": "c4"})]
    assert error.failed == []
    assert len(calls.jobs("call")) == 2
    assert len(fake.jobs) == 2
    assert "ValueError" in str(error)


async def test_an_error_that_stops_reading_reports_the_items_read(fake: FakeGameball) -> None:
    async with _session(fake, secret_key="wrong") as gb:
        with pytest.raises(SubmissionError) as info:
            await gb.submit_many("balance-inquiry", _items(6), chunk_size=2, max_concurrency=1)
    error = info.value
    [(chunk, auth)] = error.failed
    assert isinstance(auth, AuthenticationError)
    assert chunk == _items(2)
    # the next chunk was read while the first was refused: never sent, reported
    assert error.not_sent == list(enumerate(_items(6)[2:4], 2))
    assert fake.counts["create"] == 1


async def test_a_cancelled_submit_many_reports_the_jobs_in_flight(
    fake: FakeGameball, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()
    caplog.set_level(logging.WARNING, "gameball_async")
    fake.inject("create", *[InjectedReply(action="slow", delay=IN_FLIGHT)] * 3)
    async with _session(fake, calls) as gb:
        task = asyncio.get_running_loop().create_task(
            gb.submit_many(
                "balance-inquiry",
                _items(10),
                chunk_size=2,
                max_concurrency=3,
                on_job=calls.channel("call"),
            )
        )
        await until(lambda: fake.counts["create"] == 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert fake.counts["create"] == 3  # nothing more was sent
    reported = calls.jobs("call")
    assert sorted(int(job.job_id) for job in reported) == sorted(fake.jobs)
    assert [job.input_range for job in sorted(reported, key=_start)] == [
        range(0, 2),
        range(2, 4),
        range(4, 6),
    ]
    warnings = _warnings(caplog)
    for job in reported:
        assert any(job.job_id in warning for warning in warnings)


# -- point 11: create_batch(timeout=) ----------------------------------------------------


async def test_a_timeout_in_the_limiter_wait_sends_nothing(fake: FakeGameball) -> None:
    limit = RateLimit(per_second=1, per_window=1, window=60.0)
    async with _session(fake, rate_limit=limit) as gb:
        await gb.create_batch("balance-inquiry", ITEMS)
        with anyio.fail_after(PATIENCE), pytest.raises(CreationTimeoutError) as info:
            await gb.create_batch("balance-inquiry", ITEMS, timeout=0.2)
    assert isinstance(info.value, GameballError)
    assert isinstance(info.value, TimeoutError)
    assert "nothing was created" in str(info.value)
    assert fake.counts["create"] == 1
    assert _creation_tasks() == []


async def test_a_zero_timeout_sends_nothing(fake: FakeGameball) -> None:
    async with _session(fake) as gb:
        with pytest.raises(CreationTimeoutError):
            await gb.create_batch("balance-inquiry", ITEMS, timeout=0)
        with pytest.raises(ValueError, match="timeout"):
            await gb.create_batch("balance-inquiry", ITEMS, timeout=-1)
    assert fake.counts["create"] == 0


async def test_a_timeout_during_a_retry_pause_sends_nothing_more(fake: FakeGameball) -> None:
    fake.inject("create", InjectedReply(status=503, headers={"Retry-After": "30"}))
    async with _session(fake, retry=RetryPolicy(attempts=3)) as gb:
        with anyio.fail_after(PATIENCE), pytest.raises(CreationTimeoutError) as info:
            await gb.create_batch("balance-inquiry", ITEMS, timeout=5.0)
    assert isinstance(info.value.__cause__, ServerError)
    assert fake.counts["create"] == 1
    assert fake.jobs == {}


async def test_a_timeout_after_sending_returns_the_job(fake: FakeGameball) -> None:
    fake.inject("create", InjectedReply(action="slow", delay=IN_FLIGHT))
    async with _session(fake) as gb:
        with anyio.fail_after(PATIENCE):
            job = await gb.create_batch("balance-inquiry", ITEMS, timeout=0.05)
    assert int(job.job_id) in fake.jobs


async def test_creations_are_not_reported_twice_or_as_ambiguous(fake: FakeGameball) -> None:
    calls = Calls()
    async with _session(fake, calls) as gb:
        jobs = [await gb.create_batch("balance-inquiry", ITEMS) for _ in range(3)]
    assert calls.jobs("session") == jobs
    assert not any(isinstance(j, AmbiguousSubmissionError) for j in jobs)


def _start(job: BatchJob) -> int:
    assert job.input_range is not None
    return job.input_range.start
