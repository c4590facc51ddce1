"""Scale: memory per awaited job and scheduler CPU per poll at 1k / 10k / 50k jobs.

Memory (tracemalloc, handle included): awaiting N jobs through ``wait_all``
(one subscription per job, no task per job), through a task per job calling
``job.wait()``, and a naive task per job sleeping in a loop, for comparison.
No poll is due during the measurement (the first poll is an hour away).

Scheduler CPU: the session's ``Poller`` alone, with a stub in place of HTTP
that answers Running twice and then Completed, so the figure is the cost of
scheduling (heap, timing arithmetic, waking waiters), per poll.

Run: ``python -m benchmarks.scale [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from gameball_async import (
    BatchState,
    BatchStatus,
    GameballSession,
    Operation,
    PollPolicy,
    RateLimit,
    wait_all,
)
from gameball_async._poller import Poller

SLOW = PollPolicy(initial_delay=3600.0, jitter=0.0, max_delay=3600.0)


async def _memory(count: int, how: str) -> float:
    async with GameballSession(
        "key", "secret", base_url="http://127.0.0.1:9", poll=SLOW, rate_limit=RateLimit.disabled()
    ) as gb:
        poller = gb._poller  # build the session's machinery before the baseline
        ids = [str(n) for n in range(count)]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        waiter: asyncio.Future[Any]
        if how == "wait_all":
            waiter = asyncio.ensure_future(wait_all([gb.job(i) for i in ids]))
        elif how == "task_per_job":
            waiter = asyncio.gather(*(gb.job(i).wait() for i in ids))
        else:

            async def naive() -> None:
                await asyncio.sleep(3600)

            waiter = asyncio.gather(*(naive() for _ in ids))
        for _ in range(10_000):
            await asyncio.sleep(0)
            if how == "naive" or poller.awaited_jobs >= count:
                break
        await asyncio.sleep(0.01)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    return (after - before) / count


def _stub_fetch(polls_to_finish: int) -> tuple[Callable[..., Any], list[int]]:
    seen: dict[str, int] = {}
    counter = [0]

    async def fetch(job_id: str, operation: Operation | None) -> tuple[BatchStatus, None]:
        counter[0] += 1
        n = seen[job_id] = seen.get(job_id, 0) + 1
        state = BatchState.COMPLETED if n >= polls_to_finish else BatchState.RUNNING
        status = BatchStatus(
            job_id=job_id,
            operation=operation,
            state=state,
            state_word=state.value,
            total_count=100,
            finished_count=min(100, 40 * n),
        )
        return status, None

    return fetch, counter


async def _scheduler_cpu(count: int) -> float:
    fetch, counter = _stub_fetch(polls_to_finish=3)
    policy = PollPolicy(initial_delay=0.001, min_delay=0.001, max_delay=0.002, jitter=0.5)
    poller = Poller(fetch, policy, max_in_flight=64)

    class Done:
        def __init__(self) -> None:
            self.left = count
            self.event = asyncio.Event()

        def notify(self, entry: Any) -> None:
            if entry.finished:
                self.left -= 1
                if not self.left:
                    self.event.set()

    done = Done()
    start = time.process_time()
    for n in range(count):
        poller.subscribe(str(n), None, None, done)
    await done.event.wait()
    cpu = time.process_time() - start
    await poller.aclose()
    return cpu * 1e6 / counter[0]


def run(quick: bool) -> dict[str, Any]:
    """Run the scale benchmark and return its figures."""
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 50_000)
    memory: dict[str, dict[str, float]] = {}
    cpu: dict[str, float] = {}
    for count in sizes:
        memory[str(count)] = {
            how: round(asyncio.run(_memory(count, how)), 1)
            for how in ("wait_all", "task_per_job", "naive")
        }
        cpu[str(count)] = round(asyncio.run(_scheduler_cpu(count)), 1)
    return {
        "memory_bytes_per_awaited_job": memory,
        "scheduler_cpu_us_per_poll": cpu,
        "target_memory_bytes": 2048,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
