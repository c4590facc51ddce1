"""One shared poll scheduler per session.

Every awaited job has one entry here, whatever the number of waiters on it;
a min-heap orders the entries by the time of their next poll and one background
task serves them, so 10,000 awaited jobs cost one task and a few hundred bytes
each, not 10,000 loops. Polls go through the session's rate limiter in the
order they fall due, so new jobs cannot starve old ones, with one exception:
when the limiter has no room for every poll due, a poll aimed at its job's
end, now near, goes ahead of those due up to :data:`PRIORITY_LEAD` seconds
before it (they only learn progress; it most likely ends a wait). So the
scheduler hands out no more polls than the limiter can send at once, and
keeps the rest to choose from when room comes.

A poll is one request: a transient failure (5xx, 429, a timeout, a dropped
connection, an undecodable reply) puts the entry back on the heap with backoff
instead of retrying inside a worker, so a hanging server holds a worker for at
most one request timeout and never delays other jobs' polls by more. Only a
final answer (401/403/404, another 4xx, a redirect) ends the polling of a job;
a wait bounds itself with its own deadline.

Waiters subscribe to an entry and are told of every new status (or of the
error that ended polling). When the last one leaves, the entry stays for its
next due poll if that is at most :data:`LINGER` seconds away (so a caller
making short waits in a row still sees the job move), then leaves the heap;
a poll further away is not sent at all, and a poll in flight is the last. So
after the last waiter leaves, a job gets at most one more status request, and
none when its next poll was more than :data:`LINGER` seconds off. Its state
stays with the job handles, so a later wait picks up the backoff, the progress
estimate and the time of the next poll where they were. The remote job is
never stopped from here.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._closing import end_tasks
from ._coordination import REQUEST_SENT, Fetch, NoStatusYet
from ._entry import Entry, Subscriber, is_transient, status_changed
from ._errors import GameballError, ProtocolError, SessionClosedError
from ._models import BatchStatus, Operation
from ._outage import Outage
from ._policy import PollPolicy
from ._rates import MIN_JOBS, RateBook
from ._server_clock import ServerClock

if TYPE_CHECKING:
    from ._observer import Observer
    from ._stats import Counters

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "LINGER", "Pace", "Poller"]

logger: Final = logging.getLogger("gameball_async")

#: Polls of one session in flight at once (they still queue at the rate limiter).
DEFAULT_MAX_IN_FLIGHT: Final = 16
#: Seconds ahead a job's next poll may be and still be sent once its last waiter left.
LINGER: Final = 2.0
#: Seconds ``aclose`` gives the scheduler task to end once cancelled.
CLOSE_PATIENCE: Final = 1.0
#: Provisional polls in flight while the session knows neither the server's
#: clock nor its jobs' shared rate; more falling due wait for their replies:
#: enough for the book to agree (``MIN_JOBS``), and one that may teach nothing.
SCOUTS: Final = MIN_JOBS + 1
#: Seconds a provisional poll held back for the scouts waits before it is
#: looked at again (their replies come meanwhile, or not: it waits once more).
SCOUT_HOLD: Final = 0.05
#: A job about this close to its end is polled as planned, never held: its
#: next look most likely sees it end, and a hold behind the scouts (their
#: round trip, the rate limiter's next window) would be lag, not a poll saved.
SCOUT_WORTH: Final = 3.0
#: Seconds ahead of its turn a poll goes when the rate limiter lacks room for
#: all those due and it was aimed at an end within :data:`END_NEAR`: a poll due
#: this much earlier that only learns progress waits for it. It also bounds
#: how long such a poll can be put off by a stream of ending ones.
PRIORITY_LEAD: Final = 2.0
#: Seconds from now within which a job's estimated end makes its poll a likely end.
END_NEAR: Final = 1.0
#: Seconds the scheduler waits before asking again for room at a rate limiter
#: whose every slot is held by a request in flight (one may be a creation).
ROOM_RECHECK: Final = 0.05


class Pace(Protocol):
    """What the scheduler may ask of the session's rate limiter, when it can tell."""

    def room(self, now: float) -> int | None:
        """Requests that may go at ``now`` without waiting; ``None`` when unknown."""
        ...

    def delay(self, now: float) -> float:
        """Seconds from ``now`` until a request may go (``math.inf``: when one ends)."""
        ...


