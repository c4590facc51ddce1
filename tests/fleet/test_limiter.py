"""The account-wide limiter against a real redis-server (several limiters = processes)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis
from _fleet_support import PATIENCE

from gameball_async import RateLimit
from gameball_async.fleet._background import Background
from gameball_async.fleet._breaker import Breaker
from gameball_async.fleet._keys import Keys
from gameball_async.fleet._limiter import FleetRateLimiter, local_share
from gameball_async.testing import RedisServer
from gameball_async.testing._sliding_window import max_in_window

pytestmark = pytest.mark.anyio

KEYS = Keys("acct")

MakeLimiter = Callable[..., FleetRateLimiter]


@asynccontextmanager
async def limiters(client: aioredis.Redis) -> AsyncIterator[MakeLimiter]:
    """Build limiters as separate processes would have them (own id, breaker, tasks)."""
    backgrounds: list[Background] = []

    def make(
        limit: RateLimit, *, bound: float = 5.0, processes: int = 1, timeout: float = 0.3
    ) -> FleetRateLimiter:
        background = Background()
        backgrounds.append(background)
        return FleetRateLimiter(
            client,
            KEYS,
            Breaker(timeout=timeout, cooldown=0.5),
            limit,
            request_bound=bound,
            process_id=uuid.uuid4().hex[:16],
            expected_processes=processes,
            spawn=background.spawn,
        )

    try:
        yield make
    finally:
        for background in backgrounds:
            await background.aclose(2.0)


async def server_time(client: aioredis.Redis) -> float:
    seconds, micros = await client.time()
    return seconds + micros / 1e6


async def test_both_windows_hold_across_limiters(redis_client: aioredis.Redis) -> None:
    limit = RateLimit(per_second=5, per_window=12, window=3.0, margin=0.05)
    stamps: list[float] = []
    async with limiters(redis_client) as make:
        fleet = [make(limit) for _ in range(3)]

        async def send(limiter: FleetRateLimiter) -> None:
            async with limiter.slot():
                # what the server would see: a time inside the slot, on Redis's clock
                stamps.append(await server_time(redis_client))

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                for n in range(18):
                    tg.start_soon(send, fleet[n % 3])
    assert len(stamps) == 18
    assert max_in_window(stamps, 1.0) <= 5
    assert max_in_window(stamps, 3.0) <= 12
    # the 13th request waited for the long window: 18 cannot fit in 3 s
    assert max(stamps) - min(stamps) >= 3.0


async def test_a_request_in_flight_counts_until_its_reply(redis_client: aioredis.Redis) -> None:
    limit = RateLimit(per_second=3, per_window=100, margin=0.05)
    async with limiters(redis_client) as make:
        holder, other = make(limit, bound=30.0), make(limit)
        held = [holder.slot() for _ in range(3)]
        for slot in held:
            await slot.__aenter__()
        assert holder.in_flight == 3
        # in flight: entered at its deadline (now + bound)
        now = await server_time(redis_client)
        entries: Any = await redis_client.zrange(KEYS.limiter_log, 0, -1, withscores=True)
        scores = [score for _, score in entries]
        assert len(scores) == 3
        assert all(score / 1000 > now + 25 for score in scores)
        got = anyio.Event()

        async def take() -> None:
            async with other.slot():
                got.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            # longer than the 1 s window: still refused, the three are in flight
            with anyio.move_on_after(1.5):
                await got.wait()
            assert not got.is_set()
            released = time.monotonic()
            await held[0].__aexit__(None, None, None)
            with anyio.fail_after(PATIENCE):
                await got.wait()
            # counted from its reply: the slot freed one window (+ margin) later
            assert time.monotonic() - released >= 0.9
        for slot in held[1:]:
            await slot.__aexit__(None, None, None)


async def test_a_dead_process_frees_its_slots_at_their_deadline(
    redis_client: aioredis.Redis,
) -> None:
    limit = RateLimit(per_second=2, per_window=100, margin=0.0)
    async with limiters(redis_client) as make:
        dead, alive = make(limit, bound=1.5), make(limit)
        for _ in range(2):
            await dead.slot().__aenter__()  # never left: the process "died"
        started = time.monotonic()
        with anyio.fail_after(PATIENCE):
            async with alive.slot():
                pass
        waited = time.monotonic() - started
        # the deadline (1.5 s) plus the 1 s window it then counts in
        assert 2.0 <= waited < 6.0


async def test_a_pause_holds_every_process(redis_client: aioredis.Redis) -> None:
    limit = RateLimit(per_second=100, per_window=1000)
    async with limiters(redis_client) as make:
        hit, other = make(limit), make(limit)
        hit.pause(1.0)
        with anyio.fail_after(PATIENCE):
            while await redis_client.pttl(KEYS.limiter_pause) <= 0:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        assert 0 < await redis_client.pttl(KEYS.limiter_pause) <= 1000
        started = time.monotonic()
        waited: dict[str, float] = {}

        async def send(name: str, limiter: FleetRateLimiter) -> None:
            async with limiter.slot():
                waited[name] = time.monotonic() - started

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "hit", hit)  # held locally, at once
            tg.start_soon(send, "other", other)  # held by the fleet's pause key
        assert min(waited.values()) >= 0.6, waited


async def test_fallback_when_redis_dies_and_recovery_when_it_returns(
    redis_server: RedisServer, redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gameball_async")
    limit = RateLimit(per_second=40, per_window=1000)
    async with limiters(redis_client) as make:
        limiter = make(limit, processes=4)
        async with limiter.slot():
            pass
        assert limiter.fallback_slots == 0
        redis_server.kill()
        with anyio.fail_after(PATIENCE):
            for _ in range(12):
                async with limiter.slot():
                    pass
        assert limiter.fallback_slots >= 9
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "falling back" in warnings[0].getMessage()
        redis_server.start()
        before = limiter.fallback_slots
        with anyio.fail_after(PATIENCE):
            while True:
                async with limiter.slot():
                    pass
                if limiter.fallback_slots == before:
                    break  # that slot came from Redis again
                before = limiter.fallback_slots
                await anyio.sleep(0.1)
        assert any("resumed" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
        with anyio.fail_after(PATIENCE):
            while await redis_client.zcard(KEYS.limiter_log) == 0:  # noqa: ASYNC110
                await anyio.sleep(0.01)


async def test_the_fallback_share_divides_the_limit() -> None:
    share = local_share(RateLimit(per_second=30, per_window=360), 8)
    assert (share.per_second, share.per_window) == (3, 45)
    assert local_share(RateLimit(per_second=2, per_window=3), 8).per_second == 1


async def test_a_paused_redis_never_holds_a_request(redis_client: aioredis.Redis) -> None:
    limit = RateLimit(per_second=100, per_window=1000)
    async with limiters(redis_client) as make:
        limiter = make(limit)
        async with limiter.slot():
            pass
        await redis_client.client_pause(2500)
        with anyio.fail_after(PATIENCE):
            for _ in range(5):
                started = time.monotonic()
                async with limiter.slot():
                    pass
                assert time.monotonic() - started < 1.0  # the Redis timeout is 0.3 s
        assert limiter.fallback_slots == 5


async def test_equal_demand_gets_equal_shares(redis_client: aioredis.Redis) -> None:
    limit = RateLimit(per_second=40, per_window=10_000, margin=0.0)
    counts: dict[str, int] = {}
    total = 160
    async with limiters(redis_client) as make:
        fleet = [make(limit, bound=5.0) for _ in range(4)]
        done = anyio.Event()

        async def demand(limiter: FleetRateLimiter) -> None:
            while not done.is_set():
                async with limiter.slot():
                    counts[limiter.waiter] = counts.get(limiter.waiter, 0) + 1
                    if sum(counts.values()) >= total:
                        done.set()
                await anyio.lowlevel.checkpoint()

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                for limiter in fleet:
                    for _ in range(3):  # several tasks per process: the local FIFO
                        tg.start_soon(demand, limiter)
    mean = sum(counts.values()) / len(fleet)
    assert len(counts) == 4
    spread = max(abs(n - mean) / mean for n in counts.values())
    print(f"shares {sorted(counts.values())} spread {spread:.1%}")
    assert spread <= 0.25


async def test_overhead_per_acquire(redis_client: aioredis.Redis) -> None:
    limit = RateLimit(per_second=10_000, per_window=100_000)
    async with limiters(redis_client) as make:
        limiter = make(limit)
        n = 300
        started = time.perf_counter()
        for _ in range(n):
            async with limiter.slot():
                pass
        per_acquire = (time.perf_counter() - started) / n * 1000
        await anyio.sleep(0.05)
    print(f"{per_acquire:.3f} ms per acquire, {limiter.round_trips / n:.2f} round trips")
    # one script per acquire; each release rides on the next acquire
    assert limiter.round_trips <= n + 2
    assert per_acquire < 20.0


async def test_a_release_rides_on_the_next_acquire(redis_client: aioredis.Redis) -> None:
    # issue 15 §3: one round trip per request, the release folded into the next
    # script call; a release with no acquire after it goes on its own soon
    limit = RateLimit(per_second=1000, per_window=10_000)
    async with limiters(redis_client) as make:
        limiter = make(limit, bound=30.0)
        for _ in range(20):
            async with limiter.slot():
                pass
        assert limiter.round_trips == 20  # acquires only, so far
        now = await server_time(redis_client)
        with anyio.fail_after(PATIENCE):
            while True:  # the last release, on its own after RELEASE_DELAY
                entries: Any = await redis_client.zrange(KEYS.limiter_log, 0, -1, withscores=True)
                if all(score / 1000 <= now + 1 for _, score in entries):
                    break
                await anyio.sleep(0.02)
        assert len(entries) == 20  # every one counted from its reply, none at its deadline
        assert limiter.round_trips == 21


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until ``condition()`` holds, a loop turn at a time."""
    with anyio.fail_after(PATIENCE):
        while not condition():
            await anyio.lowlevel.checkpoint()


