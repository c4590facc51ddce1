"""The keys never leak: with DEBUG logging on (the package's and aiohttp's
loggers), every error path is exercised and the secret key (and the API key)
must appear in no log record, no str/repr of an exception, no exception
argument or attribute anywhere along the ``__cause__``/``__context__`` chain,
no formatted traceback and no repr of a session, job or status.

``test_session.py::test_secret_never_in_logs_or_exceptions`` already covers
5xx on status reads, a 401 echoing the key, wrong keys, a dropped creation, a
500 on creation and an unreachable server; the paths here are the others. The
server echoes both keys back in every error body it sends, as a misconfigured
proxy might, so redaction is tested rather than assumed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trustme

from gameball_async import (
    AmbiguousSubmissionError,
    AuthenticationError,
    BatchFailedError,
    BatchJob,
    BatchStatus,
    BatchStoppedError,
    GameballError,
    GameballSession,
    InvalidBatchError,
    InvalidJobIdError,
    InvalidRequestError,
    NotFoundError,
    PollPolicy,
    PollTimeoutError,
    ProtocolError,
    RateLimit,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SessionClosedError,
    SubmissionError,
    Timeout,
    TransportError,
)
from gameball_async.testing import FakeGameball, Faults, InjectedReply

pytestmark = pytest.mark.anyio

SECRET = "sk-live-9F3b7Q1x-Secret-Value-To-Guard"
API_KEY = "ak-live-4D2e8R6y-Api-Key-Guarded-Too"
KEYS = (SECRET, API_KEY)
ITEMS = [{"customerId": "c1"}, {"customerId": "c2"}]
ATTEMPTS = 2
FAST = {
    "poll": PollPolicy(initial_delay=0.02, min_delay=0.01, max_delay=0.1),
    "retry": RetryPolicy(attempts=ATTEMPTS, backoff=0.01, max_backoff=0.02),
    "rate_limit": RateLimit.disabled(),
}


def echo(code: int) -> dict[str, Any]:
    """A Gameball error body in which the server echoes both keys in every field."""
    return {
        "code": code,
        "type": f"Echo {SECRET}",
        "message": f"APIKey={API_KEY} SecretKey={SECRET}",
        "requestId": f"req-{SECRET}",
        "documentationUrl": f"https://docs/{API_KEY}",
    }


ECHO_TEXT = f"<html>SecretKey: {SECRET}<br>APIKey: {API_KEY}</html>".encode()


# -- looking everywhere ----------------------------------------------------------------

_SCALARS = (int, float, bool, type(None))
_MAX_NODES = 5000


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, BaseException):
        yield ".args", obj.args
        yield ".__cause__", obj.__cause__
        yield ".__context__", obj.__context__
    if isinstance(obj, GameballSession):
        return  # it holds the keys by design; its repr is checked, not its insides
    if isinstance(obj, BatchJob):
        yield ".status", obj.status  # ._backend is the session
        return
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield f"[{key!r}]", value
            yield ".<key>", key
        return
    if isinstance(obj, (list, tuple, set, frozenset)) or type(obj).__name__ == "ItemResults":
        for position, value in enumerate(obj):
            yield f"[{position}]", value
        return
    if isinstance(obj, BatchStatus):
        # ``raw`` is the server's reply as received (never altered, issue 9.14):
        # data, not shown; the status's repr leaves it out, and that is checked
        for field in attrs.fields(BatchStatus):
            if field.name != "raw":
                yield f".{field.name}", getattr(obj, field.name)
        return
    if attrs.has(type(obj)):
        for field in attrs.fields(type(obj)):
            yield f".{field.name}", getattr(obj, field.name, None)
    for name, value in getattr(obj, "__dict__", {}).items():
        yield f".{name}", value
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                yield f".{name}", getattr(obj, name)


def texts_of(root: Any, where: str = "error") -> Iterator[tuple[str, str]]:
    """Every piece of text reachable from ``root``: reprs, strs, args, attributes,
    the exception chain both ways, and formatted tracebacks."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [(where, root)]
    while stack and len(seen) < _MAX_NODES:
        path, obj = stack.pop()
        if isinstance(obj, _SCALARS) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            yield path, obj
            continue
        if isinstance(obj, (bytes, bytearray)):
            yield path, bytes(obj).decode("utf-8", "replace")
            continue
        if callable(obj) and not isinstance(obj, BaseException) and not attrs.has(type(obj)):
            continue
        yield path, repr(obj)
        if isinstance(obj, BaseException):
            yield f"{path}:str", str(obj)
            yield f"{path}:traceback", "".join(traceback.format_exception(obj))
        stack.extend((path + step, child) for step, child in _children(obj))


