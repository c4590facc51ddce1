"""What the transport does with replies: redirects are never followed, every
server-given delay is clamped, and reply bytes are never altered (issue 9 points
12-14)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio
import pytest
from _support import PATIENCE, until
from aiohttp import web

from gameball_async import (
    AmbiguousSubmissionError,
    BatchState,
    GameballSession,
    PollPolicy,
    RateLimit,
    RateLimitError,
    RedirectError,
    RetryPolicy,
)
from gameball_async._ratelimit import LocalRateLimiter
from gameball_async._reply import redirect_target, server_delay
from gameball_async.testing import FakeGameball, InjectedReply

pytestmark = pytest.mark.anyio

API_KEY = "ak-redirect-test-key"
SECRET = "sk-redirect-test-secret"
ITEMS = [{"customerId": "c1"}]


@asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A one-handler aiohttp.web server on 127.0.0.1; yields its origin."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# -- redirects ---------------------------------------------------------------------

CALLS: dict[str, Callable[[GameballSession], Awaitable[Any]]] = {
    "status": lambda gb: gb.get_status("42"),
    "stop": lambda gb: gb.stop("42"),
    "create": lambda gb: gb.create_batch("balance-inquiry", ITEMS),
}


@pytest.mark.parametrize("borrowed", [False, True], ids=["owned", "borrowed"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("call", list(CALLS))
async def test_a_redirect_is_never_followed(call: str, status: int, borrowed: bool) -> None:
    received: list[web.Request] = []

    async def elsewhere(request: web.Request) -> web.Response:
        received.append(request)
        return web.json_response({"jobId": 7, "status": "Completed"})

    async with serve(elsewhere) as other:
        target = f"{other}/steal?token=query-must-not-show"

        async def origin(request: web.Request) -> web.Response:
            return web.Response(status=status, headers={"Location": target})

        async with serve(origin) as base:
            lent = aiohttp.ClientSession() if borrowed else None
            try:
                async with GameballSession(
                    API_KEY,
                    SECRET,
                    base_url=base,
                    retry=RetryPolicy(attempts=3, backoff=0.01),
                    rate_limit=RateLimit.disabled(),
                    http_session=lent,
                ) as gb:
                    expected = AmbiguousSubmissionError if call == "create" else RedirectError
                    with pytest.raises(expected) as info:
                        await CALLS[call](gb)
            finally:
                if lent is not None:
                    await lent.close()
    # the second origin never saw the keys: it saw nothing at all
    assert received == []
    error = info.value
    text = str(error)
    host = other.removeprefix("http://")
    assert str(status) in text
    assert host in text
    assert "query-must-not-show" not in text
    assert "/steal" not in text
    assert SECRET not in text
    assert API_KEY not in text
    if isinstance(error, RedirectError):
        assert error.http_status == status
    else:
        assert isinstance(error, AmbiguousSubmissionError)
        assert list(error.items) == ITEMS


async def test_a_redirect_is_not_retried() -> None:
    hits: list[str] = []

    async def origin(request: web.Request) -> web.Response:
        hits.append(request.method)
        return web.Response(status=307, headers={"Location": "/elsewhere"})

    async with (
        serve(origin) as base,
        GameballSession(
            API_KEY, SECRET, base_url=base, retry=RetryPolicy(attempts=5, backoff=0.01)
        ) as gb,
    ):
        with pytest.raises(RedirectError) as info:
            await gb.get_status("42")
        with pytest.raises(AmbiguousSubmissionError):
            await gb.create_batch("balance-inquiry", ITEMS)
    assert hits == ["GET", "POST"]
    assert "127.0.0.1" in str(info.value)  # a relative Location stays on the base host


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("https://evil.example:8443/x?apikey=abc", "evil.example:8443"),
        ("https://evil.example/x#frag", "evil.example"),
        ("/relative/path?q=1", "api.test"),
        (None, "nowhere (no Location header)"),
        ("http://[::1", "an unreadable Location"),
    ],
)
def test_redirect_target_names_only_the_host(location: str | None, shown: str) -> None:
    assert redirect_target(location, "https://api.test/api/v4.0") == shown


# -- Retry-After bounds ----------------------------------------------------------------


def _http_date(timestamp: float) -> str:
    return email.utils.formatdate(timestamp, usegmt=True)


def test_an_http_date_is_measured_against_the_replys_own_date() -> None:
    local = 1_800_000_000.0
    server = local + 600  # the server's clock is ten minutes ahead
    asked = server_delay(_http_date(server + 30), _http_date(server), now=local)
    assert asked == 30.0
    # without a Date header, the local clock is all there is
    assert server_delay(_http_date(local + 30), None, now=local) == 30.0
    # an unreadable Date falls back to the local clock too
    assert server_delay(_http_date(local + 30), "yesterday", now=local) == 30.0
    assert server_delay("12", _http_date(server), now=local) == 12.0
    assert server_delay(None, _http_date(server), now=local) is None


def _limited(fake: FakeGameball, retry: RetryPolicy, **options: Any) -> GameballSession:
    # the limiter is on (with room to spare) so that its pause can be read
    return GameballSession(
        fake.api_key,
        fake.secret_key,
        base_url=fake.base_url,
        retry=retry,
        rate_limit=RateLimit(per_second=1000, per_window=10000),
        **options,
    )


def _pause(gb: GameballSession) -> float:
    limiter = gb._open().limiter
    assert isinstance(limiter, LocalRateLimiter)
    return limiter.delay(limiter._clock())


async def test_a_long_retry_after_pauses_the_limiter_only_for_the_clamped_value(
    fake: FakeGameball,
) -> None:
    retry = RetryPolicy(backoff=0.01, max_retry_after=5.0)
    async with _limited(fake, retry) as gb:
        job = await gb.create_batch("balance-inquiry", ITEMS)
        fake.inject("status", InjectedReply(status=429, headers={"Retry-After": "3600"}))
        with pytest.raises(RateLimitError) as info:
            await gb.get_status(job.job_id)
        assert 0.0 < _pause(gb) <= 5.0  # not an hour
    assert info.value.retry_after == 5.0
    assert fake.counts["status"] == 1


async def test_only_the_request_that_got_a_long_retry_after_raises(fake: FakeGameball) -> None:
    retry = RetryPolicy(backoff=0.01, max_retry_after=0.2)
    async with _limited(fake, retry) as gb:
        jobs = [await gb.create_batch("balance-inquiry", ITEMS) for _ in range(2)]
        fake.inject("status", InjectedReply(status=429, headers={"Retry-After": "3600"}))
        outcomes: list[object] = [None, None]

        async def read(index: int) -> None:
            try:
                outcomes[index] = await gb.get_status(jobs[index].job_id)
            except RateLimitError as exc:
                outcomes[index] = exc

        # the other read waits out the clamped pause, not an hour
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read, 0)
                await until(lambda: fake.counts["status"] >= 1)
                tg.start_soon(read, 1)
    errors = [o for o in outcomes if isinstance(o, RateLimitError)]
    assert len(errors) == 1
    assert [type(o).__name__ for o in outcomes].count("BatchStatus") == 1


async def test_a_skewed_server_clock_does_not_stretch_an_http_date(fake: FakeGameball) -> None:
    retry = RetryPolicy(attempts=1)
    async with _limited(fake, retry) as gb:
        job = await gb.create_batch("balance-inquiry", ITEMS)
        server = time.time() + 600
        headers = {"Date": _http_date(server), "Retry-After": _http_date(server + 3)}
        fake.inject("status", InjectedReply(status=429, headers=headers))
        with pytest.raises(RateLimitError) as info:
            await gb.get_status(job.job_id)
        assert _pause(gb) <= 3.0
    assert info.value.retry_after is not None
    assert 0.0 <= info.value.retry_after <= 3.0


async def test_a_retry_after_on_a_good_status_reply_is_clamped(fake: FakeGameball) -> None:
    retry = RetryPolicy(max_retry_after=9.0)
    async with _limited(fake, retry) as gb:
        job = await gb.create_batch("balance-inquiry", ITEMS)
        running = {"status": "Running", "totalCount": 1, "finishedCount": 0, "errorCount": 0}
        for _ in range(2):
            fake.inject(
                "status", InjectedReply(status=200, body=running, headers={"Retry-After": "86400"})
            )
        _, retry_after = await gb._poll_once(job.job_id, None)
        assert retry_after == 9.0
        _, retry_after = await gb._fetch_status(job.job_id, None)
        assert retry_after == 9.0


# -- reply bytes are never altered ------------------------------------------------------


@pytest.mark.parametrize(("api_key", "secret_key"), [("1", "o"), ("b", "d"), ("Id", "ta")])
async def test_short_keys_do_not_break_replies(api_key: str, secret_key: str) -> None:
    poll = PollPolicy(initial_delay=0.02, min_delay=0.02, max_delay=0.2, timeout=PATIENCE)
    async with (
        FakeGameball(
            api_key=api_key, secret_key=secret_key, enforce_rate_limit=False, queue_delay=0.0
        ) as fake,
        GameballSession(
            api_key, secret_key, base_url=fake.base_url, poll=poll, rate_limit=RateLimit.disabled()
        ) as gb,
    ):
        jobs = await gb.submit_many("balance-inquiry", ITEMS * 3, chunk_size=1)
        for job in jobs:
            status = await job
            assert status.state is BatchState.COMPLETED
            assert status.total_count == 1
        assert (await gb.get_status(jobs[0].job_id)).job_id == jobs[0].job_id


async def test_a_key_quoted_in_an_undecodable_reply_is_redacted(fake: FakeGameball) -> None:
    async with _limited(fake, RetryPolicy(attempts=1)) as gb:
        fake.inject("create", InjectedReply(status=200, body={"noJobId": fake.secret_key}))
        with pytest.raises(AmbiguousSubmissionError) as created:
            await gb.create_batch("balance-inquiry", ITEMS)
    error = created.value
    for text in (str(error), str(error.__cause__)):
        assert fake.secret_key[:5] not in text, text
        assert "***" in text
