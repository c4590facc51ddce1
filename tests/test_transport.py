"""Tests of the HTTP layer (gameball_async._transport) through GameballSession,
against FakeGameball: error mapping, what is retried and what is not, Retry-After,
ambiguous creations, unreachable servers and the client-side rate limiter."""

from __future__ import annotations

import email.utils
import logging
import socket
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from gameball_async import (
    AmbiguousSubmissionError,
    AuthenticationError,
    BalanceInquiry,
    BatchStatus,
    GameballSession,
    InvalidRequestError,
    NotFoundError,
    Operation,
    ProtocolError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Timeout,
    TransportError,
)
from gameball_async.testing import FakeGameball, Faults, InjectedReply

pytestmark = pytest.mark.anyio

ATTEMPTS = 3
FAST_RETRY = RetryPolicy(attempts=ATTEMPTS, backoff=0.01, max_backoff=0.05)
ITEMS = [{"customerId": "c1"}, {"customerId": "c2"}]


def _session(fake: FakeGameball, **kwargs: Any) -> GameballSession:
    options: dict[str, Any] = {
        "base_url": fake.base_url,
        "rate_limit": RateLimit.disabled(),
        "retry": FAST_RETRY,
    }
    options.update(kwargs)
    secret_key = options.pop("secret_key", fake.secret_key)
    return GameballSession(fake.api_key, secret_key, **options)


@pytest.fixture
async def gb(fake: FakeGameball) -> AsyncIterator[GameballSession]:
    async with _session(fake) as session:
        yield session


@pytest.fixture
async def job_id(fake: FakeGameball, gb: GameballSession) -> str:
    """An existing job; the fake's counters are reset after creating it."""
    job = await gb.create_batch("balance-inquiry", ITEMS)
    fake.reset()
    return job.job_id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- error families ------------------------------------------------------------------


async def test_wrong_secret_is_an_authentication_error(fake: FakeGameball, job_id: str) -> None:
    async with _session(fake, secret_key="not-the-secret") as wrong:
        with pytest.raises(AuthenticationError) as info:
            await wrong.get_status(job_id)
    error = info.value
    assert (error.http_status, error.code) == (401, 1000)
    assert error.request_id
    assert error.request_id in str(error)
    assert fake.counts["requests"] == 1  # never retried


async def test_missing_secret_code_1001(
    fake: FakeGameball, gb: GameballSession, job_id: str
) -> None:
    fake.inject(
        "status",
        InjectedReply(
            status=401,
            body={
                "code": 1001,
                "type": "MissingSecretKey",
                "message": "The SecretKey header is required.",
                "requestId": "req-1001",
            },
        ),
    )
    with pytest.raises(AuthenticationError) as info:
        await gb.get_status(job_id)
    assert (info.value.code, info.value.request_id, info.value.type) == (
        1001,
        "req-1001",
        "MissingSecretKey",
    )
    assert fake.counts["status"] == 1


async def test_forbidden_on_creation(fake: FakeGameball, gb: GameballSession) -> None:
    fake.inject("create", InjectedReply(status=403, body={"code": 1002, "message": "no"}))
    with pytest.raises(AuthenticationError) as info:
        await gb.create_batch("balance-inquiry", ITEMS)
    assert (info.value.http_status, info.value.code) == (403, 1002)
    assert fake.counts["create"] == 1


async def test_unknown_job_is_not_found(fake: FakeGameball, gb: GameballSession) -> None:
    with pytest.raises(NotFoundError) as info:
        await gb.get_status("999999999")
    assert (info.value.http_status, info.value.code) == (404, 4004)
    assert info.value.request_id
    with pytest.raises(NotFoundError):
        await gb.stop(424242)
    assert fake.counts["requests"] == 2  # 4xx are final


async def test_invalid_value_on_creation(fake: FakeGameball, gb: GameballSession) -> None:
    fake.inject("create", InjectedReply(status=422))
    with pytest.raises(InvalidRequestError) as info:
        await gb.create_batch("balance-inquiry", ITEMS)
    assert (info.value.http_status, info.value.code) == (422, 3003)
    assert fake.counts["create"] == 1
    assert fake.counts["jobs_created"] == 0


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_retried_then_raised(
    fake: FakeGameball, gb: GameballSession, job_id: str, status: int
) -> None:
    fake.inject("status", *[InjectedReply(status=status)] * ATTEMPTS)
    with pytest.raises(ServerError) as info:
        await gb.get_status(job_id)
    assert info.value.http_status == status
    assert info.value.code == (5000 if status == 500 else 5003)
    assert fake.counts["status"] == ATTEMPTS
    assert fake.pending_injections == 0


