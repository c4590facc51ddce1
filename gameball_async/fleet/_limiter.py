"""The account-wide rate limiter: one Lua script per acquire, on Redis time.

Every request of the account is one member of a sorted set (the log). A
request is entered at its *deadline* while in flight (it counts in every
window until then, and a process killed mid-request frees it there) and moved
back to its *reply time* when the slot is left, so the fleet keeps the local
limiter's rule: a request counts from its reply, never earlier than the server
saw it. Both windows (``per_second`` over 1 s + margin, ``per_window`` over
``window`` + margin) are checked in the same script, on the server's ``TIME``:
the clocks of the processes never matter.

Fairness: a process that is refused queues in a waiters set (one member per
limiter, ordered by when it first waited) and a slot goes to a caller only when
more slots are free than waiters queue ahead of it, so under equal demand the
processes take turns. Each limiter keeps a local FIFO in front: Redis sees one
waiter per limiter, however many tasks wait in it.

A 429 anywhere sets the fleet's pause key. When Redis is slow or down (the
breaker is open) the limiter falls back to a :class:`LocalRateLimiter` with the
limit divided by ``expected_processes``; it uses Redis again on its own once
Redis answers, entering first the requests it sent on its own share (at their
reply times, or their deadlines while in flight), so the account never goes
over the limit after a recovery. Two more rules keep the limit across an outage:

- the local share starts from the log's counts last seen (this process's part
  of them, ``count / expected_processes``, as if sent when seen), so an outage
  that strikes mid-window does not hand every process a fresh share of it; as
  the others may have gone on since its last answer (by up to the 1 s limit
  each second), its part of that counts too: the local share waits out the 1 s
  window first, and a process that never reached Redis counts its whole share
  as used (it sends on its share again within one window); a process alone
  (``expected_processes=1``) starts from what it sent;
- for the breaker's cool-down and one 1 s window after Redis answers again,
  each request also takes a slot of the local share: the other processes may
  still run on theirs, unseen by the log, and their shares add up to the limit;
- the log carries an epoch (a random name, made when the log's epoch key is
  missing): a Redis restarted empty or flushed makes a new one, and a limiter
  that knew the old one enters everything it sent in the window again before
  it takes a slot.

One acquire takes slots for the tasks queued behind it in the local FIFO too
(up to :data:`MAX_BATCH`, within what is free beyond the waiters queued ahead):
a burst of requests in one process costs one round trip, not one each. A slot
taken for a task that then went away is given back as a request answered at
once (it counts in the 1 s window, never over the limit).

Releases are folded into the limiter's next acquire: a reply's release waits
up to :data:`RELEASE_DELAY` for one, then goes on its own (a late release
changes nothing within the 1 s window, where the request counts either way).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import attrs
import redis.asyncio as aioredis

from gameball_async._ratelimit import LocalRateLimiter, RateLimit

from ._breaker import Breaker, RedisUnavailable
from ._keys import Keys
from ._limiter_scripts import (
    ACQUIRE,
    BACKFILL,
    IN_FLIGHT_RETRY_MS,
    LEAVE,
    MAX_BATCH,
    MAX_PAUSE,
    MAX_WAIT,
    PAUSE,
    POOL_TTL,
    RELEASE,
    RELEASE_DELAY,
    STALE_WAITER_MS,
    window_ms,
)

__all__ = ["FleetRateLimiter", "local_share"]

_limiters: Final = itertools.count()

#: Starts a coroutine in the background of the fleet (retried or not is its business).
Spawn = Callable[[Callable[[], Awaitable[Any]]], None]


def local_share(limit: RateLimit, processes: int) -> RateLimit:
    """This process's share of ``limit`` when the fleet cannot coordinate.

    :param limit: the account's limit.
    :param processes: how many processes share it (at least 1).
    """
    return attrs.evolve(
        limit,
        per_second=max(1, limit.per_second // processes),
        per_window=max(1, limit.per_window // processes),
    )


class FleetRateLimiter:
    """A :class:`~gameball_async.RateLimiter` shared by every process of an account.

    :param client: the fleet's Redis client.
    :param keys: the account's key names.
    :param breaker: the fleet's circuit breaker (every Redis call goes through it).
    :param limit: the account's limit.
    :param request_bound: seconds a request can be in flight at most.
    :param process_id: this process's id in the fleet.
    :param expected_processes: divides ``limit`` for the local fallback.
    :param spawn: runs a coroutine factory in the fleet's background.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        breaker: Breaker,
        limit: RateLimit,
        *,
        request_bound: float,
        process_id: str,
        expected_processes: int,
        spawn: Spawn,
    ) -> None:
        self._keys = keys
        self._breaker = breaker
        self._limit = limit
        self._spawn = spawn
        self._processes = expected_processes
        self._fallback = LocalRateLimiter(local_share(limit, expected_processes))
        self._acquire = client.register_script(ACQUIRE)
        self._backfill = client.register_script(BACKFILL)
        self._release = client.register_script(RELEASE)
        self._pause = client.register_script(PAUSE)
        self._leave = client.register_script(LEAVE)
        self._waiter = f"{process_id}.{next(_limiters)}"
        self._members = itertools.count()
        self._bound_ms = math.ceil(request_bound * 1000)
        self._short_ms, self._long_ms = window_ms(limit)
        self._lock = anyio.Lock()  # the local FIFO: one waiter per limiter in Redis
        # slots one acquire took for the tasks queued behind it: (member, when taken)
        self._pool: deque[tuple[str, float]] = deque()
        self._keys_of_acquire = self._acquire_keys  # built once: every acquire sends them
        self._paused_until = 0.0
        self._in_flight = 0
        # the local fallback's requests not yet in the Redis log: reply times
        # (monotonic) of those answered, and how many are in flight
        self._unlogged: deque[float] = deque()
        self._unlogged_in_flight = 0
        # fallback requests in flight already entered (at their deadline)
        self._logged_in_flight = 0
        # requests sent through the log: in flight (members), and answered
        # within the window (reply time, member), to enter again if it is lost
        # (True: the request also holds a slot of the local share)
        self._flying: dict[str, bool] = {}
        self._sent: deque[tuple[float, str]] = deque()
        # the log's epoch last seen ('' before the first answer), and the one
        # this limiter makes if the log has none (new once it is taken)
        self._epoch = ""
        self._new_epoch = uuid.uuid4().hex
        # the log's counts at the last answer: (monotonic time, 1 s count, window
        # count), or None once the local share was started from them
        self._seen: tuple[float, int, int] | None = None
        # releases waiting to ride on the next acquire: (member, reply time)
        self._releases: list[tuple[str, float]] = []
        # after the local fallback: each slot also takes one of the local share
        # until Redis has answered and this monotonic time has passed
        self._recovering = False
        self._capped_until = 0.0
        self._flush: asyncio.TimerHandle | None = None
        #: Requests of the local fallback entered into the Redis log afterwards.
        self.backfilled = 0
        #: Redis round trips made (acquire, release, pause), for stats and tests.
        self.round_trips = 0
        #: Slots taken from the local fallback because Redis was unavailable.
        self.fallback_slots = 0

    @property
    def limit(self) -> RateLimit:
        """The account's limit."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Requests of this limiter holding a slot whose reply has not come."""
        return self._in_flight

    @property
    def waiter(self) -> str:
        """This limiter's name in the waiters queue (a process id and a number)."""
        return self._waiter

    def slot(self) -> _FleetSlot:
        """A slot for one request, held until its reply (see :class:`RateLimiter`)."""
        return _FleetSlot(self)

    def pause(self, seconds: float) -> None:
        """Hold every request of the fleet for ``seconds`` (the server answered 429).

        This process holds at once; the fleet's pause key is written in the
        background.
        """
        if not self._limit.enabled or not seconds > 0:
            return
        seconds = min(seconds, MAX_PAUSE)
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self._fallback.pause(seconds)
        ms = math.ceil(seconds * 1000)

        async def write() -> None:
            self.round_trips += 1
            await self._breaker.call(
                lambda: self._pause(keys=[self._keys.limiter_pause], args=[ms])
            )

        self._spawn(write)

    async def _take(self) -> str | None:
        """Wait for a slot: the member entered in the log, or ``None`` for a
        slot of the local fallback."""
        async with self._lock:
            queued = False
            shared = False  # holds a slot of the local share too
            try:
                while True:
                    hold = self._paused_until - time.monotonic()
                    if hold > 0:
                        await anyio.sleep(hold)
                        continue
                    if not self._breaker.allows():
                        break
                    if not shared and (self._recovering or time.monotonic() < self._capped_until):
                        await self._fallback._take()
                        shared = True
                    member = self._from_pool()
                    if member is not None:
                        self._in_flight += 1
                        self._flying[member] = shared
                        self._trim_pool()
                        return member
                    if self._unlogged or self._unlogged_in_flight:
                        try:
                            await self._enter_sent(lost=False)
                        except RedisUnavailable:
                            break
                    prefix = f"{self._waiter}:{next(self._members)}"
                    # its own slot, and one for each task queued behind it
                    wanted = 1 + min(self._lock.statistics().tasks_waiting, MAX_BATCH - 1)
                    args = self._args(prefix, wanted)
                    # a call cut short may still have queued this limiter: leave on the way out
                    queued = True
                    try:
                        self.round_trips += 1
                        code, value, short, long, epoch = await self._breaker.call(
                            lambda: self._acquire(keys=self._keys_of_acquire, args=args)  # noqa: B023
                        )
                    except RedisUnavailable:
                        break
                    now = time.monotonic()
                    granted = int(value) if int(code) == 1 else 0
                    # the counts leave out this call's own entries
                    self._seen = (now, int(short) + granted, int(long) + granted)
                    if self._recovering:
                        self._recovering = False
                        self._capped_until = now + self._breaker.cooldown + self._short_ms / 1000
                    epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
                    if epoch == self._new_epoch:
                        self._new_epoch = uuid.uuid4().hex  # a later loss needs another
                    if int(code) == 2:
                        # the log was lost (a restart, a flush): what this
                        # limiter sent in the window goes in again first
                        queued = False  # the script stopped before the queue
                        try:
                            await self._enter_sent(lost=True)
                        except RedisUnavailable:
                            break
                        self._epoch = epoch
                        continue
                    self._epoch = epoch
                    if granted:
                        queued = False  # the script took it out of the queue
                        member = f"{prefix}.1"
                        self._pool.extend((f"{prefix}.{n}", now) for n in range(2, granted + 1))
                        self._in_flight += 1
                        self._flying[member] = shared
                        self._trim_pool()
                        return member
                    await anyio.sleep(min(int(value) / 1000, MAX_WAIT))
            except BaseException:
                if queued:
                    self._spawn(self._leave_queue)
                if shared:
                    self._fallback._untake()
                raise
            if queued:
                self._spawn(self._leave_queue)
            self._trim_pool(keep=0)  # the others fall back too
            self._start_share()
            self._recovering = True
            if not shared:
                await self._fallback._take()
            self.fallback_slots += 1
            self._in_flight += 1
            self._unlogged_in_flight += 1
            return None

    def _start_share(self) -> None:
        # Redis stopped answering: the local share starts from this process's
        # part of what the log last held, as if sent when it was seen, so the
        # window the outage struck in is not handed out afresh
        if self._recovering:
            return  # started at this outage's first fallback
        now = time.monotonic()
        seen, self._seen = self._seen, None
        fallback = self._fallback
        if self._processes == 1:
            # alone, the log held only what this limiter sent, which it knows
            for replied, _ in self._sent:
                fallback._seed(replied, 1, 1)
            fallback._seed(now, len(self._flying), len(self._flying))
            return
        processes, limit = self._processes, self._limit
        if seen is None:
            # it never reached Redis: the others may have filled both windows,
            # so its part of them counts as used, as of now
            fallback._seed(
                now, -(-limit.per_second // processes), -(-limit.per_window // processes)
            )
            return
        seen_at, _, long = seen
        # Since it last saw the log the others may have gone on taking slots:
        # up to the whole 1 s limit in each second since, the window's limit at
        # most. Its part of the log as seen counts from then, its part of what
        # may have come since from now (the 1 s one: a full second's).
        since = min(limit.per_window - long, limit.per_second * max(1, math.ceil(now - seen_at)))
        fallback._seed(seen_at, 0, -(-long // processes))
        fallback._seed(now, -(-limit.per_second // processes), -(-max(since, 0) // processes))

    async def _enter_sent(self, *, lost: bool) -> None:
        # Redis answers again: what this process sent on its own share goes
        # into the log first, so the account's windows see it, and when the
        # log was lost, all it sent through the log in the window too (one call)
        now = time.monotonic()
        horizon = now - self._long_ms / 1000
        while self._unlogged and self._unlogged[0] < horizon:
            self._unlogged.popleft()  # out of every window already
        pairs: list[str | int] = []
        for replied in self._unlogged:
            pairs += [math.floor((now - replied) * 1000), f"{self._waiter}:{next(self._members)}"]
        for _ in range(self._unlogged_in_flight):
            pairs += [-self._bound_ms, f"{self._waiter}:{next(self._members)}"]
        if lost:
            self._forget_old(now)
            for replied, member in self._sent:
                pairs += [math.floor((now - replied) * 1000), member]
            for member in self._flying:
                pairs += [-self._bound_ms, member]
        if pairs:
            args: list[str | int] = [self._ttl_ms, *pairs]
            self.round_trips += 1
            await self._breaker.call(
                lambda: self._backfill(keys=[self._keys.limiter_log], args=args)
            )
        self.backfilled += len(pairs) // 2
        self._unlogged.clear()
        self._logged_in_flight += self._unlogged_in_flight
        self._unlogged_in_flight = 0

    def _forget_old(self, now: float) -> None:
        horizon = now - self._long_ms / 1000
        sent = self._sent
        while sent and sent[0][0] < horizon:
            sent.popleft()

    @property
    def _acquire_keys(self) -> list[str]:
        keys = self._keys
        prefix = keys.prefix
        return [
            keys.limiter_log,
            keys.limiter_pause,
            prefix + "limit:wait",
            prefix + "limit:seen",
            prefix + "limit:epoch",
        ]

    @property
    def _ttl_ms(self) -> int:
        # how long the log outlives its newest entry
        return self._long_ms + self._bound_ms + 1000

    def _args(self, prefix: str, wanted: int) -> list[str | int]:
        limit = self._limit
        args: list[str | int] = [
            limit.per_second,
            limit.per_window,
            self._short_ms,
            self._long_ms,
            self._bound_ms,
            prefix,
            self._waiter,
            STALE_WAITER_MS,
            IN_FLIGHT_RETRY_MS,
            self._epoch,
            self._new_epoch,
            self._ttl_ms,
            wanted,
        ]
        if self._releases:
            args += self._release_pairs()
        return args

    def _release_pairs(self) -> list[str | int]:
        # the releases waiting, as (age ms, member) pairs; they leave the queue
        now = time.monotonic()
        pairs: list[str | int] = []
        for member, replied in self._releases:
            pairs += [math.floor((now - replied) * 1000), member]
        self._releases.clear()
        return pairs

    def _from_pool(self) -> str | None:
        # a slot an acquire took for this task, unless it waited too long for it
        pool = self._pool
        now = time.monotonic()
        while pool:
            member, taken = pool.popleft()
            if now - taken <= POOL_TTL:
                return member
            self._queue_release(member, now)
        return None

    def _trim_pool(self, keep: int | None = None) -> None:
        # slots beyond the tasks still queued (one went away) are given back
        # as requests answered now: they count in the 1 s window, never over
        if not self._pool:
            return  # the common case: nothing taken for others
        if keep is None:
            keep = self._lock.statistics().tasks_waiting
        now = time.monotonic()
        while len(self._pool) > keep:
            member, _ = self._pool.pop()
            self._queue_release(member, now)

    async def _leave_queue(self) -> None:
        keys = self._keys_of_acquire[2:]
        self.round_trips += 1
        await self._breaker.call(lambda: self._leave(keys=keys, args=[self._waiter]))

    def _give_back(self, member: str | None) -> None:
        self._in_flight -= 1
        now = time.monotonic()
        if member is None:
            self._fallback._give_back()
            if self._logged_in_flight:
                self._logged_in_flight -= 1  # entered at its deadline already
            else:
                self._unlogged_in_flight -= 1
                self._unlogged.append(now)
            return
        if self._flying.pop(member, False):
            self._fallback._give_back()
        sent = self._sent
        sent.append((now, member))
        if sent[0][0] < now - self._long_ms / 1000:
            self._forget_old(now)
        self._queue_release(member, now)

    def _queue_release(self, member: str, now: float) -> None:
        self._releases.append((member, now))
        if self._flush is None:
            # a late release only counts the request longer: never over the limit
            self._flush = asyncio.get_running_loop().call_later(RELEASE_DELAY, self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush = None
        if self._releases:
            self.flush_releases()

    def drop_releases(self) -> None:
        """Forget the releases still waiting (an abort: their requests count
        until their deadline, never over the limit)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self._releases.clear()
        self._pool.clear()

    def take_releases(self) -> tuple[str, int, list[str | int]] | None:
        """The releases waiting for an acquire, for another script call to send
        (a shared-polling owner's store, made right after the reply): the log's
        key, its TTL in ms and the (age ms, member) pairs; ``None`` if none wait.

        Taken, they are the caller's to send: one that fails only counts its
        requests until their deadline, never over the limit.
        """
        if not self._releases:
            return None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        return self._keys.limiter_log, self._ttl_ms, self._release_pairs()

    def flush_releases(self) -> None:
        """Send the releases still waiting for an acquire now (in the background)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if not self._releases:
            return
        args: list[str | int] = [self._ttl_ms, *self._release_pairs()]

        async def release() -> None:
            self.round_trips += 1
            await self._breaker.call(
                lambda: self._release(keys=[self._keys.limiter_log], args=args),
                inline=True,  # fire and forget: nobody waits on it
            )

        self._spawn(release)


class _FleetSlot:
    """The async context manager of :meth:`FleetRateLimiter.slot`."""

    __slots__ = ("_limiter", "_member", "_taken")

    def __init__(self, limiter: FleetRateLimiter) -> None:
        self._limiter = limiter
        self._taken = False
        self._member: str | None = None

    async def __aenter__(self) -> None:
        if self._limiter.limit.enabled:
            self._member = await self._limiter._take()
            self._taken = True

    async def __aexit__(self, *exc_info: object) -> None:
        if self._taken:
            self._taken = False
            self._limiter._give_back(self._member)
