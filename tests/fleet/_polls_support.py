"""A test-only fleet that shares polling and nothing else.

Until ``RedisFleet`` composes the limiter, the registry and shared polling,
the shared-polling tests attach sessions to this minimal
:class:`~gameball_async._coordination.Coordinator`: a local rate limiter,
:class:`SharedPolls` as the poller's fetch, no idempotency claims.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import anyio
import attrs
import redis.asyncio as aioredis

from gameball_async import (
    BatchStatus,
    GameballSession,
    Operation,
    PollPolicy,
    RateLimit,
    RetryPolicy,
)
from gameball_async._coordination import Attachment, Claim, Coordinator, Fetch, SessionLink
from gameball_async._ratelimit import LocalRateLimiter, RateLimiter
from gameball_async.fleet._breaker import Breaker
from gameball_async.fleet._keys import Keys
from gameball_async.fleet._polls import SharedPolls
from gameball_async.testing import FakeGameball

__all__ = [
    "FAST_RETRY",
    "PATIENCE",
    "WHEN",
    "PollsFleet",
    "fast_breaker",
    "fleet_session",
    "item",
    "until",
]

# The same as tests/_support.py's (that module is out of reach of a mypy run
# over tests/fleet alone).
WHEN: Final = "2024-10-16T08:13:29.290Z"
FAST_RETRY: Final = RetryPolicy(backoff=0.01, max_backoff=0.05)
#: Bound on any single wait: generous, it only turns a hang into a failure.
PATIENCE: Final = 20.0


def item(n: int) -> dict[str, Any]:
    """Cashback item ``n`` as a plain dict (customer ``c<n>``, transaction ``t<n>``)."""
    return {"customerId": f"c{n}", "transactionId": f"t{n}", "transactionTime": WHEN, "amount": 1}


def fleet_session(
    fake: FakeGameball, fleet: Coordinator, *, max_delay: float = 0.2, **options: Any
) -> GameballSession:
    """A session of ``fake`` on ``fleet``: a limit that never binds, quick polls."""
    return GameballSession(
        fake.api_key,
        fake.secret_key,
        base_url=fake.base_url,
        fleet=fleet,
        rate_limit=RateLimit(per_second=100, per_window=1000),
        poll=PollPolicy(initial_delay=0.05, min_delay=0.02, max_delay=max_delay),
        **options,
    )


async def until(predicate: Callable[[], bool], timeout: float = PATIENCE) -> None:
    """Wait, bounded, for a condition other tasks (or processes) make true."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.005)


def fast_breaker() -> Breaker:
    """A breaker with short timeouts, so outage tests fall back (and recover) quickly."""
    return Breaker(timeout=0.25, failures=2, cooldown=0.3)


@attrs.define
class _Attachment:
    limiter: RateLimiter
    polls: SharedPolls

    @property
    def fetch(self) -> Fetch:
        return self.polls.fetch

    async def claim(self, key: str, operation: Operation, *, deadline: float | None) -> Claim:
        raise NotImplementedError("the test-only PollsFleet has no idempotency claims")

    async def created(self, token: str, operation: Operation, job_id: str) -> None:
        pass

    def observed(self, status: BatchStatus) -> None:
        self.polls.observed(status)

    async def aclose(self) -> None:
        await self.polls.aclose()


class PollsFleet:
    """A Coordinator whose attachments share polling through :class:`SharedPolls`.

    :ivar polls: the :class:`SharedPolls` of the session attached last.
    :ivar terminal: job ids ``on_terminal`` was called with, in order.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        process_id: str,
        breaker: Breaker | None = None,
        lease_ttl: float = 3.0,
        heartbeat: float = 1.0,
    ) -> None:
        self.client = client
        self.process_id = process_id
        self.breaker = breaker if breaker is not None else fast_breaker()
        self.lease_ttl = lease_ttl
        self.heartbeat = heartbeat
        self.terminal: list[str] = []
        self._polls: SharedPolls | None = None
        self.keys: Keys | None = None

    @property
    def polls(self) -> SharedPolls:
        """The attached session's shared polling."""
        assert self._polls is not None, "no session attached yet"
        return self._polls

    def attach(self, link: SessionLink) -> Attachment:
        """Attach a session opening on the running loop."""
        self.keys = Keys(link.account)
        self._polls = SharedPolls(
            self.client,
            self.keys,
            self.breaker,
            link,
            process_id=self.process_id,
            on_terminal=self.terminal.append,
            lease_ttl=self.lease_ttl,
            heartbeat=self.heartbeat,
        )
        self._polls.start()
        return _Attachment(LocalRateLimiter(link.rate_limit), self._polls)
