"""The client-side rate limiter that keeps a session within the documented limits.

Gameball allows 30 requests per second and 360 per rolling 30 seconds for the
batch endpoints ("Others"), per account. What the session needs of a limiter is
the small :class:`RateLimiter` protocol (a slot held from before a request is
sent until its reply, and a pause after a 429); :class:`LocalRateLimiter` is
the in-process implementation, and a fleet plugs in one shared across
processes. Nothing else depends on the local limiter's class.

The local limiter keeps a sliding log of the last send times for each window; a
request may go when fewer than ``limit`` requests were sent in the ``window``
before it. Waiters are served first come, first served, so a burst of creations
cannot starve earlier polls.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Protocol

import anyio
import attrs

__all__ = ["LocalRateLimiter", "RateLimit", "RateLimiter", "next_slot"]

DEFAULT_PER_SECOND: Final = 30
DEFAULT_PER_WINDOW: Final = 360
DEFAULT_WINDOW: Final = 30.0
DEFAULT_MARGIN: Final = 0.05


def _positive_int(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a positive number, got {value!r}")


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RateLimit:
    """The request rate one session allows itself.

    Defaults are Gameball's documented limits for batch endpoints. The limit is
    per account: sessions (or processes) sharing keys should split it, e.g.
    ``RateLimit(per_second=15, per_window=180)`` for two of them.

    :param per_second: requests allowed in any 1-second window.
    :param per_window: requests allowed in any ``window``-second window.
    :param window: length of the longer window, in seconds.
    :param margin: seconds added to each window, to absorb network jitter
        between sending and the server's clock.
    :param enabled: ``False`` turns client-side limiting off (the server's 429s
        are still honoured by the retry policy).
    """

    per_second: int = attrs.field(default=DEFAULT_PER_SECOND, validator=_positive_int)
    per_window: int = attrs.field(default=DEFAULT_PER_WINDOW, validator=_positive_int)
    window: float = attrs.field(default=DEFAULT_WINDOW, validator=_positive)
    margin: float = attrs.field(default=DEFAULT_MARGIN, validator=_non_negative)
    enabled: bool = True

    @classmethod
    def disabled(cls) -> RateLimit:
        """A rate limit that never waits."""
        return cls(enabled=False)


def next_slot(sent: Sequence[float], limit: int, window: float, now: float) -> float:
    """The earliest time a request may be sent under one sliding window.

    :param sent: send times, oldest first, holding at most ``limit`` of them.
    :param limit: requests allowed per window.
    :param window: window length in seconds.
    :param now: the current time, same clock as ``sent``.
    """
    if len(sent) < limit:
        return now
    return max(now, sent[-limit] + window)


class RateLimiter(Protocol):
    """What a session needs of a rate limiter: one instance serves all its calls.

    ``slot()`` is an async context manager held from before a request is sent
    until its reply; cancelled before the slot is taken, it takes nothing.
    ``pause(seconds)`` holds every later request (the server answered 429).
    """

    @property
    def limit(self) -> RateLimit:
        """The configured limit."""
        ...

    @property
    def in_flight(self) -> int:
        """Requests of this process holding a slot whose reply has not come."""
        ...

    def slot(self) -> AbstractAsyncContextManager[None]:
        """A slot for one request, held until its reply."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds``."""
        ...