class Poller:
    """Schedules the polls of every awaited job of one session.

    :param fetch: the :data:`Fetch` strategy: one status read, one attempt.
    :param policy: poll timing.
    :param max_in_flight: polls in flight at once.
    :param clock: monotonic clock.
    :param wall_clock: the local wall clock, to read the server's timestamps against.
    :param pace: the session's rate limiter, when it can tell its room (the
        local one); without it polls are handed out as they fall due.
    :param counters: the session's counters, where a poll held for the
        limiter's room adds its wait to ``limiter_wait_seconds``.
    """

    def __init__(
        self,
        fetch: Fetch,
        policy: PollPolicy,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        pace: Pace | None = None,
        counters: Counters | None = None,
    ) -> None:
        self._fetch = fetch
        self._policy = policy
        self._max_in_flight = max_in_flight
        self._pace = pace
        self._counters = counters
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = random.Random()
        self._entries: dict[str, Entry] = {}
        self._heap: list[tuple[float, int, Entry]] = []
        # polls due and not handed out yet: (priority, seq, due, entry)
        self._ready: list[tuple[float, int, float, Entry]] = []
        # polls handed to a worker that has not reached the rate limiter yet
        self._handed = 0
        # polls due were left waiting for the rate limiter's room
        self._short_of_room = False
        self._seq = 0
        self._tickets = itertools.count(1)
        self._in_flight = 0
        self._scouts = 0
        self._wakeup = anyio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._outage = Outage(clock)
        self._server_clock = ServerClock()
        # the rate the session's jobs share, which aims a job's end from its first look
        self._rates = RateBook()
        #: Polls sent since the session opened (for tests and benchmarks).
        self.polls_sent = 0
        #: Polls that failed transiently and were put back on the schedule.
        self.polls_failed = 0
        #: Told of each job's first waiter and of terminal statuses (``gameball_async.otel``).
        self.observer: Observer | None = None

    # -- subscription ------------------------------------------------------

    def subscribe(
        self,
        job_id: str,
        operation: Operation | None,
        status: BatchStatus | None,
        subscriber: Subscriber,
        *,
        entry: Entry | None = None,
        not_running_at: float | None = None,
    ) -> Entry:
        """Register interest in a job; polling starts (or continues) for it.

        :param entry: the entry a job handle kept from an earlier wait: its
            backoff and progress estimate carry on instead of starting over.
        :param not_running_at: monotonic time the job was known not to run yet
            (its creation), a check on the server's ``startedAt``.
        :raises SessionClosedError: when the session is closed.
        """
        if self._closed:
            raise SessionClosedError("the session is closed; open a new one to poll jobs")
        current = self._entries.get(job_id)
        if current is None:
            if entry is not None and entry.job_id == job_id:
                current = self._revive(entry)
            else:
                current = Entry(job_id, operation, status, not_running_at)
                self._entries[job_id] = current
                self._schedule(current, self._first_delay(status))
                if self.observer is not None:
                    self.observer.job_awaited(job_id, operation)
        if current.operation is None:
            current.operation = operation
        current.subscribers.add(subscriber)
        self._ensure_running()
        return current

    def _revive(self, entry: Entry) -> Entry:
        if entry.error is not None:
            entry.error = entry.error_tb = None  # a new wait tries again
            entry.failures = 0
        if entry.finished:
            return entry  # terminal: the waiter reads it and leaves, nothing to poll
        self._entries[entry.job_id] = entry
        if not entry.scheduled and not entry.in_flight:
            self._schedule(entry, max(0.0, entry.due - self._clock()))
        return entry

    def unsubscribe(self, entry: Entry, subscriber: Subscriber) -> None:
        """Withdraw interest.

        The last one out leaves the entry on the schedule for its next due poll
        only, if that is at most :data:`LINGER` seconds away, or for the reply
        to its poll in flight; after that poll it leaves (see the module
        docstring).
        """
        entry.subscribers.discard(subscriber)
        if entry.subscribers or self._entries.get(entry.job_id) is not entry:
            return
        if entry.in_flight and not entry.finished:
            return  # its reply is news for the handles; nothing is sent after it
        if entry.finished or not entry.scheduled or entry.due - self._clock() > LINGER:
            del self._entries[entry.job_id]
            entry.scheduled = False  # a later wait puts it back at ``due``

    def ticket(self) -> int:
        """A ticket for a status read about to be sent; see :meth:`feed`."""
        return next(self._tickets)

    def feed(
        self,
        job_id: str,
        status: BatchStatus,
        ticket: int | None = None,
        *,
        entry: Entry | None = None,
    ) -> BatchStatus | None:
        """Hand over a status read elsewhere (``refresh()``, ``stop()``).

        :param ticket: from :meth:`ticket`, taken before the read was sent; a
            status read before the newest one applied is dropped. ``None``
            treats it as the newest.
        :param entry: the job handle's entry, when it has one.
        :return: the newest status known for the job after this one.
        """
        target = self._entries.get(job_id)
        if target is None and entry is not None and entry.job_id == job_id:
            target = entry
        if target is None:
            return status
        if ticket is None:
            ticket = self.ticket()
        self._apply(target, status, None, ticket)
        return target.status

    def poll_soon(self, job_id: str) -> None:
        """Poll a job at the shortest delay, e.g. right after stopping it.

        A poll already in flight was sent before whatever prompted this, so
        the next one after it is brought forward too.
        """
        entry = self._entries.get(job_id)
        if entry is None or entry.finished:
            return
        entry.steps = 0
        entry.provisional = entry.aimed = False  # asked for now: not to be put off
        if entry.in_flight:
            entry.soon = True
        else:
            self._schedule(entry, self._policy.min_delay)

    def holds(self, job_id: str) -> bool:
        """Whether the job is on the schedule (awaited, or lingering for a poll)."""
        return job_id in self._entries

    @property
    def default_timeout(self) -> float | None:
        """The poll policy's bound on a whole ``wait()``."""
        return self._policy.timeout

    @property
    def awaited_jobs(self) -> int:
        """Jobs with at least one waiter."""
        return sum(1 for entry in self._entries.values() if entry.subscribers)

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
            # Wait for the task's own cleanup (its task group) without letting
            # its CancelledError look like ours; bounded, and repeated, should a
            # fetch drop the cancellation.
            await end_tasks([task], patience=CLOSE_PATIENCE, what="poll scheduler")
        error = SessionClosedError("the session was closed while this job was awaited")
        entries = list(self._entries.values())
        self._entries.clear()
        self._heap.clear()
        for entry in entries:
            entry.scheduled = False
            if not entry.finished:
                entry.fail(error)
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
        # Leaving the task group yields to the loop; a job subscribed meanwhile
        # would find this task not done yet and never be polled: go round again.
        while self._entries or self._in_flight:
            try:
                await self._serve()
            except Exception:  # a bug must not end every wait of the session
                logger.exception("gameball_async: the poll scheduler failed; restarting it")
                await anyio.sleep(self._policy.min_delay)
                # polls cancelled with the workers are owed a new turn
                for entry in self._entries.values():
                    if not (entry.finished or entry.scheduled or entry.in_flight):
                        self._schedule(entry, self._policy.min_delay)

    async def _serve(self) -> None:
        # A fixed pool of workers fed through a stream: spawning a task per
        # poll cost several times the rest of the scheduling.
        queue, ready = anyio.create_memory_object_stream[Entry](self._max_in_flight)
        self._handed = 0  # what an earlier queue held went with its workers
        async with queue, ready, anyio.create_task_group() as workers:
            for _ in range(self._max_in_flight):
                workers.start_soon(self._work, ready, name="gameball_async poll worker")
            await self._dispatch(queue)
            workers.cancel_scope.cancel()

    async def _work(self, ready: MemoryObjectReceiveStream[Entry]) -> None:
        async for entry in ready:
            await self._poll(entry)

    async def _dispatch(self, queue: MemoryObjectSendStream[Entry]) -> None:
        heap, ready, pace = self._heap, self._ready, self._pace
        while self._entries or self._in_flight:
            now = self._clock()
            while heap and heap[0][0] <= now:
                due, seq, entry = heapq.heappop(heap)
                if due != entry.due or not entry.scheduled:
                    continue  # superseded by a later _schedule
                entry.scheduled = False
                if self._entries.get(entry.job_id) is not entry or entry.in_flight:
                    continue  # nobody waits for it any more, or its poll reschedules it
                heapq.heappush(ready, (self._priority(entry, due, now), seq, due, entry))
            room = None if pace is None or not ready else pace.room(now)
            if room is not None:
                room -= self._handed
            while ready and self._in_flight < self._max_in_flight and (room is None or room > 0):
                _, _, due, entry = heapq.heappop(ready)
                if (
                    entry.scheduled
                    or entry.in_flight
                    or self._entries.get(entry.job_id) is not entry
                ):
                    continue  # moved, finished or left while it waited for room
                scout = entry.provisional
                if scout and self._scouting(entry):
                    # the first looks out now may time it better: wait for them
                    self._schedule(entry, SCOUT_HOLD)
                    continue
                if (scout or entry.aimed) and self._reaimed(entry, due):
                    continue  # what the session learnt since puts it later
                entry.in_flight = True
                self._in_flight += 1
                self._handed += 1
                if room is not None:
                    room -= 1
                    if self._short_of_room and self._counters is not None:
                        # it waited for the limiter here rather than in its queue
                        self._counters.limiter_wait_seconds += max(0.0, now - due)
                if scout:
                    entry.scout = True
                    self._scouts += 1
                queue.send_nowait(entry)  # never blocks: the buffer holds max_in_flight
            self._short_of_room = bool(ready) and room is not None and room <= 0
            if not self._entries and not self._in_flight:
                break
            self._wakeup = anyio.Event()
            timeout = None
            if self._in_flight < self._max_in_flight:
                if ready and pace is not None:
                    # held for room at the rate limiter; a worker's reply wakes it too
                    wait = pace.delay(self._clock())
                    timeout = ROOM_RECHECK if math.isinf(wait) or wait <= 0 else wait
                if heap:
                    due_in = max(0.0, heap[0][0] - self._clock())
                    timeout = due_in if timeout is None else min(timeout, due_in)
            with anyio.move_on_after(timeout):
                await self._wakeup.wait()

    def _priority(self, entry: Entry, due: float, now: float) -> float:
        """The turn of a poll due: its due time, brought forward by :data:`PRIORITY_LEAD`
        when it was aimed at its job's end and that end is within :data:`END_NEAR`.

        Not a provisional poll: aimed from a start the session could not check,
        it is early on purpose, and taking the room of a first look it would
        most often see the job still run and cost one more poll (in the
        default profile of ``benchmarks/polling.py``, 0.15 more per job).
        """
        last = entry.last
        if last is None or not entry.aimed or entry.provisional:
            return due
        left = entry.seconds_left()
        if left is not None and last.at + left <= now + END_NEAR:
            return due - PRIORITY_LEAD
        return due

    def _scouting(self, entry: Entry) -> bool:
        """Whether a provisional poll falling due should wait for those in flight.

        A burst of first looks (jobs created or attached together) puts each
        job's second look early: its start claim cannot be checked and no
        rate is known yet. The replies of a few of those second looks bound
        the server's clock and the jobs' shared rate, which aim the rest at
        their ends: so while :data:`SCOUTS` of them are out and neither is
        known, the others wait for their replies rather than go too. A job
        near its end (:data:`SCOUT_WORTH`) never waits.
        """
        if self._scouts < SCOUTS or self._server_clock.behind_at_most is not None:
            return False
        left = entry.seconds_left()
        if left is not None and left < SCOUT_WORTH:
            return False
        return self._rates.shared(entry.operation, self._clock()) is None

    def _reaimed(self, entry: Entry, due: float) -> bool:
        """Put off a poll that fell due, if what the session learnt since aims it later.

        :return: whether it was put back on the heap for later.
        """
        later = entry.reaim(
            self._policy, server_clock=self._server_clock, rates=self._rates, rng=self._rng
        )
        if later is None or later <= due:
            return False
        delay = later - self._clock()
        if not entry.subscribers and delay > LINGER:
            # lingering for a poll that is now too far off: none is sent (see unsubscribe)
            del self._entries[entry.job_id]
            entry.due = later  # a later wait puts it back there
            return True
        self._schedule(entry, delay)
        return True

    async def _poll(self, entry: Entry) -> None:
        ticket = self.ticket()
        failure: Exception | None = None
        status: BatchStatus | None = None
        retry_after: float | None = None
        sent_at = self._clock()
        # it reaches the rate limiter in this step: no longer counted against its room
        self._handed -= 1
        try:
            self.polls_sent += 1
            status, retry_after = await self._fetch(entry.job_id, entry.operation)
            if self._clock is time.monotonic:
                # the request went out once its rate-limiter slot was taken
                sent_at = max(sent_at, REQUEST_SENT.get())
        except Exception as exc:
            failure = exc
        finally:
            entry.in_flight = False
            self._in_flight -= 1
            if entry.scout:
                entry.scout = False
                self._scouts -= 1
            self._wakeup.set()
        try:
            if isinstance(failure, NoStatusYet):
                # nothing to tell yet (a fleet follower), and nothing wrong
                self._schedule(entry, max(self._policy.min_delay, failure.retry_in))
            elif failure is not None:
                self._failed(entry, failure)
            elif status is not None:
                self._outage.ended()
                entry.failures = 0
                self._apply(entry, status, retry_after, ticket, sent_at=sent_at)
        except Exception as exc:  # a bug handling one job's reply ends that job's wait only
            error = ProtocolError(f"handling the status of job {entry.job_id} failed: {exc!r}")
            error.__cause__ = exc
            entry.fail(error)
            self._finish(entry)
        self._after_poll(entry)

    def _after_poll(self, entry: Entry) -> None:
        if self._entries.get(entry.job_id) is not entry or entry.finished:
            return
        if not entry.subscribers:
            # it lingered for this one poll after its last waiter left
            del self._entries[entry.job_id]
            entry.scheduled = False
            return
        if entry.soon:
            entry.soon = False
            entry.provisional = entry.aimed = False  # asked for soon: not to be put off
            self._schedule(entry, self._policy.min_delay)
        elif not entry.scheduled:
            # its reply was dropped as stale, or a status fed meanwhile moved it
            self._schedule(entry, max(0.0, entry.due - self._clock()))

    def _failed(self, entry: Entry, failure: Exception) -> None:
        if not is_transient(failure):
            if not isinstance(failure, GameballError):
                error = ProtocolError(f"polling job {entry.job_id} failed: {failure!r}")
                error.__cause__ = failure
                failure = error
            entry.fail(failure)
            self._finish(entry)
            return
        self.polls_failed += 1
        self._outage.failed(failure)
        retry_after = getattr(failure, "retry_after", None)
        delay = entry.delay_after_failure(
            self._policy,
            retry_after=float(retry_after) if isinstance(retry_after, (int, float)) else None,
            rng=self._rng,
        )
        self._schedule(entry, delay)

    def _apply(
        self,
        entry: Entry,
        status: BatchStatus,
        retry_after: float | None,
        ticket: int,
        *,
        sent_at: float | None = None,
    ) -> None:
        current = entry.status
        if current is not None and current.is_terminal:
            return  # nothing changes a job seen terminal
        if ticket < entry.ticket:
            return  # read before the newest status applied: stale
        entry.ticket = ticket
        if entry.error is not None and not status.is_terminal:
            # a fresh read after a final error: polling may go on for new waiters
            entry.error = entry.error_tb = None
        self._observe(entry, status, retry_after, sent_at)

    def _observe(
        self,
        entry: Entry,
        status: BatchStatus,
        retry_after: float | None,
        sent_at: float | None = None,
    ) -> None:
        previous = entry.status
        entry.status = status
        if status.is_terminal:
            if self.observer is not None:
                # a fleet's status reaches the scheduler without a request of ours
                self.observer.status_seen(status)
            self._finish(entry)
            return
        now = self._clock()
        delay = entry.delay_after(
            status,
            self._policy,
            now=now,
            wall_now=self._wall_clock(),
            retry_after=retry_after,
            rng=self._rng,
            sent_at=sent_at,
            server_clock=self._server_clock,
            rates=self._rates,
        )
        if self._entries.get(entry.job_id) is entry and not entry.in_flight:
            self._schedule(entry, delay)
        else:
            # polled again after the poll in flight (or when a waiter returns)
            entry.due = now + delay
        if status_changed(previous, status):
            self._notify(entry)

    def _finish(self, entry: Entry) -> None:
        if self._entries.get(entry.job_id) is entry:
            del self._entries[entry.job_id]
        entry.scheduled = False
        entry.soon = False
        self._notify(entry)

    @staticmethod
    def _notify(entry: Entry) -> None:
        for subscriber in list(entry.subscribers):
            subscriber.notify(entry)
