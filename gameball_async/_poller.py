"""One shared poll scheduler per session.

Every awaited job has one entry here, whatever the number of waiters on it;
a min-heap orders the entries by the time of their next poll and one background
task serves them, so 10,000 awaited jobs cost one task and a few hundred bytes
each, not 10,000 loops. Polls go through the session's rate limiter in the
order they fall due, so new jobs cannot starve old ones.

Waiters subscribe to an entry and are told of every new status (or of the
error that ended polling); when the last one leaves, the entry leaves the heap
and the job gets no more polls. The remote job is never stopped from here.
"""

from __future__ import annotations

import asyncio
import heapq
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import GameballError, ProtocolError, SessionClosedError
from ._models import BatchState, BatchStatus, Operation
from ._policy import Observation, PollPolicy, next_poll_delay

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "Entry", "Poller", "Subscriber", "status_changed"]

#: Polls of one session in flight at once (they still queue at the rate limiter).
DEFAULT_MAX_IN_FLIGHT: Final = 16

Fetch = Callable[[str, "Operation | None"], Awaitable[tuple[BatchStatus, "float | None"]]]


class Subscriber(Protocol):
    """Something told about an entry's news: a waiter, a watcher, a collector."""

    def notify(self, entry: Entry) -> None:
        """Called (synchronously) when the entry has a new status or an error."""


class Entry:
    """The polling state of one job."""

    __slots__ = (
        "anchor",
        "due",
        "error",
        "in_flight",
        "job_id",
        "last",
        "operation",
        "scheduled",
        "status",
        "steps",
        "subscribers",
    )

    def __init__(self, job_id: str, operation: Operation | None, status: BatchStatus | None):
        self.job_id = job_id
        self.operation = operation
        self.status = status
        self.error: BaseException | None = None
        self.subscribers: set[Subscriber] = set()
        self.due = 0.0
        self.scheduled = False
        self.in_flight = False
        self.steps = 0
        # ``anchor``: first observation while Running, for the processing rate;
        # ``last``: the previous observation, to tell whether there was progress.
        self.anchor: Observation | None = None
        self.last: Observation | None = None

    @property
    def finished(self) -> bool:
        """Polling is over: a terminal status or an error."""
        return self.error is not None or (self.status is not None and self.status.is_terminal)


# A server clock this far from ours is not one to estimate a rate from.
_MAX_PLAUSIBLE_RUN: Final = 86_400.0


def _start_anchor(status: BatchStatus, current: Observation) -> Observation | None:
    """An observation of zero progress at the job's reported start, if usable.

    With it the first poll that sees a running job already has a processing
    rate, so the second poll can aim at the job's end instead of backing off.
    """
    if status.started_at is None or current.processed <= 0:
        return None
    elapsed = time.time() - status.started_at.timestamp()
    if not 0.0 < elapsed < _MAX_PLAUSIBLE_RUN:
        return None
    return Observation(current.at - elapsed, BatchState.RUNNING, 0, current.total)


def status_changed(old: BatchStatus | None, new: BatchStatus) -> bool:
    """Whether ``new`` tells a waiter anything ``old`` did not (state or counts)."""
    return (
        old is None
        or old.state is not new.state
        or old.state_word != new.state_word
        or old.finished_count != new.finished_count
        or old.error_count != new.error_count
        or old.total_count != new.total_count
    )


