"""Waiting on many jobs at once: ``as_completed`` and ``wait_all``.

However many jobs there are, each session's shared poll scheduler serves them
through one subscription a job, with no task per job.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Iterable

import anyio

from ._entry import Entry
from ._errors import GameballError
from ._job import BatchJob, outcome
from ._models import BatchStatus
from ._poller import Poller

__all__ = ["as_completed", "wait_all"]


class _Collector:
    """One subscriber for many jobs: queues those whose polling ended."""

    __slots__ = ("event", "ready")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.ready: deque[Entry] = deque()

    def notify(self, entry: Entry) -> None:
        if entry.finished:
            self.ready.append(entry)
            self.event.set()


async def as_completed(jobs: Iterable[BatchJob]) -> AsyncGenerator[BatchJob, None]:
    """Yield jobs as they end, in the order they end.

    All of them are polled by their sessions' shared schedulers through one
    subscription each, with no task per job. A job whose polling failed (e.g.
    404) is yielded too, not done: awaiting it raises that error.
    """
    pending: dict[tuple[int, str], list[BatchJob]] = {}
    collector = _Collector()
    subscriptions: dict[Entry, tuple[Poller, tuple[int, str]]] = {}
    try:
        for job in jobs:
            if job.done():
                yield job
                continue
            key = (id(job._backend._poller), job.job_id)
            if key in pending:
                pending[key].append(job)
                continue
            pending[key] = [job]
            poller = job._backend._poller
            entry = job._subscribe(poller, collector)
            subscriptions[entry] = (poller, key)
            if entry.finished:
                collector.notify(entry)
        while pending:
            collector.event = anyio.Event()
            while collector.ready:
                entry = collector.ready.popleft()
                _, key = subscriptions[entry]
                for job in pending.pop(key, []):
                    job._settle(entry)
                    yield job
            if pending:
                await collector.event.wait()
    finally:
        for entry, (poller, _) in subscriptions.items():
            poller.unsubscribe(entry, collector)


async def wait_all(
    jobs: Iterable[BatchJob], *, raise_on_failure: bool = False
) -> list[BatchStatus]:
    """Wait until every job has ended; return their terminal statuses in input order.

    :param raise_on_failure: after all have ended, raise :class:`BatchFailedError`
        or :class:`BatchStoppedError` for the first (in input order) that did
        not complete.
    :raises GameballError: the first polling error, in input order, once all
        have ended (every handle's ``status`` is up to date by then).
    """
    handles = list(jobs)
    async for _ in as_completed(handles):
        pass
    statuses: list[BatchStatus] = []
    for job in handles:
        job._raise_error()
        status = job.status
        if status is None:  # pragma: no cover - as_completed saw every job end
            raise GameballError(f"job {job.job_id} ended without a status")
        statuses.append(outcome(status, raise_on_failure))
    return statuses
