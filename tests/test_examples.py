"""examples/aiohttp_service.py against FakeGameball, through aiohttp's test utilities."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gameball_async import GameballSession, PollPolicy
from gameball_async.testing import FakeGameball

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "aiohttp_service.py"
WHEN = "2024-10-16T08:13:29.290Z"
FAST = PollPolicy(initial_delay=0.02, min_delay=0.02, max_delay=0.2)


def load_service() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aiohttp_service", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


service = load_service()


def sessions(fake: FakeGameball, made: list[GameballSession]) -> Callable[[], GameballSession]:
    def factory() -> GameballSession:
        gb = GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url, poll=FAST)
        made.append(gb)
        return gb

    return factory


@pytest.fixture
async def fake() -> AsyncIterator[FakeGameball]:
    async with FakeGameball(processing_rate=20_000, queue_delay=0.01,
                            enforce_rate_limit=False) as server:
        yield server


def cashback(n: int) -> dict[str, Any]:
    return {"customerId": f"c{n % 5}", "transactionId": f"t{n}", "transactionTime": WHEN,
            "amount": 3}


async def test_upload_answers_202_and_jobs_end(fake: FakeGameball) -> None:
    made: list[GameballSession] = []
    app = service.make_app(sessions(fake, made))
    async with TestClient(TestServer(app)) as client:
        items = [cashback(n) for n in range(2500)]
        items[2100]["transactionId"] = "t7"  # a duplicate: fails per item with 9004
        reply = await client.post("/batches/cashback", json=items)
        assert reply.status == 202
        body = await reply.json()
        assert body["items"] == 2500
        assert len(body["jobs"]) == 3
        assert fake.counts["jobs_created"] == 3

        await app[service.JOBS].join()  # the background waits are done
        states = []
        for job_id in body["jobs"]:
            reply = await client.get(f"/jobs/{job_id}")
            assert reply.status == 200
            states.append(await reply.json())
        assert [s["done"] for s in states] == [True, True, True]
        assert [s["state"] for s in states] == ["Completed"] * 3
        assert [s["total"] for s in states] == [1000, 1000, 500]
        assert states[2]["failures"] == [
            {"index": 100, "code": 9004, "message": "Duplicate transaction id: 't7'"}
        ]

        reply = await client.get(f"/jobs/{body['jobs'][0]}?refresh=1")
        assert (await reply.json())["done"] is True
        assert made[0].closed is False
    assert made[0].closed  # closed with the app


async def test_bad_requests(fake: FakeGameball) -> None:
    app = service.make_app(sessions(fake, []))
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/batches/teleport", json=[{}])).status == 404
        assert (await client.post("/batches/cashback", data=b"{nope")).status == 400
        assert (await client.post("/batches/cashback", json={"a": 1})).status == 400
        assert (await client.post("/batches/cashback", json=[])).status == 400
        bad = [cashback(0), {**cashback(1), "amount": "x"}]
        reply = await client.post("/batches/cashback", json=bad)
        assert reply.status == 422
        body = await reply.json()
        assert body["jobs"] == []
        assert body["failed"][0]["field"] == "amount"
        assert body["failed"][0]["index"] == 1
        assert (await client.get("/jobs/12345")).status == 404
    assert fake.counts["create"] == 0


async def test_shutdown_cancels_background_waits() -> None:
    made: list[GameballSession] = []
    async with FakeGameball(processing_rate=1, queue_delay=0.01,
                            enforce_rate_limit=False) as slow:
        app = service.make_app(sessions(slow, made))
        async with TestClient(TestServer(app)) as client:
            reply = await client.post("/batches/balance-inquiry",
                                      json=[{"customerId": f"c{n}"} for n in range(100)])
            assert reply.status == 202
            job_id = (await reply.json())["jobs"][0]
            table = app[service.JOBS]
            assert table.waiting == 1
            reply = await client.get(f"/jobs/{job_id}")
            assert (await reply.json())["done"] is False
        # on shutdown: the wait was cancelled, the session closed, the remote job left running
        assert table.waiting == 0
        assert made[-1].closed
        assert slow.job_state(int(job_id)) in ("Queued", "Running")


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAMEBALL_API_KEY", "ak")
    monkeypatch.setenv("GAMEBALL_SECRET_KEY", "sk-hidden")
    settings = service.Settings.from_env()
    assert "sk-hidden" not in repr(settings)
    assert isinstance(service.make_app(settings), service.web.Application)
