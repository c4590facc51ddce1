"""Scale: memory per awaited job and scheduler CPU per poll at 1k / 10k / 50k jobs.

Halfway memory (issue 9.17): 10,000 awaited jobs (1,000 with ``--quick``),
each halfway through a 1,000-item batch, awaited with ``wait_all``. A tiny
aiohttp server in a child process (``benchmarks/_status_server.py``) answers
every status read with the same Running reply carrying 500 per-item results
and ``Retry-After: 3600``, so each job is polled once. tracemalloc starts once
the session is open (before the handles exist); the figure is the traced
memory once every job's first reply has been applied, per job. Baselines in
the same run (1,000 jobs): the same with the running reply decoded with its
per-item results (what 0.1.0 kept), and a naive task per job polling with
aiohttp and keeping its last ``await resp.json()``.

Idle memory (tracemalloc, handle included): awaiting N jobs through ``wait_all``
(one subscription per job, no task per job), through a task per job calling
``job.wait()``, and a naive task per job sleeping in a loop, for comparison.
No poll is due during the measurement (the first poll is an hour away).

Scheduler CPU: the session's ``Poller`` alone, with a stub in place of HTTP
that answers Running twice and then Completed, so the figure is the cost of
scheduling (heap, timing arithmetic, waking waiters), per poll.

Run: ``python -m benchmarks.scale [--quick]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from gameball_async import (
    BatchState,
    BatchStatus,
    GameballSession,
    Operation,
    PollPolicy,
    RateLimit,
    RetryPolicy,
    wait_all,
)
from gameball_async._decode import decode_status
from gameball_async._poller import Poller

from ._common import section_main, spread
from ._status_server import StatusServer

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


# First poll soon, then the reply's Retry-After (3600 s) holds every job.
ONCE = PollPolicy(initial_delay=0.05, min_delay=0.01, jitter=0.5, max_delay=3600.0)


class _KeepsResults(GameballSession):
    """The session as 0.1.0 polled: running replies decoded with their results."""

    async def _poll_once(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        reply = await self._open().get_once(self._routes["job"].replace("{job_id}", job_id))
        status = decode_status(reply.payload, job_id=job_id, operation=operation, results=True)
        return status, reply.retry_after


async def _until(done: Callable[[], bool], what: str, limit: float = 300.0) -> None:
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"memory benchmark: {what} not reached in {limit:.0f} s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _cancelled_after(waiter: asyncio.Future[Any]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter


def _traced_now() -> int:
    gc.collect()  # garbage the replies left is not memory a job holds
    return tracemalloc.get_traced_memory()[0]


async def _halfway_session(base_url: str, count: int, keep_results: bool) -> tuple[float, float]:
    cls = _KeepsResults if keep_results else GameballSession
    async with cls(
        "key",
        "secret",
        base_url=base_url,
        poll=ONCE,
        retry=RetryPolicy(max_retry_after=3600),
        rate_limit=RateLimit.disabled(),
    ) as gb:
        await gb.job("warm-up").refresh()  # the HTTP session and a connection exist
        poller = gb._poller
        gc.collect()
        tracemalloc.start()
        try:
            before = _traced_now()
            jobs = [gb.job(str(n)) for n in range(count)]
            async with _cancelled_after(asyncio.ensure_future(wait_all(jobs))):
                await _until(lambda: poller.polls_sent >= count, "a first poll of every job")
                await _until(lambda: all(job.status is not None for job in jobs), "every reply")
                after = _traced_now()
                statuses = _traced_size([job.status for job in jobs])
        finally:
            tracemalloc.stop()
    return (after - before) / count, statuses / count


def _traced_size(roots: list[Any]) -> int:
    """Bytes of the objects reachable from ``roots`` that were allocated while tracing.

    Shared objects older than the measurement (enum members, interned
    strings, the empty-results singletons) are not counted.
    """
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or tracemalloc.get_object_traceback(obj) is None:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


async def _halfway_naive(base_url: str, count: int) -> float:
    polled = [0]

    async with aiohttp.ClientSession(headers={"APIKey": "key", "SecretKey": "secret"}) as http:
        async with http.get(f"{base_url}/batch/warm-up") as resp:
            await resp.read()

        async def naive(job_id: str) -> Any:
            last = None
            while True:
                async with http.get(f"{base_url}/batch/{job_id}") as resp:
                    last = await resp.json()
                    delay = float(resp.headers.get("Retry-After", "1"))
                polled[0] += 1
                if last["status"] in ("Completed", "Failed", "Stopped"):
                    return last
                await asyncio.sleep(delay)

        gc.collect()
        tracemalloc.start()
        try:
            before = _traced_now()
            async with _cancelled_after(asyncio.gather(*(naive(str(n)) for n in range(count)))):
                await _until(lambda: polled[0] >= count, "a first poll of every job")
                after = _traced_now()
        finally:
            tracemalloc.stop()
    return (after - before) / count


def halfway(quick: bool, rounds: int = 3) -> dict[str, Any]:
    """Bytes per awaited job halfway through 1,000-item batches, ours and baselines."""
    ours_jobs = 1_000 if quick else 10_000
    base_jobs = 200 if quick else 1_000
    rounds = 1 if quick else rounds
    figures: dict[str, list[float]] = {
        "ours": [],
        "ours_statuses": [],
        "ours_beyond_statuses": [],
        "with_results": [],
        "naive": [],
    }
    with StatusServer() as server:
        for _ in range(rounds):
            url = server.base_url
            total, statuses = asyncio.run(_halfway_session(url, ours_jobs, False))
            figures["ours"].append(total)
            figures["ours_statuses"].append(statuses)
            figures["ours_beyond_statuses"].append(total - statuses)
            figures["with_results"].append(asyncio.run(_halfway_session(url, base_jobs, True))[0])
            figures["naive"].append(asyncio.run(_halfway_naive(url, base_jobs)))
    per_job = {how: spread(values) for how, values in figures.items()}
    return {
        "jobs": {"ours": ours_jobs, "with_results": base_jobs, "naive": base_jobs},
        "items": 1000,
        "finished": 500,
        "bytes_per_job": per_job,
        "ratio_with_results_to_ours": round(
            per_job["with_results"]["median"] / per_job["ours"]["median"], 1
        ),
        "ratio_naive_to_ours": round(per_job["naive"]["median"] / per_job["ours"]["median"], 1),
        "target_bytes": 2048,
    }


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
        "halfway": halfway(quick),
        "memory_bytes_per_awaited_job": memory,
        "scheduler_cpu_us_per_poll": cpu,
        "target_memory_bytes": 2048,
    }


def main() -> None:
    """Run this section alone and print its figures as JSON."""
    section_main(__doc__, run)


if __name__ == "__main__":
    main()
