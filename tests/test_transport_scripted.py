"""Tests of gameball_async._transport driven through its seam, with no sockets:
a scripted :class:`Wire` answers each request (status, headers, bytes, or a
failure kind), a recording limiter stands in for the rate limiter, and the
pauses between tries are recorded instead of slept.

The end-to-end behaviour against the fake server is in tests/test_transport.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

from gameball_async import (
    AmbiguousSubmissionError,
    AuthenticationError,
    CreationTimeoutError,
    InvalidRequestError,
    NotFoundError,
    Operation,
    ProtocolError,
    RateLimitError,
    RedirectError,
    RetryPolicy,
    ServerError,
    SessionClosedError,
    TransportError,
)
from gameball_async._http import Answer, Failed
from gameball_async._ratelimit import RateLimiter
from gameball_async._reply import CreationGuard, Reply
from gameball_async._retry_rules import Outcome
from gameball_async._transport import Transport

pytestmark = pytest.mark.anyio

BASE = "https://api.test/api/v4.0/integrations"
SECRET = "sk-very-secret-0123456789"
API_KEY = "ak-public-9876543210"
RETRY = RetryPolicy(attempts=3, backoff=0.5, max_backoff=8.0, max_retry_after=7.0)
ITEMS = [{"customerId": "c1"}, {"customerId": "c2"}]
BODY = json.dumps(ITEMS).encode()

Step = Answer | Failed


def ok(payload: Any = None, status: int = 200) -> Answer:
    """A reply with a JSON payload (a job's status by default)."""
    body = {"jobId": 12, "status": "Running"} if payload is None else payload
    return Answer(status, {"Content-Type": "application/json"}, json.dumps(body).encode())


def reply(status: int, data: bytes = b"", headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, dict(headers or {}), data)


def failed(outcome: Outcome, reason: str = "ClientOSError: boom") -> Failed:
    return Failed(outcome, reason)


class ScriptedWire:
    """Answers each request with the next step of its script."""

    def __init__(self, *script: Step, limiter: RecordingLimiter) -> None:
        self.script = list(script)
        self.sent: list[tuple[str, str, bytes | None]] = []
        self.closed = False
        self._limiter = limiter

    async def send(self, method: str, url: str, body: bytes | None) -> Answer | Failed:
        # the limiter's slot is held while the request is out
        assert self._limiter.held == 1
        self.sent.append((method, url, body))
        await anyio.lowlevel.checkpoint()
        if not self.script:
            raise AssertionError(f"unscripted request: {method} {url}")
        return self.script.pop(0)

    async def aclose(self) -> None:
        self.closed = True

    @property
    def methods(self) -> list[str]:
        return [method for method, _, _ in self.sent]


class RecordingLimiter:
    """The two calls the transport makes of a limiter: ``slot()`` and ``pause()``."""

    def __init__(self) -> None:
        self.held = 0
        self.slots = 0
        self.pauses: list[float] = []

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        self.slots += 1
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1

    def slot(self) -> Any:
        return self._slot()

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


class Rig:
    """A transport on a scripted wire, with what it did."""

    def __init__(self, *script: Step, retry: RetryPolicy = RETRY) -> None:
        self.limiter = RecordingLimiter()
        self.wire = ScriptedWire(*script, limiter=self.limiter)
        self.transport = Transport(
            base_url=BASE,
            secrets=(SECRET, API_KEY),
            retry=retry,
            limiter=cast(RateLimiter, self.limiter),
            wire=self.wire,
        )

    async def create(
        self, *, deadline: float | None = None, guard: CreationGuard | None = None
    ) -> Reply:
        return await self.transport.create(
            "/batch",
            BODY,
            operation=Operation.BALANCE_INQUIRY,
            items=ITEMS,
            deadline=deadline,
            guard=guard,
        )

    async def call(self, method: str) -> Reply:
        if method == "POST":
            return await self.create()
        if method == "DELETE":
            return await self.transport.delete("/batch/12")
        return await self.transport.get("/batch/12")


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses between tries, recorded instead of slept."""
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(anyio, "sleep", sleep)
    return slept


# -- what is retried ---------------------------------------------------------------

TRANSIENT: dict[str, Step] = {
    "429": reply(429),
    "500": reply(500),
    "502": reply(502, b"<html>bad gateway</html>"),
    "503": reply(503),
    "never-connected": failed(Outcome.NEVER_CONNECTED),
    "dropped": failed(Outcome.DROPPED),
    "timeout": failed(Outcome.TIMEOUT, "ServerTimeoutError"),
    "not-json": reply(200, b'{"jobId": 12, "status": "Runn'),
}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("fault", list(TRANSIENT))
async def test_reads_and_stops_are_retried_through_transient_failures(
    sleeps: list[float], method: str, fault: str
) -> None:
    rig = Rig(TRANSIENT[fault], TRANSIENT[fault], ok())
    result = await rig.call(method)
    assert result.payload == {"jobId": 12, "status": "Running"}
    assert rig.wire.methods == [method] * 3
    assert rig.wire.sent[0][1] == BASE + "/batch/12"
    assert len(sleeps) == 2
    assert all(0.0 <= s <= RETRY.max_backoff for s in sleeps)
    counters = rig.transport.counters
    assert (counters.requests, counters.retries) == (3, 2)
    assert rig.limiter.slots == 3
    assert rig.limiter.held == 0
    # a 429 without Retry-After pauses the session's requests for a second
    assert rig.limiter.pauses == ([1.0, 1.0] if fault == "429" else [])


@pytest.mark.parametrize("fault", ["429", "503", "never-connected"])
async def test_a_creation_is_retried_where_it_provably_did_not_land(
    sleeps: list[float], fault: str
) -> None:
    rig = Rig(TRANSIENT[fault], ok({"jobId": 12}))
    result = await rig.create()
    assert result.payload == {"jobId": 12}
    assert rig.wire.sent == [("POST", BASE + "/batch", BODY)] * 2
    assert len(sleeps) == 1


MAY_HAVE_LANDED: dict[str, tuple[Step, type[BaseException] | None]] = {
    "500": (reply(500), ServerError),
    "502": (reply(502), ServerError),
    "dropped": (failed(Outcome.DROPPED), TransportError),
    "timeout": (failed(Outcome.TIMEOUT), TransportError),
    "not-json": (reply(200, b"<html>"), ProtocolError),
    "303": (reply(303, headers={"Location": "https://elsewhere.test/x"}), None),
}


@pytest.mark.parametrize("fault", list(MAY_HAVE_LANDED))
async def test_a_creation_that_may_have_landed_is_ambiguous_and_not_resent(
    sleeps: list[float], fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    step, cause = MAY_HAVE_LANDED[fault]
    rig = Rig(step, ok({"jobId": 12}))
    guard = CreationGuard()
    with pytest.raises(AmbiguousSubmissionError) as info:
        await rig.create(guard=guard)
    error = info.value
    assert error.operation is Operation.BALANCE_INQUIRY
    assert list(error.items) == ITEMS
    assert "not resent" in str(error)
    if cause is None:
        assert error.__cause__ is None
        assert "elsewhere.test" in str(error)
    else:
        assert isinstance(error.__cause__, cause)
    assert len(rig.wire.sent) == 1
    assert sleeps == []
    assert rig.transport.counters.ambiguous_creations == 1
    assert guard.in_flight  # it may have created a job: still one to account for
    assert any("may have landed" in r.getMessage() for r in caplog.records)


FINAL: dict[str, tuple[Step, type[BaseException]]] = {
    "400": (reply(400, b'{"message": "bad"}'), InvalidRequestError),
    "401": (reply(401), AuthenticationError),
    "404": (reply(404), NotFoundError),
    "422": (reply(422), InvalidRequestError),
    "tls": (failed(Outcome.TLS_FAILED, "ClientSSLError: bad cert"), TransportError),
}


@pytest.mark.parametrize("method", ["GET", "DELETE", "POST"])
@pytest.mark.parametrize("fault", list(FINAL))
async def test_final_answers_are_raised_at_once(
    sleeps: list[float], method: str, fault: str
) -> None:
    step, error = FINAL[fault]
    rig = Rig(step, ok())
    with pytest.raises(error) as info:
        await rig.call(method)
    assert not isinstance(info.value, AmbiguousSubmissionError)
    assert len(rig.wire.sent) == 1
    assert sleeps == []
    assert rig.transport.counters.retries == 0


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_a_redirect_error(
    sleeps: list[float], method: str, status: int
) -> None:
    location = f"https://evil.test:8443/steal?key={SECRET}"
    rig = Rig(reply(status, headers={"Location": location}))
    with pytest.raises(RedirectError) as info:
        await rig.call(method)
    assert info.value.http_status == status
    assert "evil.test:8443" in str(info.value)
    assert SECRET not in str(info.value)
    assert "steal" not in str(info.value)
    assert len(rig.wire.sent) == 1


async def test_the_tries_run_out(sleeps: list[float], caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig(*[reply(503)] * RETRY.attempts)
    with pytest.raises(ServerError) as info:
        await rig.transport.get("/batch/12")
    assert info.value.http_status == 503
    assert len(rig.wire.sent) == RETRY.attempts
    assert len(sleeps) == RETRY.attempts - 1
    assert rig.transport.counters.server_errors == RETRY.attempts
    giving_up = [r for r in caplog.records if "giving up" in r.getMessage()]
    assert len(giving_up) == 1
    assert giving_up[0].levelno == logging.WARNING
    assert "after 3 tries" in giving_up[0].getMessage()


@pytest.mark.parametrize(
    ("switch", "step", "error"),
    [
        ("retry_rate_limited", reply(429), RateLimitError),
        ("retry_server_errors", reply(503), ServerError),
        ("retry_server_errors", reply(500), ServerError),
        ("retry_network_errors", failed(Outcome.DROPPED), TransportError),
        ("retry_network_errors", failed(Outcome.NEVER_CONNECTED), TransportError),
    ],
)
async def test_a_switch_turns_its_retries_off(
    sleeps: list[float], switch: str, step: Step, error: type[BaseException]
) -> None:
    rig = Rig(step, ok(), retry=RetryPolicy(**{switch: False}))
    with pytest.raises(error):
        await rig.transport.get("/batch/12")
    assert len(rig.wire.sent) == 1
    assert sleeps == []


async def test_a_503_to_a_creation_with_server_retries_off_is_not_ambiguous(
    sleeps: list[float],
) -> None:
    rig = Rig(reply(503), retry=RetryPolicy(retry_server_errors=False))
    with pytest.raises(ServerError) as info:
        await rig.create()
    assert not isinstance(info.value, AmbiguousSubmissionError)
    assert len(rig.wire.sent) == 1


# -- Retry-After -------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_the_least_delay(sleeps: list[float], status: int) -> None:
    rig = Rig(reply(status, headers={"Retry-After": "3"}), ok())
    await rig.transport.get("/batch/12")
    assert sleeps == [3.0]  # above the first try's jitter cap of 0.5 s
    assert rig.limiter.pauses == ([3.0] if status == 429 else [])


async def test_a_retry_after_beyond_the_policy_is_raised_at_once_and_clamped(
    sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(reply(429, headers={"Retry-After": "3600"}), ok())
    with pytest.raises(RateLimitError) as info:
        await rig.transport.get("/batch/12")
    assert info.value.retry_after == RETRY.max_retry_after
    assert rig.limiter.pauses == [RETRY.max_retry_after]  # not an hour
    assert len(rig.wire.sent) == 1
    assert sleeps == []
    assert not [r for r in caplog.records if "giving up" in r.getMessage()]


async def test_a_garbled_reply_with_a_long_retry_after_is_retried_after_the_clamp(
    sleeps: list[float],
) -> None:
    rig = Rig(reply(200, b"{", {"Retry-After": "3600"}), ok())
    await rig.transport.get("/batch/12")
    assert sleeps == [RETRY.max_retry_after]


async def test_a_retry_after_on_a_good_reply_is_clamped() -> None:
    rig = Rig(Answer(200, {"Retry-After": "3600"}, b'{"jobId": 12}'))
    result = await rig.transport.get_once("/batch/12")
    assert result.retry_after == RETRY.max_retry_after


# -- creations: the guard and the deadline --------------------------------------------


async def test_a_creation_whose_caller_has_gone_is_not_retried(sleeps: list[float]) -> None:
    guard = CreationGuard()
    guard.stop = True
    rig = Rig(reply(503), ok({"jobId": 12}))
    with pytest.raises(ServerError):
        await rig.create(guard=guard)
    assert len(rig.wire.sent) == 1
    assert not guard.in_flight  # the 503 created nothing


async def test_a_deadline_before_the_next_try_is_a_creation_timeout(sleeps: list[float]) -> None:
    rig = Rig(reply(503, headers={"Retry-After": "5"}), ok({"jobId": 12}))
    with pytest.raises(CreationTimeoutError) as info:
        await rig.create(deadline=anyio.current_time() + 1.0)
    assert isinstance(info.value.__cause__, ServerError)
    assert "nothing was created" in str(info.value)
    assert len(rig.wire.sent) == 1
    assert sleeps == []


async def test_a_deadline_already_passed_sends_nothing() -> None:
    rig = Rig(ok({"jobId": 12}))
    with pytest.raises(CreationTimeoutError):
        await rig.create(deadline=anyio.current_time() - 1.0)
    assert rig.wire.sent == []
    assert rig.limiter.slots == 0


# -- get_once, errors, counters ---------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "error"),
    [
        (reply(503), ServerError),
        (reply(429, headers={"Retry-After": "2"}), RateLimitError),
        (failed(Outcome.DROPPED), TransportError),
        (reply(200, b"nope"), ProtocolError),
        (reply(200, b""), ProtocolError),
        (reply(302, headers={"Location": "/x"}), RedirectError),
    ],
)
async def test_get_once_makes_one_try(
    sleeps: list[float], step: Step, error: type[BaseException]
) -> None:
    rig = Rig(step, ok(), retry=RetryPolicy(attempts=5))
    with pytest.raises(error):
        await rig.transport.get_once("/batch/12")
    assert len(rig.wire.sent) == 1
    assert sleeps == []
    assert rig.limiter.pauses == ([2.0] if isinstance(step, Answer) and step.status == 429 else [])


@pytest.mark.parametrize(
    ("outcome", "text"),
    [
        (Outcome.TLS_FAILED, "TLS failed for GET /batch/12: "),
        (Outcome.NEVER_CONNECTED, "could not connect for GET /batch/12: "),
        (Outcome.DROPPED, "GET /batch/12 failed: "),
        (Outcome.TIMEOUT, "GET /batch/12 failed: "),
    ],
)
async def test_a_network_failure_names_the_request_and_hides_the_keys(
    outcome: Outcome, text: str
) -> None:
    rig = Rig(failed(outcome, f"ClientError: header SecretKey={SECRET} refused, {API_KEY[:9]}"))
    with pytest.raises(TransportError) as info:
        await rig.transport.get_once("/batch/12")
    message = str(info.value)
    assert message.startswith(text)
    assert SECRET not in message
    assert API_KEY[:9] not in message  # a key's start at the end of a cut text
    assert "SecretKey=***" in message
    assert info.value.__cause__ is None
    assert rig.transport.counters.network_errors == 1


@pytest.mark.parametrize(
    "body",
    [json.dumps({"message": f"bad key {SECRET}", "code": 1001}).encode(), f"no {SECRET}".encode()],
    ids=["json", "text"],
)
async def test_an_error_reply_echoing_a_key_is_redacted(body: bytes) -> None:
    rig = Rig(reply(401, body))
    with pytest.raises(AuthenticationError) as info:
        await rig.transport.get_once("/batch/12")
    assert SECRET not in str(info.value)
    assert "***" in str(info.value)
    assert SECRET not in (info.value.body or "")


async def test_the_counters(sleeps: list[float]) -> None:
    rig = Rig(reply(429), reply(500), failed(Outcome.TIMEOUT), ok(), retry=RetryPolicy(attempts=4))
    await rig.transport.get("/batch/12")
    counters = rig.transport.counters
    assert (counters.requests, counters.retries) == (4, 3)
    assert (counters.rate_limited, counters.server_errors, counters.network_errors) == (1, 1, 1)
    assert counters.ambiguous_creations == 0


async def test_the_debug_log_times_each_reply(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gameball_async")
    rig = Rig(ok())
    await rig.transport.get("/batch/12")
    assert any(r.getMessage().startswith("GET /batch/12 -> 200 in ") for r in caplog.records)


async def test_aclose_closes_the_wire_and_a_closed_wire_raises() -> None:
    rig = Rig()
    await rig.transport.aclose()
    assert rig.wire.closed

    class Closed(ScriptedWire):
        async def send(self, method: str, url: str, body: bytes | None) -> Answer | Failed:
            raise SessionClosedError("the session is closed")

    limiter = RecordingLimiter()
    transport = Transport(
        base_url=BASE,
        secrets=(),
        retry=RETRY,
        limiter=cast(RateLimiter, limiter),
        wire=Closed(limiter=limiter),
    )
    with pytest.raises(SessionClosedError):
        await transport.get("/batch/12")
    assert limiter.held == 0  # the slot is given back
