"""examples/taskiq_fanout.py against a real redis-server and FakeGameball.

The worker runs in the test's process (``taskiq.api.run_receiver_task``, with
the example's start-up and shutdown events) for most tests, and as the
documented ``taskiq worker examples.taskiq_fanout:broker`` command for the
restart test, so that one is two real processes in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from _support import PATIENCE, WHEN, FakeFactory
from taskiq import AsyncBroker
from taskiq.api import run_receiver_task

from gameball_async import BatchJob
from gameball_async.testing import FakeGameball, InjectedReply, RedisServer

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "taskiq_fanout.py"
# how often the tests' callers look for a task's result
CHECK = 0.02


def load_fanout() -> ModuleType:
    """A fresh copy of the example: its broker on the REDIS_URL set now."""
    spec = importlib.util.spec_from_file_location("taskiq_fanout", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and taskiq resolve annotations through it
    spec.loader.exec_module(module)
    return module


def cashback(n: int) -> dict[str, Any]:
    return {
        "customerId": f"c{n % 5}",
        "transactionId": f"t{n}",
        "transactionTime": WHEN,
        "amount": 3,
    }


def job_ids(tokens: list[str]) -> list[str]:
    return [BatchJob.parse_token(token)[0] for token in tokens]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = PATIENCE) -> None:
    """Wait, bounded, for a condition read from Redis (no event announces it)."""
    with anyio.fail_after(timeout):
        while not await check():  # noqa: ASYNC110 (polling Redis: no event to wait on)
            await anyio.sleep(0.02)


async def result_of(task: Any) -> Any:
    """The return value of a kicked task (its error raised)."""
    result = await task.wait_result(check_interval=CHECK, timeout=PATIENCE)
    return result.raise_for_error().return_value


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def fake(fake_factory: FakeFactory) -> FakeGameball:
    return await fake_factory(processing_rate=20_000, queue_delay=0.01)


def settings(redis_server: RedisServer, fake: FakeGameball) -> dict[str, str]:
    """The example's environment: the queue's Redis and the fake's keys."""
    return {
        "REDIS_URL": redis_server.url,
        "GAMEBALL_API_KEY": fake.api_key,
        "GAMEBALL_SECRET_KEY": fake.secret_key,
        "GAMEBALL_BASE_URL": fake.base_url,
        "GAMEBALL_EXPECTED_PROCESSES": "2",
    }


