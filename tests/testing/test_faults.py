"""Fault injection of FakeGameball: scripted replies (inject) and seeded random faults."""

from __future__ import annotations

import email.utils
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from _support import WHEN, ManualClock

from gameball_async.testing import FakeGameball, Faults, InjectedReply

from ._helpers import auth

pytestmark = pytest.mark.anyio

DISCONNECTED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def body_of(*numbers: int) -> bytes:
    items = [
        {"customerId": "c1", "transactionId": f"t{n}", "transactionTime": WHEN, "amount": 1}
        for n in numbers
    ]
    return json.dumps({"body": items}).encode()


async def create_raw(
    http: aiohttp.ClientSession, fake: FakeGameball, body: bytes
) -> tuple[int, dict[str, str], bytes]:
    url = fake.base_url + "/batch/cashback"
    async with http.post(url, data=body, headers=auth(fake)) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def status_raw(
    http: aiohttp.ClientSession, fake: FakeGameball, job_id: int
) -> tuple[int, dict[str, str], bytes]:
    async with http.get(f"{fake.base_url}/batch/{job_id}", headers=auth(fake)) as resp:
        return resp.status, dict(resp.headers), await resp.read()


@pytest.fixture
async def fake() -> AsyncIterator[FakeGameball]:
    async with FakeGameball(clock=ManualClock(), queue_delay=10.0) as server:
        yield server


async def make_job(http: aiohttp.ClientSession, fake: FakeGameball, n: int = 0) -> int:
    status, _, raw = await create_raw(http, fake, body_of(n))
    assert status == 200
    job_id: int = json.loads(raw)["jobId"]
    return job_id


