"""The fleet's job registry and idempotency claims, on Redis.

Registry: a hash per created job (its token, operation and creation time, on
Redis time) kept for ``retention`` seconds, and a sorted set of the jobs not
yet seen terminal. A record is written inline when Redis answers, else in the
background, retried while Redis is down, so a creation never waits on a dead
Redis. A job leaves the open set with the shared write of its terminal status
(``_polls_scripts``), or here when no such write was made.

Claims: ``idempotency_key`` is claimed with one atomic script *before* the
creation is sent (state ``sending``, owner = this process). What came of the
request is recorded after: the job's token (``created``), the key given back
(nothing was sent), or ``maybe`` (the outcome is unknown). A later claim of a
created key gets its job; of a ``maybe`` key, or of a ``sending`` key whose
owner process is dead (its heartbeat key expired), it gets ``maybe_sent`` and
the session raises :class:`~gameball_async.AmbiguousSubmissionError`; of a
``sending`` key whose owner is alive, it waits for the outcome.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable
from typing import Any, Final

import anyio
import redis.asyncio as aioredis

from gameball_async._errors import CreationTimeoutError, TransportError
from gameball_async._models import Operation

from ._background import Background
from ._breaker import Breaker, RedisUnavailable
from ._keys import Keys

__all__ = ["DEFAULT_RETENTION", "RedisClaim", "Registry"]

logger: Final = logging.getLogger("gameball_async")

#: Seconds job records and idempotency keys are kept: 7 days.
DEFAULT_RETENTION: Final = 7 * 24 * 3600.0
#: Seconds between looks at a key another live caller is sending under.
FIRST_LOOK: Final = 0.02
MAX_LOOK: Final = 0.25

# KEYS: job hash, open set, shared status hash. ARGV: job id, token,
# operation, retention ms. A record written late (Redis was down at the
# creation) after the job's terminal status was shared stays out of the open
# set: the status's write has settled the job already.
_CREATED: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local retention = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'token', ARGV[2], 'operation', ARGV[3], 'created_ms', now)
redis.call('PEXPIRE', KEYS[1], retention)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - retention)
if redis.call('HGET', KEYS[3], 'terminal') == '1' then
  redis.call('HSET', KEYS[1], 'terminal', 'terminal')
else
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], retention)
end
return now
"""


def settled_lua(record: str, open_set: str, job_id: str, state: str = "'terminal'") -> str:
    """Lua that settles a job in the registry: out of the open set, its record
    marked with ``state``. Arguments are Lua expressions (``KEYS[1]`` ...), so
    the shared status writes of ``_polls_scripts`` settle it the same way."""
    return f"""
redis.call('ZREM', {open_set}, {job_id})
if redis.call('EXISTS', {record}) == 1 then
  redis.call('HSET', {record}, 'terminal', {state})
end
"""


# KEYS: job hash, open set. ARGV: job id, state word.
_TERMINAL: Final = settled_lua("KEYS[1]", "KEYS[2]", "ARGV[1]", "ARGV[2]") + "return 1\n"

