"""Helpers shared by the tests that drive sessions against FakeGameball."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from gameball_async import GameballSession, PollPolicy, RateLimit, RetryPolicy
from gameball_async.testing import FakeGameball

WHEN = "2024-10-16T08:13:29.290Z"
FAST_POLL = PollPolicy(initial_delay=0.05, min_delay=0.02, max_delay=0.5)
FAST_RETRY = RetryPolicy(backoff=0.01, max_backoff=0.05)
# Bound on any single wait: generous, it only turns a hang into a failure.
PATIENCE = 20.0


async def until(predicate: Callable[[], bool], timeout: float = PATIENCE) -> None:
    """Wait, bounded, for a condition that other tasks make true.

    The conditions are counters and states (the fake's, the scheduler's) that
    no event announces, so they are checked every few milliseconds.
    """
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.005)


@asynccontextmanager
async def session(
    fake: FakeGameball, cls: type[GameballSession] = GameballSession, **options: Any
) -> AsyncIterator[Any]:
    """A session on ``fake`` with fast polls and retries and no client rate limit."""
    settings: dict[str, Any] = {
        "base_url": fake.base_url,
        "poll": FAST_POLL,
        "retry": FAST_RETRY,
        "rate_limit": RateLimit.disabled(),
    }
    settings.update(options)
    async with cls(fake.api_key, fake.secret_key, **settings) as gb:
        yield gb
