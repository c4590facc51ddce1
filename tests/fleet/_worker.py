"""One fleet process for the multi-process shared-polling tests.

Run as ``python tests/fleet/_worker.py --redis URL --base-url URL ...`` with the
repository root on ``PYTHONPATH``. It opens a session attached to a
:class:`PollsFleet`, prints ``{"ready": true}``, reads JSON lines from stdin (``{"jobs": [job ids],
"last": false}`` adds jobs to await as they are created; a line without
``"last": false`` is the last), awaits every job and prints one JSON line with
the outcome of each wait and its shared-polling counters, then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import anyio
import redis.asyncio as aioredis
from _fleet_support import PollsFleet, until

from gameball_async import BatchJob, GameballSession, PollPolicy, RateLimit
from gameball_async.fleet._breaker import Breaker

# jitter off: the runs with 1 and with 4 processes poll on the same schedule
POLL = PollPolicy(initial_delay=0.3, min_delay=0.05, max_delay=2.0, jitter=0.0)


def _emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def _read_line() -> str:
    return await anyio.to_thread.run_sync(sys.stdin.readline)


async def run(args: argparse.Namespace) -> None:
    client = aioredis.Redis.from_url(args.redis)
    fleet = PollsFleet(
        client,
        process_id=args.process_id,
        breaker=Breaker(),
        lease_ttl=args.lease_ttl,
        heartbeat=args.heartbeat,
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        async with GameballSession(
            args.api_key,
            args.secret_key,
            base_url=args.base_url,
            poll=POLL,
            rate_limit=RateLimit(per_second=args.per_second, per_window=args.per_window),
            fleet=fleet,
        ) as gb:
            gb._poller  # noqa: B018  (opens the session: the fleet attaches now)
            await until(lambda: fleet.polls.listening)
            _emit({"ready": True})

            async def wait(job: BatchJob) -> None:
                status = await job.wait(raise_on_failure=False)
                results[job.job_id] = {
                    "state": status.state.value,
                    "processed": status.processed_count,
                    "succeeded": len(status.succeeded),
                    "done_at": time.time(),
                }

            async with anyio.create_task_group() as tg:
                while True:
                    order = json.loads(await _read_line())
                    for job_id in order["jobs"]:
                        tg.start_soon(wait, gb.job(job_id, "cashback"))
                    if order.get("last", True):
                        break
            polls = fleet.polls
            report = {
                "results": results,
                "requests": polls.requests,
                "shared_reads": polls.shared_reads,
                "local_fallbacks": polls.local_fallbacks,
                "leases_taken": polls.leases_taken,
                "leases_lost": polls.leases_lost,
                "writes_refused": polls.writes_refused,
                "polls": gb.stats().polls,
            }
    finally:
        await client.aclose()
    _emit(report)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--process-id", required=True)
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    # without the fleet's account-wide limiter, each process keeps to its share
    parser.add_argument("--per-second", type=int, default=10)
    parser.add_argument("--per-window", type=int, default=120)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