async def test_rate_limited_retried_then_raised(
    fake: FakeGameball, gb: GameballSession, job_id: str
) -> None:
    fake.inject("status", *[InjectedReply(status=429, headers={"Retry-After": "0"})] * ATTEMPTS)
    with pytest.raises(RateLimitError) as info:
        await gb.get_status(job_id)
    assert info.value.retry_after == 0.0
    assert fake.counts["status"] == ATTEMPTS


async def test_retry_after_beyond_the_policy_is_raised_at_once(
    fake: FakeGameball, job_id: str
) -> None:
    async with _session(fake, retry=RetryPolicy(backoff=0.01, max_retry_after=5.0)) as gb:
        fake.inject("status", InjectedReply(status=429, headers={"Retry-After": "3600"}))
        with pytest.raises(RateLimitError) as info:
            await gb.get_status(job_id)
    assert info.value.retry_after == 5.0  # clamped: nothing holds for an hour
    assert fake.counts["status"] == 1


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", ServerError),
        (400, b"Bad Request: nope", InvalidRequestError),
        (404, b"", NotFoundError),
    ],
)
async def test_non_json_error_bodies(
    fake: FakeGameball, job_id: str, status: int, body: bytes, cls: type[Exception]
) -> None:
    async with _session(fake, retry=RetryPolicy(attempts=1)) as gb:
        fake.inject(
            "status", InjectedReply(status=status, body=body, headers={"Content-Type": "text/html"})
        )
        with pytest.raises(cls) as info:
            await gb.get_status(job_id)
    error: Any = info.value
    assert error.http_status == status
    assert error.code is None
    if body:
        assert error.body == body.decode()
        assert "non-JSON" in str(error)


# -- status reads are retried ------------------------------------------------------

RECOVERABLE: dict[str, InjectedReply] = {
    "429": InjectedReply(status=429, headers={"Retry-After": "0"}),
    "429-no-header": InjectedReply(status=429),
    "500": InjectedReply(status=500),
    "502": InjectedReply(status=502, body=b"bad gateway"),
    "503": InjectedReply(status=503),
    "drop": InjectedReply(action="drop"),
    "malformed-json": InjectedReply(status=200, body=b'{"jobId": 12, "status": "Runn'),
    "text-200": InjectedReply(status=200, body=b"not json at all"),
}


@pytest.mark.parametrize("fault", list(RECOVERABLE))
async def test_status_read_retried_until_it_succeeds(
    fake: FakeGameball, gb: GameballSession, job_id: str, fault: str
) -> None:
    fake.inject("status", RECOVERABLE[fault], RECOVERABLE[fault])
    status = await gb.get_status(job_id)
    assert isinstance(status, BatchStatus)
    assert status.job_id == job_id
    assert status.total_count == len(ITEMS)
    assert fake.counts["status"] == 3
    assert fake.counts["injected"] == 2
    assert fake.requests[-1].reply_status == 200


@pytest.mark.parametrize("fault", ["503", "drop", "malformed-json"])
async def test_stop_retried_until_it_succeeds(
    fake: FakeGameball, gb: GameballSession, job_id: str, fault: str
) -> None:
    fake.inject("stop", RECOVERABLE[fault])
    await gb.stop(job_id)
    assert fake.counts["stop"] == 2
    assert fake.job_state(int(job_id)) in ("Stopped", "Completed")


async def test_read_timeout_on_status_is_retried(fake: FakeGameball, job_id: str) -> None:
    async with _session(fake, timeout=Timeout(total=0.3)) as gb:
        fake.inject("status", InjectedReply(action="slow", delay=1.0))
        status = await gb.get_status(job_id)
    assert status.job_id == job_id
    assert fake.counts["status"] == 2


async def test_malformed_json_forever_is_a_protocol_error(
    fake: FakeGameball, gb: GameballSession, job_id: str
) -> None:
    fake.inject("status", *[InjectedReply(status=200, body=b"{")] * ATTEMPTS)
    with pytest.raises(ProtocolError):
        await gb.get_status(job_id)
    assert fake.counts["status"] == ATTEMPTS


async def test_a_non_status_reply_is_a_protocol_error(
    fake: FakeGameball, gb: GameballSession, job_id: str
) -> None:
    fake.inject("status", InjectedReply(status=200, body=[1, 2, 3]))
    with pytest.raises(ProtocolError):
        await gb.get_status(job_id)
    fake.inject("status", InjectedReply(status=200, body=b""))
    with pytest.raises(ProtocolError):
        await gb.get_status(job_id)


