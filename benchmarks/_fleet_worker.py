"""One process of the fleet benchmark (``benchmarks/fleet.py`` starts P of them).

Usage: ``python -m benchmarks._fleet_worker CONFIG_JSON``. The config gives the
fake's URL and keys, the client ``setup`` (``fleet``, ``default`` or
``divided``), the process count, the Redis URL and the fake's processing rate.
The worker opens its session (and its fleet) after start-up, prints ``ready``,
then waits for one line on stdin: a JSON list of the job ids it awaits. That
line is the barrier: the parent writes it to every worker at once, after the
jobs exist and the counters were reset. It awaits them with ``as_completed``
and prints one JSON line: the detection lag of each job (seconds after the
fake finished it), its CPU seconds while awaiting, and its session's counters.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

from gameball_async import GameballSession, RateLimit, as_completed
from gameball_async._wire import parse_datetime

SETUPS = ("fleet", "default", "divided")
#: With this environment variable naming a folder, each worker profiles its
#: awaiting with cProfile into ``<folder>/<setup>-<pid>.prof`` (to find where
#: the CPU goes; the profile's own cost inflates the CPU figures of that run).
PROFILE_DIR = "GBBENCH_PROFILE_DIR"


def _profiler() -> cProfile.Profile | None:
    if not os.environ.get(PROFILE_DIR):
        return None
    profile = cProfile.Profile()
    profile.enable()
    return profile


def end_time(raw: dict[str, Any], rate: float) -> float:
    """Wall-clock time at which the fake finished the job (its start plus its items / rate)."""
    started = parse_datetime(raw["startedAt"])
    assert started is not None
    return started.timestamp() + float(raw["totalCount"]) / rate


def _fleet_figures(gb: GameballSession) -> dict[str, Any]:
    """The fleet's own counters (private attributes: figures only, never relied on)."""
    attachment = getattr(gb, "_attachment", None)
    if attachment is None:
        return {}
    limiter = getattr(attachment, "limiter", None)
    return {
        "polls_strategy": type(getattr(attachment, "_polls", None)).__name__,
        "limiter_round_trips": getattr(limiter, "round_trips", None),
        "limiter_fallback_slots": getattr(limiter, "fallback_slots", None),
    }


async def main(config: dict[str, Any]) -> None:
    """Open the session, wait for the job ids, await them, print the figures."""
    setup, processes = config["setup"], int(config["processes"])
    options: dict[str, Any] = {"base_url": config["base_url"]}
    async with AsyncExitStack() as stack:
        if setup == "fleet":
            from gameball_async.fleet import RedisFleet

            fleet = RedisFleet.from_url(config["redis_url"], expected_processes=processes)
            options["fleet"] = await stack.enter_async_context(fleet)
        elif setup == "divided":
            options["rate_limit"] = RateLimit(
                per_second=30 // processes, per_window=360 // processes
            )
        elif setup != "default":
            raise SystemExit(f"unknown setup {setup!r}; one of {SETUPS}")
        gb = await stack.enter_async_context(
            GameballSession(config["api_key"], config["secret_key"], **options)
        )
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        ids: list[str] = json.loads(line)
        rate = float(config["rate"])
        lags: list[float] = []
        profile = _profiler()
        cpu, wall = time.process_time(), time.perf_counter()
        async for job in as_completed([gb.job(job_id, "balance-inquiry") for job_id in ids]):
            detected = time.time()
            assert job.status is not None
            assert job.status.is_terminal
            lags.append(detected - end_time(dict(job.status.raw), rate))
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        if profile is not None:
            profile.disable()
            profile.dump_stats(f"{os.environ[PROFILE_DIR]}/{setup}-{os.getpid()}.prof")
        stats = gb.stats()
        fleet_figures = _fleet_figures(gb)
    print(
        json.dumps(
            {
                "jobs": len(ids),
                "lags": lags,
                "cpu_seconds": cpu,
                "wall_seconds": wall,
                "requests": stats.requests,
                "polls": stats.polls,
                "rate_limited": stats.rate_limited,
                "limiter_wait_seconds": stats.limiter_wait_seconds,
                **fleet_figures,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
