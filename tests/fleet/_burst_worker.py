"""One process of a fleet, for the multi-process tests of test_fleet.py.

Usage: ``python _burst_worker.py MODE CONFIG_JSON``. It prints ``ready`` once
its session is open, pops a token from the Redis list ``test:go`` (so every
process starts at once), does its part and prints one JSON line of results.

Modes:
- ``burst``: create ``jobs`` one-item jobs concurrently and await them all.
- ``race``: one ``create_batch`` with ``key`` as its idempotency key.
- ``demand``: take limiter slots (no request sent) until the fleet has taken
  ``total``; counts this process's share, and its share after ``warmup``.
- ``crash``: ``jobs`` creations with idempotency keys ``key/n``; the fake is
  slow, so they stay in flight until the test kills this process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import redis.asyncio as aioredis

from gameball_async import (
    AmbiguousSubmissionError,
    GameballSession,
    PollPolicy,
    RateLimit,
    RetryPolicy,
    Timeout,
)
from gameball_async.fleet import RedisFleet

WHEN = "2024-10-16T08:13:29.290Z"


def item(n: int) -> dict[str, Any]:
    return {"customerId": f"c{n}", "transactionId": f"t{n}", "transactionTime": WHEN, "amount": 1}


async def main(mode: str, config: dict[str, Any]) -> None:
    limit = RateLimit(**config["rate_limit"])
    fleet = RedisFleet.from_url(
        config["redis_url"],
        expected_processes=config.get("processes", 1),
        process_ttl=config.get("process_ttl", 5.0),
        redis_timeout=config.get("redis_timeout", 0.5),
    )
    async with (
        fleet,
        GameballSession(
            config["api_key"],
            config["secret_key"],
            base_url=config["base_url"],
            fleet=fleet,
            rate_limit=limit,
            poll=PollPolicy(initial_delay=0.05, min_delay=0.05, max_delay=0.5),
            retry=RetryPolicy(backoff=0.05, max_backoff=0.5),
            timeout=Timeout(total=config.get("request_timeout", 10.0)),
        ) as gb,
    ):
        gb._open()  # attach to the fleet now
        go = aioredis.Redis.from_url(config["redis_url"])
        await go.ping()  # connected before the barrier, not while the test's faults begin
        print("ready", flush=True)
        # a barrier: the test pushes one token per process, all wake at once
        await go.blpop(["test:go"], timeout=60)
        await go.aclose()
        result: dict[str, Any] = {"process": fleet.process_id}
        if mode == "burst":
            base = config["offset"]
            jobs = await asyncio.gather(
                *(gb.create_batch("cashback", [item(base + n)]) for n in range(config["jobs"]))
            )
            await asyncio.gather(*(job.wait() for job in jobs))
            result["jobs"] = [job.job_id for job in jobs]
        elif mode == "race":
            try:
                job = await gb.create_batch("cashback", [item(0)], idempotency_key=config["key"])
                result["job"] = job.job_id
            except AmbiguousSubmissionError:
                result["job"] = "ambiguous"
        elif mode == "demand":
            limiter = gb._open().limiter
            counter = aioredis.Redis.from_url(config["redis_url"])
            taken = steady = 0

            async def demand() -> None:
                nonlocal taken, steady
                while True:
                    async with limiter.slot():
                        n = await counter.incr("test:taken")
                        if n > config["total"]:
                            return
                        taken += 1
                        # once every process waits its turn: the free slots of the
                        # first second(s) go first come, first served
                        steady += n > config["warmup"]

            await asyncio.gather(*(demand() for _ in range(3)))
            await counter.aclose()
            result["taken"] = taken
            result["steady"] = steady
            result["round_trips"] = limiter.round_trips  # type: ignore[attr-defined]
        elif mode == "crash":
            await asyncio.gather(
                *(
                    gb.create_batch("cashback", [item(n)], idempotency_key=f"{config['key']}/{n}")
                    for n in range(config["jobs"])
                )
            )
            result["unexpected"] = "the creations ended before the kill"
        stats = gb.stats()
        result["fallback_slots"] = gb._open().limiter.fallback_slots  # type: ignore[attr-defined]
        result["requests"] = stats.requests
        result["rate_limited"] = stats.rate_limited
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
