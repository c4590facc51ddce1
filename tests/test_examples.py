"""The examples against FakeGameball: the aiohttp service through aiohttp's test
utilities, the FastAPI service through its ASGI app with httpx."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
from _support import WHEN, FakeFactory, make_session, until
from aiohttp.test_utils import TestClient, TestServer

from gameball_async import GameballSession, PollPolicy
from gameball_async.testing import FakeGameball, InjectedReply

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FAST = PollPolicy(initial_delay=0.02, min_delay=0.02, max_delay=0.2)


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


service = load_example("aiohttp_service")
fastapi_service = load_example("fastapi_service")


def sessions(fake: FakeGameball, made: list[GameballSession]) -> Callable[[], GameballSession]:
    def factory() -> GameballSession:
        gb = GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url, poll=FAST)
        made.append(gb)
        return gb

    return factory


@pytest.fixture
async def fake(fake_factory: FakeFactory) -> FakeGameball:
    return await fake_factory(processing_rate=20_000, queue_delay=0.01)


def cashback(n: int) -> dict[str, Any]:
    return {
        "customerId": f"c{n % 5}",
        "transactionId": f"t{n}",
        "transactionTime": WHEN,
        "amount": 3,
    }


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
    async with FakeGameball(processing_rate=1, queue_delay=0.01, enforce_rate_limit=False) as slow:
        app = service.make_app(sessions(slow, made))
        async with TestClient(TestServer(app)) as client:
            reply = await client.post(
                "/batches/balance-inquiry", json=[{"customerId": f"c{n}"} for n in range(100)]
            )
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


# -- examples/fastapi_service.py -------------------------------------------------


def fastapi_sessions(
    fake: FakeGameball, made: list[GameballSession] | None = None
) -> Callable[[], GameballSession]:
    def factory() -> GameballSession:
        gb = make_session(fake, poll=FAST)
        if made is not None:
            made.append(gb)
        return gb

    return factory


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan around an httpx client talking ASGI to it (no socket)."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://service") as client,
    ):
        yield client


def inquiries(count: int) -> list[dict[str, Any]]:
    return [{"customerId": f"c{n % 3}"} for n in range(count)]


def ended(jobs: Any, ids: list[str]) -> Callable[[], bool]:
    """The cached status of every job is terminal and the store let go of them."""

    def check() -> bool:
        cached = [jobs.jobs[i].status for i in ids]
        return all(s is not None and s["state"] in ("Completed", "Failed") for s in cached) and (
            not any(i in jobs.store.records() for i in ids)
        )

    return check


@pytest.fixture
def customers_fake() -> Any:
    # customers c0 and c1 exist; every item naming c2 fails with 7000
    with FakeGameball(
        processing_rate=20_000, queue_delay=0.01, enforce_rate_limit=False, customers=["c0", "c1"]
    ) as server:
        yield server


class TestFastAPIService:
    async def test_upload_202_then_get_shows_results(
        self, customers_fake: FakeGameball, tmp_path: Path
    ) -> None:
        fake = customers_fake
        made: list[GameballSession] = []
        jobs_file = tmp_path / "jobs.json"
        app = fastapi_service.create_app(
            session_factory=fastapi_sessions(fake, made), jobs_file=jobs_file
        )
        async with running(app) as client:
            reply = await client.post("/batches/balance-inquiry", json=inquiries(2500))
            assert reply.status_code == 202
            body = reply.json()
            assert body["items"] == 2500
            ids = [job["job_id"] for job in body["jobs"]]
            assert [job["input_range"] for job in body["jobs"]] == [
                {"start": 0, "stop": 1000},
                {"start": 1000, "stop": 2000},
                {"start": 2000, "stop": 2500},
            ]
            assert [job["status_url"] for job in body["jobs"]] == [f"/jobs/{i}" for i in ids]
            assert fake.counts["jobs_created"] == 3
            # stored the moment they existed, before the 202
            assert set(json.loads(jobs_file.read_text())) <= set(ids)

            jobs = app.state.jobs
            await until(ended(jobs, ids))
            for job in body["jobs"]:
                reply = await client.get(job["status_url"])
                assert reply.status_code == 200
                shown = reply.json()
                assert shown["done"] is True
                assert shown["input_range"] == job["input_range"]
                status = shown["status"]
                assert status["state"] == "Completed"
                start, stop = job["input_range"]["start"], job["input_range"]["stop"]
                positions = [start + item["index"] for item in status["failed"]]
                # exactly the items naming c2, each failed with 7000
                assert positions == [n for n in range(start, stop) if n % 3 == 2]
                assert {item["code"] for item in status["failed"]} == {7000}
                assert status["error_count"] == len(positions)
                assert status["finished_count"] == stop - start - len(positions)
                assert len(status["succeeded"]) == status["finished_count"]
                # each inquiry's answer, as Gameball sent it
                answer = status["succeeded"][0]["raw"]["result"]
                assert answer["customerId"] in ("c0", "c1")
                assert "balance" in answer
                assert "raw" not in status  # not the whole reply again
            assert json.loads(jobs_file.read_text()) == {}  # finished jobs leave the store
            assert (await client.get("/jobs/999999")).status_code == 404
        assert made[0].closed

    async def test_bad_input_422_names_index_and_field(self, tmp_path: Path) -> None:
        with FakeGameball(enforce_rate_limit=False) as fake:
            app = fastapi_service.create_app(
                session_factory=fastapi_sessions(fake), jobs_file=tmp_path / "jobs.json"
            )
            async with running(app) as client:
                assert (await client.post("/batches/teleport", json=[{}])).status_code == 422
                assert (await client.post("/batches/cashback", json={"a": 1})).status_code == 422
                reply = await client.post(
                    "/batches/cashback",
                    content=b"{nope",
                    headers={"content-type": "application/json"},
                )
                assert reply.status_code == 422
                assert (await client.post("/batches/cashback", json=[])).status_code == 422
                bad = [cashback(0), {**cashback(1), "amount": "x"}]
                reply = await client.post("/batches/cashback", json=bad)
                assert reply.status_code == 422
                body = reply.json()
                assert body["jobs"] == []
                assert [entry["loc"] for entry in body["detail"]] == [["body", 1, "amount"]]
                assert fake.counts["create"] == 0

                # a bad item in the second chunk: the first chunk's job is not lost
                items = inquiries(1500)
                items[1200] = {"customerId": 5}
                reply = await client.post("/batches/balance-inquiry", json=items)
                assert reply.status_code == 422
                body = reply.json()
                assert [entry["loc"] for entry in body["detail"]] == [["body", 1200, "customerId"]]
                [job] = body["jobs"]
                assert job["input_range"] == {"start": 0, "stop": 1000}
                assert job["job_id"] in app.state.jobs.jobs
                await until(ended(app.state.jobs, [job["job_id"]]))
                assert (await client.get(job["status_url"])).json()["done"] is True

    async def test_upstream_failure_502_lists_created_and_failed(self, tmp_path: Path) -> None:
        with FakeGameball(enforce_rate_limit=False, queue_delay=0.01) as fake:
            fake.inject("create", InjectedReply(status=400))  # final: not retried
            jobs_file = tmp_path / "jobs.json"
            app = fastapi_service.create_app(
                session_factory=fastapi_sessions(fake), jobs_file=jobs_file
            )
            async with running(app) as client:
                reply = await client.post("/batches/balance-inquiry", json=inquiries(1500))
                assert reply.status_code == 502
                body = reply.json()
                [job] = body["jobs"]
                [failed] = body["failed"]
                assert failed["type"] == "InvalidRequestError"
                assert failed["may_exist"] is False
                # whichever chunk reached the server first failed; together they are the upload
                spans = sorted(
                    [job["input_range"], failed["input_range"]], key=lambda span: span["start"]
                )
                assert spans == [{"start": 0, "stop": 1000}, {"start": 1000, "stop": 1500}]
                assert fake.counts["jobs_created"] == 1
                await until(ended(app.state.jobs, [job["job_id"]]))
                shown = (await client.get(job["status_url"])).json()
                assert shown["status"]["state"] == "Completed"
                assert shown["input_range"] == job["input_range"]

    async def test_cancelled_request_loses_no_job(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        now = [0.0]  # the fake's clock: the job stays Queued until it moves
        with FakeGameball(clock=lambda: now[0], queue_delay=1.0, enforce_rate_limit=False) as fake:
            # the creation takes a while: the client gives up while it is in flight
            fake.inject("create", InjectedReply(action="slow", delay=1.0))
            jobs_file = tmp_path / "jobs.json"
            app = fastapi_service.create_app(
                session_factory=fastapi_sessions(fake), jobs_file=jobs_file
            )
            async with running(app) as client:
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:
                        post = functools.partial(client.post, json=inquiries(10))
                        tg.start_soon(post, "/batches/balance-inquiry")
                        await until(lambda: fake.counts["create"] == 1)
                        scope.cancel()
                jobs = app.state.jobs
                await until(lambda: len(jobs.jobs) == 1)
                [job_id] = jobs.jobs
                assert list(json.loads(jobs_file.read_text())) == [job_id]  # stored
                # the request did end early (logged just after on_job has the job)
                await until(lambda: "whose caller was cancelled" in caplog.text)
                now[0] = 100.0
                await until(ended(jobs, [job_id]))
                shown = (await client.get(f"/jobs/{job_id}")).json()
                assert shown["status"]["total_count"] == 10
                assert shown["input_range"] == {"start": 0, "stop": 10}

    async def test_restart_reattaches_and_shutdown_leaves_jobs_running(
        self, tmp_path: Path
    ) -> None:
        now = [0.0]  # the fake's clock: jobs stay Queued until it moves
        jobs_file = tmp_path / "jobs.json"
        with FakeGameball(
            clock=lambda: now[0], processing_rate=100, queue_delay=1.0, enforce_rate_limit=False
        ) as fake:
            made: list[GameballSession] = []
            before = asyncio.all_tasks()
            first = fastapi_service.create_app(
                session_factory=fastapi_sessions(fake, made), jobs_file=jobs_file
            )
            async with running(first) as client:
                reply = await client.post("/batches/balance-inquiry", json=inquiries(1500))
                assert reply.status_code == 202
                accepted = reply.json()["jobs"]
                ids = [job["job_id"] for job in accepted]
                jobs = first.state.jobs
                # shown at once (Submitted), then as the first poll saw it
                assert all(jobs.jobs[i].status is not None for i in ids)
                await until(
                    lambda: all(
                        jobs.jobs[i].status is not None and jobs.jobs[i].status["state"] == "Queued"
                        for i in ids
                    )
                )
                assert jobs.watching == 2
                shown = (await client.get(f"/jobs/{ids[0]}")).json()
                assert shown["status"]["state"] == "Queued"
                assert shown["done"] is False
            # shut down: the waits were cancelled, the session closed, nothing left
            assert jobs.watching == 0
            assert made[0].closed
            assert asyncio.all_tasks() == before
            # ... and the remote jobs run on, their tokens kept
            assert fake.counts["stop"] == 0
            assert [fake.job_state(int(i)) for i in ids] == ["Queued", "Queued"]
            assert sorted(json.loads(jobs_file.read_text())) == sorted(ids)

            second = fastapi_service.create_app(
                session_factory=fastapi_sessions(fake, made), jobs_file=jobs_file
            )
            async with running(second) as client:
                jobs = second.state.jobs
                assert sorted(jobs.jobs) == sorted(ids)  # reattached at startup
                await until(lambda: jobs.watching == 2)
                for job in accepted:
                    reply = await client.get(job["status_url"])
                    assert reply.status_code == 200
                    assert reply.json()["input_range"] == job["input_range"]
                now[0] = 100.0  # the jobs finish
                await until(ended(jobs, ids))
                for job in accepted:
                    status = (await client.get(job["status_url"])).json()["status"]
                    assert status["state"] == "Completed"
                    span = job["input_range"]
                    assert status["total_count"] == span["stop"] - span["start"]
                    assert len(status["succeeded"]) + len(status["failed"]) == status["total_count"]
            assert json.loads(jobs_file.read_text()) == {}
            assert asyncio.all_tasks() == before
            assert fake.counts["stop"] == 0

    async def test_store_in_memory_and_keys_from_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(fastapi_service.JOBS_FILE_ENV, raising=False)
        monkeypatch.delenv("GAMEBALL_SECRET_KEY", raising=False)
        monkeypatch.setenv("GAMEBALL_API_KEY", "ak-visible-nowhere")
        with pytest.raises(RuntimeError, match="GAMEBALL_SECRET_KEY") as caught:
            fastapi_service.session_from_env()
        assert "ak-visible-nowhere" not in str(caught.value)
        with FakeGameball(enforce_rate_limit=False, queue_delay=0.01) as fake:
            monkeypatch.setenv("GAMEBALL_API_KEY", fake.api_key)
            monkeypatch.setenv("GAMEBALL_SECRET_KEY", fake.secret_key)
            monkeypatch.setenv("GAMEBALL_BASE_URL", fake.base_url)
            app = fastapi_service.create_app()  # as uvicorn would run it
            async with running(app) as client:
                reply = await client.post("/batches/balance-inquiry", json=inquiries(3))
                assert reply.status_code == 202
                jobs = app.state.jobs
                assert jobs.store.path is None
                [job_id] = jobs.jobs
                await until(ended(jobs, [job_id]))
                assert len(jobs.store) == 0