def _gap(fake: FakeGameball, first: int) -> float:
    return fake.requests[first + 1].arrived_at - fake.requests[first].arrived_at


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_honoured(
    fake: FakeGameball, gb: GameballSession, job_id: str, status: int
) -> None:
    fake.inject("status", InjectedReply(status=status, headers={"Retry-After": "1"}))
    await gb.get_status(job_id)
    assert fake.counts["status"] == 2
    assert _gap(fake, 0) >= 0.95


async def test_retry_after_http_date_honoured(
    fake: FakeGameball, gb: GameballSession, job_id: str
) -> None:
    # whole seconds on the wire: 2 s ahead means a wait between 1 and 2 s
    target = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
    header = email.utils.format_datetime(target, usegmt=True)
    wall_minus_monotonic = time.time() - time.monotonic()
    fake.inject("status", InjectedReply(status=429, headers={"Retry-After": header}))
    await gb.get_status(job_id)
    assert fake.counts["status"] == 2
    second_arrival = fake.requests[1].arrived_at + wall_minus_monotonic
    assert second_arrival >= target.timestamp() - 0.05  # not before the date it named


async def test_retry_after_honoured_on_creation(fake: FakeGameball, gb: GameballSession) -> None:
    fake.inject("create", InjectedReply(status=503, headers={"Retry-After": "1"}))
    job = await gb.create_batch("balance-inquiry", ITEMS)
    assert [int(job.job_id)] == list(fake.jobs)
    assert _gap(fake, 0) >= 0.95


# -- creations: retried only where they provably did not land --------------------------


@pytest.mark.parametrize("status", [429, 503])
async def test_creation_retried_on_429_and_503(
    fake: FakeGameball, gb: GameballSession, status: int
) -> None:
    fake.inject("create", InjectedReply(status=status, headers={"Retry-After": "0"}))
    job = await gb.create_batch("balance-inquiry", ITEMS)
    assert fake.counts["create"] == 2
    assert fake.counts["jobs_created"] == 1
    assert [int(job.job_id)] == list(fake.jobs)
    assert set(fake.created_bodies.values()) == {1}


def _assert_ambiguous(
    info: pytest.ExceptionInfo[AmbiguousSubmissionError], items: list[Any]
) -> None:
    error = info.value
    assert error.operation is Operation.BALANCE_INQUIRY
    assert list(error.items) == items
    assert "not resent" in str(error)


async def test_dropped_after_sending_is_ambiguous_and_not_resent(
    fake: FakeGameball, gb: GameballSession
) -> None:
    items = [BalanceInquiry(customer_id="c1"), {"customerId": "c2"}]
    fake.inject("create", InjectedReply(action="drop_after"))
    with pytest.raises(AmbiguousSubmissionError) as info:
        await gb.create_batch("balance-inquiry", items)
    _assert_ambiguous(info, items)
    # the job exists, exactly once, and the request went out exactly once
    assert fake.counts["create"] == 1
    assert fake.counts["jobs_created"] == 1
    assert list(fake.created_bodies.values()) == [1]
    assert fake.counts["requests"] == 1


async def test_dropped_before_handling_is_ambiguous_too(
    fake: FakeGameball, gb: GameballSession
) -> None:
    fake.inject("create", InjectedReply(action="drop"))
    with pytest.raises(AmbiguousSubmissionError) as info:
        await gb.create_batch("balance-inquiry", ITEMS)
    _assert_ambiguous(info, ITEMS)
    assert fake.counts["create"] == 1
    assert fake.counts["jobs_created"] == 0


async def test_500_on_creation_is_ambiguous_and_not_resent(
    fake: FakeGameball, gb: GameballSession
) -> None:
    fake.inject("create", InjectedReply(status=500))
    with pytest.raises(AmbiguousSubmissionError) as info:
        await gb.create_batch("balance-inquiry", ITEMS)
    _assert_ambiguous(info, ITEMS)
    assert isinstance(info.value.__cause__, ServerError)
    assert fake.counts["create"] == 1


async def test_malformed_reply_to_creation_is_ambiguous(
    fake: FakeGameball, gb: GameballSession
) -> None:
    fake.faults = Faults(malformed_json=1.0, routes={"create"})
    with pytest.raises(AmbiguousSubmissionError) as info:
        await gb.create_batch("balance-inquiry", ITEMS)
    _assert_ambiguous(info, ITEMS)
    assert fake.counts["fault:malformed"] == 1
    assert fake.counts["create"] == 1
    assert fake.counts["jobs_created"] == 1  # it did land


@pytest.mark.parametrize("body", [{}, {"jobId": None}, {"jobId": "../1"}, [1]])
async def test_reply_without_a_usable_job_id_is_ambiguous(
    fake: FakeGameball, gb: GameballSession, body: Any
) -> None:
    fake.inject("create", InjectedReply(status=200, body=body))
    with pytest.raises(AmbiguousSubmissionError) as info:
        await gb.create_batch("balance-inquiry", ITEMS)
    _assert_ambiguous(info, ITEMS)
    assert fake.counts["create"] == 1


