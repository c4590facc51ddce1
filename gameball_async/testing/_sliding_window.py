"""Sliding-window rate limiting and traffic arithmetic for the fake (pure, clock-free)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

__all__ = ["SlidingWindowLimiter", "max_in_window", "retry_after_seconds"]


class SlidingWindowLimiter:
    """Per-key sliding windows: at most ``count`` accepted hits in any ``window`` seconds.

    Only accepted hits are remembered, so a rejected request does not push the
    caller's next slot further away.

    :param limits: ``(count, window_seconds)`` pairs, all enforced together.
    :raises ValueError: on a non-positive count or window.
    """

    def __init__(self, limits: Sequence[tuple[int, float]]) -> None:
        for count, window in limits:
            if count < 1 or window <= 0:
                raise ValueError(f"invalid rate limit {count} per {window}s")
        self._limits = tuple(limits)
        self._horizon = max((window for _count, window in self._limits), default=0.0)
        self._hits: dict[str, deque[float]] = {}

    def acquire(self, key: str, now: float) -> float | None:
        """Try to accept one request.

        :param key: whose windows (the API key).
        :param now: clock reading.
        :return: ``None`` when accepted (and counted), else the seconds until a
            slot frees.
        """
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self._horizon:
            hits.popleft()
        wait = 0.0
        for count, window in self._limits:
            inside = [t for t in hits if t > now - window]
            if len(inside) >= count:
                # the hit whose expiry brings the window back under the limit
                wait = max(wait, inside[len(inside) - count] + window - now)
        if wait > 0:
            return wait
        hits.append(now)
        return None

    def reset(self) -> None:
        """Forget every accepted hit."""
        self._hits.clear()


def retry_after_seconds(wait: float) -> int:
    """Whole seconds for a ``Retry-After`` header: ``ceil(wait)``, at least 1.

    :param wait: seconds until a slot frees.
    :return: the header value.
    """
    return max(1, math.ceil(wait))


def max_in_window(times: Iterable[float], window: float) -> int:
    """The largest number of events inside any half-open window ``[t, t + window)``.

    :param times: event times, in any order.
    :param window: window length in seconds.
    :return: the maximum count (0 for no events).
    """
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
