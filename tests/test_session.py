"""Tests of GameballSession against FakeGameball: wire shapes, management calls,
job id safety, lifecycle and secret redaction."""

from __future__ import annotations

import json
import logging
import socket
import traceback
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import anyio
import pytest
from _support import assert_job_id_refused, make_session

from gameball_async import (
    AmbiguousSubmissionError,
    AuthenticationError,
    BalanceAdjustment,
    BalanceInquiry,
    BatchJob,
    BatchState,
    BatchStatus,
    Cashback,
    Customer,
    CustomerAttributes,
    Event,
    GameballError,
    GameballSession,
    Operation,
    Order,
    PollPolicy,
    Redemption,
    RetryPolicy,
    ServerError,
    SessionClosedError,
    TransportError,
)
from gameball_async.testing import FakeGameball, InjectedReply, RecordedRequest

pytestmark = pytest.mark.anyio

BASE_PATH = "/api/v4.0/integrations"
PLUS2 = timezone(timedelta(hours=2))
WHEN = datetime(2024, 10, 16, 10, 13, 29, 290500, tzinfo=PLUS2)
WHEN_Z = "2024-10-16T08:13:29.290Z"
FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


def _session(fake: FakeGameball, **options: Any) -> GameballSession:
    # the default poll policy, and three attempts: what the retry tests count
    return make_session(fake, **{"poll": PollPolicy(), "retry": FAST_RETRY, **options})


@pytest.fixture
async def gb(fake: FakeGameball) -> AsyncIterator[GameballSession]:
    async with _session(fake) as session:
        yield session


