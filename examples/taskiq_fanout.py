"""Taskiq workers fanning batches out to Gameball, one fleet for the account.

Every worker process opens one ``RedisFleet`` and one ``GameballSession`` at
start-up (``TaskiqEvents.WORKER_STARTUP``) and closes both at shutdown, so all
the workers share the account's rate limit and job registry on the Redis that
also carries the task queue. Two tasks:

- ``submit(run_id, operation, items=... | source=...)`` creates the batches
  with ``submit_many(..., idempotency_key=f"{run_id}/{operation}")``: chunk
  ``n`` is created at most once under ``{run_id}/{operation}/{n}``, so a
  retried task (the retry middleware below, a redelivery, a caller kicking it
  again) resends nothing that was created and creates only what is missing.
  It returns the jobs' tokens.
- ``collect(tokens=None, timeout=None)`` reattaches to every open job of the
  account (``fleet.open_jobs()``, plus any ``tokens`` given) with
  ``gb.resume(token)``, awaits them all and returns a summary: each job's
  terminal state and item counts. Any worker can run it, including one started
  after the worker that submitted was restarted or crashed.

Try it out against the fake server (``pip install "gameball_async[redis]"
taskiq taskiq-redis``), from the repository root::

    redis-server --port 6379 &
    python -m gameball_async.testing serve --port 8765 &   # prints base_url and keys
    export GAMEBALL_BASE_URL=http://127.0.0.1:8765 GAMEBALL_API_KEY=... GAMEBALL_SECRET_KEY=...
    export REDIS_URL=redis://127.0.0.1:6379/0 GAMEBALL_EXPECTED_PROCESSES=2
    taskiq worker examples.taskiq_fanout:broker --workers 2 &
    python examples/taskiq_fanout.py nightly-2026-12-01     # kicks submit, then collect

Against Gameball, set ``GAMEBALL_API_KEY`` and ``GAMEBALL_SECRET_KEY`` (and
leave ``GAMEBALL_BASE_URL`` unset). ``GAMEBALL_EXPECTED_PROCESSES`` is the
number of worker processes of the account, all hosts together (the share of
the limit each takes while Redis is unreachable).

Things to know:

- ``ListQueueBroker`` pops a message and never acknowledges it: a worker
  killed mid-task loses that task (kick it again; the idempotency keys make
  that safe). ``taskiq_redis.RedisStreamBroker`` redelivers unacknowledged
  messages instead, with the same tasks.
- A chunk whose creation may have reached Gameball unanswered (the
  connection dropped mid-request) is never resent, by any attempt: ``submit``
  keeps failing with its ``AmbiguousSubmissionError`` (inside the
  ``SubmissionError``), while the other chunks are created and registered.
  Look for that job in Gameball; if it is not there, send its items again
  under a new run id.
- A retry must see the same items in the same order (chunk ``n`` is the same
  items each time): pass a source that does not change, such as a snapshot
  file, not a query whose result moves.
- Results are stored as JSON (never pickle) and expire after a day.
- The job registry forgets a job once some process has seen it end, so a
  second ``collect`` does not report it again: store what ``collect`` returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
from taskiq import SimpleRetryMiddleware, TaskiqDepends, TaskiqEvents, TaskiqState
from taskiq.serializers import JSONSerializer
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from gameball_async import (
    BatchJob,
    BatchStatus,
    GameballError,
    GameballSession,
    Operation,
    as_completed,
)
from gameball_async.fleet import RedisFleet

logger: Final = logging.getLogger("examples.taskiq_fanout")

REDIS_URL: Final = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
#: Seconds a task's result is kept in Redis.
RESULT_TTL: Final = 24 * 3600

broker: Final = (
    ListQueueBroker(REDIS_URL, queue_name="gameball")
    .with_result_backend(
        RedisAsyncResultBackend(
            REDIS_URL,
            result_ex_time=RESULT_TTL,
            serializer=JSONSerializer(),
            prefix_str="gameball-result",
        )
    )
    # a failed task labelled retry_on_error is kicked again under the same task
    # id, max_retries attempts in all (the caller's wait_result sees the last)
    .with_middlewares(SimpleRetryMiddleware(default_retry_count=3))
)


#: The ``state`` parameter of a task: the worker's :class:`TaskiqState`, given by
#: taskiq (the callers never pass it).
WORKER_STATE: Final[Any] = TaskiqDepends()


@dataclass(frozen=True)
class Worker:
    """What one worker process holds: its fleet member and its session."""

    fleet: RedisFleet
    gb: GameballSession
    stack: AsyncExitStack


def expected_processes() -> int:
    """``GAMEBALL_EXPECTED_PROCESSES`` (1 when unset)."""
    raw = os.environ.get("GAMEBALL_EXPECTED_PROCESSES", "1")
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"GAMEBALL_EXPECTED_PROCESSES must be an integer, got {raw!r}") from None


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def open_worker(state: TaskiqState) -> None:
    """Open this process's fleet member and session (keys from the environment)."""
    async with AsyncExitStack() as stack:
        fleet = await stack.enter_async_context(
            RedisFleet.from_url(REDIS_URL, expected_processes=expected_processes())
        )
        # GAMEBALL_API_KEY, GAMEBALL_SECRET_KEY, GAMEBALL_BASE_URL; entering it
        # attaches it to the fleet, which learns the account from it
        gb = await stack.enter_async_context(GameballSession(fleet=fleet))
        state.gameball = Worker(fleet, gb, stack.pop_all())
    logger.info("gameball worker ready (fleet process %s)", fleet.process_id)


@broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
async def close_worker(state: TaskiqState) -> None:
    """Close the session, then the fleet (its pending registry writes are flushed)."""
    worker = state.data.pop("gameball", None)
    if isinstance(worker, Worker):
        await worker.stack.aclose()
        logger.info("gameball worker closed (fleet process %s)", worker.fleet.process_id)


def worker_of(state: TaskiqState) -> Worker:
    """This process's :class:`Worker`.

    :raises RuntimeError: outside a worker (start-up did not run).
    """
    worker = state.data.get("gameball")
    if not isinstance(worker, Worker):
        raise RuntimeError("the gameball tasks run in a taskiq worker (WORKER_STARTUP opens them)")
    return worker


def read_jsonl(path: str) -> Iterator[Any]:
    """The items of a JSON Lines file, read lazily (``submit_many`` pulls them).

    A local file's reads are short enough to make on the event loop; for
    object storage use an async client and an async generator instead.
    """
    with Path(path).open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


@broker.task(task_name="gameball.submit", retry_on_error=True, max_retries=3)
async def submit(
    run_id: str,
    operation: str,
    items: list[dict[str, Any]] | None = None,
    source: str | None = None,
    state: TaskiqState = WORKER_STATE,
) -> list[str]:
    """Create the batches of one run; return the jobs' tokens, in input order.

    :param run_id: names the run: the same run id (and operation) never
        creates a chunk twice, whoever kicks it and however often.
    :param operation: an :class:`~gameball_async.Operation` value, e.g. ``"cashback"``.
    :param items: the items (camelCase dicts, as Gameball takes them), or
    :param source: a JSON Lines file the workers can read (large runs: the
        message then carries a path, not the items).
    """
    if (items is None) == (source is None):
        raise ValueError("give either items or source")
    gb = worker_of(state).gb
    op = Operation.parse(operation)
    jobs = await gb.submit_many(
        op,
        items if items is not None else read_jsonl(str(source)),
        idempotency_key=f"{run_id}/{op.value}",
    )
    logger.info("run %s: %d %s jobs", run_id, len(jobs), op.value)
    return [job.to_token() for job in jobs]


def describe(job: BatchJob, status: BatchStatus | None) -> dict[str, Any]:
    """One job's line of the summary (counts as last seen)."""
    return {
        "job_id": job.job_id,
        "operation": job.operation.value if job.operation is not None else None,
        "state": status.state.value if status is not None else None,
        "total": status.total_count if status is not None else None,
        "finished": status.finished_count if status is not None else None,
        "errors": status.error_count if status is not None else None,
    }


@broker.task(task_name="gameball.collect")
async def collect(
    tokens: list[str] | None = None,
    timeout: float | None = None,
    state: TaskiqState = WORKER_STATE,
) -> dict[str, Any]:
    """Await every open job of the account (and ``tokens``); summarise them.

    :param tokens: tokens to await even if not (or no longer) listed open,
        e.g. what ``submit`` returned.
    :param timeout: seconds to wait; the jobs still running then are listed
        under ``"pending"`` (they stay open for a later ``collect``).
    :return: ``{"jobs": [...], "states": {state: count}, "items": ...,
        "failed_items": ..., "pending": [job ids], "errors": {job id: message}}``.
    """
    worker = worker_of(state)
    handles: dict[str, BatchJob] = {}
    for token in [*(tokens or ()), *await worker.fleet.open_jobs()]:
        job = worker.gb.resume(token)
        handles.setdefault(job.job_id, job)
    ended: dict[str, BatchStatus] = {}
    errors: dict[str, str] = {}
    with anyio.move_on_after(timeout):
        async for job in as_completed(handles.values()):
            try:
                ended[job.job_id] = await job.wait(raise_on_failure=False)
            except GameballError as exc:  # polling failed (e.g. the job is unknown)
                errors[job.job_id] = f"{type(exc).__name__}: {exc}"
    lines = [describe(job, ended.get(job_id, job.status)) for job_id, job in handles.items()]
    return {
        "jobs": lines,
        "states": dict(Counter(status.state.value for status in ended.values())),
        "items": sum(status.total_count or 0 for status in ended.values()),
        "failed_items": sum(status.error_count or 0 for status in ended.values()),
        "pending": [i for i in handles if i not in ended and i not in errors],
        "errors": errors,
    }


async def main(run_id: str) -> None:
    """Kick ``submit`` with some balance inquiries, then ``collect``; print the summary."""
    await broker.startup()  # the client side: no session here, only the queue
    try:
        items = [{"customerId": f"c{n % 50}"} for n in range(2500)]
        submitted = await submit.kiq(run_id, "balance-inquiry", items=items)
        tokens = (await submitted.wait_result(timeout=120)).raise_for_error().return_value
        print(f"run {run_id}: {len(tokens)} jobs")
        collected = await collect.kiq(tokens, timeout=600)
        summary = (await collected.wait_result(timeout=660)).raise_for_error().return_value
        print(json.dumps(summary, indent=2))
    finally:
        await broker.shutdown()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "demo"))