class LocalRateLimiter:
    """Paces requests of one session in this process (the :class:`RateLimiter`
    of a session without a fleet); share one instance between all its calls.

    :param limit: the :class:`RateLimit` to keep.
    :param clock: monotonic clock, injectable for tests.
    """

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._short: deque[float] = deque(maxlen=limit.per_second)
        self._long: deque[float] = deque(maxlen=limit.per_window)
        self._paused_until = 0.0
        self._lock = anyio.Lock()
        # Requests holding a slot() whose reply has not come yet, and the event
        # a waiter sleeps on while every slot is held by one of them.
        self._in_flight = 0
        self._settled: anyio.Event | None = None

    @property
    def limit(self) -> RateLimit:
        """The configured limit."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Requests holding a slot whose reply has not come yet."""
        return self._in_flight

    def delay(self, now: float) -> float:
        """Seconds until a request may go, from ``now``; 0.0 when it may go now.

        ``math.inf`` when every slot is held by a request still in flight.
        """
        limit = self._limit
        busy = self._in_flight
        if busy >= limit.per_second or busy >= limit.per_window:
            return math.inf
        slot = max(
            self._paused_until,
            next_slot(self._short, limit.per_second - busy, 1.0 + limit.margin, now),
            next_slot(self._long, limit.per_window - busy, limit.window + limit.margin, now),
        )
        return max(0.0, slot - now)

    def room(self, now: float) -> int | None:
        """Requests that may go at ``now`` without waiting, as far as this limiter can tell.

        ``None`` when it cannot: the limit is off, or requests already queue
        for a slot (whoever asks next joins that queue, first come first served).
        """
        limit = self._limit
        if not limit.enabled or self._lock.locked():
            return None
        if self._paused_until > now:
            return 0
        busy = self._in_flight
        # the sent times are sorted: those still inside each window are the newest
        short = len(self._short) - bisect.bisect_right(self._short, now - 1.0 - limit.margin)
        long = len(self._long) - bisect.bisect_right(self._long, now - limit.window - limit.margin)
        return max(0, min(limit.per_second - short, limit.per_window - long) - busy)

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (the server answered 429)."""
        if self._limit.enabled:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self) -> None:
        """Wait for a slot and take it. Cancellation before the slot takes nothing."""
        if not self._limit.enabled:
            return
        # A request with no reply to wait for: it counts as sent right away.
        await self._take()
        self._give_back()

    async def _wait(self, seconds: float) -> None:
        if math.isinf(seconds):
            # every slot is held by a request in flight: wait for one to end
            event = self._settled = anyio.Event()
            await event.wait()
        else:
            await anyio.sleep(seconds)

    def slot(self) -> _Slot:
        """Hold a slot for one request, from before it is sent until its reply::

            async with limiter.slot():
                reply = await send(request)

        The server counts a request when it arrives, which may be well after
        its slot was taken (a connection pool wait, a busy event loop), but is
        always before its reply. So the request counts as in flight until the
        reply, and then as sent at that moment: never earlier than the server
        saw it, so no skew can push the server's windows over the limit.
        Cancellation before the slot is taken takes nothing.
        """
        return _Slot(self)

    async def _take(self) -> None:
        if self._lock.locked() or self.delay(self._clock()) > 0.0:
            async with self._lock:  # FIFO, shared with acquire()
                while True:
                    wait = self.delay(self._clock())
                    if wait <= 0.0:
                        break
                    await self._wait(wait)
        # else: nobody queues ahead (a waiter holds the lock while it sleeps)
        # and a slot is free: take it without a checkpoint.
        self._in_flight += 1

    def _seed(self, when: float, short: int, long: int) -> None:
        # requests sent elsewhere that this limiter must count as its own, as
        # if sent at ``when`` (a fleet's local share, started from what the
        # account's log last held): the oldest entries make room
        limit = self._limit
        self._short = deque(sorted([*self._short, *[when] * short]), maxlen=limit.per_second)
        self._long = deque(sorted([*self._long, *[when] * long]), maxlen=limit.per_window)

    def _untake(self) -> None:
        # a slot taken and not used: nothing was sent
        self._in_flight -= 1
        event, self._settled = self._settled, None
        if event is not None:
            event.set()

    def _give_back(self) -> None:
        self._in_flight -= 1
        now = self._clock()
        self._short.append(now)
        self._long.append(now)
        event, self._settled = self._settled, None
        if event is not None:
            event.set()


class _Slot:
    """The async context manager of :meth:`LocalRateLimiter.slot` (a class: this is
    on every request's path, where a generator-based one costs more)."""

    __slots__ = ("_limiter", "_taken")

    def __init__(self, limiter: LocalRateLimiter) -> None:
        self._limiter = limiter
        self._taken = False

    async def __aenter__(self) -> None:
        if self._limiter.limit.enabled:
            await self._limiter._take()
            self._taken = True

    async def __aexit__(self, *exc_info: object) -> None:
        if self._taken:
            self._taken = False
            self._limiter._give_back()
