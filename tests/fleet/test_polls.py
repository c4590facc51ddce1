"""Shared polling between sessions on one Redis, against the in-process fake.

Two sessions with their own Redis clients and process ids stand for two
processes of a fleet: one polls each job, the other reads what it shares.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from _fleet_support import FAST_RETRY, PATIENCE, PollsFleet, fake_server, items, until
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gameball_async import (
    BatchJob,
    BatchState,
    BatchStatus,
    GameballSession,
    PollPolicy,
    RateLimit,
    SessionClosedError,
)
from gameball_async.fleet._polls_scripts import text
from gameball_async.testing import FakeGameball, RedisServer

pytestmark = pytest.mark.anyio

# the owner polls at its own pace; followers react to hints almost at once
OWNER_POLL = PollPolicy(initial_delay=0.05, min_delay=0.25, max_delay=0.5)
FOLLOWER_POLL = PollPolicy(initial_delay=0.05, min_delay=0.005, max_delay=0.5)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGameball]:
    # 30 items at 8/s: each job runs about four seconds, so that on a loaded
    # machine the outage tests' faults still strike while the jobs run
    async with fake_server(processing_rate=8, queue_delay=0.1) as f:
        yield f


@asynccontextmanager
async def member(
    fake: FakeGameball, url: str, process_id: str, *, poll: PollPolicy = OWNER_POLL
) -> AsyncIterator[tuple[GameballSession, PollsFleet]]:
    """One process of the fleet: its own Redis client, fleet and session."""
    # a command on a pooled connection the restart killed is sent again once, as
    # redis-py 6's clients do by default: on the floors' 5.0.1 the first command
    # after a restart could fail on one and count a local poll once recovered
    client = aioredis.Redis.from_url(
        url, retry=Retry(NoBackoff(), 1), retry_on_error=[redis.exceptions.ConnectionError]
    )
    fleet = PollsFleet(client, process_id=process_id, heartbeat=0.3, lease_ttl=1.0)
    try:
        async with GameballSession(
            fake.api_key,
            fake.secret_key,
            base_url=fake.base_url,
            poll=poll,
            retry=FAST_RETRY,
            rate_limit=RateLimit.disabled(),
            fleet=fleet,
        ) as gb:
            yield gb, fleet
    finally:
        await client.aclose()


def progress(statuses: list[BatchStatus]) -> list[tuple[BatchState, int]]:
    return [(status.state, status.processed_count) for status in statuses]


async def watch_into(job: BatchJob, into: list[BatchStatus]) -> None:
    async for status in job.watch():
        into.append(status)


async def create(gb: GameballSession, count: int) -> list[BatchJob]:
    return [await gb.create_batch("cashback", items(30)) for _ in range(count)]


async def test_one_session_polls_the_other_reads_every_change(
    fake: FakeGameball, redis_server: RedisServer
) -> None:
    async with (
        member(fake, redis_server.url, "a") as (ga, fa),
        member(fake, redis_server.url, "b", poll=FOLLOWER_POLL) as (gb, fb),
    ):
        jobs = await create(ga, 3)
        ids = {job.job_id for job in jobs}
        seen_a: dict[str, list[BatchStatus]] = {job_id: [] for job_id in ids}
        seen_b: dict[str, list[BatchStatus]] = {job_id: [] for job_id in ids}
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(watch_into, job, seen_a[job.job_id])
            await until(lambda: fa.polls.owned == ids)
            for job in jobs:
                tg.start_soon(watch_into, gb.job(job.job_id, job.operation), seen_b[job.job_id])
    assert fb.polls.requests == 0
    assert fb.polls.local_fallbacks == 0
    assert fb.polls.shared_reads > 0
    assert fake.counts["status"] == fa.polls.requests
    for job_id in ids:
        a, b = progress(seen_a[job_id]), progress(seen_b[job_id])
        assert a[-1] == (BatchState.COMPLETED, 30)
        assert b[-1] == a[-1]
        # the follower saw every change the owner saw from the time it started
        assert b == a[a.index(b[0]) :]
        assert len(b) >= 2
        assert seen_b[job_id][-1] == seen_a[job_id][-1]  # per-item results too
        assert len(seen_b[job_id][-1].succeeded) == 30
    # the owner's terminal writes took the jobs out of the open set: neither
    # process made a registry write of its own for their ends
    assert fa.terminal == []
    assert fb.terminal == []


async def test_the_owner_closing_mid_job_hands_its_jobs_over(
    fake: FakeGameball, redis_server: RedisServer
) -> None:
    async def wait_until_closed(job: BatchJob) -> None:
        with pytest.raises(SessionClosedError):
            await job.wait()

    results: list[BatchStatus] = []

    async def wait(job: BatchJob) -> None:
        results.append(await job.wait())

    async with member(fake, redis_server.url, "b", poll=FOLLOWER_POLL) as (gb, fb):
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as followers:
                async with (
                    anyio.create_task_group() as owners,
                    member(fake, redis_server.url, "a") as (ga, fa),
                ):
                    jobs = await create(ga, 3)
                    ids = {job.job_id for job in jobs}
                    for job in jobs:
                        owners.start_soon(wait_until_closed, job)
                    await until(lambda: fa.polls.owned == ids)
                    for job in jobs:
                        followers.start_soon(wait, gb.job(job.job_id, job.operation))
                    await until(lambda: fb.polls.followed == ids)
                    sent_before = fake.counts["status"]
                # the owner closed: its leases are given back, the follower takes over
                with anyio.fail_after(4.0):
                    await until(lambda: fb.polls.leases_taken == len(ids) or len(results) == 3)
    assert [status.state for status in results] == [BatchState.COMPLETED] * 3
    assert fb.polls.leases_taken == len(ids)
    assert fb.polls.requests > 0
    assert fake.counts["status"] - sent_before == fb.polls.requests


def reads_needed(fleet: PollsFleet) -> int:
    """The jobs a member follows that only a read can end: those must be polled
    locally once its breaker opened. A job that ended already, or whose last
    status a hint brought just before the fault (news not yet read), needs none."""
    return len(fleet.polls.followed - fleet.polls._news.keys())


async def outage_run(
    fake: FakeGameball,
    server: RedisServer,
    *,
    fault: Any,
    heal: Any,
    caplog: pytest.LogCaptureFixture,
    follower_notices: bool = True,
) -> tuple[PollsFleet, PollsFleet]:
    """Two members await the same jobs; ``fault`` strikes mid-run, ``heal`` ends it.

    Every wait must end with the right status meanwhile, and after healing a
    new job must be polled by one member only again. ``follower_notices``:
    the fault lasts long enough for the follower, which rests on hints and
    calls Redis only at its heartbeats, to see it and poll locally.
    """
    caplog.set_level(logging.INFO, logger="gameball_async")
    async with AsyncExitStack() as stack:
        ga, fa = await stack.enter_async_context(member(fake, server.url, "a"))
        gb, fb = await stack.enter_async_context(member(fake, server.url, "b", poll=FOLLOWER_POLL))
        jobs = await create(ga, 2)
        ids = {job.job_id for job in jobs}
        results: list[BatchStatus] = []
        followed: list[BatchStatus] = []
        # the follower's jobs that only a read can end once its breaker opened
        pending_at_opening: list[int] = []
        fb.breaker.on_open.append(lambda: pending_at_opening.append(reads_needed(fb)))

        async def wait(job: BatchJob, into: list[BatchStatus] | None = None) -> None:
            status = await job.wait()
            results.append(status)
            if into is not None:
                into.append(status)

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(wait, job)
                await until(lambda: fa.polls.owned == ids)
                for job in jobs:
                    tg.start_soon(wait, gb.job(job.job_id, job.operation), followed)
                await until(lambda: fb.polls.followed == ids)
                await fault()
                # the waits carry on: local polling while Redis cannot coordinate
                if follower_notices:
                    # healed only once every wait ended: a read sent into the
                    # outage and answered after it would end a wait without
                    # the fallback this run is here to see
                    await until(lambda: fb.breaker.is_open)
                    await until(lambda: len(results) == 4)
                else:
                    await until(lambda: fb.breaker.is_open or len(results) == 4)
                await heal()
        assert [status.state for status in results] == [BatchState.COMPLETED] * 4
        assert all(status.processed_count == 30 for status in results)
        if follower_notices:
            assert fb.breaker.openings >= 1
            if pending_at_opening[0] > 0:
                assert fb.polls.local_fallbacks >= 1
        # coordination resumes on its own
        await until(lambda: not fa.breaker.is_open and not fb.breaker.is_open)
        later = (await create(ga, 1))[0]
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(later.wait)
                await until(lambda: later.job_id in fa.polls.owned)
                requests_b = fb.polls.requests
                fallbacks_b = fb.polls.local_fallbacks
                final = await gb.job(later.job_id, later.operation).wait()
        assert final.state is BatchState.COMPLETED
        assert fb.polls.requests == requests_b
        assert fb.polls.local_fallbacks == fallbacks_b
    return fa, fb


def fallback_logs(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    warnings = sum(
        1
        for record in caplog.records
        if record.levelno == logging.WARNING and "local polling" in record.getMessage()
    )
    infos = sum(
        1
        for record in caplog.records
        if record.levelno == logging.INFO and "coordination resumed" in record.getMessage()
    )
    return warnings, infos


async def test_redis_killed_and_restarted_mid_run(
    fake: FakeGameball, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def fault() -> None:
        redis_server.kill()

    async def heal() -> None:
        redis_server.start()

    fa, fb = await outage_run(fake, redis_server, fault=fault, heal=heal, caplog=caplog)
    assert fb.breaker.openings >= 1
    warnings, infos = fallback_logs(caplog)
    assert 1 <= warnings <= fa.breaker.openings + fb.breaker.openings
    assert infos >= 1


async def test_redis_frozen_mid_run(
    fake: FakeGameball, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def fault() -> None:
        redis_server.freeze()

    async def heal() -> None:
        redis_server.thaw()

    _, fb = await outage_run(fake, redis_server, fault=fault, heal=heal, caplog=caplog)
    assert fb.breaker.openings >= 1
    assert fallback_logs(caplog)[1] >= 1


async def test_redis_client_pause_mid_run(
    fake: FakeGameball, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = aioredis.Redis.from_url(redis_server.url)

    async def fault() -> None:
        await admin.client_pause(1500, all=True)

    async def heal() -> None:
        await admin.client_unpause()

    try:
        # 1.5 s: the follower, quiet between heartbeats, may not see it at all
        fa, _ = await outage_run(
            fake, redis_server, fault=fault, heal=heal, caplog=caplog, follower_notices=False
        )
    finally:
        await admin.aclose()
    assert fa.breaker.openings >= 1  # the owner, storing each poll, does


async def test_pubsub_connections_killed_mid_run(
    fake: FakeGameball, redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    async with (
        member(fake, redis_server.url, "a") as (ga, fa),
        member(fake, redis_server.url, "b", poll=FOLLOWER_POLL) as (gb, fb),
    ):
        jobs = await create(ga, 2)
        ids = {job.job_id for job in jobs}
        results: list[BatchStatus] = []
        followed: list[BatchStatus] = []
        # the follower's jobs that only a read can end once its breaker opened
        pending_at_opening: list[int] = []
        fb.breaker.on_open.append(lambda: pending_at_opening.append(reads_needed(fb)))

        async def wait(job: BatchJob, into: list[BatchStatus] | None = None) -> None:
            status = await job.wait()
            results.append(status)
            if into is not None:
                into.append(status)

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(wait, job)
                await until(lambda: fa.polls.owned == ids)
                for job in jobs:
                    tg.start_soon(wait, gb.job(job.job_id, job.operation), followed)
                await until(lambda: fb.polls.followed == ids)
                killed = await redis_client.client_kill_filter(_type="pubsub")
                assert int(killed) >= 2
        assert [status.state for status in results] == [BatchState.COMPLETED] * 4
        # the follower never sent a status request: it read what the owner shared
        assert fb.polls.requests == 0
        assert fb.polls.local_fallbacks == 0
        # both listeners are back, and read their followed jobs again after it
        await until(lambda: fa.polls.resyncs > 0 and fb.polls.resyncs > 0)


async def test_what_is_left_in_redis_expires_and_holds_no_secret(
    fake: FakeGameball, redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    async with (
        member(fake, redis_server.url, "a") as (ga, fa),
        member(fake, redis_server.url, "b", poll=FOLLOWER_POLL) as (gb, _),
    ):
        jobs = await create(ga, 2)
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(job.wait)
                await until(lambda: len(fa.polls.owned) == len(jobs))
                for job in jobs:
                    tg.start_soon(gb.job(job.job_id, job.operation).wait)
    names = [text(name) or "" async for name in redis_client.scan_iter()]
    assert names  # the statuses and the fence counter
    for name in names:
        assert await redis_client.pttl(name) > 0, name
        for secret in (fake.api_key, fake.secret_key):
            assert secret not in name
        kind = text(await redis_client.type(name))
        values = (
            list((await redis_client.hgetall(name)).values())
            if kind == "hash"
            else [await redis_client.get(name)]
        )
        for value in values:
            for secret in (fake.api_key, fake.secret_key):
                assert secret not in (text(value) or "")
