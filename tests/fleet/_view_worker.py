"""A second fleet process for the view's tests: it creates one job and awaits it.

Run as ``python tests/fleet/_view_worker.py REDIS_URL BASE_URL API_KEY SECRET_KEY``
with the repository root on ``PYTHONPATH``. Once its job's shared status is
stored (its lease taken) it prints one JSON line ``{"job_id": ..., "process_id":
...}``, then awaits the job until it is killed or its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import anyio
import redis.asyncio as aioredis

from gameball_async import GameballSession, PollPolicy, RateLimit
from gameball_async.fleet import RedisFleet

WHEN = "2024-10-16T08:13:29.290Z"


async def run(url: str, base_url: str, api_key: str, secret_key: str) -> None:
    items: list[dict[str, Any]] = [
        {"customerId": f"w{n}", "transactionId": f"worker{n}", "transactionTime": WHEN, "amount": 1}
        for n in range(400)
    ]
    async with (
        RedisFleet.from_url(url) as fleet,
        GameballSession(
            api_key,
            secret_key,
            base_url=base_url,
            fleet=fleet,
            poll=PollPolicy(initial_delay=0.05, min_delay=0.05, max_delay=0.2),
            rate_limit=RateLimit(per_second=50, per_window=500),
        ) as gb,
        anyio.create_task_group() as tg,
    ):
        job = await gb.create_batch("cashback", items)
        tg.start_soon(job.wait)
        client = aioredis.Redis.from_url(url)
        try:
            with anyio.fail_after(30):
                while not await client.exists(fleet.keys.lease(job.job_id)):  # noqa: ASYNC110
                    await anyio.sleep(0.05)
        finally:
            await client.aclose()
        sys.stdout.write(json.dumps({"job_id": job.job_id, "process_id": fleet.process_id}) + "\n")
        sys.stdout.flush()
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the test lets go
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    asyncio.run(run(*sys.argv[1:5]))
