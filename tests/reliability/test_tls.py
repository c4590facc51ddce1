"""TLS against a real HTTPS FakeGameball (certificates from trustme): an untrusted
or invalid certificate fails clearly before any request is sent, a context
trusting the test CA works end to end, and verification cannot be turned off."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
import trustme

from gameball_async import (
    AmbiguousSubmissionError,
    BatchState,
    GameballSession,
    PollPolicy,
    RateLimit,
    RetryPolicy,
    TransportError,
)
from gameball_async.testing import FakeGameball

pytestmark = pytest.mark.anyio

HOST = "127.0.0.1"
NOW = datetime.now(timezone.utc)
ITEMS = [{"customerId": "c1"}, {"customerId": "c2"}]
FAST: dict[str, Any] = {
    "poll": PollPolicy(initial_delay=0.02, min_delay=0.01, max_delay=0.2),
    "retry": RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05),
    "rate_limit": RateLimit.disabled(),
}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the test CA (and verifies as usual)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@asynccontextmanager
async def https_fake(cert: trustme.LeafCert) -> AsyncIterator[FakeGameball]:
    async with FakeGameball(
        ssl_context=_server_context(cert), enforce_rate_limit=False, queue_delay=0.0
    ) as fake:
        assert fake.base_url.startswith(f"https://{HOST}:")
        yield fake


def _session(fake: FakeGameball, **options: Any) -> GameballSession:
    return GameballSession(
        fake.api_key, fake.secret_key, base_url=fake.base_url, **{**FAST, **options}
    )


def _assert_tls_failure(error: BaseException) -> None:
    assert isinstance(error, TransportError)
    # a refused certificate means nothing was sent: never "may have been created"
    assert not isinstance(error, AmbiguousSubmissionError)
    text = str(error)
    assert "TLS" in text, text
    assert "certificate" in text.lower(), text


async def _assert_refused(fake: FakeGameball, **options: Any) -> None:
    """Status, stop and creation all fail with a TLS error; the fake saw no request."""
    async with _session(fake, **options) as gb:
        with pytest.raises(TransportError) as status:
            await gb.get_status(1)
        with pytest.raises(TransportError) as stop:
            await gb.stop(1)
        with pytest.raises(TransportError) as create:
            await gb.create_batch("balance-inquiry", ITEMS)
    for info in (status, stop, create):
        _assert_tls_failure(info.value)
    assert fake.counts["requests"] == 0
    assert not fake.jobs


class TestUntrusted:
    async def test_the_system_store_does_not_trust_the_test_ca(self, ca: trustme.CA) -> None:
        async with https_fake(ca.issue_cert(HOST)) as fake:
            await _assert_refused(fake)

    async def test_a_context_trusting_another_ca(self, ca: trustme.CA) -> None:
        other = ssl.create_default_context()
        trustme.CA().configure_trust(other)
        async with https_fake(ca.issue_cert(HOST)) as fake:
            await _assert_refused(fake, ssl=other)

    async def test_a_tls_failure_is_not_retried(self, ca: trustme.CA) -> None:
        # a certificate does not get better by asking again: one handshake, one error
        handshakes = 0
        context = _server_context(ca.issue_cert(HOST))
        original = context.sni_callback

        def count(*args: Any) -> None:
            nonlocal handshakes
            handshakes += 1
            if original is not None:  # pragma: no cover - none is set
                original(*args)

        context.sni_callback = count
        async with (
            FakeGameball(ssl_context=context, enforce_rate_limit=False) as fake,
            _session(fake, retry=RetryPolicy(attempts=5, backoff=0.01)) as gb,
        ):
            with pytest.raises(TransportError):
                await gb.get_status(1)
        assert handshakes == 1


class TestTrusted:
    async def test_create_and_await_over_https(
        self, ca: trustme.CA, trusting: ssl.SSLContext
    ) -> None:
        async with https_fake(ca.issue_cert(HOST)) as fake, _session(fake, ssl=trusting) as gb:
            job = await gb.create_batch("balance-inquiry", ITEMS)
            status = await job
            assert status.state is BatchState.COMPLETED
            assert len(status.succeeded) == len(ITEMS)
            stopped = await gb.stop(job.job_id)
            assert stopped is not None
            assert stopped.state is BatchState.COMPLETED  # too late to stop
        assert fake.counts["create"] == 1
        assert fake.counts["status"] >= 1
        assert fake.counts["stop"] == 1

    async def test_the_trusted_context_is_used_with_a_borrowed_session(
        self, ca: trustme.CA, trusting: ssl.SSLContext
    ) -> None:
        async with (
            https_fake(ca.issue_cert(HOST)) as fake,
            aiohttp.ClientSession() as http,
            _session(fake, ssl=trusting, http_session=http) as gb,
        ):
            job = await gb.create_batch("balance-inquiry", ITEMS)
            assert (await gb.get_status(job.job_id)).total_count == len(ITEMS)


def _bad_certificates(ca: trustme.CA) -> Iterator[tuple[str, trustme.LeafCert]]:
    yield (
        "expired",
        ca.issue_cert(HOST, not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1)),
    )
    yield (
        "not yet valid",
        ca.issue_cert(HOST, not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=30)),
    )
    yield "other host", ca.issue_cert("api.gameball.co")
    yield "other CA", trustme.CA().issue_cert(HOST)


BAD = ["expired", "not yet valid", "other host", "other CA"]


class TestVerificationIsNeverOff:
    @pytest.mark.parametrize("which", BAD)
    async def test_a_bad_certificate_fails_even_with_the_ca_trusted(
        self, ca: trustme.CA, trusting: ssl.SSLContext, which: str
    ) -> None:
        cert = dict(_bad_certificates(ca))[which]
        async with https_fake(cert) as fake:
            await _assert_refused(fake, ssl=trusting)

    async def test_https_to_a_plain_http_server_never_falls_back(
        self, trusting: ssl.SSLContext
    ) -> None:
        async with FakeGameball(enforce_rate_limit=False) as fake:
            base_url = fake.base_url.replace("http://", "https://", 1)
            async with GameballSession(
                fake.api_key, fake.secret_key, base_url=base_url, ssl=trusting, **FAST
            ) as gb:
                with pytest.raises(TransportError) as info:
                    await gb.get_status(1)
            assert "TLS" in str(info.value)
            assert fake.counts["requests"] == 0

    @pytest.mark.parametrize(
        "value",
        [False, True, 0, "CERT_NONE", object()],
        ids=["False", "True", "0", "str", "object"],
    )
    def test_ssl_must_be_a_context(self, value: Any) -> None:
        with pytest.raises(ValueError, match="verification cannot be turned off"):
            GameballSession("key", "secret", ssl=value)

    @pytest.mark.parametrize("how", ["CERT_NONE", "no hostname check"])
    def test_a_context_that_does_not_verify_is_refused(self, how: str) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        if how == "CERT_NONE":
            context.verify_mode = ssl.CERT_NONE
        with pytest.raises(ValueError, match="verif"):
            GameballSession("key", "secret", ssl=context)

    @pytest.mark.parametrize("connector_ssl", [False, "unverified context"])
    async def test_a_borrowed_session_that_does_not_verify_is_refused(
        self, ca: trustme.CA, connector_ssl: Any
    ) -> None:
        if connector_ssl != "unverified context":
            setting: Any = connector_ssl
        else:
            setting = ssl.create_default_context()
            setting.check_hostname = False
            setting.verify_mode = ssl.CERT_NONE
        async with (
            https_fake(ca.issue_cert(HOST)) as fake,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=setting)) as http,
        ):
            with pytest.raises(ValueError, match="verif"):
                _session(fake, http_session=http)
            # plain http to a loopback host involves no certificate: nothing to refuse
            GameballSession("key", "secret", base_url="http://127.0.0.1:1/api", http_session=http)
            # with a verifying context of its own the session overrides the connector
            async with _session(fake, http_session=http, ssl=ssl.create_default_context()) as gb:
                with pytest.raises(TransportError) as info:
                    await gb.get_status(1)
            _assert_tls_failure(info.value)
            assert fake.counts["requests"] == 0
