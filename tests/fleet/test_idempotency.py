"""idempotency_key through a fleet: at most one job per key, never a resend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis
from _fleet_support import FAST_RETRY, fake_server, fleet_session, item

from gameball_async import (
    AmbiguousSubmissionError,
    CreationTimeoutError,
    GameballSession,
    InvalidRequestError,
    TransportError,
)
from gameball_async.fleet import RedisFleet
from gameball_async.testing import FakeGameball, InjectedReply, RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fake() -> AsyncIterator[FakeGameball]:
    async with fake_server() as server:
        yield server


def session(fake: FakeGameball, fleet: RedisFleet) -> GameballSession:
    return fleet_session(fake, fleet, max_delay=0.3, retry=FAST_RETRY)


async def test_a_second_call_returns_the_same_job_and_sends_nothing(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    async with RedisFleet(redis_client, retention=600) as fleet, session(fake, fleet) as gb:
        first = await gb.create_batch("cashback", [item(0)], idempotency_key="nightly/1")
        again = await gb.create_batch("cashback", [item(0)], idempotency_key="nightly/1")
        assert again.job_id == first.job_id
        assert fake.counts["create"] == 1
        # another process of the account (its own fleet object) gets it too
        async with RedisFleet(redis_client) as other, session(fake, other) as gb2:
            third = await gb2.create_batch("cashback", [item(0)], idempotency_key="nightly/1")
        assert third.job_id == first.job_id
        assert fake.counts["create"] == 1
        key = fleet.keys.idempotency("nightly/1")
        assert 0 < await redis_client.pttl(key) <= 600_000
        assert b"nightly" not in key.encode()  # hashed


async def test_concurrent_callers_in_one_process_get_one_job(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    fake.inject("create", InjectedReply(action="slow", delay=0.3))
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        ids: list[str] = []

        async def create() -> None:
            job = await gb.create_batch("cashback", [item(0)], idempotency_key="k")
            ids.append(job.job_id)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(create)
    assert len(ids) == 5
    assert len(set(ids)) == 1
    assert fake.counts["create"] == 1


async def test_an_ambiguous_creation_is_never_resent(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    fake.inject("create", InjectedReply(action="drop_after"))
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        with pytest.raises(AmbiguousSubmissionError):
            await gb.create_batch("cashback", [item(0)], idempotency_key="k")
        with pytest.raises(AmbiguousSubmissionError, match="not resent") as caught:
            await gb.create_batch("cashback", [item(0)], idempotency_key="k")
        assert list(caught.value.items) == [item(0)]
    assert fake.counts["create"] == 1
    assert fake.counts["jobs_created"] == 1


async def test_a_refused_creation_gives_the_key_back(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    fake.inject("create", InjectedReply(status=422, body={"code": 3003, "message": "bad"}))
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        with pytest.raises(InvalidRequestError):
            await gb.create_batch("cashback", [item(0)], idempotency_key="k")
        job = await gb.create_batch("cashback", [item(0)], idempotency_key="k")
        assert job.job_id
    assert fake.counts["create"] == 2
    assert fake.counts["jobs_created"] == 1


async def test_a_claim_left_by_a_dead_process_is_ambiguous(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        gb._open()
        # a process that claimed the key and died before recording anything:
        # its heartbeat key is gone
        await redis_client.hset(
            fleet.keys.idempotency("k"),
            mapping={"state": "sending", "owner": "0123456789abcdef", "operation": "cashback"},
        )
        with pytest.raises(AmbiguousSubmissionError, match="may have sent"):
            await gb.create_batch("cashback", [item(0)], idempotency_key="k")
        # and stays so (marked "maybe")
        assert await redis_client.hget(fleet.keys.idempotency("k"), "state") == b"maybe"
    assert fake.counts["create"] == 0


async def test_a_live_owner_is_waited_for_within_the_callers_timeout(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        gb._open()
        owner = "fedcba9876543210"
        await redis_client.set(fleet.keys.process(owner), 1, px=10_000)
        await redis_client.hset(
            fleet.keys.idempotency("k"),
            mapping={"state": "sending", "owner": owner, "operation": "cashback"},
        )
        with anyio.fail_after(5), pytest.raises(CreationTimeoutError, match="still sending"):
            await gb.create_batch("cashback", [item(0)], idempotency_key="k", timeout=0.3)
        # the owner records its job: the waiter gets it
        token = '{"v":1,"job_id":"777","operation":"cashback"}'

        async def owner_finishes() -> None:
            await anyio.sleep(0.2)
            await redis_client.hset(
                fleet.keys.idempotency("k"), mapping={"state": "created", "token": token}
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(owner_finishes)
            with anyio.fail_after(5):
                job = await gb.create_batch("cashback", [item(0)], idempotency_key="k", timeout=3)
        assert job.job_id == "777"
    assert fake.counts["create"] == 0


async def test_submit_many_retried_with_its_prefix_sends_nothing(
    fake: FakeGameball, redis_client: aioredis.Redis
) -> None:
    items = [item(n) for n in range(6)]
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        first = await gb.submit_many("cashback", items, chunk_size=2, idempotency_key="sync/7")
        assert fake.counts["create"] == 3
        again = await gb.submit_many("cashback", items, chunk_size=2, idempotency_key="sync/7")
        assert [j.job_id for j in again] == [j.job_id for j in first]
        assert [j.input_range for j in again] == [range(0, 2), range(2, 4), range(4, 6)]
    assert fake.counts["create"] == 3


async def test_redis_down_refuses_the_creation_and_sends_nothing(
    fake: FakeGameball, redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
        gb._open()
        redis_server.kill()
        with anyio.fail_after(10), pytest.raises(TransportError, match="Redis") as caught:
            await gb.create_batch("cashback", [item(0)], idempotency_key="k")
        assert "nothing was sent" in str(caught.value)
        # without a key the creation goes on (the limiter falls back)
        with anyio.fail_after(10):
            await gb.create_batch("cashback", [item(1)])
    assert fake.counts["create"] == 1