async def test_read_timeout_on_creation_is_ambiguous(fake: FakeGameball) -> None:
    async with _session(fake, timeout=Timeout(total=0.3)) as gb:
        fake.inject("create", InjectedReply(action="slow", delay=0.8))
        with pytest.raises(AmbiguousSubmissionError) as info:
            await gb.create_batch("balance-inquiry", ITEMS)
    _assert_ambiguous(info, ITEMS)
    assert isinstance(info.value.__cause__, TransportError)
    with anyio.fail_after(5):  # the server finishes the request it got
        while fake.counts["jobs_created"] < 1:  # noqa: ASYNC110 - the fake has no event for it
            await anyio.sleep(0.01)
    assert fake.counts["create"] == 1


# -- nobody listening ------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["status", "create"])
async def test_connection_never_made_is_retried_then_transport_error(
    caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="gameball_async")
    closed = f"http://127.0.0.1:{_free_port()}/api/v4.0/integrations"
    async with GameballSession(
        "key", "secret", base_url=closed, retry=FAST_RETRY, rate_limit=RateLimit.disabled()
    ) as gb:

        async def attempt() -> None:
            if operation == "status":
                await gb.get_status(1)
            else:
                await gb.create_batch("balance-inquiry", ITEMS)

        with pytest.raises(TransportError) as info:
            await attempt()
    # a connection never made is not ambiguous, and it was retried
    assert not isinstance(info.value, AmbiguousSubmissionError)
    assert "connect" in str(info.value)
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying")]
    assert len(retries) == ATTEMPTS - 1


async def test_network_retries_can_be_turned_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gameball_async")
    closed = f"http://127.0.0.1:{_free_port()}/api"
    policy = RetryPolicy(attempts=5, backoff=0.01, retry_network_errors=False)
    async with GameballSession(
        "key", "secret", base_url=closed, retry=policy, rate_limit=RateLimit.disabled()
    ) as gb:
        with pytest.raises(TransportError):
            await gb.get_status(1)
    assert not [r for r in caplog.records if r.getMessage().startswith("retrying")]


# -- the client-side rate limiter ----------------------------------------------------


async def test_burst_stays_within_the_servers_rate_limit() -> None:
    per_second, per_window, window = 100, 1000, 10.0
    calls = 499  # + 1 creation: 500 requests, five 1-second windows
    async with FakeGameball(
        enforce_rate_limit=True,
        rate_per_second=per_second,
        rate_per_window=per_window,
        rate_window=window,
    ) as fake:
        # Client and server share this event loop: 100 requests at once reach
        # the server up to a few hundred ms after they took their slots on a
        # busy machine. The limiter holds a slot until the reply, so that skew
        # cannot push the server over its limit, even with the default margin.
        limit = RateLimit(per_second=per_second, per_window=per_window, window=window)
        async with _session(fake, rate_limit=limit) as gb:
            job = await gb.create_batch("balance-inquiry", ITEMS)
            statuses: list[BatchStatus] = []

            async def read() -> None:
                statuses.append(await gb.get_status(job.job_id))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for _ in range(calls):
                        tg.start_soon(read)
        assert len(statuses) == calls
        assert fake.counts["rate_limited"] == 0
        assert fake.counts["status"] == calls  # nothing had to be retried
        assert fake.max_requests_in(1.0) <= per_second
        # the limiter really paced them: 500 requests at 100 per second
        assert fake.requests[-1].arrived_at - fake.requests[0].arrived_at >= 4.0


class _RetryLogged(logging.Handler):
    """Sets an event when the transport logs that it will retry."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("retrying"):
            self.event.set()


async def test_server_429_pauses_the_session(
    fake: FakeGameball, job_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gameball_async")
    retrying = _RetryLogged()
    logging.getLogger("gameball_async").addHandler(retrying)
    try:
        async with _session(fake, rate_limit=RateLimit(per_second=1000, per_window=10_000)) as gb:
            fake.inject("status", InjectedReply(status=429, headers={"Retry-After": "1"}))
            async with anyio.create_task_group() as tg:
                tg.start_soon(gb.get_status, job_id)
                with anyio.fail_after(5):  # until the client has read the 429
                    await retrying.event.wait()
                # a second caller, not retrying anything, is held by the pause too
                tg.start_soon(gb.get_status, job_id)
    finally:
        logging.getLogger("gameball_async").removeHandler(retrying)
    first = fake.requests[0].arrived_at
    assert fake.counts["status"] == 3
    assert all(r.arrived_at - first >= 0.95 for r in fake.requests[1:])
