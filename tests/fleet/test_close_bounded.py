"""Closes and calls of a fleet are bounded and honour the caller's cancellation,
whatever Redis or redis-py does (issue 15, section 1).

The hang of issue 15: redis-py dropped the cancellation that stopped the hint
listener (with a ``socket_timeout``, which redis-py 8 sets by default, a
command is sent through ``asyncio.wait_for``, which on Python 3.10 and 3.11
returns and drops a cancellation arriving as the send completes), the listener
went on, and the shielded close waited for it forever. Here a client that
drops *every* cancellation delivered inside a call makes that race certain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis
from _fleet_support import fleet_session, item, sdk_tasks, until
from redis.asyncio.client import PubSub

from gameball_async import BatchState, GameballSession, RateLimit, SessionClosedError
from gameball_async.fleet import RedisFleet
from gameball_async.testing import FakeGameball, RedisServer

pytestmark = pytest.mark.anyio

T = TypeVar("T")
#: A watchdog far above every bound: a hang becomes a failure, never a stuck run.
WATCHDOG = 30.0


def session(fake: FakeGameball, fleet: RedisFleet) -> GameballSession:
    return fleet_session(
        fake, fleet, max_delay=0.3, rate_limit=RateLimit(per_second=50, per_window=500)
    )


async def finishes(work: Awaitable[T], within: float = WATCHDOG) -> T:
    """``await work`` in a task of its own, failing (not hanging) past ``within``."""
    task = asyncio.ensure_future(work)
    await asyncio.wait([task], timeout=within)
    assert task.done(), f"still running after {within} s"
    return task.result()


async def until_no_fleet_task() -> None:
    while sdk_tasks():  # noqa: ASYNC110 (tasks ending: no event to wait on)
        await anyio.sleep(0.01)


async def _deaf(call: Callable[[], Awaitable[T]]) -> T:
    # what redis-py does when the race strikes: the cancellation is dropped and
    # the call carries on
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            continue


class DeafPubSub(PubSub):
    """A real pub/sub of redis-py whose calls drop every cancellation."""

    async def get_message(self, *args: Any, **kwargs: Any) -> Any:
        return await _deaf(lambda: super(DeafPubSub, self).get_message(*args, **kwargs))

    async def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        return await _deaf(lambda: super(DeafPubSub, self).subscribe(*args, **kwargs))


class DeafRedis(aioredis.Redis):
    """A real client of the test's redis-server whose calls drop every cancellation."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        return await _deaf(lambda: super(DeafRedis, self).execute_command(*args, **options))  # type: ignore[no-untyped-call]

    def pubsub(self, **kwargs: Any) -> PubSub:
        return DeafPubSub(self.connection_pool, **kwargs)


async def test_the_reported_sequence_closes_within_its_bound(redis_server: RedisServer) -> None:
    # issue 15's reproduction: kill -9 mid-wait, a stop and a creation while
    # Redis is down, restart on the same port, then a second fleet opened and
    # closed at once, all inside fail_after(5)
    async def scenario() -> list[BatchState]:
        async with FakeGameball(processing_rate=2.0) as fake:
            with anyio.fail_after(5):
                fleet = RedisFleet.from_url(redis_server.url)
                async with fleet, session(fake, fleet) as gb:
                    jobs = [await gb.create_batch("cashback", [item(n)]) for n in range(3)]
                    waits = [
                        asyncio.ensure_future(job.wait(raise_on_failure=False)) for job in jobs
                    ]
                    await anyio.lowlevel.checkpoint()
                    redis_server.kill()
                    await jobs[0].stop()
                    jobs.append(await gb.create_batch("cashback", [item(3)]))
                    states = [status.state for status in await asyncio.gather(*waits)]
                    redis_server.start()
                    await gb.create_batch("cashback", [item(4)])
                    second = RedisFleet.from_url(redis_server.url)
                    async with second, session(fake, second):
                        await second.open_jobs()
            return states

    for _ in range(5):  # the race struck about one run in three before the fix
        states = await finishes(scenario())
        assert states[0] in (BatchState.STOPPED, BatchState.COMPLETED)
        assert states[1:] == [BatchState.COMPLETED] * 2


async def test_a_client_that_drops_cancellations_cannot_hold_the_close(
    redis_server: RedisServer,
) -> None:
    client = DeafRedis.from_url(redis_server.url)
    try:
        async with FakeGameball(processing_rate=50.0) as fake:
            fleet = RedisFleet(client, redis_timeout=0.25)
            gb = session(fake, fleet)

            async def use() -> BatchState:
                async with fleet, gb:
                    job = await gb.create_batch("cashback", [item(1)])
                    return (await job.wait(raise_on_failure=False)).state

            assert await finishes(use(), within=WATCHDOG) is BatchState.COMPLETED
            # and straight after opening, while the listener subscribes
            for _ in range(5):
                fleet = RedisFleet(client, redis_timeout=0.25)
                async with fleet, session(fake, fleet):
                    pass
        # nothing of the fleet is left on the loop once the calls answered
        await finishes(until_no_fleet_task())
    finally:
        await client.aclose()


async def test_a_frozen_redis_cannot_hold_the_close(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gameball_async")
    async with FakeGameball(processing_rate=5.0) as fake:
        fleet = RedisFleet.from_url(redis_server.url, redis_timeout=0.25)
        gb = session(fake, fleet)
        await gb.__aenter__()
        job = await gb.create_batch("cashback", [item(1)])
        waiter = asyncio.ensure_future(job.wait(raise_on_failure=False))
        await anyio.sleep(0.3)  # the fleet polls the job, listens, beats
        redis_server.freeze()
        try:
            bound = fleet.close_bound

            async def close_both() -> None:
                with anyio.fail_after(bound + 10):  # a close is bounded by itself
                    await gb.close()
                    await fleet.aclose()

            await finishes(close_both())
        finally:
            redis_server.thaw()
        await finishes(asyncio.wait([waiter]))
        # woken by the close, or seen completed before it
        error = waiter.exception()
        assert isinstance(error, SessionClosedError) or (
            error is None and waiter.result().state is BatchState.COMPLETED
        ), error
        await finishes(until_no_fleet_task())


@pytest.mark.parametrize("call", ["session close", "fleet close", "open_jobs", "idempotent"])
async def test_a_callers_timeout_takes_effect_with_redis_frozen(
    redis_server: RedisServer, call: str
) -> None:
    async with FakeGameball(processing_rate=0.2) as fake:
        fleet = RedisFleet.from_url(redis_server.url, redis_timeout=5.0)  # a patient fleet
        gb = session(fake, fleet)
        await gb.__aenter__()
        job = await gb.create_batch("cashback", [item(1)])
        waiter = asyncio.ensure_future(job.wait())
        # the fleet holds the job's lease (a close must give it back)
        await finishes(until(lambda: fake.counts["status"] >= 1))
        redis_server.freeze()
        try:

            async def timed_out() -> bool:
                try:
                    with anyio.fail_after(0.5):
                        if call == "session close":
                            await gb.close()
                        elif call == "fleet close":
                            await fleet.aclose()
                        elif call == "open_jobs":
                            await fleet.open_jobs()
                        else:
                            await gb.create_batch("cashback", [item(2)], idempotency_key="k")
                except TimeoutError:
                    return True
                return False

            # the caller's 0.5 s, not the fleet's 5 s timeout nor its close bound
            assert await finishes(timed_out(), within=4.0)
        finally:
            redis_server.thaw()
        await finishes(gb.close())
        await finishes(fleet.aclose())
        await finishes(asyncio.wait([waiter]))
        assert isinstance(waiter.exception(), SessionClosedError)
