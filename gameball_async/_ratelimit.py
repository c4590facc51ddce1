"""The client-side rate limiter that keeps a session within the documented limits.

Gameball allows 30 requests per second and 360 per rolling 30 seconds for the
batch endpoints ("Others"), per account. The limiter keeps a sliding log of the
last send times for each window; a request may go when fewer than ``limit``
requests were sent in the ``window`` before it. Waiters are served first come,
first served, so a burst of creations cannot starve earlier polls.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

import anyio
import attrs

__all__ = ["RateLimit", "RateLimiter", "next_slot"]

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


class RateLimiter:
    """Paces requests of one session; share one instance between all its calls.

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

    @property
    def limit(self) -> RateLimit:
        """The configured limit."""
        return self._limit

    def delay(self, now: float) -> float:
        """Seconds until a request may go, from ``now``; 0.0 when it may go now."""
        limit = self._limit
        slot = max(
            self._paused_until,
            next_slot(self._short, limit.per_second, 1.0 + limit.margin, now),
            next_slot(self._long, limit.per_window, limit.window + limit.margin, now),
        )
        return max(0.0, slot - now)

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (the server answered 429)."""
        if self._limit.enabled:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def acquire(self) -> None:
        """Wait for a slot and take it. Cancellation before the slot takes nothing."""
        if not self._limit.enabled:
            return
        async with self._lock:  # anyio's Lock is FIFO: first come, first served
            while True:
                now = self._clock()
                wait = self.delay(now)
                if wait <= 0.0:
                    self._short.append(now)
                    self._long.append(now)
                    return
                await anyio.sleep(wait)