class TestRandomFaults:
    @pytest.mark.parametrize(
        ("kind", "status", "code", "retry_after"),
        [("http_429", 429, 2002, "1"), ("http_500", 500, 5000, None), ("http_503", 503, 5003, "1")],
    )
    async def test_error_replies_do_not_process(
        self,
        kind: str,
        status: int,
        code: int,
        retry_after: str | None,
        fake: FakeGameball,
        http: aiohttp.ClientSession,
    ) -> None:
        knobs: dict[str, Any] = {kind: 1.0}
        fake.faults = Faults(**knobs)
        got, headers, raw = await create_raw(http, fake, body_of(1))
        assert got == status
        assert headers.get("Retry-After") == retry_after
        assert json.loads(raw)["code"] == code
        assert fake.jobs == {}
        assert fake.counts[f"fault:{status}"] == 1
        assert fake.requests[-1].fault == str(status)
        assert fake.requests[-1].reply_status == status

    async def test_retry_after_variants(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        fake.faults = Faults(http_503=1.0, retry_after=None)
        assert "Retry-After" not in (await create_raw(http, fake, body_of(1)))[1]
        fake.faults = Faults(http_429=1.0, retry_after=2.5)
        assert (await create_raw(http, fake, body_of(1)))[1]["Retry-After"] == "2.5"
        fake.faults = Faults(http_429=1.0, retry_after=30, retry_after_http_date=True)
        header = (await create_raw(http, fake, body_of(1)))[1]["Retry-After"]
        assert email.utils.parsedate_to_datetime(header).tzinfo is not None

    async def test_drop_on_create_creates_the_job(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        fake.faults = Faults(drop=1.0)
        body = body_of(1)
        with pytest.raises(DISCONNECTED):
            await create_raw(http, fake, body)
        assert len(fake.jobs) == 1
        assert list(fake.created_bodies.values()) == [1]
        assert fake.counts["fault:drop"] == 1
        assert fake.requests[-1].reply_status == 0
        assert fake.requests[-1].fault == "drop"

    async def test_drop_on_status(self, fake: FakeGameball, http: aiohttp.ClientSession) -> None:
        job_id = await make_job(http, fake)
        fake.faults = Faults(drop=1.0, routes={"status"})
        with pytest.raises(DISCONNECTED):
            await status_raw(http, fake, job_id)
        # aiohttp's client resends an idempotent request once after a disconnection
        assert fake.counts["fault:drop"] == fake.counts["status"] == 2
        fake.faults = Faults()
        assert (await status_raw(http, fake, job_id))[0] == 200

    async def test_slow(self, fake: FakeGameball, http: aiohttp.ClientSession) -> None:
        fake.faults = Faults(slow=1.0, slow_seconds=0.01, latency=(0.0, 0.01))
        assert (await create_raw(http, fake, body_of(1)))[0] == 200
        assert fake.counts["fault:slow"] == 1
        assert len(fake.jobs) == 1

    async def test_malformed_json_on_create(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        fake.faults = Faults(malformed_json=1.0)
        status, headers, raw = await create_raw(http, fake, body_of(1))
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        with pytest.raises(ValueError):  # noqa: PT011 - json.JSONDecodeError
            json.loads(raw)
        assert len(fake.jobs) == 1
        assert fake.counts["fault:malformed"] == 1

    async def test_unknown_status_only_on_non_terminal_jobs(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        job_id = await make_job(http, fake)
        fake.faults = Faults(unknown_status=1.0)
        _, _, raw = await status_raw(http, fake, job_id)
        assert json.loads(raw)["status"] == "Reticulating"
        assert fake.counts["fault:unknown_status"] == 1
        fake.stop_job(job_id)
        _, _, raw = await status_raw(http, fake, job_id)
        assert json.loads(raw)["status"] == "Stopped"
        assert fake.counts["fault:unknown_status"] == 1

    async def test_routes_limit_faults(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        fake.faults = Faults(http_500=1.0, routes=frozenset({"status"}))
        job_id = await make_job(http, fake)
        assert (await status_raw(http, fake, job_id))[0] == 500

    async def test_seeded_and_reproducible(self, http: aiohttp.ClientSession) -> None:
        faults = Faults(http_500=0.3, http_503=0.3)

        async def run(seed: int) -> list[int]:
            async with FakeGameball(faults=faults, seed=seed, enforce_rate_limit=False) as fake:
                return [(await create_raw(http, fake, body_of(n)))[0] for n in range(30)]

        first, second, other = await run(7), await run(7), await run(8)
        assert first == second
        assert first != other
        assert {200, 500, 503} <= set(first)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"http_429": 1.5},
            {"drop": -0.1},
            {"latency": (2.0, 1.0)},
            {"routes": {"create", "x"}},
            {"slow_seconds": -1.0},
        ],
    )
    def test_validation(self, kwargs: dict[str, Any]) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - each knob has its own message
            Faults(**kwargs)


class TestInjectedReplies:
    async def test_reply_replaces_handling(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        fake.inject(
            "create",
            InjectedReply(status=503, headers={"Retry-After": "3"}),
            InjectedReply(status=200, body={"jobId": 42}),
            InjectedReply(
                status=502, body=b"<html>bad gateway</html>", headers={"Content-Type": "text/html"}
            ),
        )
        status, headers, raw = await create_raw(http, fake, body_of(1))
        assert (status, headers["Retry-After"], json.loads(raw)["code"]) == (503, "3", 5003)
        assert (await create_raw(http, fake, body_of(1)))[2] == b'{"jobId": 42}'
        status, headers, raw = await create_raw(http, fake, body_of(1))
        assert (status, headers["Content-Type"], raw) == (
            502,
            "text/html",
            b"<html>bad gateway</html>",
        )
        assert fake.jobs == {}
        assert fake.counts["injected"] == 3
        assert fake.pending_injections == 0
        assert [r.fault for r in fake.requests] == ["injected:reply"] * 3
        assert (await create_raw(http, fake, body_of(1)))[0] == 200

    async def test_drop_does_not_process(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        fake.inject("create", InjectedReply(action="drop"))
        with pytest.raises(DISCONNECTED):
            await create_raw(http, fake, body_of(1))
        assert fake.jobs == {}
        assert fake.requests[-1].reply_status == 0

    async def test_drop_after_processes(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        fake.inject("create", InjectedReply(action="drop_after"))
        with pytest.raises(DISCONNECTED):
            await create_raw(http, fake, body_of(1))
        assert len(fake.jobs) == 1
        assert sum(fake.created_bodies.values()) == 1

    async def test_single_status_drop_is_hidden_by_client_resend(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        job_id = await make_job(http, fake)
        fake.inject("status", InjectedReply(action="drop"))
        assert (await status_raw(http, fake, job_id))[0] == 200
        assert [r.reply_status for r in fake.requests[-2:]] == [0, 200]

    async def test_slow_then_normal_and_any_route_fifo(
        self, fake: FakeGameball, http: aiohttp.ClientSession
    ) -> None:
        fake.inject("any", InjectedReply(action="slow", delay=0.01))
        fake.inject("status", InjectedReply(status=500))
        fake.inject("any", InjectedReply(status=418))
        job_id = await make_job(http, fake)  # consumes the slow "any"
        assert len(fake.jobs) == 1
        assert (await status_raw(http, fake, job_id))[0] == 500
        assert (await status_raw(http, fake, job_id))[0] == 418
        assert (await status_raw(http, fake, job_id))[0] == 200

    async def test_injection_comes_before_rate_limit_and_faults(
        self, http: aiohttp.ClientSession
    ) -> None:
        async with FakeGameball(
            clock=ManualClock(), rate_per_second=1, faults=Faults(http_500=1.0)
        ) as fake:
            fake.inject("create", InjectedReply(status=202, body={"ok": True}))
            assert (await create_raw(http, fake, body_of(1)))[0] == 202
            fake.inject("create", InjectedReply(action="slow"))
            assert (await create_raw(http, fake, body_of(1)))[0] == 200  # no random fault
            assert (await create_raw(http, fake, body_of(2)))[0] == 429
            assert fake.counts["rate_limited"] == 1

    def test_inject_checks_arguments(self) -> None:
        fake = FakeGameball()
        with pytest.raises(ValueError, match="unknown route"):
            fake.inject("everything", InjectedReply())  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            fake.inject("create", {"status": 500})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="action"):
            InjectedReply(action="explode")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_close_cuts_in_flight_delays_short(http: aiohttp.ClientSession) -> None:
    fake = FakeGameball(faults=Faults(slow=1.0, slow_seconds=60.0))
    await fake.start()
    outcome: list[BaseException] = []

    async def call() -> None:
        try:
            await status_raw(http, fake, 1)
        except aiohttp.ClientError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        with anyio.fail_after(5):
            # server-side state has no event to wait on: poll it, bounded by fail_after
            while fake.counts["fault:slow"] == 0:  # noqa: ASYNC110
                await anyio.sleep(0.005)
            await fake.close()
    assert len(outcome) == 1
    assert fake.requests[0].reply_status == 0