@pytest.fixture
def example(
    redis_server: RedisServer, fake: FakeGameball, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    for name, value in settings(redis_server, fake).items():
        monkeypatch.setenv(name, value)
    return load_fanout()


@asynccontextmanager
async def worker(broker: AsyncBroker) -> AsyncIterator[Any]:
    """The example's worker in this process, as ``taskiq worker`` runs it:
    start-up event, listening, shutdown event. Yields its ``Worker``."""
    broker.is_worker_process = True
    await broker.startup()
    listening = asyncio.create_task(run_receiver_task(broker, run_startup=False))
    try:
        yield broker.state.data["gameball"]
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await broker.shutdown()
        assert "gameball" not in broker.state.data


async def test_submit_creates_once_per_run(
    example: ModuleType, fake: FakeGameball, tmp_path: Path
) -> None:
    async with worker(example.broker) as opened:
        assert opened.fleet.expected_processes == 2
        items = [cashback(n) for n in range(2500)]
        tokens = await result_of(await example.submit.kiq("run-1", "cashback", items=items))
        assert len(tokens) == 3
        assert fake.counts["create"] == 3
        assert fake.counts["jobs_created"] == 3
        assert all(fake.job_state(int(i)) for i in job_ids(tokens))

        # the same run again (a retry, a second kick): the same jobs, nothing sent
        again = await result_of(await example.submit.kiq("run-1", "cashback", items=items))
        assert again == tokens
        assert fake.counts["create"] == 3

        # another run, its items from a file: new jobs
        source = tmp_path / "run-2.jsonl"
        source.write_text("".join(json.dumps(cashback(n)) + "\n" for n in range(1200)))
        more = await result_of(await example.submit.kiq("run-2", "cashback", source=str(source)))
        assert len(more) == 2
        assert not set(more) & set(tokens)
        assert fake.counts["jobs_created"] == 5

        refused = await (await example.submit.kiq("run-3", "cashback")).wait_result(
            check_interval=CHECK, timeout=PATIENCE
        )
        assert refused.is_err
        assert "either items or source" in str(refused.error)
        assert fake.counts["create"] == 5


async def test_retried_submit_creates_only_what_is_missing(
    example: ModuleType, fake: FakeGameball
) -> None:
    # the first creation request is refused (final, not retried by the session):
    # the task fails, the retry middleware kicks it again with the same run id
    fake.inject("create", InjectedReply(status=400))
    async with worker(example.broker):
        items = [cashback(n) for n in range(2500)]
        tokens = await result_of(await example.submit.kiq("run-r", "cashback", items=items))
        assert len(tokens) == 3
        assert fake.counts["jobs_created"] == 3  # each chunk once
        assert fake.counts["create"] == 4  # the refused one, then the 3 creations


async def test_retries_never_resend_a_creation_that_may_have_landed(
    example: ModuleType, fake: FakeGameball
) -> None:
    # the first creation is handled (its job exists) but its reply is lost: the
    # session cannot know, so every attempt of the task refuses to resend it
    fake.inject("create", InjectedReply(action="drop_after"))
    async with worker(example.broker) as opened:
        items = [cashback(n) for n in range(2500)]
        failed = await (await example.submit.kiq("run-a", "cashback", items=items)).wait_result(
            check_interval=CHECK, timeout=PATIENCE
        )
        assert failed.is_err
        assert int(failed.labels["_retries"]) == 2  # three attempts in all
        assert fake.counts["create"] == 3  # one request per chunk, ever
        assert fake.counts["jobs_created"] == 3
        # the two answered chunks are registered; the lost reply's job is not known
        await eventually(lambda: count_open(opened.fleet, 2))


async def count_open(fleet: Any, count: int) -> bool:
    return len(await fleet.open_jobs()) == count


async def test_collect_reattaches_and_reports_every_job(
    example: ModuleType, fake: FakeGameball
) -> None:
    async with worker(example.broker) as opened:
        items = [cashback(n) for n in range(2500)]
        items[2100]["transactionId"] = "t7"  # a duplicate: that item fails with 9004
        tokens = await result_of(await example.submit.kiq("run-c", "cashback", items=items))
        ids = job_ids(tokens)
        await eventually(lambda: listed(opened.fleet, ids))

        summary = await result_of(await example.collect.kiq())  # from the registry alone
        assert summary["states"] == {"Completed": 3}
        assert summary["items"] == 2500
        assert summary["failed_items"] == 1
        assert summary["pending"] == []
        assert summary["errors"] == {}
        jobs = {line["job_id"]: line for line in summary["jobs"]}
        assert sorted(jobs) == sorted(ids)
        assert [jobs[i]["total"] for i in ids] == [1000, 1000, 500]
        # the fake fails whichever of item 7 (job 1) and item 2100 (job 3) it
        # processes second: on a loaded machine the third job can get there first
        errors = [jobs[i]["errors"] for i in ids]
        assert errors in ([0, 0, 1], [1, 0, 0]), errors
        assert {line["operation"] for line in summary["jobs"]} == {"cashback"}

        # seen ended: they leave the registry, and a second collect has nothing
        await eventually(lambda: listed(opened.fleet, []))
        empty = await result_of(await example.collect.kiq())
        assert empty["jobs"] == []
        # ... unless given their tokens
        again = await result_of(await example.collect.kiq(tokens))
        assert again["states"] == {"Completed": 3}


async def test_collect_timeout_lists_pending(
    redis_server: RedisServer, fake_factory: FakeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]  # the fake's clock: the jobs stay Queued until it moves
    slow = await fake_factory(clock=lambda: now[0], queue_delay=1.0)
    for name, value in settings(redis_server, slow).items():
        monkeypatch.setenv(name, value)
    example = load_fanout()
    async with worker(example.broker):
        items = [cashback(n) for n in range(10)]
        [token] = await result_of(await example.submit.kiq("run-t", "cashback", items=items))
        summary = await result_of(await example.collect.kiq(timeout=0.2))
        [job_id] = job_ids([token])
        assert summary["pending"] == [job_id]
        assert summary["states"] == {}
        [line] = summary["jobs"]
        assert line["job_id"] == job_id
        assert line["state"] in (None, "Queued")  # not polled yet, or seen queued
        now[0] = 100.0
        summary = await result_of(await example.collect.kiq())
        assert summary["states"] == {"Completed": 1}
        assert summary["pending"] == []


async def listed(fleet: Any, ids: list[str]) -> bool:
    """Whether the fleet's open jobs are exactly ``ids``."""
    return sorted(job_ids(await fleet.open_jobs())) == sorted(ids)


# -- two real worker processes, one after the other ---------------------------------


@asynccontextmanager
async def worker_process(env: dict[str, str], log: Path) -> AsyncIterator[None]:
    """``taskiq worker examples.taskiq_fanout:broker`` from the repository root;
    stopped with SIGTERM (a graceful shutdown) at the end of the block, which
    checks it exited 0 after the example's shutdown event."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taskiq", "worker", "examples.taskiq_fanout:broker",
            "--workers", "1",
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its worker child is in its group: killed with it
        )  # fmt: skip
    try:
        yield
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(PATIENCE):
            code = await process.wait()
        text = await anyio.Path(log).read_text()
        assert code == 0, text
        assert "gameball worker ready" in text
        assert "gameball worker closed" in text
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def test_worker_restarted_between_submit_and_collect(
    redis_server: RedisServer,
    fake_factory: FakeFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    now = [0.0]  # the fake's clock: the jobs stay Queued until it moves
    fake = await fake_factory(clock=lambda: now[0], processing_rate=1000, queue_delay=1.0)
    env = settings(redis_server, fake)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caller = load_fanout()  # the caller's side: kicks tasks, runs none
    await caller.broker.startup()
    try:
        items = [cashback(n) for n in range(2500)]
        async with worker_process(env, tmp_path / "first.log"):
            tokens = await result_of(await caller.submit.kiq("run-w", "cashback", items=items))
        ids = job_ids(tokens)
        assert fake.counts["jobs_created"] == 3
        assert [fake.job_state(int(i)) for i in ids] == ["Queued"] * 3
        assert fake.counts["stop"] == 0  # the shutdown left them running

        now[0] = 100.0
        async with worker_process(env, tmp_path / "second.log"):
            summary = await result_of(await caller.collect.kiq())
        assert sorted(line["job_id"] for line in summary["jobs"]) == sorted(ids)
        assert summary["states"] == {"Completed": 3}
        assert summary["items"] == 2500
        assert fake.counts["jobs_created"] == 3
    finally:
        await caller.broker.shutdown()


async def test_main_against_a_worker_process(
    redis_server: RedisServer,
    fake: FakeGameball,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = settings(redis_server, fake)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    caller = load_fanout()
    async with worker_process(env, tmp_path / "worker.log"):
        await caller.main("run-m")
    first, rest = capsys.readouterr().out.split("\n", 1)
    assert first == "run run-m: 3 jobs"
    summary = json.loads(rest)
    assert summary["states"] == {"Completed": 3}
    assert summary["items"] == 2500
    assert fake.counts["create:balance-inquiry"] == 3
