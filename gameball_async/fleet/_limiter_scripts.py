"""The Lua scripts of the account-wide rate limiter, and the numbers they use.

Each script is one atomic step over one account's keys (all on one Cluster
slot, see ``_keys.py``), on the server's clock (``TIME``): ``ACQUIRE`` takes
slots (or says how long to wait) with the releases folded into it, ``RELEASE``
moves finished requests back to their reply times, ``PAUSE`` holds the fleet
after a 429, ``LEAVE`` takes a waiter that gave up out of the queue, and
``BACKFILL`` enters what a process sent on its local share while Redis was
away. :mod:`._limiter` says why the log works as it does.
"""

from __future__ import annotations

import math
from typing import Final

from gameball_async._ratelimit import RateLimit

__all__ = [
    "window_ms",
    "release_lua",
    "ACQUIRE",
    "BACKFILL",
    "IN_FLIGHT_RETRY_MS",
    "LEAVE",
    "MAX_BATCH",
    "MAX_PAUSE",
    "MAX_WAIT",
    "PAUSE",
    "POOL_TTL",
    "RELEASE",
    "RELEASE_DELAY",
    "STALE_WAITER_MS",
]

#: Longest a refused waiter sleeps before asking again (it keeps its queue place alive).
MAX_WAIT: Final = 1.0
#: A queued waiter that has not asked for this long is dropped from the queue (ms).
STALE_WAITER_MS: Final = 3000
#: Wait when the slot that frees next belongs to a request still in flight (ms):
#: its reply time is unknown, so ask again soon.
IN_FLIGHT_RETRY_MS: Final = 25
#: Longest pause a 429 may set for the fleet, in seconds (the transport clamps first).
MAX_PAUSE: Final = 300.0
#: Most slots one acquire takes: its own and those of the tasks queued behind it.
MAX_BATCH: Final = 16
#: Seconds a slot taken for a queued task stays usable; then it is given back.
POOL_TTL: Final = 1.0
#: Seconds a release waits to ride on the next acquire before it goes on its own.
#: Shorter than the 1 s window: until then the request counts in it either way.
RELEASE_DELAY: Final = 0.1

# KEYS: log, pause, waiters, seen, epoch. ARGV: per_second, per_window, short_ms,
# long_ms, bound_ms, member prefix, waiter, stale_ms, retry_ms, known epoch ('' for
# none), a new epoch (used if the key is missing), log ttl ms, slots wanted, then
# pairs of (age ms, member): releases folded in (each request's reply came age ms
# ago). Returns {1, granted, short, long, epoch} when 1 to `wanted` slots are
# granted (members prefix.1 .. prefix.granted: the tasks queued behind the one
# asking in the limiter's FIFO take the rest), {0, wait_ms, short, long, epoch}
# when none is (short and long: the log's counts before this call's entries), and
# {2, 0, 0, 0, epoch} when the epoch is not the known one (the log was lost:
# enter what this limiter sent, then ask again).
ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 14, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], 'XX', now - tonumber(ARGV[i]), ARGV[i + 1])
end
local epoch = redis.call('GET', KEYS[5])
if not epoch then
  epoch = ARGV[11]
  redis.call('SET', KEYS[5], epoch, 'PX', tonumber(ARGV[12]))
else
  redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[12]))
end
if ARGV[10] ~= '' and ARGV[10] ~= epoch then
  return {2, 0, 0, 0, epoch}
end
local per_second, per_window = tonumber(ARGV[1]), tonumber(ARGV[2])
local short_ms, long_ms, bound_ms = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local waiter, stale_ms, retry_ms = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then
  return {0, paused - now, 0, 0, epoch}
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
  -- the free slots beyond the waiters queued ahead, as many as wanted
  local granted = math.min(tonumber(ARGV[13]), 1 - math.max(need_short, need_long))
  for i = 1, granted do
    redis.call('ZADD', KEYS[1], now + bound_ms, ARGV[6] .. '.' .. i)
  end
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[12]))
  if since then
    redis.call('ZREM', KEYS[3], waiter)
    redis.call('ZREM', KEYS[4], waiter)
  end
  return {1, granted, short_count, long_count, epoch}
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
return {0, math.max(wait, 1), short_count, long_count, epoch}
"""


# KEYS: log. ARGV: ttl_ms, then pairs of (age ms, member): each request's reply
# came age ms ago, so it counts from then (XX: a lost log is not made anew here).
def release_lua(log: str, ttl: str, first: int) -> str:
    """Lua that re-scores released slots to their reply times (``now``: the
    server's ms): the (age ms, member) pairs are ``ARGV[first]`` on, the log
    is ``log`` and its ttl ``ttl`` (Lua expressions). Shared polling's store
    runs it too, so an owner's releases ride on its write."""
    return f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = {first}, #ARGV, 2 do
  redis.call('ZADD', {log}, 'XX', now - tonumber(ARGV[i]), ARGV[i + 1])
end
redis.call('PEXPIRE', {log}, tonumber({ttl}))
"""


RELEASE: Final = release_lua("KEYS[1]", "ARGV[1]", 2) + "return now\n"

# KEYS: pause. ARGV: ms. Holds the fleet until server time + ms (never shortens a pause).
PAUSE: Final = """
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
LEAVE: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: log. ARGV: ttl ms, then pairs of (age ms, member): each request this
# process sent on its local fallback while Redis was away, or sent through a log
# that was lost since, entered at server time minus its age (a negative age: a
# request still in flight, entered at its deadline). NX: an entry the log still
# holds keeps its score. So the windows count what the account really sent.
BACKFILL: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], 'NX', now - tonumber(ARGV[i]), ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return now
"""


def window_ms(limit: RateLimit) -> tuple[int, int]:
    """The log's two windows in ms, as ``ACQUIRE`` counts them: 1 s and
    ``limit.window``, each plus the limit's margin."""
    return (
        math.ceil((1.0 + limit.margin) * 1000),
        math.ceil((limit.window + limit.margin) * 1000),
    )
