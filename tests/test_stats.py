"""``gb.stats()`` and the operator's log lines (issue 12 point 4)."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest
from _support import PATIENCE, session

from gameball_async import (
    AmbiguousSubmissionError,
    BatchState,
    GameballSession,
    RateLimit,
    RetryPolicy,
    ServerError,
    SessionStats,
    TransportError,
)
from gameball_async._logs import setup_from_env
from gameball_async.testing import FakeGameball, InjectedReply

pytestmark = pytest.mark.anyio

ITEMS = [{"customerId": "c1"}, {"customerId": "c2"}]


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "gameball_async" and r.levelno == level
    ]


async def test_a_fresh_session_counts_nothing(gb: GameballSession) -> None:
    assert gb.stats() == SessionStats()


async def test_counters_follow_the_traffic(
    fake: FakeGameball, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gameball_async")
    # a real limiter, so its pause after the 429 is waited for and counted
    limit = RateLimit(per_second=1000, per_window=100_000)
    async with session(fake, rate_limit=limit) as gb:
        fake.inject("create", InjectedReply(status=429, headers={"Retry-After": "0.2"}))
        job = await gb.create_batch("balance-inquiry", ITEMS)
        with anyio.fail_after(PATIENCE):
            status = await job
        assert status.state is BatchState.COMPLETED
        stats = gb.stats()
    assert stats.requests == fake.counts["create"] + fake.counts["status"]
    assert stats.retries == 1
    assert stats.rate_limited == 1
    assert stats.jobs_created == 1
    assert stats.polls == fake.counts["status"] >= 1
    assert stats.jobs_awaited == 0
    assert stats.ambiguous_creations == 0
    json.dumps(stats.to_dict())  # ready for a metrics endpoint
    paused = [m for m in messages(caplog, logging.INFO) if "rate limited (429)" in m]
    assert len(paused) == 1
    assert "pause for 0.2 s" in paused[0]


async def test_time_waiting_for_the_limiter_is_summed(fake: FakeGameball) -> None:
    # one request a second: the first poll waits about a second for its slot
    limit = RateLimit(per_second=1, per_window=100, margin=0.0)
    async with session(fake, rate_limit=limit) as gb:
        job = await gb.create_batch("balance-inquiry", ITEMS)
        with anyio.fail_after(PATIENCE):
            await job
        assert gb.stats().limiter_wait_seconds >= 0.5


async def test_an_ambiguous_creation_is_counted_and_logged(
    fake: FakeGameball,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gameball_async")
    async with session(fake) as gb:
        fake.inject("create", InjectedReply(action="drop_after"))
        with pytest.raises(AmbiguousSubmissionError):
            await gb.create_batch("balance-inquiry", ITEMS)
        stats = gb.stats()
        assert stats.ambiguous_creations == 1
        assert stats.network_errors == 1
        assert stats.jobs_created == 0
    landed = [m for m in messages(caplog, logging.WARNING) if "may have landed" in m]
    assert len(landed) == 1
    assert "balance-inquiry batch of 2 items" in landed[0]
    assert fake.secret_key not in caplog.text
    assert fake.api_key not in caplog.text


async def test_giving_up_after_retries_is_a_warning(
    fake: FakeGameball, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gameball_async")
    retry = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)
    async with session(fake, retry=retry) as gb:
        job = await gb.create_batch("balance-inquiry", ITEMS)
        fake.inject("status", *[InjectedReply(status=503)] * 3)
        with pytest.raises(ServerError):
            await gb.get_status(job.job_id)
        assert gb.stats().server_errors == 3
        assert gb.stats().retries == 2
    gave_up = [m for m in messages(caplog, logging.WARNING) if "giving up" in m]
    assert len(gave_up) == 1
    assert "after 3 tries" in gave_up[0]


@pytest.fixture
def restore_level() -> Iterator[None]:
    logger = logging.getLogger("gameball_async")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.mark.usefixtures("restore_level")
@pytest.mark.parametrize(
    ("value", "level"),
    [("debug", logging.DEBUG), ("INFO", logging.INFO), (" Debug ", logging.DEBUG)],
)
def test_gameball_log_sets_the_level(value: str, level: int) -> None:
    assert setup_from_env({"GAMEBALL_LOG": value}) == level
    assert logging.getLogger("gameball_async").level == level


@pytest.mark.usefixtures("restore_level")
@pytest.mark.parametrize("environ", [{}, {"GAMEBALL_LOG": ""}, {"GAMEBALL_LOG": "loud"}])
def test_other_values_change_nothing(environ: dict[str, str]) -> None:
    before = logging.getLogger("gameball_async").level
    assert setup_from_env(environ) is None
    assert logging.getLogger("gameball_async").level == before


def test_the_switch_works_at_import() -> None:
    code = "import logging, gameball_async; print(logging.getLogger('gameball_async').level)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"GAMEBALL_LOG": "debug", "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == str(logging.DEBUG)


async def test_a_creation_against_a_down_upstream_fails_after_three_tries() -> None:
    # issue 12.6: the default is the first try and two retries, as openai-python's
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert RetryPolicy().attempts == 3
    async with GameballSession(
        "down-api-key", "down-secret-key", base_url=f"http://127.0.0.1:{port}"
    ) as gb:
        with pytest.raises(TransportError):
            await gb.create_batch("balance-inquiry", ITEMS)
        stats = gb.stats()
    assert (stats.requests, stats.retries, stats.network_errors) == (3, 2, 3)