async def test_one_acquire_takes_the_slots_of_the_tasks_queued_behind_it(
    redis_client: aioredis.Redis,
) -> None:
    # issue 15 §3: a burst of requests in one process is one round trip, not
    # one each: the task asking takes a slot for every task queued in its FIFO
    limit = RateLimit(per_second=1000, per_window=10_000)
    async with limiters(redis_client) as make:
        limiter = make(limit, bound=30.0)
        entered = 0

        async def send() -> None:
            nonlocal entered
            async with limiter.slot():
                entered += 1

        async with anyio.create_task_group() as tg:
            await limiter._lock.acquire()  # a task mid-acquire: the others queue
            for _ in range(12):
                tg.start_soon(send)
            await until(lambda: limiter._lock.statistics().tasks_waiting == 12)
            assert limiter.round_trips == 0
            limiter._lock.release()  # the twelve go now
            await until(lambda: entered == 12)
        assert limiter.round_trips == 1  # one acquire for the twelve
        entries: Any = await redis_client.zrange(KEYS.limiter_log, 0, -1, withscores=True)
        assert len({member for member, _ in entries}) == 12


async def test_a_batch_takes_no_more_than_the_limit_leaves(
    redis_client: aioredis.Redis,
) -> None:
    limit = RateLimit(per_second=5, per_window=10_000, margin=0.05)
    stamps: list[float] = []
    async with limiters(redis_client) as make:
        limiter, other = make(limit), make(limit)
        async with other.slot():  # another process takes one of the five
            stamps.append(await server_time(redis_client))

        async def send() -> None:
            async with limiter.slot():
                stamps.append(await server_time(redis_client))

        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                for _ in range(14):
                    tg.start_soon(send)
    assert len(stamps) == 15
    assert max_in_window(stamps, 1.0) <= 5  # (the round trips saved: the test above)


