"""The fleet's job registry: records, the open set, open_jobs()."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from _fleet_support import eventually, fake_server, item, until
from _fleet_support import fleet_session as session

from gameball_async import GameballError, Operation
from gameball_async._coordination import account_namespace
from gameball_async.fleet import RedisFleet
from gameball_async.fleet._registry import Registry
from gameball_async.testing import FakeGameball, RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fake() -> AsyncIterator[FakeGameball]:
    # slow jobs: they stay open until the test lets them finish
    async with fake_server(processing_rate=0.5) as f:
        yield f


async def test_created_jobs_are_recorded_and_open_until_seen_terminal(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    async with RedisFleet(redis_client, retention=3600) as fleet, session(fake, fleet) as gb:
        jobs = [await gb.create_batch("cashback", [item(n)]) for n in range(3)]
        tokens = sorted(job.to_token() for job in jobs)

        async def all_open() -> bool:
            return sorted(await fleet.open_jobs()) == tokens

        await eventually(all_open)
        record: dict[Any, Any] = await redis_client.hgetall(fleet.keys.job(jobs[0].job_id))
        assert record[b"token"].decode() == jobs[0].to_token()
        assert record[b"operation"] == b"cashback"
        assert int(record[b"created_ms"]) > 0
        assert 0 < await redis_client.pttl(fleet.keys.job(jobs[0].job_id)) <= 3_600_000
        # another process of the account sees them, and can reattach
        namespace = account_namespace(fake.api_key)
        async with RedisFleet(redis_client, namespace=namespace) as other:
            assert sorted(await other.open_jobs()) == tokens
        # one job ends and is awaited here: it leaves the open set within seconds
        fake.fail_job(int(jobs[0].job_id))
        with anyio.fail_after(10):
            await jobs[0].wait(raise_on_failure=False)

        async def two_open() -> bool:
            return sorted(await fleet.open_jobs()) == sorted(j.to_token() for j in jobs[1:])

        await eventually(two_open)
        # a stop read outside the poller counts as seen too
        await jobs[1].stop()

        async def one_open() -> bool:
            return await fleet.open_jobs() == [jobs[2].to_token()]

        await eventually(one_open)
        assert json.loads((await fleet.open_jobs())[0])["job_id"] == jobs[2].job_id


async def test_a_job_is_open_as_soon_as_its_creation_returns(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    # another worker may reattach the instant create_batch returns here
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        for n in range(5):
            job = await gb.create_batch("cashback", [item(n)])
            assert job.to_token() in await fleet.open_jobs()


async def test_open_jobs_needs_a_namespace(redis_client: aioredis.Redis) -> None:
    async with RedisFleet(redis_client) as fleet:
        with pytest.raises(GameballError, match="no namespace yet"):
            await fleet.open_jobs()
    async with RedisFleet(redis_client, namespace="mine") as fleet:
        assert await fleet.open_jobs() == []


async def test_records_made_while_redis_is_down_are_written_when_it_returns(
    fake: FakeGameball,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gameball_async")
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        await gb.create_batch("cashback", [item(0)])
        redis_server.kill()
        with anyio.fail_after(10):
            job = await gb.create_batch("cashback", [item(1)])
        await until(lambda: fleet._background.retried > 0)
        assert any("retrying in the background" in r.getMessage() for r in caplog.records)
        redis_server.start()

        async def recorded() -> bool:
            try:
                return job.to_token() in await fleet.open_jobs()
            except GameballError:
                return False

        await eventually(recorded, 20.0)
        assert fleet._background.pending_writes == 0


async def test_an_expired_record_leaves_the_open_set(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        job = await gb.create_batch("cashback", [item(0)])

        async def listed() -> bool:
            return await fleet.open_jobs() == [job.to_token()]

        await eventually(listed)
        await redis_client.delete(fleet.keys.job(job.job_id))  # as if past its retention
        assert await fleet.open_jobs() == []

        async def dropped() -> bool:
            return await redis_client.zcard(fleet.keys.open_jobs) == 0

        await eventually(dropped)


async def test_a_job_seen_ending_by_every_process_costs_no_registry_write_of_its_own(
    fake: FakeGameball, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the write that shares a terminal status takes the job out of the open
    # set, so neither the owner nor its followers send a registry write for it
    writes: list[str] = []
    real_terminal = Registry.terminal

    def counted(self: Registry, job_id: str, state: str = "terminal") -> None:
        writes.append(job_id)
        real_terminal(self, job_id, state)

    monkeypatch.setattr(Registry, "terminal", counted)
    async with (
        RedisFleet(redis_client) as one,
        session(fake, one) as gb_one,
        RedisFleet(redis_client) as other,
        session(fake, other) as gb_other,
    ):
        jobs = [await gb_one.create_batch("cashback", [item(n)]) for n in range(3)]
        attached = [gb_other.job(job.job_id, "cashback") for job in jobs]
        for job in jobs:
            fake.fail_job(int(job.job_id))
        with anyio.fail_after(15):
            for job in [*jobs, *attached]:
                await job.wait(raise_on_failure=False)

        async def none_open() -> bool:
            return await one.open_jobs() == []

        await eventually(none_open)
        for job in jobs:
            record = await redis_client.hget(one.keys.job(job.job_id), "terminal")
            assert record == b"terminal"
    assert writes == []


async def test_a_record_written_after_the_job_was_seen_ending_is_not_open(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    # Redis down at the creation: its record is written late, maybe after
    # another process shared the job's terminal status
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        job = await gb.create_batch("cashback", [item(0)])
        await redis_client.delete(fleet.keys.job(job.job_id), fleet.keys.open_jobs)
        fake.fail_job(int(job.job_id))
        await job.refresh()  # a terminal status read outside the poller is shared

        async def shared() -> bool:
            stored = await redis_client.hget(fleet.keys.status(job.job_id), "terminal")
            return stored == b"1"

        await eventually(shared)
        await fleet._registry_now.created(job.to_token(), Operation.CASHBACK, job.job_id)
        assert await fleet.open_jobs() == []
        assert await redis_client.hget(fleet.keys.job(job.job_id), "token") is not None
