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
over the limit after a recovery.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
import attrs
import redis.asyncio as aioredis

from gameball_async._ratelimit import LocalRateLimiter, RateLimit

from ._breaker import Breaker, RedisUnavailable
from ._keys import Keys

__all__ = ["FleetRateLimiter", "local_share"]

#: Longest a refused waiter sleeps before asking again (it keeps its queue place alive).
MAX_WAIT: Final = 1.0
#: A queued waiter that has not asked for this long is dropped from the queue (ms).
STALE_WAITER_MS: Final = 3000
#: Wait when the slot that frees next belongs to a request still in flight (ms):
#: its reply time is unknown, so ask again soon.
IN_FLIGHT_RETRY_MS: Final = 25
#: Longest pause a 429 may set for the fleet, in seconds (the transport clamps first).
MAX_PAUSE: Final = 300.0

# KEYS: log, pause, waiters, seen. ARGV: per_second, per_window, short_ms, long_ms,
# bound_ms, member, waiter, stale_ms, retry_ms.
# Returns {1, now_ms} when granted, {0, wait_ms} when not.
_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local per_second, per_window = tonumber(ARGV[1]), tonumber(ARGV[2])
local short_ms, long_ms, bound_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local waiter, stale_ms, retry_ms = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  return {0, paused - now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - long_ms)
local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - stale_ms)
for _, member in ipairs(gone) do
  redis.call('ZREM', KEYS[3], member)
  redis.call('ZREM', KEYS[4], member)
end
local since = redis.call('ZSCORE', KEYS[3], waiter)
local ahead
if since then
  ahead = redis.call('ZCOUNT', KEYS[3], '-inf', '(' .. since)
else
  ahead = redis.call('ZCARD', KEYS[3])
end
local short_count = redis.call('ZCOUNT', KEYS[1], '(' .. (now - short_ms), '+inf')
local long_count = redis.call('ZCARD', KEYS[1])
local need_short = short_count - per_second + 1 + ahead
local need_long = long_count - per_window + 1 + ahead
if need_short <= 0 and need_long <= 0 then
  redis.call('ZADD', KEYS[1], now + bound_ms, ARGV[6])
  redis.call('PEXPIRE', KEYS[1], long_ms + bound_ms + 1000)
  if since then
    redis.call('ZREM', KEYS[3], waiter)
    redis.call('ZREM', KEYS[4], waiter)
  end
  return {1, now}
end
if not since then
  redis.call('ZADD', KEYS[3], now, waiter)
end
redis.call('ZADD', KEYS[4], now, waiter)
redis.call('PEXPIRE', KEYS[3], stale_ms * 2)
redis.call('PEXPIRE', KEYS[4], stale_ms * 2)
-- when the entry whose leaving makes room for this waiter leaves its window
local function frees(need, low, window)
  if need <= 0 then
    return 0
  end
  local found = redis.call('ZRANGEBYSCORE', KEYS[1], low, '+inf',
                           'WITHSCORES', 'LIMIT', need - 1, 1)
  if #found == 0 then
    return retry_ms
  end
  local score = tonumber(found[2])
  if score > now then
    return retry_ms
  end
  return score + window - now
end
local wait = math.max(frees(need_short, '(' .. (now - short_ms), short_ms),
                      frees(need_long, '-inf', long_ms))
return {0, math.max(wait, 1)}
"""

# KEYS: log. ARGV: member, ttl_ms. The request's reply came: it counts from now.
_RELEASE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return now
"""

# KEYS: pause. ARGV: ms. Holds the fleet until server time + ms (never shortens a pause).
_PAUSE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + ms > current then
  redis.call('SET', KEYS[1], now + ms, 'PX', ms)