def _headers(request: RecordedRequest) -> dict[str, str]:
    return {key.lower(): value for key, value in request.headers.items()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the eight creation calls on the wire ---------------------------------------

WIRE_CASES: list[tuple[Operation, str, list[Any], list[Any]]] = [
    (
        Operation.CUSTOMERS,
        "/batch/customers",
        [
            Customer(
                customer_id="c1",
                email="a@b.c",
                guest=True,
                referrer_code="ref",
                customer_attributes=CustomerAttributes(
                    display_name="Ann",
                    join_date=WHEN,
                    channel="web",
                    utms=("u1",),
                    extra={"loyaltyTier": "gold"},
                ),
                extra={"newField": 1},
            ),
            {"customerId": "c2", "mobile": "+2010"},
        ],
        [
            {
                "customerId": "c1",
                "email": "a@b.c",
                "referrerCode": "ref",
                "guest": True,
                "customerAttributes": {
                    "displayName": "Ann",
                    "joinDate": WHEN_Z,
                    "utms": ["u1"],
                    "channel": "web",
                    "loyaltyTier": "gold",
                },
                "newField": 1,
            },
            {"customerId": "c2", "mobile": "+2010"},
        ],
    ),
    (
        Operation.ORDERS,
        "/batch/orders",
        [
            Order(
                customer_id="c1",
                order_id="o1",
                order_date=WHEN,
                total_paid=12.5,
                extra={"lineItems": [{"sku": "x", "quantity": 2}]},
            ),
            {"customerId": "c1", "orderId": "o2", "orderDate": WHEN, "totalPaid": 3},
        ],
        [
            {
                "customerId": "c1",
                "orderId": "o1",
                "orderDate": WHEN_Z,
                "totalPaid": 12.5,
                "lineItems": [{"sku": "x", "quantity": 2}],
            },
            {"customerId": "c1", "orderId": "o2", "orderDate": WHEN_Z, "totalPaid": 3},
        ],
    ),
    (Operation.ORDER_TRANSACTIONS, "/batch/orders/transactions", ["o1", "o2"], ["o1", "o2"]),
    (
        Operation.BALANCE_INQUIRY,
        "/batch/balance-inquiry",
        [BalanceInquiry(customer_id="c1"), {"customerId": "c2"}],
        [{"customerId": "c1"}, {"customerId": "c2"}],
    ),
    (
        Operation.BALANCE_ADJUSTMENT,
        "/batch/balance-adjustment",
        [BalanceAdjustment(customer_id="c1", amount=-5, reason="fix")],
        [{"customerId": "c1", "amount": -5, "reason": "fix"}],
    ),
    (
        Operation.CASHBACK,
        "/batch/cashback",
        [
            Cashback(
                customer_id="c1",
                transaction_id="t1",
                transaction_time=WHEN,
                amount=10.0,
                email="a@b.c",
            )
        ],
        [
            {
                "customerId": "c1",
                "transactionId": "t1",
                "transactionTime": WHEN_Z,
                "amount": 10.0,
                "email": "a@b.c",
            }
        ],
    ),
    (
        Operation.REDEEM,
        "/batch/redeem",
        [
            Redemption(
                customer_id="c1",
                transaction_id="t1",
                transaction_time=WHEN,
                points=10,
                hold_reference="h1",
            )
        ],
        [
            {
                "customerId": "c1",
                "transactionId": "t1",
                "transactionTime": WHEN_Z,
                "points": 10,
                "holdReference": "h1",
            }
        ],
    ),
    (
        Operation.EVENTS,
        "/batch/events",
        [Event(customer_id="c1", events={"purchase": {"sku": "x"}, "review": {}})],
        [{"customerId": "c1", "events": {"purchase": {"sku": "x"}, "review": {}}}],
    ),
]


@pytest.mark.parametrize(
    ("operation", "route", "items", "wire"), WIRE_CASES, ids=[c[0].value for c in WIRE_CASES]
)
@pytest.mark.parametrize("by_name", [True, False], ids=["str", "enum"])
async def test_creation_on_the_wire(
    fake: FakeGameball,
    gb: GameballSession,
    operation: Operation,
    route: str,
    items: list[Any],
    wire: list[Any],
    by_name: bool,
) -> None:
    job = await gb.create_batch(operation.value if by_name else operation, items)

    assert isinstance(job, BatchJob)
    assert job.operation is operation
    assert [int(job.job_id)] == list(fake.jobs)
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.path == BASE_PATH + route
    assert request.route == "create"
    assert request.operation == operation.value
    headers = _headers(request)
    assert headers["apikey"] == fake.api_key
    assert headers["secretkey"] == fake.secret_key
    assert headers["content-type"].startswith("application/json")
    assert json.loads(request.body) == {"body": wire}
    assert request.reply_status == 200
    assert fake.secret_key not in request.path


@pytest.mark.parametrize("shape", ["guide", "openapi"])
async def test_get_status(shape: Any) -> None:
    async with (
        FakeGameball(
            enforce_rate_limit=False, status_shape=shape, processing_rate=1000.0, queue_delay=0.0
        ) as fake,
        _session(fake) as gb,
    ):
        job = await gb.create_batch("balance-inquiry", [{"customerId": f"c{i}"} for i in range(3)])
        with anyio.fail_after(5):
            status = await gb.get_status(job.job_id)
            while not status.is_terminal:
                await anyio.sleep(0.01)
                status = await gb.get_status(int(job.job_id))
        assert isinstance(status, BatchStatus)
        assert status.job_id == job.job_id
        assert status.state is BatchState.COMPLETED
        assert (status.total_count, status.finished_count, status.error_count) == (3, 3, 0)
        assert len(status.succeeded) == 3
        assert status.raw
        request = fake.requests[-1]
        assert request.method == "GET"
        assert request.path == f"{BASE_PATH}/batch/{job.job_id}"
        assert _headers(request)["secretkey"] == fake.secret_key
        assert request.body == b""


async def test_stop() -> None:
    async with (
        FakeGameball(enforce_rate_limit=False, processing_rate=1.0) as fake,
        _session(fake) as session,
    ):
        job = await session.create_batch("balance-inquiry", [{"customerId": "c"}] * 50)
        status = await session.stop(job.job_id)
        assert fake.job_state(int(job.job_id)) == "Stopped"
        assert status is None or status.state is BatchState.STOPPED
        request = fake.requests[-1]
        assert request.method == "DELETE"
        assert request.path == f"{BASE_PATH}/batch/{job.job_id}"
        assert (await session.get_status(job.job_id)).state is BatchState.STOPPED


async def test_routes_overridable(fake: FakeGameball) -> None:
    async with _session(
        fake,
        base_url=fake.origin + "/api",
        routes={
            "cashback": "/v4.0/integrations/batch/cashback",
            "job": "/v4.0/integrations/batch/{job_id}",
        },
    ) as gb:
        job = await gb.create_batch(
            "cashback",
            [Cashback(customer_id="c", transaction_id="t", transaction_time=WHEN, amount=1)],
        )
        await gb.get_status(job.job_id)
    assert [r.path for r in fake.requests] == [
        f"{BASE_PATH}/batch/cashback",
        f"{BASE_PATH}/batch/{job.job_id}",
    ]
    assert [r.reply_status for r in fake.requests] == [200, 200]


BAD_JOB_IDS: list[Any] = [
    "../x",
    "..",
    "%2F",
    "a/b",
    "a?b",
    "a#b",
    "a b",
    "a\nb",
    "a\r\nX-Injected: 1",
    "é1",
    "١٢٣",  # Arabic-Indic digits
    "x" * 200,
    "",
    "1.5",
    True,
    None,
    1.5,
    ["1"],
]


@pytest.mark.parametrize("job_id", BAD_JOB_IDS, ids=[repr(j)[:20] for j in BAD_JOB_IDS])
async def test_job_ids_that_could_change_the_route_are_refused(
    fake: FakeGameball, gb: GameballSession, job_id: Any
) -> None:
    await assert_job_id_refused(gb, job_id)
    assert fake.counts["requests"] == 0


async def test_good_job_ids_accepted(fake: FakeGameball, gb: GameballSession) -> None:
    for job_id in (1234, "1234", "abc_DEF-9", "x" * 128):
        assert gb.job(job_id).job_id == str(job_id)
    assert fake.counts["requests"] == 0


# -- lifecycle --------------------------------------------------------------------


async def test_close_is_idempotent(fake: FakeGameball) -> None:
    gb = _session(fake)
    await gb.close()  # never opened
    await gb.close()
    assert gb.closed
    async with _session(fake) as other:
        job = await other.create_batch("balance-inquiry", [{"customerId": "c"}])
        assert (await other.get_status(job.job_id)).job_id == job.job_id
    await other.close()
    assert other.closed


async def test_owned_aiohttp_session_is_closed(
    fake: FakeGameball, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[aiohttp.ClientSession] = []
    real = aiohttp.ClientSession

    def recording(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        client = real(*args, **kwargs)
        made.append(client)
        return client

    monkeypatch.setattr(aiohttp, "ClientSession", recording)
    async with _session(fake) as gb:
        assert made == []  # opened lazily, on first use
        await gb.create_batch("balance-inquiry", [{"customerId": "c"}])
        assert len(made) == 1
        assert not made[0].closed
    assert made[0].closed


async def test_borrowed_aiohttp_session_is_never_closed(fake: FakeGameball) -> None:
    async with aiohttp.ClientSession() as client:
        async with _session(fake, http_session=client) as gb:
            job = await gb.create_batch("balance-inquiry", [{"customerId": "c"}])
            await gb.get_status(job.job_id)
        await gb.close()
        assert gb.closed
        assert not client.closed
        async with client.get(fake.origin + "/_fake/stats") as reply:
            assert reply.status == 200
    assert fake.counts["requests"] == 2


async def test_closed_session_refuses_work_and_cannot_reopen(fake: FakeGameball) -> None:
    gb = _session(fake)
    async with gb:
        job = await gb.create_batch("balance-inquiry", [{"customerId": "c"}])
    sent = fake.counts["requests"]
    with pytest.raises(SessionClosedError):
        await gb.get_status(job.job_id)
    with pytest.raises(SessionClosedError):
        await gb.stop(job.job_id)
    with pytest.raises(SessionClosedError):
        await gb.create_batch("balance-inquiry", [{"customerId": "c"}])
    with pytest.raises(SessionClosedError, match="reopen"):
        async with gb:
            pass
    assert fake.counts["requests"] == sent


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.gameball.co/api/v4.0/integrations",
        "http://10.0.0.5:8080/api",
        "http://localhost.example.com/",
    ],
)
def test_plain_http_refused_for_non_loopback(base_url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        GameballSession("key", "secret", base_url=base_url)
    insecure = GameballSession("key", "secret", base_url=base_url, allow_insecure=True)
    assert insecure.base_url == base_url.rstrip("/")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080/api",
        "http://localhost:1/api/",
        "http://[::1]:8080/api",
        "https://api.gameball.co/api/v4.0/integrations",
    ],
)
def test_https_and_loopback_accepted(base_url: str) -> None:
    assert GameballSession("key", "secret", base_url=base_url).base_url == base_url.rstrip("/")


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://api.gameball.co/",
        "https://user:pw@api.gameball.co/",
        "https://api.gameball.co/?key=1",
        "not a url",
    ],
)
def test_bad_base_urls_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        GameballSession("key", "secret", base_url=base_url)


