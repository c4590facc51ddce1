"""A real fleet at work for the read-only view's tests: jobs open, one ended, a 429 taken.

One session on a FakeGameball with a ``RedisFleet`` on a real redis-server:
one small job awaited to its end, two large ones awaited (so their leases are
held and their statuses shared) and still running, then a 429 injected on a
status read, so the fleet's pause key is set.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs

from gameball_async import BatchJob, GameballSession, PollPolicy, RateLimit
from gameball_async.fleet import FleetSnapshot, RedisFleet
from gameball_async.testing import FakeGameball, InjectedReply

WHEN = "2024-10-16T08:13:29.290Z"
#: The Retry-After of the injected 429: the fleet's pause lasts this long.
PAUSE = 30
PATIENCE = 20.0
LIMIT = RateLimit(per_second=50, per_window=500)

_serial = itertools.count()


def items(count: int) -> list[dict[str, Any]]:
    return [
        {
            "customerId": f"c{n}",
            "transactionId": f"view{next(_serial)}",
            "transactionTime": WHEN,
            "amount": 1,
        }
        for n in range(count)
    ]


@attrs.frozen(kw_only=True)
class Running:
    """The fleet at work: what it holds, to compare a snapshot with."""

    fleet: RedisFleet
    gb: GameballSession
    fake: FakeGameball
    open_jobs: tuple[BatchJob, ...]
    ended: BatchJob


async def until(check: Callable[[], Awaitable[bool]], *, patience: float = PATIENCE) -> None:
    """Wait until ``check()`` holds."""
    with anyio.fail_after(patience):
        while not await check():  # noqa: ASYNC110 (a state in Redis: no event to wait on)
            await anyio.sleep(0.05)


@asynccontextmanager
async def running_fleet(url: str, *, pause: bool = True) -> AsyncIterator[Running]:
    """A session of a fleet on ``url`` with two open jobs, one ended, and a 429's pause."""
    async with (
        FakeGameball(processing_rate=2, queue_delay=0.0, enforce_rate_limit=False) as fake,
        RedisFleet.from_url(url) as fleet,
        GameballSession(
            fake.api_key,
            fake.secret_key,
            base_url=fake.base_url,
            fleet=fleet,
            poll=PollPolicy(initial_delay=0.05, min_delay=0.05, max_delay=0.2),
            rate_limit=LIMIT,
        ) as gb,
    ):
        ended = await gb.create_batch("cashback", items(1))
        await ended.wait()
        open_jobs = (
            await gb.create_batch("cashback", items(200)),
            await gb.create_batch("cashback", items(300)),
        )
        async with anyio.create_task_group() as tg:
            for job in open_jobs:
                tg.start_soon(job.wait)

            async def shared() -> bool:
                snapshot = await fleet.snapshot()
                return (
                    all(
                        job.status is not None and job.lease_holder is not None
                        for job in snapshot.open_jobs
                    )
                    and len(snapshot.open_jobs) == 2
                )

            await until(shared)
            if pause:
                fake.inject(
                    "status", InjectedReply(status=429, headers={"Retry-After": str(PAUSE)})
                )

                async def paused() -> bool:
                    return (await fleet.snapshot()).limiter.paused_for > 0

                await until(paused)
            yield Running(fleet=fleet, gb=gb, fake=fake, open_jobs=open_jobs, ended=ended)
            tg.cancel_scope.cancel()


def ids(snapshot: FleetSnapshot) -> list[str]:
    """The open jobs' ids."""
    return [job.job_id for job in snapshot.open_jobs]