end
return now + ms
"""

# KEYS: waiters, seen. ARGV: waiter. A waiter that gave up leaves the queue.
_LEAVE: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: log. ARGV: ttl ms, then pairs of (age ms, member): each request this
# process sent on its local fallback while Redis was away, entered at server
# time minus its age (a negative age: a request still in flight, entered at its
# deadline). So the windows count what the account really sent.
_BACKFILL: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], now - tonumber(ARGV[i]), ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return now
"""

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
        self._fallback = LocalRateLimiter(local_share(limit, expected_processes))
        self._acquire = client.register_script(_ACQUIRE)
        self._backfill = client.register_script(_BACKFILL)
        self._release = client.register_script(_RELEASE)
        self._pause = client.register_script(_PAUSE)
        self._leave = client.register_script(_LEAVE)
        self._waiter = f"{process_id}.{next(_limiters)}"
        self._members = itertools.count()
        self._bound_ms = math.ceil(request_bound * 1000)
        self._short_ms = math.ceil((1.0 + limit.margin) * 1000)
        self._long_ms = math.ceil((limit.window + limit.margin) * 1000)
        self._lock = anyio.Lock()  # the local FIFO: one waiter per limiter in Redis
        self._paused_until = 0.0
        self._in_flight = 0
        # the local fallback's requests not yet in the Redis log: reply times
        # (monotonic) of those answered, and how many are in flight
        self._unlogged: deque[float] = deque()
        self._unlogged_in_flight = 0
        # fallback requests in flight already entered (at their deadline)
        self._logged_in_flight = 0
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
            try:
                while True:
                    hold = self._paused_until - time.monotonic()
                    if hold > 0:
                        await anyio.sleep(hold)
                        continue
                    if not self._breaker.allows():
                        break
                    if self._unlogged or self._unlogged_in_flight:
                        try:
                            await self._enter_fallback_requests()
                        except RedisUnavailable:
                            break
                    args = self._args(f"{self._waiter}:{next(self._members)}")
                    # a call cut short may still have queued this limiter: leave on the way out
                    queued = True
                    try:
                        self.round_trips += 1
                        granted, value = await self._breaker.call(
                            lambda: self._acquire(keys=self._acquire_keys, args=args)  # noqa: B023
                        )
                    except RedisUnavailable:
                        break
                    if int(granted):
                        queued = False  # the script took it out of the queue
                        self._in_flight += 1
                        return str(args[5])
                    await anyio.sleep(min(int(value) / 1000, MAX_WAIT))
            except BaseException:
                if queued:
                    self._spawn(self._leave_queue)
                raise
            if queued:
                self._spawn(self._leave_queue)
            await self._fallback._take()
            self.fallback_slots += 1
            self._in_flight += 1
            self._unlogged_in_flight += 1
            return None

    async def _enter_fallback_requests(self) -> None:
        # Redis answers again: what this process sent on its own share goes
        # into the log first, so the account's windows see it (one call)
        now = time.monotonic()
        horizon = now - self._long_ms / 1000
        while self._unlogged and self._unlogged[0] < horizon:
            self._unlogged.popleft()  # out of every window already
        ages = [math.floor((now - replied) * 1000) for replied in self._unlogged]
        ages += [-self._bound_ms] * self._unlogged_in_flight
        if ages:
            args: list[str | int] = [self._long_ms + self._bound_ms + 1000]
            for age in ages:
                args += [age, f"{self._waiter}:{next(self._members)}"]
            self.round_trips += 1
            await self._breaker.call(
                lambda: self._backfill(keys=[self._keys.limiter_log], args=args)
            )
        self.backfilled += len(ages)
        self._unlogged.clear()
        self._logged_in_flight += self._unlogged_in_flight
        self._unlogged_in_flight = 0

    @property
    def _acquire_keys(self) -> list[str]:
        keys = self._keys
        prefix = keys.prefix
        return [keys.limiter_log, keys.limiter_pause, prefix + "limit:wait", prefix + "limit:seen"]

    def _args(self, member: str) -> list[str | int]:
        limit = self._limit
        return [
            limit.per_second,
            limit.per_window,
            self._short_ms,
            self._long_ms,
            self._bound_ms,
            member,
            self._waiter,
            STALE_WAITER_MS,
            IN_FLIGHT_RETRY_MS,
        ]

    async def _leave_queue(self) -> None:
        keys = self._acquire_keys
        self.round_trips += 1
        await self._breaker.call(lambda: self._leave(keys=keys[2:], args=[self._waiter]))

    def _give_back(self, member: str | None) -> None:
        self._in_flight -= 1
        if member is None:
            self._fallback._give_back()
            if self._logged_in_flight:
                self._logged_in_flight -= 1  # entered at its deadline already
            else:
                self._unlogged_in_flight -= 1
                self._unlogged.append(time.monotonic())
            return
        ttl = self._long_ms + self._bound_ms + 1000

        async def release() -> None:
            # a late release only counts the request longer: never over the limit
            self.round_trips += 1
            await self._breaker.call(
                lambda: self._release(keys=[self._keys.limiter_log], args=[member, ttl]),
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
