"""The account's limit holds across a Redis outage and its recovery (issue 15).

Four processes burst on one account; Redis is killed mid-burst for 10 s and
restarted empty. While it is away each process runs on its local share, started
from its part of what the log last held; once it answers, each enters what it
sent into the new log before its next slot (the log's epoch tells it was lost)
and keeps to its share for one cool-down and window more, while the others may
still run on theirs; so the fake's busiest 1 s and window never exceed the
limit, and no 429 comes. (Before: 14/12 per s, 48/40 per window, nine 429s.)
"""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis
from _fleet_support import burst_workers, fake_process, worker_config

from gameball_async.testing import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.chaos]

# a window longer than the outage, that the fake enforces too
PER_SECOND, PER_WINDOW, WINDOW = 12, 40, 20.0
PROCESSES = 4
OUTAGE = 10.0


async def test_four_processes_stay_within_the_limit_through_an_outage(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    limits = (
        "--rate-per-second", str(PER_SECOND),
        "--rate-per-window", str(PER_WINDOW),
        "--rate-window", str(WINDOW),
    )  # fmt: skip
    async with fake_process(*limits, "--queue-delay", "0", "--processing-rate", "4") as fake:
        configs = [
            worker_config(
                fake,
                redis_server.url,
                (PER_SECOND, PER_WINDOW, WINDOW),
                mode="burst",
                jobs=8,
                offset=100 * n,
                processes=PROCESSES,
                redis_timeout=0.5,
                request_timeout=30.0,
            )
            for n in range(PROCESSES)
        ]
        async with burst_workers("burst", configs) as fleet:
            await fleet.ready()
            await fleet.go(redis_client)
            with anyio.fail_after(60):
                while (await fake.stats())["requests"] < 8:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            redis_server.kill()  # mid-burst
            await anyio.sleep(OUTAGE)  # the outage's length, not a synchronisation
            redis_server.start()  # empty: the account's log is gone
            results = await fleet.results()
        stats = await fake.stats()
    print(
        f"fake: {stats['requests']} requests, max {stats['max_per_second']}/s, "
        f"{stats['max_per_window']}/{WINDOW:g} s, {stats['counts'].get('rate_limited', 0)} 429s; "
        f"fallback slots {[r['fallback_slots'] for r in results]}"
    )
    assert sum(len(r["jobs"]) for r in results) == PROCESSES * 8
    assert sum(r["fallback_slots"] for r in results) > 0  # the outage struck mid-burst
    assert stats["requests"] > PER_WINDOW  # the window was reached: the burst had to wait
    assert stats["max_per_second"] <= PER_SECOND, stats
    assert stats["max_per_window"] <= PER_WINDOW, stats
    assert stats["counts"].get("rate_limited", 0) == 0, stats
    assert sum(r["rate_limited"] for r in results) == 0
