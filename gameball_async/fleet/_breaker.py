"""Short timeouts and a circuit breaker around every Redis call of a fleet.

Nothing may wait on a dead or frozen Redis. Each call is bounded by a short
timeout; after a few failures in a row the breaker opens and calls fail at
once (the fleet falls back to local limiting and local polling) until a
cool-down has passed, when one trial call may go. The fallback is logged once
at WARNING and the recovery at INFO.

Each call runs in a task of its own (:class:`~._bounded.Calls`): redis-py can
drop a cancellation delivered inside a call, and a caller's cancellation or
timeout must take effect whatever the call does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import anyio
import redis.exceptions

from ._bounded import Calls

__all__ = ["Breaker", "RedisUnavailable", "describe"]

logger: Final = logging.getLogger("gameball_async")

T = TypeVar("T")


#: What redis-py raises for a cluster's redirections (one class per version).
_MOVED: Final = tuple(
    getattr(redis.exceptions, name)
    for name in ("MovedError", "AskError", "ClusterCrossSlotError")
    if hasattr(redis.exceptions, name)
)


def describe(exc: BaseException) -> str:
    """Name a failed Redis call's cause, saying what to fix when it is the
    fleet's configuration rather than an outage (never the server's words: a
    reply may echo what was sent)."""
    name = type(exc).__name__
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return f"{name}: Redis refused the URL's user name or password"
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return (
            f"{name}: the Redis user may not run the fleet's commands; its ACL must "
            "allow the keys ~gameball:*, the channels &gameball:* and +@all -@dangerous"
        )
    if isinstance(exc, _MOVED) or (
        isinstance(exc, redis.exceptions.ResponseError)
        and str(exc).startswith(("MOVED", "ASK", "CROSSSLOT"))
    ):
        return (
            f"{name}: this Redis is a cluster node; give the fleet a cluster client "
            "(RedisFleet.from_url(url, cluster=True) or RedisFleet(RedisCluster(...)))"
        )
    return name


class RedisUnavailable(Exception):
    """A Redis call failed, timed out, or was skipped while the breaker is open."""


class Breaker:
    """Bounds Redis calls and stops making them while Redis is failing.

    :param timeout: seconds one call may take.
    :param failures: failures in a row that open the breaker.
    :param cooldown: seconds the breaker stays open before a trial call.
    :param clock: monotonic clock.
    """

    def __init__(
        self,
        *,
        timeout: float = 0.5,
        failures: int = 3,
        cooldown: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._trial = False
        #: Called when Redis answers again after the breaker opened.
        self.on_recovery: Callable[[], None] | None = None
        #: Called, each, when the breaker opens (Redis is failing).
        self.on_open: list[Callable[[], None]] = []
        #: The calls in flight (each in a task of its own).
        self.calls = Calls()
        #: Times the breaker opened (for tests and stats).
        self.openings = 0

    @property
    def cooldown(self) -> float:
        """Seconds the breaker stays open before a trial call."""
        return self._cooldown

    @property
    def is_open(self) -> bool:
        """Whether calls are being skipped (the fleet runs on its fallbacks)."""
        return self._open_until is not None

    def allows(self) -> bool:
        """Whether a call may go now (closed, or cooled down for one trial)."""
        if self._open_until is None:
            return True
        return not (self._trial or self._clock() < self._open_until)

    async def call(
        self,
        make: Callable[[], Awaitable[T]],
        *,
        timeout: float | None = None,
        inline: bool = False,
    ) -> T:
        """Run one Redis call, bounded by ``timeout`` (default :attr:`timeout`).

        ``inline`` runs it in the caller's task (one task less) rather than in
        a task of its own: for fire-and-forget calls only, whose task nobody
        waits on and whose close re-cancels it until it ends.

        :raises RedisUnavailable: it failed, timed out, or the breaker is open.
        """
        if not self.allows():
            raise RedisUnavailable("Redis is unavailable (circuit open)")
        trial = self._open_until is not None
        if trial:
            self._trial = True
        try:
            bound = self.timeout if timeout is None else timeout
            if inline:
                with anyio.fail_after(bound):
                    result = await make()
            else:
                result = await self.calls.call(make, bound)
        except RedisUnavailable:
            self.failed("a nested call failed")
            raise
        except Exception as exc:  # TimeoutError included
            why = describe(exc)
            self.failed(why)
            raise RedisUnavailable(f"Redis call failed: {why}") from exc
        finally:
            if trial:
                self._trial = False
        self.succeeded()
        return result

    def hurry(self) -> None:
        """Let a trial call go now rather than after the cool-down (a close's
        last chance to store what it holds)."""
        if self._open_until is not None:
            self._open_until = min(self._open_until, self._clock())

    def failed(self, why: str) -> None:
        """Count a failure (also for calls made outside :meth:`call`)."""
        self._failures += 1
        if self._open_until is not None:
            self._open_until = self._clock() + self._cooldown  # the trial failed
            return
        if self._failures >= self._threshold:
            self._open_until = self._clock() + self._cooldown
            self.openings += 1
            for hook in list(self.on_open):
                hook()
            logger.warning(
                "gameball_async: the fleet's Redis is failing (%s); falling back to a local "
                "share of the rate limit and local polling until it answers again",
                why,
            )

    def succeeded(self) -> None:
        """Count a success: closes an open breaker."""
        self._failures = 0
        if self._open_until is not None:
            self._open_until = None
            logger.info("gameball_async: the fleet's Redis answers again; coordination resumed")
            if self.on_recovery is not None:
                self.on_recovery()
