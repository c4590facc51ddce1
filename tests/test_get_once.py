"""``Transport.get_once``, the poller's seam: one attempt, no retry loop, no
sleeping, failures raised as typed errors; and the session's ``_poll_once``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gameball_async import (
    BatchState,
    GameballSession,
    NotFoundError,
    ProtocolError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TransportError,
)
from gameball_async._ratelimit import LocalRateLimiter
from gameball_async.testing import FakeGameball, InjectedReply

pytestmark = pytest.mark.anyio

ITEMS = [{"customerId": "c1"}]
RETRY = RetryPolicy(attempts=5, backoff=0.01, max_backoff=0.05, max_retry_after=7.0)


@pytest.fixture
async def gb(fake: FakeGameball) -> AsyncIterator[GameballSession]:
    # the limiter is on (with room to spare) so that its pause can be read
    limit = RateLimit(per_second=1000, per_window=10000)
    async with GameballSession(
        fake.api_key, fake.secret_key, base_url=fake.base_url, retry=RETRY, rate_limit=limit
    ) as session:
        yield session


@pytest.fixture
async def path(fake: FakeGameball, gb: GameballSession) -> str:
    job = await gb.create_batch("balance-inquiry", ITEMS)
    fake.reset()
    return f"/batch/{job.job_id}"


async def test_a_good_reply_is_returned(gb: GameballSession, path: str) -> None:
    reply = await gb._open().get_once(path)
    assert reply.status == 200
    assert isinstance(reply.payload, dict)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (InjectedReply(status=500), ServerError),
        (InjectedReply(status=503), ServerError),
        (InjectedReply(status=404), NotFoundError),
        (InjectedReply(status=200, body=b"{not json"), ProtocolError),
        (InjectedReply(status=200, body=b""), ProtocolError),
        (InjectedReply(action="drop"), TransportError),
    ],
    ids=["500", "503", "404", "garbled", "empty", "dropped"],
)
async def test_one_attempt_and_a_typed_error(
    fake: FakeGameball, gb: GameballSession, path: str, reply: InjectedReply, error: type
) -> None:
    # the policy allows 5 attempts: get_once must make exactly one
    fake.inject("status", *[reply] * RETRY.attempts)
    with pytest.raises(error):
        await gb._open().get_once(path)
    # aiohttp itself resends a GET once when a kept-alive connection drops
    sent = 1 if reply.action == "reply" else 2
    assert fake.counts["status"] == sent
    assert fake.pending_injections == RETRY.attempts - sent


async def test_429_raises_with_a_clamped_retry_after_and_pauses_the_limiter(
    fake: FakeGameball, gb: GameballSession, path: str
) -> None:
    transport = gb._open()
    fake.inject("status", InjectedReply(status=429, headers={"Retry-After": "3600"}))
    with pytest.raises(RateLimitError) as info:
        await transport.get_once(path)
    assert info.value.retry_after == RETRY.max_retry_after
    assert fake.counts["status"] == 1
    limiter = transport.limiter
    assert isinstance(limiter, LocalRateLimiter)
    # paused, but for the clamped value, not an hour
    assert 0.0 < limiter.delay(limiter._clock()) <= RETRY.max_retry_after


async def test_poll_once_decodes_one_status(
    fake: FakeGameball, gb: GameballSession, path: str
) -> None:
    job_id = path.rsplit("/", 1)[-1]
    fake.inject("status", InjectedReply(status=500))
    with pytest.raises(ServerError):
        await gb._poll_once(job_id, None)
    status, retry_after = await gb._poll_once(job_id, None)
    assert status.job_id == job_id
    assert status.state in set(BatchState)
    assert retry_after is None
    assert fake.counts["status"] == 2


async def test_the_poller_fetches_through_poll_once(gb: GameballSession) -> None:
    assert gb._poller._fetch == gb._poll_once