# KEYS: claim hash. ARGV: owner, operation, retention ms, process key prefix.
# Returns {'claimed'}, {'existing', token}, {'maybe'} or {'wait'}.
_CLAIM: Final = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('HSET', KEYS[1], 'state', 'sending', 'owner', ARGV[1], 'operation', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
  return {'claimed'}
end
if state == 'created' then
  return {'existing', redis.call('HGET', KEYS[1], 'token')}
end
if state == 'maybe' then
  return {'maybe'}
end
local owner = redis.call('HGET', KEYS[1], 'owner')
-- the owner's heartbeat key shares the account's hash tag (same slot)
if redis.call('EXISTS', ARGV[4] .. owner) == 0 then
  redis.call('HSET', KEYS[1], 'state', 'maybe')
  return {'maybe'}
end
return {'wait'}
"""

# KEYS: claim hash. ARGV: owner, new state ('created' | 'maybe' | 'free'), token,
# retention ms. Only the claim's owner may settle it, and only once.
_SETTLE: Final = """
if redis.call('HGET', KEYS[1], 'state') ~= 'sending' or
   redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'free' then
  redis.call('DEL', KEYS[1])
elseif ARGV[2] == 'created' then
  redis.call('HSET', KEYS[1], 'state', 'created', 'token', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
else
  redis.call('HSET', KEYS[1], 'state', 'maybe')
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
end
return 1
"""


def redis_down(what: str) -> TransportError:
    """The error of a creation refused because Redis could not be reached."""
    return TransportError(
        f"the fleet's Redis could not be reached to {what}; nothing was sent to Gameball "
        "(retry once Redis answers, or create the batch without idempotency_key)"
    )


class Registry:
    """Job records, the open set and idempotency claims of one account.

    :param client: the fleet's Redis client.
    :param keys: the account's key names.
    :param breaker: the fleet's circuit breaker.
    :param background: the fleet's background writer.
    :param process_id: this process's id (the owner of its claims).
    :param retention: seconds records and idempotency keys are kept.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        breaker: Breaker,
        background: Background,
        *,
        process_id: str,
        retention: float,
    ) -> None:
        self._client = client
        self.keys = keys
        self._breaker = breaker
        self._background = background
        self.process_id = process_id
        self._retention_ms = math.ceil(retention * 1000)
        self._created = client.register_script(_CREATED)
        self._terminal = client.register_script(_TERMINAL)
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)

    # -- the registry ----------------------------------------------------------

    async def created(self, token: str, operation: Operation, job_id: str) -> None:
        """Record a created job and add it to the open set: at once when Redis
        answers (so ``open_jobs()`` lists it as soon as the creation returns),
        else in the background, retried until it lands."""
        keys = [self.keys.job(job_id), self.keys.open_jobs, self.keys.status(job_id)]
        args = [job_id, token, operation.value, self._retention_ms]

        def write() -> Awaitable[object]:
            return self._breaker.call(lambda: self._created(keys=keys, args=args))

        try:
            await write()
        except RedisUnavailable:
            self._background.write(f"created job {job_id}", write)

    def terminal(self, job_id: str, state: str = "terminal") -> None:
        """Drop a job seen terminal from the open set (in the background)."""
        keys = [self.keys.job(job_id), self.keys.open_jobs]
        self._background.write(
            f"job {job_id} as {state}",
            lambda: self._breaker.call(lambda: self._terminal(keys=keys, args=[job_id, state])),
        )

    async def open_jobs(self) -> list[str]:
        """Tokens of the jobs created through the fleet and not yet seen terminal.

        :raises TransportError: Redis could not be reached.
        """
        open_key = self.keys.open_jobs

        async def read() -> list[Any]:
            ids: list[Any] = list(await self._client.zrange(open_key, 0, -1))
            if not ids:
                return []
            async with self._client.pipeline(transaction=False) as pipe:
                for raw in ids:
                    pipe.hget(self.keys.job(raw.decode()), "token")
                tokens: list[bytes | None] = await pipe.execute()
            return list(zip(ids, tokens, strict=True))

        try:
            pairs = await self._breaker.call(read, timeout=max(self._breaker.timeout, 2.0))
        except RedisUnavailable as exc:
            raise TransportError(f"the fleet's Redis could not be reached: {exc}") from exc
        found: list[str] = []
        for raw_id, token in pairs:
            if token is None:
                # its record expired (older than the retention): forget it
                self.terminal(raw_id.decode(), "expired")
            else:
                found.append(token.decode())
        return found

    # -- idempotency claims ----------------------------------------------------

    async def claim(self, key: str, operation: Operation, *, deadline: float | None) -> RedisClaim:
        """Claim ``key`` before sending, or learn what an earlier call made of it.

        :raises CreationTimeoutError: ``deadline`` passed while another live
            process (or task) was still sending under the key.
        :raises TransportError: Redis could not be reached; nothing was sent.
        """
        redis_key = self.keys.idempotency(key)
        args = [self.process_id, operation.value, self._retention_ms, self.keys.process("")]
        look = FIRST_LOOK
        while True:
            try:
                answer = await self._breaker.call(lambda: self._claim(keys=[redis_key], args=args))
            except RedisUnavailable as exc:
                raise redis_down(f"claim idempotency_key {key!r} ({exc})") from exc
            word = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
            if word == "claimed":
                return RedisClaim(self, redis_key, key, owned=True)
            if word == "existing":
                token = answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1])
                return RedisClaim(self, redis_key, key, existing=token)
            if word == "maybe":
                return RedisClaim(self, redis_key, key, maybe_sent=True)
            # another live caller is sending under the key: wait for its outcome
            pause = look
            if deadline is not None:
                pause = min(pause, deadline - anyio.current_time())
                if pause <= 0:
                    raise CreationTimeoutError(
                        f"create_batch(timeout=...) ran out while another call with "
                        f"idempotency_key {key!r} was still sending; nothing was sent by "
                        "this call"
                    )
            await anyio.sleep(pause)
            look = min(look * 2, MAX_LOOK)

    async def settle(self, redis_key: str, state: str, token: str = "") -> None:
        """Record the outcome of this process's claim (at once, else retried)."""
        args: list[str | int] = [self.process_id, state, token, self._retention_ms]

        async def store() -> object:
            return await self._breaker.call(lambda: self._settle(keys=[redis_key], args=args))

        try:
            await store()
        except RedisUnavailable:
            self._background.write(f"the outcome ({state}) of an idempotency claim", store)


class RedisClaim:
    """One idempotency claim (the :class:`~gameball_async._coordination.Claim` protocol)."""

    def __init__(
        self,
        registry: Registry,
        redis_key: str,
        key: str,
        *,
        owned: bool = False,
        existing: str | None = None,
        maybe_sent: bool = False,
    ) -> None:
        self._registry = registry
        self._redis_key = redis_key
        self._key = key
        self._owned = owned
        self._existing = existing
        self._maybe_sent = maybe_sent

    def __repr__(self) -> str:
        state = "owned" if self._owned else "existing" if self._existing else "maybe sent"
        return f"<RedisClaim {self._key!r} {state}>"

    @property
    def existing(self) -> str | None:
        """The token of the job an earlier call with this key created."""
        return self._existing

    @property
    def maybe_sent(self) -> bool:
        """Whether an earlier call may have sent its request, recording no job."""
        return self._maybe_sent

    async def _settle(self, state: str, token: str = "") -> None:
        if self._owned:
            self._owned = False
            await self._registry.settle(self._redis_key, state, token)

    async def created(self, token: str) -> None:
        """Record the job this claim's request created (its token)."""
        await self._settle("created", token)

    async def not_sent(self) -> None:
        """Give the key back: this claim's request provably created nothing."""
        await self._settle("free")

    async def ambiguous(self) -> None:
        """Mark the key as possibly sent: later calls raise instead of resending."""
        await self._settle("maybe")