def assert_clean(*roots: Any) -> None:
    for root in roots:
        for path, text in texts_of(root):
            for key in KEYS:
                assert key not in text, f"{path} leaks a key: {text[:300]!r}"


def assert_logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        texts = [record.getMessage(), repr(record.args), repr(vars(record))]
        if record.exc_info and record.exc_info[1] is not None:
            texts.append("".join(traceback.format_exception(record.exc_info[1])))
        for text in texts:
            for key in KEYS:
                assert key not in text, f"log record {record.name} leaks a key: {text[:300]!r}"
    for key in KEYS:
        assert key not in caplog.text


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in (
        "gameball_async",
        "aiohttp",
        "aiohttp.client",
        "aiohttp.internal",
        "aiohttp.server",
        "asyncio",
    ):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
async def fake() -> AsyncIterator[FakeGameball]:
    async with FakeGameball(
        api_key=API_KEY, secret_key=SECRET, enforce_rate_limit=False, queue_delay=0.0
    ) as server:
        yield server


def _session(base_url: str, **options: Any) -> GameballSession:
    return GameballSession(API_KEY, SECRET, base_url=base_url, **{**FAST, **options})


@asynccontextmanager
async def raw_server(reply: bytes) -> AsyncIterator[str]:
    """A TCP server answering every request with ``reply`` (not valid HTTP)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/api"


# -- the paths -------------------------------------------------------------------------

Path = Callable[[FakeGameball], Awaitable[tuple[type[BaseException], list[Any]]]]
PATHS: dict[str, Path] = {}


def path(name: str) -> Callable[[Path], Path]:
    def register(function: Path) -> Path:
        PATHS[name] = function
        return function

    return register


async def _raise(call: Callable[[], Awaitable[Any]]) -> BaseException:
    try:
        await call()
    except Exception as exc:  # the caller checks the type
        return exc
    raise AssertionError("the call did not fail")


async def _job(gb: GameballSession) -> BatchJob:
    return await gb.create_batch("balance-inquiry", ITEMS)


@path("403 on status")
async def _403(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        job = await _job(gb)
        fake.inject("status", InjectedReply(status=403, body=echo(1002)))
        return AuthenticationError, [await _raise(job.refresh), job, gb]


@path("404 on stop, JSON and not")
async def _404(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        fake.inject("stop", InjectedReply(status=404, body=echo(4004)))
        first = await _raise(lambda: gb.stop(424242))
        fake.inject("stop", InjectedReply(status=404, body=ECHO_TEXT))
        return NotFoundError, [first, await _raise(lambda: gb.stop(424243))]


@path("404 while waiting")
async def _404_wait(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        fake.inject("status", InjectedReply(status=404, body=echo(4004)))
        job = gb.job(777)
        return NotFoundError, [await _raise(job.wait), job]


@path("422 on creation")
async def _422(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        fake.inject("create", InjectedReply(status=422, body=echo(3003)))
        return InvalidRequestError, [await _raise(lambda: _job(gb))]


@path("429 exhausted")
async def _429(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        job = await _job(gb)
        reply = InjectedReply(status=429, body=echo(2002), headers={"Retry-After": "0"})
        fake.inject("status", *[reply] * ATTEMPTS)
        return RateLimitError, [await _raise(lambda: gb.get_status(job.job_id))]


@path("503 exhausted on creation")
async def _503(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        fake.inject(
            "create",
            InjectedReply(status=503, body=echo(5003)),
            InjectedReply(status=503, body=ECHO_TEXT),
        )
        error = await _raise(lambda: _job(gb))
        assert not isinstance(error, AmbiguousSubmissionError)  # a 503 provably did not land
        return ServerError, [error]


@path("dropped connection on GET, exhausted")
async def _drop_get(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        # aiohttp itself resends a request once on a reused connection that drops
        fake.inject("status", *[InjectedReply(action="drop")] * (2 * ATTEMPTS))
        return TransportError, [await _raise(lambda: gb.get_status(1))]


@path("dropped connection on POST (ambiguous)")
async def _drop_post(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        fake.inject("create", InjectedReply(action="drop"))
        return AmbiguousSubmissionError, [await _raise(lambda: _job(gb))]


@path("malformed JSON on GET, exhausted")
async def _malformed_get(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        body = f'{{"status": "Running", "echo": "{SECRET}'.encode()
        fake.inject("status", *[InjectedReply(status=200, body=body)] * ATTEMPTS)
        return ProtocolError, [await _raise(lambda: gb.get_status(1))]


@path("a status reply that is not a status")
async def _not_a_status(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        # a status word that is no string is UNKNOWN, not an error (issue 9 point 15):
        # the status it gives must not show a key either
        fake.inject(
            "status",
            InjectedReply(
                status=200, body={"status": [SECRET, API_KEY], "totalCount": f"{SECRET}"}
            ),
        )
        unknown = await gb.get_status(1)
        fake.inject("status", InjectedReply(status=200, body={"code": SECRET, "message": API_KEY}))
        first = await _raise(lambda: gb.get_status(1))
        fake.inject("status", InjectedReply(status=200, body={"jobId": SECRET, "status": "Done"}))
        return ProtocolError, [unknown, first, await _raise(lambda: gb.get_status(1))]


@path("a creation reply without a job id (ambiguous)")
async def _no_job_id(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        fake.inject("create", InjectedReply(status=200, body={"echo": SECRET, "key": API_KEY}))
        first = await _raise(lambda: _job(gb))
        fake.faults = Faults(malformed_json=1.0, routes={"create"})
        return AmbiguousSubmissionError, [first, await _raise(lambda: _job(gb))]


@path("not HTTP at all")
async def _garbage(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    errors = []
    async with raw_server(b"HTTP/1.1 abc nonsense\r\n\r\n") as base_url, _session(base_url) as gb:
        errors.append(await _raise(lambda: gb.get_status(1)))
        errors.append(await _raise(lambda: _job(gb)))
    assert isinstance(errors[0], TransportError)
    assert isinstance(errors[1], AmbiguousSubmissionError)
    return GameballError, errors


@path("connection refused")
async def _refused(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with raw_server(b"") as base_url:
        pass  # closed: nobody listens on that port any more
    async with _session(base_url) as gb:
        return TransportError, [await _raise(lambda: gb.stop(1))]


@path("TLS failure")
async def _tls(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    async with FakeGameball(api_key=API_KEY, secret_key=SECRET, ssl_context=context) as https:
        async with _session(https.base_url) as gb:
            errors = [await _raise(lambda: gb.get_status(1)), await _raise(lambda: _job(gb))]
        assert https.counts["requests"] == 0
    return TransportError, errors


@path("timeouts")
async def _timeout(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url, timeout=Timeout(total=0.2)) as gb:
        fake.inject("status", *[InjectedReply(action="slow", delay=0.5)] * ATTEMPTS)
        fake.inject("create", InjectedReply(action="slow", delay=0.5))
        errors = [await _raise(lambda: gb.get_status(1)), await _raise(lambda: _job(gb))]
    assert isinstance(errors[0], TransportError)
    assert isinstance(errors[1], AmbiguousSubmissionError)
    return GameballError, errors


@path("invalid batch")
async def _invalid_batch(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:
        return InvalidBatchError, [
            await _raise(lambda: gb.create_batch("cashback", [{"customerId": "c"}])),
            await _raise(lambda: gb.create_batch("balance-inquiry", [])),
        ]


@path("invalid job id")
async def _invalid_job_id(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    async with _session(fake.base_url) as gb:

        async def resume() -> BatchJob:
            return gb.resume('{"v": 1, "job_id": "a/b"}')

        return InvalidJobIdError, [
            await _raise(lambda: gb.get_status("../1")),
            await _raise(resume),
        ]


@path("closed session")
async def _closed(fake: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    gb = _session(fake.base_url)
    async with gb:
        job = await _job(gb)
    return SessionClosedError, [await _raise(job.wait), await _raise(lambda: _job(gb)), gb, job]


@path("poll timeout, failed and stopped jobs, submit_many")
async def _jobs(_: FakeGameball) -> tuple[type[BaseException], list[Any]]:
    # jobs that stay queued until the test ends them
    async with (
        FakeGameball(
            api_key=API_KEY, secret_key=SECRET, enforce_rate_limit=False, queue_delay=1000.0
        ) as fake,
        _session(fake.base_url) as gb,
    ):
        slow = gb.job((await _job(gb)).job_id)
        fake.fail_job(int(slow.job_id))
        failed = await _raise(slow.wait)
        assert isinstance(failed, BatchFailedError)
        stopped_job = await _job(gb)
        fake.stop_job(int(stopped_job.job_id))
        stopped = await _raise(stopped_job.wait)
        assert isinstance(stopped, BatchStoppedError)
        fake.inject(
            "status", InjectedReply(status=503, body=echo(5003), headers={"Retry-After": "30"})
        )
        timed_out = await _raise(lambda: gb.job(stopped_job.job_id).wait(timeout=0.3))
        assert isinstance(timed_out, PollTimeoutError)
        fake.inject(
            "create", InjectedReply(status=422, body=echo(3003)), InjectedReply(action="drop_after")
        )
        many = await _raise(
            lambda: gb.submit_many("balance-inquiry", ITEMS * 3, chunk_size=2, max_concurrency=1)
        )
        assert isinstance(many, SubmissionError)
        return GameballError, [
            failed,
            stopped,
            timed_out,
            many,
            slow,
            stopped_job,
            slow.status,
            repr(slow.status),
        ]


@pytest.mark.parametrize("name", list(PATHS))
async def test_no_key_leaks_on_this_path(
    name: str, fake: FakeGameball, debug_logs: pytest.LogCaptureFixture
) -> None:
    expected, things = await PATHS[name](fake)
    errors = [thing for thing in things if isinstance(thing, BaseException)]
    assert errors
    for error in errors:
        assert isinstance(error, expected), repr(error)
    assert_clean(*things)
    assert_logs_clean(debug_logs)


async def test_echoed_keys_are_redacted_not_dropped(fake: FakeGameball) -> None:
    async with _session(fake.base_url) as gb:
        fake.inject("stop", InjectedReply(status=404, body=echo(4004)))
        with pytest.raises(NotFoundError) as info:
            await gb.stop(1)
    error = info.value
    assert "***" in error.message
    assert error.code == 4004
    assert error.request_id == "req-***"


@pytest.mark.parametrize("padding", [480, 495, 499, 90, 95])
async def test_a_key_cut_by_truncation_does_not_leak_a_prefix(
    fake: FakeGameball, padding: int
) -> None:
    # Messages are cut at 500 characters, type and request id at 100: a key
    # that straddles the cut must not leave its first characters behind.
    async with _session(fake.base_url) as gb:
        fake.inject(
            "stop",
            InjectedReply(
                status=404,
                body={
                    "code": 4004,
                    "message": "m" * padding + SECRET,
                    "type": "t" * padding + SECRET,
                    "requestId": "r" * padding + SECRET,
                },
            ),
            InjectedReply(status=404, body=b"x" * padding + SECRET.encode()),
        )
        errors = [await _raise(lambda: gb.stop(1)), await _raise(lambda: gb.stop(2))]
    prefix = SECRET[:12]
    for error in errors:
        for where, text in texts_of(error):
            assert prefix not in text, f"{where}: {text[-80:]!r}"


@pytest.mark.parametrize("which", ["api_key", "secret_key"])
@pytest.mark.parametrize("bad", ["\r\nX-Injected: 1", "\n", "\r", "\x00", "\x7f"])
def test_keys_with_line_breaks_are_refused_without_echoing_them(which: str, bad: str) -> None:
    keys = {"api_key": API_KEY, "secret_key": SECRET}
    keys[which] = keys[which] + bad + "tail"
    with pytest.raises(ValueError, match=which) as info:
        GameballSession(keys["api_key"], keys["secret_key"])
    for where, text in texts_of(info.value):
        for key in KEYS:
            assert key not in text, f"{where}: {text[:200]!r}"