async def test_a_slot_taken_for_a_task_that_went_away_is_given_back(
    redis_client: aioredis.Redis,
) -> None:
    # the acquire took slots for two queued tasks; one is cancelled before its
    # turn: its slot goes back as a request answered at once, not left in the
    # log at its deadline (where it would count until the request bound)
    limit = RateLimit(per_second=1000, per_window=10_000)
    async with limiters(redis_client) as make:
        limiter = make(limit, bound=30.0, timeout=PATIENCE)
        entered = 0
        leaving = anyio.CancelScope()

        async def send(scope: anyio.CancelScope) -> None:
            nonlocal entered
            with scope:
                async with limiter.slot():
                    entered += 1

        async with anyio.create_task_group() as tg:
            await limiter._lock.acquire()  # a task mid-acquire: the others queue
            for scope in (anyio.CancelScope(), anyio.CancelScope(), leaving):
                tg.start_soon(send, scope)
            await until(lambda: limiter._lock.statistics().tasks_waiting == 3)
            # the first asks for the three and its call hangs until the unpause
            await redis_client.client_pause(10_000, all=False)  # writes (scripts) wait
            limiter._lock.release()
            await until(lambda: limiter.round_trips == 1)
            leaving.cancel()  # the third goes away while the call is in flight
            await until(lambda: limiter._lock.statistics().tasks_waiting == 1)
            await redis_client.client_unpause()
            await until(lambda: entered == 2 and limiter.in_flight == 0)
        assert limiter.round_trips == 1
        assert not limiter._pool
        now = await server_time(redis_client)
        limiter.flush_releases()
        with anyio.fail_after(PATIENCE):
            while True:
                entries: Any = await redis_client.zrange(KEYS.limiter_log, 0, -1, withscores=True)
                if all(score / 1000 <= now + 1 for _, score in entries):
                    break
                await anyio.sleep(0.02)
        assert len(entries) == 3  # three taken, none left at its deadline


