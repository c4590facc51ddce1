"""Shared polling across real processes: the fake in its own process, one Redis.

Each worker (``_worker.py``) is one process of the fleet awaiting jobs the
test created; the fake enforces the account's rate limits and counts every
status request it receives.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from _fleet_support import Fake, fake_process
from _fleet_support import poll_workers as workers

from gameball_async._coordination import account_namespace
from gameball_async.fleet._keys import Keys
from gameball_async.fleet._polls_scripts import fence_of, text
from gameball_async.testing import RedisServer

pytestmark = pytest.mark.anyio

#: Bound on one whole multi-process run.
RUN_PATIENCE = 50.0
#: Jobs awaited by every process: few enough that no process hits its share of the limit.
JOBS = 8


async def holders(client: aioredis.Redis, keys: Keys, jobs: Sequence[str]) -> dict[str, str]:
    """Job id -> the lease value of every job whose lease is held now."""
    values = await client.mget([keys.lease(job_id) for job_id in jobs])
    return {job_id: v for job_id, value in zip(jobs, values, strict=True) if (v := text(value))}


def keys_of(fake: Fake) -> Keys:
    return Keys(account_namespace(fake.api_key))


async def test_four_processes_send_the_status_requests_of_one(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async def round_of(fake: Fake, processes: int) -> tuple[int, list[dict[str, Any]]]:
        # the processes share 20/s (4/s is left for the test's creations): the
        # account-wide limiter is RedisFleet's, not part of shared polling
        share = ("--per-second", str(20 // processes), "--per-window", str(240 // processes))
        async with workers(fake, redis_server.url, processes, tmp_path, *share) as children:
            await fake.reset()

            handed = 0

            async def hand_out(job_id: str, last: bool) -> None:
                # each process hears of its share of the jobs first and so polls
                # them first: the leases spread like the limit's shares
                nonlocal handed
                for n in range(len(children)):
                    worker = children[(handed + n) % len(children)]
                    await worker.send({"jobs": [job_id], "last": last})
                handed += 1

            # each job is awaited from its creation on, as a fleet's would be
            await fake.create(JOBS, 30, on_job=hand_out)
            with anyio.fail_after(RUN_PATIENCE):
                reports = [await worker.line() for worker in children]
            stats = await fake.stats()
        counts = stats["counts"]
        assert counts.get("reply:429", 0) == 0
        assert counts.get("rate_limited", 0) == 0
        for report in reports:
            assert {r["state"] for r in report["results"].values()} == {"Completed"}
            assert all(r["succeeded"] == 30 for r in report["results"].values())
            assert report["local_fallbacks"] == 0
        assert sum(report["requests"] for report in reports) == counts["status"]
        return counts["status"], reports

    with anyio.fail_after(2 * RUN_PATIENCE + 60):
        async with fake_process(
            "--processing-rate", "10", "--queue-delay", "0.2", logs=tmp_path
        ) as fake:
            one, _ = await round_of(fake, 1)
            four, reports = await round_of(fake, 4)
    print(f"status requests for {JOBS} jobs: 1 process {one}, 4 processes {four}")
    print(
        "per process (requests, leases taken, shared reads): "
        + ", ".join(f"({r['requests']}, {r['leases_taken']}, {r['shared_reads']})" for r in reports)
    )
    assert four <= 1.15 * one
    # every process got every status, most of them from Redis
    assert sum(report["shared_reads"] for report in reports) > 0


async def test_kill_9_of_the_owner_hands_its_jobs_over(
    redis_server: RedisServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    with anyio.fail_after(RUN_PATIENCE + 60):
        async with (
            fake_process("--processing-rate", "10", "--queue-delay", "0.1", logs=tmp_path) as fake,
            workers(fake, redis_server.url, 3, tmp_path) as children,
        ):
            keys = keys_of(fake)
            jobs = await fake.create(4, 60)
            for worker in children:
                await worker.send({"jobs": jobs})
            held: dict[str, str] = {}

            async def leased() -> bool:
                held.update(await holders(redis_client, keys, jobs))
                stored = await redis_client.exists(*(keys.status(job) for job in jobs))
                return len(held) == len(jobs) and stored == len(jobs)

            with anyio.fail_after(20):
                while not await leased():  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            victim_id = held[jobs[0]].rsplit("|", 1)[0]
            victim = next(w for w in children if w.name == victim_id)
            orphans = [job for job, value in held.items() if value.startswith(victim_id + "|")]
            victim.process.kill()  # SIGKILL: no lease is given back
            killed_at = anyio.current_time()
            taken: dict[str, float] = {}
            with anyio.fail_after(10):
                while len(taken) < len(orphans):
                    now = await holders(redis_client, keys, orphans)
                    for job, value in now.items():
                        if not value.startswith(victim_id + "|") and job not in taken:
                            taken[job] = anyio.current_time() - killed_at
                    await anyio.sleep(0.02)
            survivors = [w for w in children if w is not victim]
            with anyio.fail_after(RUN_PATIENCE):
                reports = [await worker.line() for worker in survivors]
    print(
        f"takeover after kill -9 of {victim_id}: " + ", ".join(f"{t:.2f} s" for t in taken.values())
    )
    assert max(taken.values()) < 4.0
    for report in reports:
        assert {r["state"] for r in report["results"].values()} == {"Completed"}
        assert {r["processed"] for r in report["results"].values()} == {60}
    assert sum(report["leases_taken"] for report in reports) >= len(orphans)


async def test_sigstop_of_the_owner_its_late_write_is_refused(
    redis_server: RedisServer, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    with anyio.fail_after(RUN_PATIENCE + 60):
        async with (
            fake_process(
                "--processing-rate",
                "8",
                "--queue-delay",
                "0.1",
                "--latency",
                "0.1",
                "0.3",
                logs=tmp_path,
            ) as fake,
            workers(fake, redis_server.url, 2, tmp_path) as children,
        ):
            keys = keys_of(fake)
            jobs = await fake.create(2, 60)
            for worker in children:
                await worker.send({"jobs": jobs})
            job = jobs[0]
            with anyio.fail_after(20):
                while not (await holders(redis_client, keys, [job])) or not (  # noqa: ASYNC110
                    await redis_client.exists(keys.status(job))
                ):
                    await anyio.sleep(0.02)
            stale = (await holders(redis_client, keys, [job]))[job]
            victim_id = stale.rsplit("|", 1)[0]
            victim = next(w for w in children if w.name == victim_id)
            os.kill(victim.process.pid, signal.SIGSTOP)
            try:
                fresh: str | None = None
                with anyio.fail_after(10):
                    while True:
                        fresh = (await holders(redis_client, keys, [job])).get(job)
                        stored = text(await redis_client.hget(keys.status(job), "fence"))
                        if fresh and fresh != stale and stored and int(stored) == fence_of(fresh):
                            break  # the new owner took over and stored news
                        await anyio.sleep(0.02)
            finally:
                os.kill(victim.process.pid, signal.SIGCONT)
            with anyio.fail_after(RUN_PATIENCE):
                reports = {worker.name: await worker.line() for worker in children}
            final_fence = text(await redis_client.hget(keys.status(job), "fence"))
    assert fresh is not None
    assert final_fence is not None
    assert int(final_fence) >= fence_of(fresh) > fence_of(stale)
    woken = reports[victim_id]
    # it woke up as an owner that no longer was: refused at its write or renewal
    assert woken["writes_refused"] + woken["leases_lost"] >= 1
    print(
        f"SIGSTOP owner {victim_id}: writes refused {woken['writes_refused']}, "
        f"leases lost {woken['leases_lost']}"
    )
    for report in reports.values():
        assert {r["state"] for r in report["results"].values()} == {"Completed"}
        assert {r["processed"] for r in report["results"].values()} == {60}