def test_repr_shows_no_secret() -> None:
    gb = GameballSession("my-api-key-123", "TOP-SECRET-456")
    for text in (repr(gb), str(gb)):
        assert "TOP-SECRET-456" not in text
        assert "my-api-key-123" not in text
        assert "GameballSession" in text


@pytest.mark.parametrize("which", ["api_key", "secret_key"])
@pytest.mark.parametrize(
    "bad", ["sec\r\nX-Injected: 1", "sec\nret", "sec\rret", "tab\tbed", "nul\x00", ""]
)
def test_keys_with_control_characters_refused(which: str, bad: str) -> None:
    keys = {"api_key": "good-key", "secret_key": "good-secret", which: bad}
    with pytest.raises(ValueError, match=which) as info:
        GameballSession(keys["api_key"], keys["secret_key"])
    if bad:
        assert bad not in str(info.value)
        assert bad not in repr(info.value.args)


@pytest.mark.parametrize("bad", [None, 123, b"bytes"])
def test_non_string_keys_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="secret_key"):
        GameballSession("key", bad)


# -- redaction ----------------------------------------------------------------------

SECRET = "S3CR3T-do-not-leak-7f9a"
API_KEY = "api-key-redact-me-1c2d"


def _all_text(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), *map(repr, exc.args)]
    texts.append("".join(traceback.format_exception(exc)))
    for value in vars(exc).values():
        texts.append(repr(value))
    return texts