async def test_a_closing_session_sends_the_releases_still_waiting(
    redis_client: aioredis.Redis,
) -> None:
    limit = RateLimit(per_second=1000, per_window=10_000)
    async with limiters(redis_client) as make:
        limiter = make(limit, bound=30.0)
        async with limiter.slot():
            pass
        limiter.flush_releases()  # what a session's close does
    # the background closed: the release was sent, not left at the deadline
    now = await server_time(redis_client)
    entries: Any = await redis_client.zrange(KEYS.limiter_log, 0, -1, withscores=True)
    assert len(entries) == 1
    assert entries[0][1] / 1000 <= now


async def test_a_lost_log_gets_what_this_process_sent_again(
    redis_client: aioredis.Redis,
) -> None:
    # issue 15: Redis restarted empty (or flushed) mid-window: the limiter sees
    # the log's epoch change and enters what it sent in the window before its
    # next slot, so the window stays full
    limit = RateLimit(per_second=100, per_window=10, window=30.0)
    async with limiters(redis_client) as make:
        limiter = make(limit, bound=30.0)
        with anyio.fail_after(PATIENCE):
            for _ in range(8):
                async with limiter.slot():
                    pass
            held = limiter.slot()
            await held.__aenter__()  # one in flight across the loss
        await redis_client.flushall()
        with anyio.fail_after(PATIENCE):
            async with limiter.slot():  # the tenth: room for one
                pass
        assert limiter.backfilled == 9
        assert await redis_client.zcard(KEYS.limiter_log) == 10
        await held.__aexit__(None, None, None)
        got = anyio.Event()

        async def take() -> None:
            async with limiter.slot():
                got.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            with anyio.move_on_after(1.5):  # far inside the 30 s window
                await got.wait()
            assert not got.is_set()  # the window is full again
            tg.cancel_scope.cancel()


