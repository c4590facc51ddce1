"""Shared polling: each awaited job is polled by one process for the whole fleet.

A process that polls a job first takes the job's *lease* (a Redis key with an
expiry whose value names the process and a fence number) and becomes its
owner: its poller's reads go to Gameball, and each status read is stored under
the job's status key with a fenced write, then hinted on the hints channel: a
terminal one at once, a running one (progress only) by the process's next
heartbeat, which stores all of them with its leases' renewal in one call.
Every other process awaiting the job *follows*: it reads the status key
instead (no request to Gameball). A hint carries the status the owner stored
(unless it is long) with its version, so a follower's poller gets each status
the owner saw without a read of its own, and its progress-aware timing sees
what the owner saw. Pub/sub is only a hint (messages are lost on reconnects):
the key is the truth. A follower reads it when it starts following a job (a
process's first reads gather into one call), when a hint comes without the
status, after the hints reconnect, and when its heartbeat finds the stored
version is not the one it last had (a hint lost); between those its poller
is told there is nothing new, at no cost to Redis.

One heartbeat task per process renews all its leases in one script call,
releases those of jobs its session no longer awaits, and watches the leases of
the jobs it follows: when one is gone (its owner was killed, frozen, or
closed) the follower polls at once and takes the lease over. A frozen owner
that wakes up finds its lease held under a newer fence: its late write is
refused and it becomes a follower. An owner whose polls keep failing (it
cannot reach Gameball) gives its lease back after a few in a row, so another
process may try.

Redis slow or down (a timeout, the circuit breaker open): every fetch falls
back to the session's own status read at once, so waits carry on as local
polling; the breaker logs the fallback (WARNING) and the recovery (INFO).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any, Final

import anyio
import redis.asyncio as aioredis

from gameball_async._coordination import NoStatusYet, SessionLink
from gameball_async._models import BatchStatus, Operation

from ._bounded import end_tasks
from ._breaker import Breaker, RedisUnavailable
from ._hints import HintListener
from ._keys import Keys
from ._polls_scripts import Scripts, Taken, decode_status, encode_status, parse_hint

__all__ = ["FAILURES_BEFORE_RELEASE", "SharedPolls"]

logger: Final = logging.getLogger("gameball_async")

#: An owner's failed polls in a row after which it gives the job's lease back.
FAILURES_BEFORE_RELEASE: Final = 3
#: Seconds the reads that start in this span go in one ``take`` call.
TAKE_GATHER: Final = 0.05
#: Seconds a follower whose heartbeat finds a job's lease gone after a newer
#: write waits for that write's hint (or for its poller to read the hint in
#: hand) before it reads the job itself: an owner's terminal write takes the
#: lease with it, and its hint, published before the heartbeat's reply is
#: sent, is often read or used just after the reply.
HINT_GRACE: Final = 0.25


class SharedPolls:
    """The poller's status-read strategy for a session in a fleet.

    :param client: the fleet's Redis client (never closed here).
    :param keys: the account's key names.
    :param breaker: bounds every Redis call; open, it sends the fetches local.
    :param link: what the session gave the fleet (its own status read, its
        poll scheduler's ``poll_soon`` and ``awaited``).
    :param process_id: this process's name in lease values: unique in the
        fleet to this instance (two sessions of one process need two names, or
        both would take the same lease for their own).
    :param on_terminal: called with the id of each job seen terminal here
        whose end no shared write recorded (Redis down, a write refused, a
        local read): a stored terminal status has settled the registry itself.
    :param lease_ttl: seconds a lease lives unless renewed: a dead owner's
        jobs are taken over after about this long.
    :param heartbeat: seconds between renewals (well under ``lease_ttl``).
    :param process_key: the process's heartbeat key and its TTL, renewed by
        each beat too; ``on_renewed`` is called after each such renewal.
    :param releases: gives the rate limiter's slot releases waiting (see
        ``FleetRateLimiter.take_releases``): an owner's store, made right after
        its reply, sends them in the same call.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        breaker: Breaker,
        link: SessionLink,
        *,
        process_id: str,
        on_terminal: Callable[[str], None],
        lease_ttl: float = 3.0,
        heartbeat: float = 1.0,
        process_key: tuple[str, float] | None = None,
        on_renewed: Callable[[], None] | None = None,
        releases: Callable[[], tuple[str, int, list[str | int]] | None] | None = None,
    ) -> None:
        if not (math.isfinite(lease_ttl) and math.isfinite(heartbeat)):
            raise ValueError("lease_ttl and heartbeat must be finite")
        if not 0 < heartbeat < lease_ttl:
            raise ValueError(
                f"heartbeat must be > 0 and shorter than lease_ttl, got {heartbeat}, {lease_ttl}"
            )
        if not process_id:
            raise ValueError("process_id must not be empty")
        self._keys = keys
        self._breaker = breaker
        self._link = link
        self._process_id = process_id
        self._on_terminal = on_terminal
        self._lease_ttl = lease_ttl
        self._heartbeat = heartbeat
        self._process_key = process_key
        self._on_renewed = on_renewed
        self._releases = releases
        self._scripts = Scripts(client, keys)
        self._hints = HintListener(
            client, keys.hints, breaker, on_hint=self._hinted, on_reconnect=self._resync,
            quiet=heartbeat,
        )  # fmt: skip
        breaker.on_open.append(self._breaker_opened)
        # job id -> our lease's value, for the jobs this process polls for the fleet
        self._owned: dict[str, str] = {}
        # jobs whose lease another process holds: we read what it stores
        self._followed: set[str] = set()
        # followed jobs: the version of the status last handed to the poller
        # (-1: none stored yet), hinted statuses not handed yet, and the jobs
        # that must be read again (a hint without a status, a reconnect)
        self._versions: dict[str, int] = {}
        self._news: dict[str, tuple[int, str]] = {}
        self._unread: set[str] = set()
        # followed jobs whose stored version, at the last beat, was newer than
        # the one handed: read at the next beat unless its hint came meanwhile
        self._behind: dict[str, int] = {}
        # reads gathered into the next take call, and its timer
        self._gathering: dict[str, asyncio.Future[Taken]] = {}
        self._gather_timer: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writes: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # job id -> the owner's failed polls in a row
        self._failures: dict[str, int] = {}
        # owned jobs: the running status read last and not stored yet (the
        # next beat stores it), with the lease it was read under
        self._unstored: dict[str, tuple[str, BatchStatus]] = {}
        self._closed = False
        self._stop = asyncio.Event()
        #: Status requests this process sent to Gameball through shared polling.
        self.requests = 0
        #: Polls answered from the shared status key (no request sent).
        self.shared_reads = 0
        #: Of those, the ones answered by a hint (no Redis read either).
        self.hinted_reads = 0
        #: ``take`` calls made (each reads one or more jobs).
        self.takes = 0
        #: Polls sent locally because Redis was unavailable.
        self.local_fallbacks = 0
        #: Leases taken (this process became a job's owner).
        self.leases_taken = 0
        #: Leases found lost at a renewal or a refused write.
        self.leases_lost = 0
        #: Leases given back after failed polls in a row.
        self.leases_released = 0
        #: Fenced writes refused (our lease was gone or superseded).
        self.writes_refused = 0
        #: Times the followed jobs were read again after the hints reconnected.
        self.resyncs = 0

    # -- what the session uses ---------------------------------------------

    @property
    def owned(self) -> frozenset[str]:
        """The jobs this process polls for the fleet now (holds the lease of)."""
        return frozenset(self._owned)

    @property
    def followed(self) -> frozenset[str]:
        """The jobs this process follows (another process holds their lease)."""
        return frozenset(self._followed)

    @property
    def listening(self) -> bool:
        """Whether the hint listener is subscribed now."""
        return self._hints.listening

    async def fetch(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        """The poller's fetch: poll as the job's owner, or read what its owner shared.

        :raises NoStatusYet: a follower whose owner has stored nothing yet.
        :raises GameballError: the owner's (or the local fallback's) status read failed.
        """
        lease = self._owned.get(job_id)
        if lease is None:
            if self._closed:
                return await self._locally(job_id, operation)
            news = self._news.pop(job_id, None)
            if news is not None:
                version, data = news
                try:
                    status = decode_status(data)
                except ValueError:
                    self._unread.add(job_id)  # not something this version wrote: read it
                else:
                    self.hinted_reads += 1
                    return self._handed(job_id, version, status)
            if self._current(job_id):
                # nothing stored since the last read: a hint or a beat says
                # when; asked again a heartbeat on (no Redis call), so an
                # outage meanwhile turns this wait local within one
                raise NoStatusYet(self._heartbeat)
            try:
                taken = await self._take(job_id)
            except RedisUnavailable:
                return await self._locally(job_id, operation)
            lease = self._owned.get(job_id)
            if lease is None:
                return self._follow(job_id, taken)
        self.requests += 1
        try:
            status, retry_after = await self._link.fetch(job_id, operation)
        except Exception:
            self._owner_failed(job_id, lease)
            raise
        self._failures.pop(job_id, None)
        await self._share(job_id, lease, status)
        return status, retry_after

    def observed(self, status: BatchStatus) -> None:
        """Share a status this process read outside its poller (refresh, stop).

        The owner stores it (fenced); another process stores it only when it
        is terminal (nothing newer can come). The write runs in the background.
        """
        job_id = status.job_id
        lease = self._owned.get(job_id)
        if lease is not None and not self._closed:
            self._spawn(self._share(job_id, lease, status))  # tells on_terminal itself
        elif status.is_terminal:
            if self._closed:
                self._on_terminal(job_id)
            else:
                self._spawn(self._share_final(job_id, status))

    def start(self) -> None:
        """Start the heartbeat and the hint listener on the running loop."""
        if self._closed or self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._beat_forever(), name="gameball_async fleet heartbeat"),
            loop.create_task(self._hints.run(), name="gameball_async fleet hints"),
        ]

    async def aclose(self) -> None:
        """Give back every lease (followers take over at once) and stop. Idempotent.

        Returns within about three of the breaker's timeouts: a task that
        does not end when told is abandoned with its connection closed.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with contextlib.suppress(ValueError):
            self._breaker.on_open.remove(self._breaker_opened)
        await self._hints.aclose()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._fail_gathered()
        tasks, self._tasks = self._tasks, []
        patience = self._breaker.timeout + 0.5
        if await end_tasks(tasks, patience=patience, what="shared polling"):
            self._hints.abort()
        if self._writes:
            # a terminal status being shared is worth a moment; never more
            _, late = await asyncio.wait(self._writes, timeout=self._breaker.timeout)
            await end_tasks(late, patience=patience, what="shared status write")
        owned = list(self._owned.items())
        self._owned.clear()
        self._followed.clear()
        self._unstored.clear()  # progress only: the next owner reads its own
        if owned:
            await self._release(owned)

    def abort(self) -> None:
        """Stop at once (a close that ran out of time): cancel every task and
        close the hints connection; leases run out on their own."""
        self._closed = True
        self._stop.set()
        self._fail_gathered()
        for task in [*self._tasks, *self._writes]:
            task.cancel()
        self._hints.abort()

    def _fail_gathered(self) -> None:
        # reads gathered and not sent: their waiters poll locally
        if self._gather_timer is not None:
            self._gather_timer.cancel()
            self._gather_timer = None
        futures, self._gathering = self._gathering, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(RedisUnavailable("the fleet is closing"))

    # -- owner and follower --------------------------------------------------

    async def _locally(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        self.local_fallbacks += 1
        status, retry_after = await self._link.fetch(job_id, operation)
        if status.is_terminal:
            self._followed.discard(job_id)
            self._on_terminal(job_id)
        return status, retry_after

    def _current(self, job_id: str) -> bool:
        # whether the last read of a followed job is the newest, as far as the
        # hints (listened to since) and the heartbeat tell
        return (
            job_id in self._followed
            and job_id in self._versions
            and job_id not in self._unread
            and self._hints.listening
            and not self._breaker.is_open
        )

    async def _take(self, job_id: str) -> Taken:
        # the reads that start within TAKE_GATHER go in one call
        future = self._gathering.get(job_id)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._gathering[job_id] = loop.create_future()
            future.add_done_callback(_retrieved)
            if self._gather_timer is None:
                self._gather_timer = loop.call_later(TAKE_GATHER, self._take_gathered)
        # a waiter cancelled does not cancel the others' read
        return await asyncio.shield(future)

    def _take_gathered(self) -> None:
        self._gather_timer = None
        futures, self._gathering = self._gathering, {}
        if futures:
            self._spawn(self._take_all(futures))

    async def _take_all(self, futures: dict[str, asyncio.Future[Taken]]) -> None:
        job_ids = list(futures)
        try:
            if self._closed:
                raise RedisUnavailable("the fleet is closing")
            self.takes += 1
            found = await self._breaker.call(
                lambda: self._scripts.take(job_ids, self._process_id, self._lease_ttl)
            )
        except BaseException as exc:
            failure = exc if isinstance(exc, RedisUnavailable) else RedisUnavailable(repr(exc))
            for future in futures.values():
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for job_id, taken in zip(job_ids, found, strict=True):
            if taken.ours and taken.holder is not None and job_id not in self._owned:
                # recorded whether or not its waiter is still there: the
                # heartbeat gives back the leases of jobs nobody awaits
                self._followed.discard(job_id)
                self._owned[job_id] = taken.holder
                self.leases_taken += 1
                logger.debug(
                    "gameball_async: polling job %s for the fleet (%s)", job_id, taken.holder
                )
            future = futures[job_id]
            if not future.done():
                future.set_result(taken)

    def _handed(
        self, job_id: str, version: int, status: BatchStatus
    ) -> tuple[BatchStatus, float | None]:
        self._versions[job_id] = version
        self.shared_reads += 1
        if status.is_terminal:
            # the write that stored it took the job out of the open set
            self._unfollow(job_id)
        return status, None

    def _unfollow(self, job_id: str) -> None:
        self._followed.discard(job_id)
        self._versions.pop(job_id, None)
        self._news.pop(job_id, None)
        self._unread.discard(job_id)
        self._behind.pop(job_id, None)

    def _follow(self, job_id: str, taken: Taken) -> tuple[BatchStatus, float | None]:
        self._unread.discard(job_id)
        if taken.data is None:
            self._followed.add(job_id)
            self._versions[job_id] = taken.version
            raise NoStatusYet(self._heartbeat)
        try:
            status = decode_status(taken.data)
        except ValueError as exc:
            # not something this version wrote: wait for the owner's next write
            logger.debug("gameball_async: unreadable shared status of job %s: %s", job_id, exc)
            self._followed.add(job_id)
            self._versions[job_id] = taken.version
            raise NoStatusYet(self._heartbeat) from None
        if not status.is_terminal and taken.holder is not None:
            self._followed.add(job_id)
        return self._handed(job_id, taken.version, status)

    def _read_again(self, job_id: str) -> None:
        # a followed job whose stored status this process may not have seen
        self._unread.add(job_id)
        self._news.pop(job_id, None)
        self._link.poll_soon(job_id)

    async def _share(self, job_id: str, lease: str, status: BatchStatus) -> None:
        terminal = status.is_terminal
        if not terminal:
            # stored by the next heartbeat, with every lease's renewal: a
            # follower needs the terminal status at once, a running one only
            # shows progress (a poll's own store was a Redis call per request)
            if self._owned.get(job_id) == lease:
                self._unstored[job_id] = (lease, status)
            return
        self._unstored.pop(job_id, None)
        if self._owned.get(job_id) == lease:
            # stored or not, this process stops renewing it (the write releases it)
            del self._owned[job_id]
        data = encode_status(status)
        releases = self._releases() if self._releases is not None else None
        try:
            outcome = await self._breaker.call(
                lambda: self._scripts.store(
                    job_id, lease, data, terminal=terminal, releases=releases
                )
            )
        except RedisUnavailable:
            if terminal:
                self._on_terminal(job_id)  # the registry's own write, retried
            return  # the lease runs out unless a later write or beat gets through
        if outcome == 0:
            if terminal:
                self._on_terminal(job_id)  # not stored here, so not settled either
            self.writes_refused += 1
            logger.debug("gameball_async: shared status of job %s refused (lease lost)", job_id)
            self._lost(job_id, lease)

    async def _share_final(self, job_id: str, status: BatchStatus) -> None:
        # unstored, the job's owner reads it itself on its next poll
        try:
            await self._breaker.call(
                lambda: self._scripts.store_final(job_id, encode_status(status))
            )
        except RedisUnavailable:
            self._on_terminal(job_id)  # the registry's own write, retried

    def _lost(self, job_id: str, lease: str) -> None:
        if self._owned.get(job_id) != lease:
            return
        del self._owned[job_id]
        self.leases_lost += 1
        if self._link.awaited(job_id):
            self._followed.add(job_id)
            self._read_again(job_id)  # read what the new owner shares

    def _owner_failed(self, job_id: str, lease: str) -> None:
        # An owner that cannot reach Gameball (its network, its keys) must not
        # hold the job for the fleet forever: after a few failed polls in a row
        # it gives the lease back, so another process may try (or it takes the
        # lease again itself on its next poll when nobody else wants it).
        failures = self._failures.get(job_id, 0) + 1
        if failures < FAILURES_BEFORE_RELEASE:
            self._failures[job_id] = failures
            return
        self._failures.pop(job_id, None)
        if self._owned.get(job_id) != lease:
            return
        del self._owned[job_id]
        self._followed.add(job_id)
        self._unread.add(job_id)
        self.leases_released += 1
        if not self._closed:
            self._spawn(self._release([(job_id, lease)]))

    async def _release(self, leases: list[tuple[str, str]]) -> None:
        # unreleased, they expire on their own within a lease TTL
        with contextlib.suppress(RedisUnavailable):
            await self._breaker.call(lambda: self._scripts.release(leases))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name="gameball_async fleet write")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    # -- heartbeat -----------------------------------------------------------

    async def _beat_forever(self) -> None:
        # ends when told (not by cancellation alone: see _bounded.py)
        while not self._closed:
            with anyio.move_on_after(self._heartbeat):
                await self._stop.wait()
            if self._closed:
                return
            try:
                await self._beat()
            except Exception:  # a bug must not end the renewals of every lease
                logger.exception("gameball_async: the fleet heartbeat failed")

    async def _beat(self) -> None:
        awaited = self._link.awaited
        done = [(job_id, value) for job_id, value in self._owned.items() if not awaited(job_id)]
        for job_id, _ in done:
            del self._owned[job_id]
        self._followed = {job_id for job_id in self._followed if awaited(job_id)}
        for table in (self._versions, self._news, self._behind):
            for job_id in [job_id for job_id in table if job_id not in self._followed]:
                del table[job_id]
        self._unread &= self._followed
        for job_id in [job_id for job_id in self._failures if job_id not in self._owned]:
            del self._failures[job_id]
        if done:
            await self._release(done)
        owned = list(self._owned.items())
        followed = [job_id for job_id in self._followed if job_id not in self._owned]
        if not owned and not followed:
            return
        unstored = self._unstored
        for job_id in [
            job_id for job_id, (lease, _) in unstored.items() if self._owned.get(job_id) != lease
        ]:
            del unstored[job_id]
        sent = dict(unstored)
        statuses = {job_id: encode_status(status) for job_id, (_, status) in sent.items()}
        try:
            kept, remaining = await self._breaker.call(
                lambda: self._scripts.beat(
                    owned, followed, self._lease_ttl, process=self._process_key,
                    statuses=statuses,
                )
            )  # fmt: skip
        except RedisUnavailable:
            return  # stored by a later beat, if still the newest
        for job_id, entry in sent.items():
            if unstored.get(job_id) is entry:
                del unstored[job_id]
        if self._process_key is not None and self._on_renewed is not None:
            self._on_renewed()
        for (job_id, value), ours in zip(owned, kept, strict=True):
            if ours == 0:
                logger.debug("gameball_async: lease of job %s lost before its renewal", job_id)
                self._lost(job_id, value)
            elif ours == 2:
                self.writes_refused += 1
                logger.debug(
                    "gameball_async: shared status of job %s refused (newer fence)", job_id
                )
                self._lost(job_id, value)
        soon = self._heartbeat * 1000
        for job_id, (ttl, version) in zip(followed, remaining, strict=True):
            news = self._news.get(job_id)
            known = news[0] if news is not None else self._versions.get(job_id)
            behind = self._behind.pop(job_id, None)
            if known is not None and version != known and job_id not in self._unread:
                if version < known or (behind is not None and known < behind):
                    # Redis lost the key, or the hint of a version seen at the
                    # last beat never came
                    self._read_again(job_id)
                else:
                    self._behind[job_id] = version  # its hint may be on its way
            if ttl == -2:  # no lease
                if news is not None or job_id in self._behind:
                    # written since the last read, its hint in hand or on its
                    # way: most likely its terminal write, which takes the
                    # lease with it (still followed then: read it)
                    self._check_at(job_id, HINT_GRACE)
                else:  # its owner is gone: take over now
                    self._read_again(job_id)
            elif 0 <= ttl < soon:  # runs out before the next beat: be there
                self._check_at(job_id, ttl / 1000 + 0.01)

    def _check_at(self, job_id: str, delay: float) -> None:
        if job_id in self._timers:
            return

        def check() -> None:
            self._timers.pop(job_id, None)
            if job_id in self._followed and not self._closed:
                self._read_again(job_id)

        self._timers[job_id] = asyncio.get_running_loop().call_later(delay, check)

    # -- hints -----------------------------------------------------------------

    def _hinted(self, message: str) -> None:
        # our own writes come back too: an owner's polls keep their own pace
        try:
            hint = parse_hint(message)
        except ValueError:
            return  # not something this version publishes
        job_id = hint.job_id
        if job_id in self._owned or not self._link.awaited(job_id):
            return
        if job_id not in self._followed:
            # its first read is to come: bring it forward (it takes the lease
            # or learns whose it is)
            self._link.poll_soon(job_id)
            return
        if hint.data is None or hint.version is None:
            self._read_again(job_id)  # a status too long to carry, or a lease given back
            return
        # kept as text: decoded only if the poller asks before a newer one comes
        # (every write counts the version, a terminal one too; a version that
        # went back, Redis having lost the key, is the heartbeat's to catch)
        news = self._news.get(job_id)
        known = news[0] if news is not None else self._versions.get(job_id, -1)
        if hint.version > known:
            self._news[job_id] = (hint.version, hint.data)
            self._link.poll_soon(job_id)

    def _breaker_opened(self) -> None:
        # a follower resting on hints would hear nothing now: its jobs are
        # polled locally at once
        if self._closed:
            return
        for job_id in list(self._followed):
            if self._link.awaited(job_id):
                self._link.poll_soon(job_id)

    def _resync(self) -> None:
        # hints sent while the listener was away are lost: read every followed job
        self.resyncs += 1
        for job_id in list(self._followed):
            if self._link.awaited(job_id):
                self._read_again(job_id)


def _retrieved(future: asyncio.Future[Taken]) -> None:
    # a read whose waiters were all cancelled: its failure is nobody's news
    if not future.cancelled():
        future.exception()
