"""``RedisFleet.snapshot()``: the fleet's read-only view, against a real fleet at work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from _fleet_support import LIMIT, PATIENCE, PAUSE, eventually, ids, running_fleet

import gameball_async.fleet
from gameball_async import GameballError, RateLimit, TransportError
from gameball_async.fleet import (
    SNAPSHOT_VERSION,
    EndedJob,
    FleetSnapshot,
    JobProgress,
    LimiterView,
    LiveProcess,
    OpenJob,
    RedisFleet,
)
from gameball_async.fleet._breaker import Breaker
from gameball_async.fleet._keys import Keys
from gameball_async.fleet._limiter import FleetRateLimiter
from gameball_async.testing import RedisServer

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_the_snapshot_classes_are_public_and_documented() -> None:
    for cls in (FleetSnapshot, OpenJob, JobProgress, LimiterView, LiveProcess, EndedJob):
        assert cls.__name__ in gameball_async.fleet.__all__
        assert cls.__module__ == "gameball_async.fleet"
        assert cls.__doc__
    assert RedisFleet.snapshot.__doc__
    assert RedisFleet.namespaces.__doc__
    assert SNAPSHOT_VERSION == 1


async def test_the_limiter_keys_are_those_the_limiter_uses(
    redis_client: aioredis.Redis,
) -> None:
    # the snapshot reads the waiters queue through Keys: the same names as the script's
    keys = Keys("acct")
    limiter = FleetRateLimiter(
        redis_client,
        keys,
        Breaker(),
        RateLimit(),
        request_bound=10.0,
        process_id="p",
        expected_processes=1,
        spawn=lambda make: None,
    )
    assert limiter._acquire_keys == [
        keys.limiter_log,
        keys.limiter_pause,
        keys.limiter_waiters,
        keys.limiter_seen,
        keys.limiter_epoch,
    ]


async def test_a_fleet_at_work(redis_server: RedisServer) -> None:
    async with running_fleet(redis_server.url) as running:
        fleet = running.fleet
        snapshot = await fleet.snapshot()
        assert snapshot.version == SNAPSHOT_VERSION
        assert snapshot.namespace == fleet.namespace
        assert abs(snapshot.taken_at.timestamp() - time.time()) < 5
        # the open jobs, oldest first: operation, age, shared status, lease holder
        assert ids(snapshot) == [job.job_id for job in running.open_jobs]
        for job, total in zip(snapshot.open_jobs, (200, 300), strict=True):
            assert job.operation == "cashback"
            assert 0 <= job.age < 60
            assert job.status is not None
            assert job.status.state in ("Queued", "Running")
            assert job.status.total == total
            assert job.status.failed == 0
            assert 0 <= job.status.done < total
            assert job.process_id == fleet.process_id
            assert job.lease_holder is not None
            assert job.lease_holder.startswith(fleet.process_id + ".")
            assert job.lease_expires_in is not None
            assert 0 < job.lease_expires_in <= 3
        # the limiter: the session's limits, the requests made, the 429's pause
        limiter = snapshot.limiter
        assert (limiter.per_second, limiter.per_window) == (LIMIT.per_second, LIMIT.per_window)
        assert limiter.window == LIMIT.window
        assert limiter.last_window >= 4  # three creations and polls
        assert limiter.last_second <= limiter.last_window
        assert 0 < limiter.paused_for <= PAUSE
        assert limiter.waiting >= 0
        assert not limiter.full
        # this process's heartbeat
        assert [process.process_id for process in snapshot.processes] == [fleet.process_id]
        assert snapshot.processes[0].expires_in is not None
        # the job that ended, with its outcome
        ended = {job.job_id: job for job in snapshot.ended_jobs}
        assert list(ended) == [running.ended.job_id]
        done = ended[running.ended.job_id]
        assert (done.outcome, done.finished, done.failed, done.total) == ("Completed", 1, 0, 1)
        assert done.operation == "cashback"
        assert done.ended_at is not None
        assert done.created_at is not None
        assert done.created_at <= done.ended_at <= snapshot.taken_at
        assert not snapshot.ended_partial


async def test_another_process_sees_the_same_without_a_session(
    redis_server: RedisServer,
) -> None:
    async with running_fleet(redis_server.url) as running:
        namespace = running.fleet.namespace
        assert namespace is not None
        # a process with no session and no API key: what the CLI does
        async with RedisFleet.from_url(redis_server.url, namespace=namespace) as viewer:
            snapshot = await viewer.snapshot()
            assert await viewer.namespaces() == [namespace]
        assert ids(snapshot) == [job.job_id for job in running.open_jobs]
        assert [p.process_id for p in snapshot.processes] == [running.fleet.process_id]
        # no session attached: the documented limits
        assert (snapshot.limiter.per_second, snapshot.limiter.per_window) == (30, 360)
        assert snapshot.limiter.paused_for > 0
        # ended_within and max_ended narrow the ended jobs
        assert [job.job_id for job in snapshot.ended_jobs] == [running.ended.job_id]
        narrow = await running.fleet.snapshot(max_ended=0)
        assert narrow.ended_jobs == ()


async def test_two_processes_and_one_killed(redis_server: RedisServer) -> None:
    # a second process of the fleet: its job, its lease, its heartbeat; then kill -9
    async with running_fleet(redis_server.url, pause=False) as running:
        fake = running.fake
        command = [sys.executable, str(HERE / "_view_worker.py"), redis_server.url]
        command += [fake.base_url, fake.api_key, fake.secret_key]
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
        async with await anyio.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment
        ) as worker:
            assert worker.stdout is not None
            try:
                with anyio.fail_after(PATIENCE):
                    line = b""
                    while not line.endswith(b"\n"):
                        line += await worker.stdout.receive()
                theirs = json.loads(line)
                snapshot = await running.fleet.snapshot()
                assert {p.process_id for p in snapshot.processes} == {
                    running.fleet.process_id,
                    theirs["process_id"],
                }
                holders = {job.job_id: job.process_id for job in snapshot.open_jobs}
                assert holders[theirs["job_id"]] == theirs["process_id"]
                for job in running.open_jobs:
                    assert holders[job.job_id] == running.fleet.process_id
            finally:
                worker.kill()
                await worker.wait()

            # its heartbeat and its lease run out; its job stays open, polled by nobody
            async def gone() -> bool:
                snapshot = await running.fleet.snapshot()
                job = next(job for job in snapshot.open_jobs if job.job_id == theirs["job_id"])
                alive = {p.process_id for p in snapshot.processes}
                return job.lease_holder is None and theirs["process_id"] not in alive

            await eventually(gone)


async def test_to_dict_is_json_ready(redis_server: RedisServer) -> None:
    async with running_fleet(redis_server.url) as running:
        snapshot = await running.fleet.snapshot()
    data = snapshot.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["version"] == SNAPSHOT_VERSION
    assert data["namespace"] == running.fleet.namespace
    assert data["taken_at"].endswith("Z")
    assert [job["job_id"] for job in data["open_jobs"]] == ids(snapshot)
    first: dict[str, Any] = data["open_jobs"][0]
    assert set(first) == {
        "job_id",
        "operation",
        "created_at",
        "age",
        "status",
        "lease_holder",
        "process_id",
        "lease_expires_in",
    }
    assert set(first["status"]) == {
        "state",
        "finished",
        "failed",
        "total",
        "terminal",
        "done",
        "progress",
    }
    assert data["limiter"]["paused_for"] > 0
    assert "full" in data["limiter"]
    assert data["ended_jobs"][0]["outcome"] == "Completed"
    assert data["ended_jobs"][0]["ended_at"].endswith("Z")


async def _dump(client: aioredis.Redis) -> dict[bytes, bytes | None]:
    return {key: await client.dump(key) async for key in client.scan_iter(count=1000)}


async def test_a_snapshot_writes_nothing(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    async with running_fleet(redis_server.url) as running:
        namespace = running.fleet.namespace
        assert namespace is not None
    # the fleet is closed: what it left stays put while a viewer reads it
    before = await _dump(redis_client)
    commands_before = await redis_client.info("commandstats")
    async with RedisFleet.from_url(redis_server.url, namespace=namespace) as viewer:
        snapshot = await viewer.snapshot()
        await viewer.namespaces()
    assert await _dump(redis_client) == before
    commands = await redis_client.info("commandstats")
    written = {
        name
        for name, stats in commands.items()
        if stats["calls"] != commands_before.get(name, {"calls": 0})["calls"]
    }
    reads = {
        "time",
        "zrange",
        "get",
        "hget",
        "hmget",
        "pttl",
        "scan",
        "info",
        "dump",
        "client",
        "hello",
    }
    assert {name.removeprefix("cmdstat_").split("|")[0] for name in written} <= reads
    assert snapshot.open_jobs  # the jobs left open by a fleet that closed mid-wait
    assert snapshot.processes == ()  # its heartbeat went with it


async def test_a_terminal_status_is_read_once(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # a terminal status holds every item's result: a view refreshed each second
    # must not fetch it again and again (it never changes)
    async with running_fleet(redis_server.url, pause=False) as running:
        fleet = running.fleet
        first = await fleet.snapshot()
        assert [job.outcome for job in first.ended_jobs] == ["Completed"]
        status_key = fleet.keys.status(running.ended.job_id)
        data = await redis_client.hget(status_key, "data")
        await redis_client.hset(status_key, "data", "not what was stored")
        try:
            again = await fleet.snapshot()
        finally:
            await redis_client.hset(status_key, "data", data)
        assert again.ended_jobs[0].outcome == "Completed"
        assert again.ended_jobs[0].finished == 1
        # another fleet object has read nothing yet: it reads what is there
        namespace = fleet.namespace
        assert namespace is not None
        await redis_client.hset(status_key, "data", "not what was stored")
        async with RedisFleet.from_url(redis_server.url, namespace=namespace) as viewer:
            fresh = await viewer.snapshot()
        assert fresh.ended_jobs[0].job_id == running.ended.job_id
        assert fresh.ended_jobs[0].outcome == "terminal"  # no readable status: the registry's word
        assert fresh.ended_jobs[0].finished is None


async def test_waiters_that_asked_lately_count(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    keys = Keys("acct")
    now = await redis_client.time()
    ms = now[0] * 1000 + now[1] // 1000
    await redis_client.zadd(keys.limiter_waiters, {"a.0": ms - 10_000, "b.0": ms, "c.0": ms})
    await redis_client.zadd(keys.limiter_seen, {"a.0": ms - 10_000, "b.0": ms, "c.0": ms - 100})
    await redis_client.zadd(keys.limiter_log, {"x": ms - 500, "y": ms - 5000, "z": ms + 9000})
    await redis_client.set(keys.limiter_pause, ms + 4000)
    async with RedisFleet.from_url(redis_server.url, namespace="acct") as viewer:
        limiter = (await viewer.snapshot(limit=RateLimit(per_second=2, per_window=5))).limiter
    assert limiter.waiting == 2  # a.0 is stale: the next acquire drops it
    assert (limiter.last_second, limiter.last_window, limiter.in_flight) == (2, 3, 1)
    assert limiter.full
    assert 3 < limiter.paused_for <= 4


async def test_namespaces_are_found_by_their_keys(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    for name in ("acct-b", "acct.a:1"):
        keys = Keys(name)
        await redis_client.set(keys.fence, 1)
        await redis_client.set(keys.job("1"), "x")
    await redis_client.set("gameball:not-a-fleet-key", 1)
    await redis_client.set("other:{acct-c}:fence", 1)
    async with RedisFleet.from_url(redis_server.url) as viewer:
        assert await viewer.namespaces() == ["acct-b", "acct.a:1"]


async def test_without_a_namespace_it_says_so(redis_client: aioredis.Redis) -> None:
    async with RedisFleet(redis_client) as fleet:
        with pytest.raises(GameballError, match="namespace"):
            await fleet.snapshot()
        assert await fleet.namespaces() == []
        with pytest.raises(ValueError, match="max_ended"):
            await RedisFleet(redis_client, namespace="acct").snapshot(max_ended=-1)
    with pytest.raises(GameballError, match="closed"):
        await fleet.snapshot()
    with pytest.raises(GameballError, match="closed"):
        await fleet.namespaces()


async def test_a_frozen_redis_raises_in_time(redis_server: RedisServer) -> None:
    async with RedisFleet.from_url(redis_server.url, namespace="acct") as viewer:
        await viewer.snapshot()
        redis_server.freeze()
        try:
            started = anyio.current_time()
            with pytest.raises(TransportError, match=r"within 0\.5 s"):
                await viewer.snapshot(timeout=0.5)
            with pytest.raises(TransportError, match=r"within 0\.5 s"):
                await viewer.namespaces(timeout=0.5)
            assert anyio.current_time() - started < 3
        finally:
            redis_server.thaw()


async def test_a_dead_redis_raises_a_clear_error(redis_server: RedisServer) -> None:
    async with RedisFleet.from_url(redis_server.url, namespace="acct") as viewer:
        redis_server.kill()
        with pytest.raises(TransportError, match="snapshot"):
            await viewer.snapshot(timeout=1.0)