async def test_the_local_share_starts_from_the_log_last_seen(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # issue 15: an outage mid-window does not hand each process a fresh share:
    # the share starts from its part (count / processes) of what the log held,
    # and of what the others may have sent since (up to a second's limit): a
    # view 30 ms old once let a process send 2 in a second the others filled
    limit = RateLimit(per_second=4, per_window=40, window=30.0)
    async with limiters(redis_client) as make:
        limiter = make(limit, processes=2)
        with anyio.fail_after(PATIENCE):
            for _ in range(3):
                async with limiter.slot():
                    pass
        redis_server.kill()
        # the 1 s share (4 / 2) counts as used by the others' possible second
        assert not await _granted_within(limiter, 0.8)
        with anyio.fail_after(PATIENCE):
            async with limiter.slot():
                pass
        assert limiter.fallback_slots == 1
        # of the window's share of 20: ceil(3 / 2) seen, ceil(4 / 2) since, 1 sent
        assert len(limiter._fallback._long) == 2 + 2 + 1


async def _granted_within(limiter: FleetRateLimiter, seconds: float) -> bool:
    got = anyio.Event()

    async def take() -> None:
        async with limiter.slot():
            got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        with anyio.move_on_after(seconds):
            await got.wait()
        tg.cancel_scope.cancel()
    return got.is_set()


async def test_a_process_that_never_reached_redis_counts_its_share_as_used(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # issue 15: a process late to start met the outage before any answer; with
    # a fresh share it sent 3 more in a second the others had filled (15/12)
    limit = RateLimit(per_second=100, per_window=8, window=30.0)
    async with limiters(redis_client) as make:
        limiter = make(limit, processes=2)
        redis_server.kill()
        assert not await _granted_within(limiter, 1.5)  # far inside the 30 s window
        assert limiter.fallback_slots == 0


async def test_a_view_older_than_a_second_counts_the_share_as_used(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # what the others sent since this process last saw the log is unknown
    limit = RateLimit(per_second=100, per_window=8, window=30.0)
    async with limiters(redis_client) as make:
        limiter = make(limit, processes=2)
        with anyio.fail_after(PATIENCE):
            async with limiter.slot():
                pass
        assert limiter._seen is not None
        seen, short, long = limiter._seen
        limiter._seen = (seen - 2.0, short, long)  # idle for 2 s before the outage
        redis_server.kill()
        assert not await _granted_within(limiter, 1.5)


async def test_a_process_alone_starts_its_share_from_what_it_sent(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # expected_processes=1: the log held only its own requests, so an old view
    # does not cost it the window
    limit = RateLimit(per_second=100, per_window=8, window=30.0)
    async with limiters(redis_client) as make:
        limiter = make(limit)
        with anyio.fail_after(PATIENCE):
            for _ in range(5):
                async with limiter.slot():
                    pass
        assert limiter._seen is not None
        seen, short, long = limiter._seen
        limiter._seen = (seen - 2.0, short, long)
        redis_server.kill()
        with anyio.fail_after(PATIENCE):
            for _ in range(3):  # 8 - 5
                async with limiter.slot():
                    pass
        assert limiter.fallback_slots == 3
        assert not await _granted_within(limiter, 1.5)


async def test_requests_sent_on_the_fallback_count_once_redis_is_back(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # issue 15: what a process sent on its local share while Redis was down is
    # entered into the log when Redis answers again, so a process that never
    # saw the outage cannot take the account over its limit afterwards
    limit = RateLimit(per_second=100, per_window=20, window=30.0)
    async with limiters(redis_client) as make:
        away, other = make(limit), make(limit)
        redis_server.kill()
        with anyio.fail_after(PATIENCE):
            for _ in range(12):
                async with away.slot():
                    pass
            held = away.slot()
            await held.__aenter__()  # one in flight across the recovery
        assert away.fallback_slots == 13
        redis_server.start()  # empty: the log is gone
        with anyio.fail_after(PATIENCE):
            while True:  # until the away process uses Redis again
                before = away.fallback_slots
                async with away.slot():
                    pass
                if away.fallback_slots == before:
                    break
                await anyio.sleep(0.1)
        assert away.backfilled >= 13
        await held.__aexit__(None, None, None)
        # 13 + the slots taken after: the window has room for what is left only
        logged = await redis_client.zcard(KEYS.limiter_log)
        assert logged >= 14
        granted = 0
        with anyio.move_on_after(2.0):  # far inside the 30 s window
            while True:
                async with other.slot():
                    granted += 1
        assert granted <= limit.per_window - 14


async def test_releases_taken_for_another_call_are_not_sent_again(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    limit = RateLimit(per_second=100, per_window=1000)
    async with limiters(redis_client) as make:
        limiter = make(limit)
        with anyio.fail_after(PATIENCE):
            async with limiter.slot():
                pass
        taken = limiter.take_releases()
        assert taken is not None
        log, ttl, pairs = taken
        assert log == KEYS.limiter_log
        assert ttl > limit.window * 1000
        assert len(pairs) == 2
        assert isinstance(pairs[0], int)
        assert isinstance(pairs[1], str)
        assert pairs[1].startswith(limiter.waiter)
        assert limiter.take_releases() is None
        assert limiter._flush is None  # its own release call is off