class Poller:
    """Schedules the polls of every awaited job of one session.

    :param fetch: does one status poll: ``(job_id, operation) -> (status, retry_after)``.
    :param policy: poll timing.
    :param max_in_flight: polls in flight at once.
    :param clock: monotonic clock.
    """

    def __init__(
        self,
        fetch: Fetch,
        policy: PollPolicy,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._policy = policy
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._rng = random.Random()
        self._entries: dict[str, Entry] = {}
        self._heap: list[tuple[float, int, Entry]] = []
        self._seq = 0
        self._in_flight = 0
        self._wakeup = anyio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: Polls sent since the session opened (for tests and benchmarks).
        self.polls_sent = 0

    # -- subscription ------------------------------------------------------

    def subscribe(
        self,
        job_id: str,
        operation: Operation | None,
        status: BatchStatus | None,
        subscriber: Subscriber,
    ) -> Entry:
        """Register interest in a job; polling starts (or continues) for it.

        :raises SessionClosedError: when the session is closed.
        """
        if self._closed:
            raise SessionClosedError("the session is closed; open a new one to poll jobs")
        entry = self._entries.get(job_id)
        if entry is None:
            entry = Entry(job_id, operation, status)
            self._entries[job_id] = entry
            self._schedule(entry, self._first_delay(status))
        elif entry.operation is None:
            entry.operation = operation
        entry.subscribers.add(subscriber)
        self._ensure_running()
        return entry

    def unsubscribe(self, entry: Entry, subscriber: Subscriber) -> None:
        """Withdraw interest; the last one out takes the job off the schedule."""
        entry.subscribers.discard(subscriber)
        if not entry.subscribers and self._entries.get(entry.job_id) is entry:
            del self._entries[entry.job_id]  # its heap item is skipped when popped

    def feed(self, job_id: str, status: BatchStatus) -> None:
        """Hand over a status read elsewhere (``refresh()``, ``stop()``)."""
        entry = self._entries.get(job_id)
        if entry is not None and not entry.finished:
            self._observe(entry, status, None)

    def poll_soon(self, job_id: str) -> None:
        """Poll a job at the shortest delay, e.g. right after stopping it."""
        entry = self._entries.get(job_id)
        if entry is not None and not entry.finished and not entry.in_flight:
            entry.steps = 0
            self._schedule(entry, self._policy.min_delay)

    @property
    def default_timeout(self) -> float | None:
        """The poll policy's bound on a whole ``wait()``."""
        return self._policy.timeout

    @property
    def awaited_jobs(self) -> int:
        """Jobs with at least one waiter."""
        return len(self._entries)

    @property
    def running(self) -> bool:
        """Whether the scheduler task is alive."""
        return self._task is not None and not self._task.done()

    # -- lifecycle ---------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the scheduler and fail every waiter with :class:`SessionClosedError`."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # Wait for the task's own cleanup (its task group) without letting
            # its CancelledError look like ours.
            await asyncio.wait([task])
        error = SessionClosedError("the session was closed while this job was awaited")
        entries = list(self._entries.values())
        self._entries.clear()
        self._heap.clear()
        for entry in entries:
            if not entry.finished:
                entry.error = error
            self._notify(entry)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="gameball_async poller"
            )

    # -- scheduling --------------------------------------------------------

    def _first_delay(self, status: BatchStatus | None) -> float:
        if status is not None and status.is_terminal:
            return 0.0
        policy = self._policy
        # Jitter the first poll too, so a burst of creations does not poll in lockstep.
        return max(
            policy.min_delay, policy.initial_delay * (1 - policy.jitter * self._rng.random())
        )

    def _schedule(self, entry: Entry, delay: float) -> None:
        entry.due = self._clock() + delay
        entry.scheduled = True
        self._seq += 1
        heapq.heappush(self._heap, (entry.due, self._seq, entry))
        self._wakeup.set()

    async def _run(self) -> None:
        try:
            # Leaving the task group yields to the loop; a job subscribed meanwhile
            # would find this task not done yet and never be polled: go round again.
            while self._entries or self._in_flight:
                await self._serve()
        except Exception as exc:  # a bug here must not leave waiters hanging
            error = GameballError(f"the poll scheduler failed: {exc!r}")
            error.__cause__ = exc
            for entry in list(self._entries.values()):
                entry.error = error
                self._finish(entry)
            raise

    async def _serve(self) -> None:
        # A fixed pool of workers fed through a stream: spawning a task per
        # poll cost several times the rest of the scheduling.
        queue, ready = anyio.create_memory_object_stream[Entry](self._max_in_flight)
        async with queue, ready, anyio.create_task_group() as workers:
            for _ in range(self._max_in_flight):
                workers.start_soon(self._work, ready, name="gameball_async poll worker")
            await self._dispatch(queue)
            workers.cancel_scope.cancel()

    async def _work(self, ready: MemoryObjectReceiveStream[Entry]) -> None:
        async for entry in ready:
            await self._poll(entry)

    async def _dispatch(self, queue: MemoryObjectSendStream[Entry]) -> None:
        while self._entries or self._in_flight:
            heap = self._heap
            now = self._clock()
            while heap and self._in_flight < self._max_in_flight and heap[0][0] <= now:
                due, _, entry = heapq.heappop(heap)
                if due != entry.due or not entry.scheduled:
                    continue  # superseded by a later _schedule
                entry.scheduled = False
                if self._entries.get(entry.job_id) is not entry or entry.in_flight:
                    continue  # nobody waits for it any more, or its poll reschedules it
                entry.in_flight = True
                self._in_flight += 1
                queue.send_nowait(entry)  # never blocks: the buffer holds max_in_flight
            if not self._entries and not self._in_flight:
                break
            self._wakeup = anyio.Event()
            timeout = None
            if heap and self._in_flight < self._max_in_flight:
                timeout = max(0.0, heap[0][0] - self._clock())
            with anyio.move_on_after(timeout):
                await self._wakeup.wait()

    async def _poll(self, entry: Entry) -> None:
        try:
            self.polls_sent += 1
            status, retry_after = await self._fetch(entry.job_id, entry.operation)
        except GameballError as exc:
            # Retries are the transport's; what reaches here ends this job's
            # polling for its current waiters, and only for them.
            entry.error = exc
            self._finish(entry)
        except Exception as exc:  # not ours to crash on: fail this job only
            error = ProtocolError(f"polling job {entry.job_id} failed: {exc!r}")
            error.__cause__ = exc
            entry.error = error
            self._finish(entry)
        else:
            self._observe(entry, status, retry_after)
        finally:
            entry.in_flight = False
            self._in_flight -= 1
            self._wakeup.set()

    def _observe(self, entry: Entry, status: BatchStatus, retry_after: float | None) -> None:
        previous = entry.status
        entry.status = status
        if status.is_terminal:
            self._finish(entry)
            return
        now = self._clock()
        current = Observation(now, status.state, status.processed_count, status.total_count)
        last = entry.last
        progressed = last is not None and current.processed > last.processed
        if previous is not None and previous.state is not status.state:
            entry.steps = 0
            entry.anchor = None
        if progressed:
            entry.steps = 0
        elif last is not None:
            entry.steps += 1
        if entry.anchor is None and status.state is BatchState.RUNNING:
            entry.anchor = _start_anchor(status, current) or current
            progressed = progressed or entry.anchor is not current
        entry.last = current
        delay = next_poll_delay(
            self._policy,
            previous=entry.anchor if progressed else None,
            current=current,
            steps_without_progress=entry.steps,
            retry_after=retry_after,
            rng=self._rng,
        )
        if self._entries.get(entry.job_id) is entry:
            self._schedule(entry, delay)
        if status_changed(previous, status):
            self._notify(entry)

    def _finish(self, entry: Entry) -> None:
        if self._entries.get(entry.job_id) is entry:
            del self._entries[entry.job_id]
        entry.scheduled = False
        self._notify(entry)

    @staticmethod
    def _notify(entry: Entry) -> None:
        for subscriber in list(entry.subscribers):
            subscriber.notify(entry)