def _assert_clean(exc: BaseException, *secrets: str) -> None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for text in _all_text(current):
            for secret in secrets:
                assert secret not in text, f"{type(current).__name__} leaks a secret: {text!r}"
        current = current.__cause__ or current.__context__


async def test_secret_never_in_logs_or_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []

    async def expect(kind: type[BaseException], call: Callable[[], Any]) -> None:
        with pytest.raises(kind) as info:
            await call()
        errors.append(info.value)

    async with FakeGameball(api_key=API_KEY, secret_key=SECRET, enforce_rate_limit=False) as fake:
        job_id = "1"
        async with _session(fake) as gb:
            job = await gb.create_batch("balance-inquiry", [{"customerId": "c"}])
            job_id = job.job_id
            # 5xx retried, then raised; one body echoes the secret, JSON and not
            fake.inject(
                "status",
                InjectedReply(
                    status=500,
                    body={"code": 5000, "message": f"bad {SECRET}", "requestId": f"r-{API_KEY}"},
                ),
                InjectedReply(status=503, body=f"<html>{SECRET} {API_KEY}</html>".encode()),
                InjectedReply(status=500, body=f"key={SECRET}".encode()),
            )
            await expect(ServerError, lambda: gb.get_status(job_id))
            # an error message that echoes the secret, on a final 4xx
            fake.inject(
                "status",
                InjectedReply(
                    status=401, body={"code": 1000, "message": f"SecretKey {SECRET} is wrong"}
                ),
            )
            await expect(AuthenticationError, lambda: gb.get_status(job_id))
            # ambiguous creations: dropped after the body was sent, and a 500
            fake.inject("create", InjectedReply(action="drop_after"))
            await expect(
                AmbiguousSubmissionError,
                lambda: gb.create_batch("balance-inquiry", [{"customerId": "c"}]),
            )
            fake.inject("create", InjectedReply(status=500, body=f"boom {SECRET}".encode()))
            await expect(
                AmbiguousSubmissionError,
                lambda: gb.create_batch("balance-inquiry", [{"customerId": "c"}]),
            )
        # wrong keys: the fake answers 401
        async with _session(fake, secret_key=SECRET + "-wrong") as wrong:
            await expect(AuthenticationError, lambda: wrong.get_status(job_id))
        assert fake.counts["requests"] >= 8
    # nobody listening at all
    closed = f"http://127.0.0.1:{_free_port()}/api"
    async with _session(fake, base_url=closed) as gone:
        await expect(TransportError, lambda: gone.get_status(job_id))
        await expect(
            TransportError, lambda: gone.create_batch("balance-inquiry", [{"customerId": "c"}])
        )

    assert len(errors) == 7
    assert all(isinstance(error, GameballError) for error in errors)
    for error in errors:
        _assert_clean(error, SECRET, API_KEY)
    assert any("***" in str(error) for error in errors)  # redacted, not dropped
    assert caplog.records  # the debug logging did run
    for record in caplog.records:
        texts = [record.getMessage(), repr(record.args), caplog.text]
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
        for text in texts:
            assert SECRET not in text
            assert API_KEY not in text
