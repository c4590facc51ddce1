"""RedisFleet: lifecycle, namespace, keys, and several processes on one account."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from _fleet_support import burst_workers, fake_process, item, worker_config
from _fleet_support import fleet_session as session

import gameball_async.fleet
from gameball_async import (
    AmbiguousSubmissionError,
    BatchState,
    GameballError,
    GameballSession,
    RateLimit,
)
from gameball_async._coordination import account_namespace
from gameball_async.fleet import RedisFleet
from gameball_async.testing import FakeGameball, RedisServer

pytestmark = pytest.mark.anyio


def test_importing_the_package_does_not_import_redis() -> None:
    code = (
        "import sys, gameball_async, gameball_async.testing; "
        "assert 'redis' not in sys.modules, 'redis imported'; "
        "import gameball_async.fleet; assert 'redis' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_public_names() -> None:
    assert gameball_async.fleet.__all__ == [
        "SNAPSHOT_VERSION",
        "EndedJob",
        "FleetSnapshot",
        "JobProgress",
        "LimiterView",
        "LiveProcess",
        "OpenJob",
        "RedisFleet",
    ]
    public = {
        name
        for name, value in vars(gameball_async.fleet).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == "gameball_async.fleet"
    }
    assert public <= set(gameball_async.fleet.__all__)
    assert RedisFleet.__module__ == "gameball_async.fleet"
    assert RedisFleet.__doc__
    assert RedisFleet.from_url.__doc__


async def clients_named(client: aioredis.Redis, name: str) -> int:
    return sum(1 for entry in await client.client_list() if entry.get("name") == name)


async def test_from_url_owns_its_client_and_closes_it(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    fleet = RedisFleet.from_url(redis_server.url + "?client_name=owned", namespace="acct")
    async with fleet:
        assert await fleet.open_jobs() == []
        assert await clients_named(redis_client, "owned") == 1
    # the server sees a closed connection go a moment after the client closed it
    with anyio.fail_after(10):
        while await clients_named(redis_client, "owned"):  # noqa: ASYNC110
            await anyio.sleep(0.01)
    await fleet.aclose()  # idempotent


async def test_a_borrowed_client_is_never_closed(redis_client: aioredis.Redis) -> None:
    async with RedisFleet(redis_client, namespace="acct") as fleet:
        assert await fleet.open_jobs() == []
    await fleet.aclose()
    await fleet.aclose()
    assert await redis_client.ping()
    with pytest.raises(GameballError, match="closed"):
        fleet.attach(None)  # type: ignore[arg-type]


async def test_bad_options_are_refused(redis_client: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="expected_processes"):
        RedisFleet(redis_client, expected_processes=0)
    with pytest.raises(ValueError, match="namespace"):
        RedisFleet(redis_client, namespace="has space")
    with pytest.raises(ValueError, match="retention"):
        RedisFleet(redis_client, retention=0)


async def test_the_namespace_is_learnt_from_the_first_session(
    redis_client: aioredis.Redis,
) -> None:
    async with (
        FakeGameball(enforce_rate_limit=False, queue_delay=0.0) as fake,
        RedisFleet(redis_client) as fleet,
    ):
        assert fleet.namespace is None
        with pytest.raises(GameballError, match="namespace"):
            await fleet.open_jobs()
        async with session(fake, fleet) as gb:
            await gb.create_batch("cashback", [item(0)])
            assert fleet.namespace == account_namespace(fake.api_key)
            assert fake.api_key not in str(fleet.namespace)
            other = GameballSession(
                "another-api-key", "another-secret", base_url=fake.base_url, fleet=fleet
            )
            with pytest.raises(GameballError, match="another Gameball account"):
                await other.__aenter__()
        # a second session of the same account is welcome
        async with session(fake, fleet) as gb:
            await gb.create_batch("cashback", [item(1)])


async def all_keys(client: aioredis.Redis) -> list[bytes]:
    return [key async for key in client.scan_iter(count=1000)]


async def dump(client: Any, key: bytes) -> bytes:
    """Every value stored under ``key``, as bytes."""
    kind = (await client.type(key)).decode()
    if kind == "string":
        return bytes(await client.get(key) or b"")
    if kind == "hash":
        pairs: dict[bytes, bytes] = await client.hgetall(key)
        return b" ".join(k + b"=" + v for k, v in pairs.items())
    if kind == "zset":
        members: list[tuple[bytes, float]] = await client.zrange(key, 0, -1, withscores=True)
        return b" ".join(m for m, _ in members)
    raise AssertionError(f"unexpected {kind} key {key!r}")


async def test_every_key_has_the_hash_tag_and_an_expiry_and_no_secret(
    redis_client: aioredis.Redis,
) -> None:
    async with FakeGameball(enforce_rate_limit=False, queue_delay=0.0) as fake:  # noqa: SIM117
        async with RedisFleet(redis_client) as fleet, session(fake, fleet) as gb:
            jobs = [await gb.create_batch("cashback", [item(n)]) for n in range(3)]
            await gb.create_batch("cashback", [item(9)], idempotency_key="nightly/1")
            await jobs[0]
            gb._open().limiter.pause(5.0)
            prefix = fleet.keys.prefix.encode()
            # the registry writes and the pause are in the background
            with anyio.fail_after(20):
                while len(await all_keys(redis_client)) < 7:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            keys = await all_keys(redis_client)
            kinds = {key[len(prefix) :].split(b":")[0] for key in keys}
            assert {b"limit", b"job", b"open", b"idem", b"proc"} <= kinds
            for key in keys:
                assert key.startswith(prefix), key
                assert key.startswith(b"gameball:{")
                assert b"}:" in key
                assert await redis_client.pttl(key) != -1, key  # -1: no expiry (-2: just expired)
                for secret in (fake.api_key, fake.secret_key):
                    assert secret.encode() not in key
                    assert secret.encode() not in await dump(redis_client, key)


# -- several processes on one account ----------------------------------------------

# smaller numbers than Gameball's, that the fake enforces too: both windows are
# exercised in a few seconds
PER_SECOND, PER_WINDOW, WINDOW = 12, 30, 3.0
FAKE_LIMITS = (
    "--rate-per-second", str(PER_SECOND),
    "--rate-per-window", str(PER_WINDOW),
    "--rate-window", str(WINDOW),
)  # fmt: skip
ACCOUNT = (PER_SECOND, PER_WINDOW, WINDOW)


async def test_eight_processes_bursting_stay_within_the_account_limit(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    async with fake_process(*FAKE_LIMITS, "--queue-delay", "0", "--processing-rate", "4") as fake:
        # each job runs 0.25 s: creations and polls both burst
        configs = [
            # 10 processes on 2 cores: a Redis reply can be slow without Redis being down
            worker_config(
                fake,
                redis_server.url,
                ACCOUNT,
                mode="burst",
                jobs=3,
                offset=100 * n,
                processes=8,
                redis_timeout=2.0,
            )
            for n in range(8)
        ]
        async with burst_workers("burst", configs) as fleet:
            await fleet.ready()
            await fleet.go(redis_client)
            results = await fleet.results()
        stats = await fake.stats()
    print(
        f"fake: {stats['requests']} requests, max {stats['max_per_second']}/s, "
        f"{stats['max_per_window']}/{WINDOW:g} s, {stats['counts'].get('rate_limited', 0)} 429s"
    )
    assert sum(len(r["jobs"]) for r in results) == 24
    assert sum(r["fallback_slots"] for r in results) == 0, results  # all through Redis
    assert stats["jobs_created"] == 24
    assert stats["counts"]["status"] >= 24  # every job polled to its end
    assert stats["counts"].get("rate_limited", 0) == 0, stats
    assert stats["counts"].get("reply:429", 0) == 0, stats
    assert sum(r["rate_limited"] for r in results) == 0
    assert stats["max_per_second"] <= PER_SECOND, stats
    assert stats["max_per_window"] <= PER_WINDOW, stats
    # the long window was reached: the burst had to wait for it
    assert stats["requests"] > PER_WINDOW
    # every job was registered, and seen terminal
    async with RedisFleet(redis_client, namespace=account_namespace(fake.api_key)) as fleet:
        assert await fleet.open_jobs() == []
        prefix = fleet.keys.prefix.encode()
    keys = [key for key in await all_keys(redis_client) if key != b"test:go"]
    assert sum(1 for key in keys if key.startswith(prefix + b"job:")) == 24
    for key in keys:
        assert key.startswith(prefix), key
        assert await redis_client.pttl(key) != -1, key  # -1: no expiry (-2: just expired)
        for secret in (fake.api_key, fake.secret_key):
            assert secret.encode() not in key + await dump(redis_client, key)


async def test_processes_with_equal_demand_get_equal_shares(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # the first 2 s worth of slots are free when asked for (first come, first
    # served, as in one process); the shares are measured while all queue
    per_second, total, warmup = 20, 300, 40
    config = {
        "redis_url": redis_server.url,
        "base_url": "http://127.0.0.1:9/api/v4.0/integrations",  # nothing is sent
        "api_key": "k",
        "secret_key": "s",
        "rate_limit": {"per_second": per_second, "per_window": 10_000, "margin": 0.0},
        "total": total,
        "warmup": warmup,
    }
    async with burst_workers("demand", [config] * 4) as fleet:
        await fleet.ready()
        await fleet.go(redis_client)
        results = await fleet.results()
    shares = [r["taken"] for r in results]
    steady = [r["steady"] for r in results]
    mean = (total - warmup) / 4
    spread = max(abs(n - mean) / mean for n in steady)
    print(
        f"shares of {total} slots: {sorted(shares)}; of the {total - warmup} taken "
        f"while all queued: {sorted(steady)}, spread {spread:.1%}; "
        f"{sum(r['round_trips'] for r in results) / total:.2f} Redis round trips per slot"
    )
    assert sum(shares) == total
    assert sum(steady) == total - warmup
    assert spread <= 0.25


async def test_idempotency_key_raced_from_five_processes_creates_one_job(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    async with fake_process("--no-rate-limit", "--queue-delay", "0") as fake:
        configs = [worker_config(fake, redis_server.url, ACCOUNT, key="race/1") for _ in range(5)]
        async with burst_workers("race", configs) as fleet:
            await fleet.ready()
            await fleet.go(redis_client)
            results = await fleet.results()
        stats = await fake.stats()
    assert stats["jobs_created"] == 1
    assert stats["counts"].get("create", 0) == 1
    assert len({r["job"] for r in results}) == 1
    assert results[0]["job"] != "ambiguous"


async def test_a_process_killed_mid_request_frees_its_slots_and_its_keys_stay_ambiguous(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # every reply takes 30 s: the worker's two creations stay in flight until it is killed
    async with fake_process("--no-rate-limit", "--fault-slow", "1", "--slow-seconds", "30") as fake:
        bound = 4.0  # the worker's request timeout (its slots' deadline is one more second)
        config = worker_config(
            fake,
            redis_server.url,
            ACCOUNT,
            key="crash",
            jobs=2,
            process_ttl=1.5,
            request_timeout=bound,
            rate_limit={"per_second": 2, "per_window": 100},
        )
        async with burst_workers("crash", [config]) as fleet:
            await fleet.ready()
            await fleet.go(redis_client)
            with anyio.fail_after(20):
                while (await fake.stats())["counts"].get("create", 0) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            fleet.kill(0)
            killed = time.monotonic()
            # another process of the account: same Redis, same limit
            async with (
                RedisFleet.from_url(redis_server.url) as other,
                GameballSession(
                    fake.api_key,
                    fake.secret_key,
                    base_url=fake.base_url,
                    fleet=other,
                    rate_limit=RateLimit(per_second=2, per_window=100),
                ) as gb,
            ):
                limiter = gb._open().limiter
                with anyio.fail_after(20):
                    async with limiter.slot():
                        freed = time.monotonic() - killed
                # both slots were held: freed at their deadline (+ the 1 s window)
                print(f"slots of the killed process freed {freed:.2f} s after the kill")
                assert 3.0 < freed <= bound + 1.0 + 1.05 + 2.0, freed
                for n in range(2):
                    with pytest.raises(AmbiguousSubmissionError, match="not resent"):
                        await gb.create_batch("cashback", [item(n)], idempotency_key=f"crash/{n}")
            stats = await fake.stats()
    assert stats["counts"].get("create", 0) == 2  # nothing resent


async def test_shared_polling_beats_renew_the_process_key_so_the_fleet_need_not(
    redis_client: aioredis.Redis,
) -> None:
    # issue 15 §3: one heartbeat call per process, not two (the process key's
    # SET rode apart from the shared-polling beat: 64 of a run's 520 round trips)
    async with FakeGameball(enforce_rate_limit=False, queue_delay=0.0, processing_rate=8) as fake:
        fleet = RedisFleet(redis_client, heartbeat=0.2, process_ttl=5.0)
        renewals = 0
        renew = fleet._renew

        async def counted() -> None:
            nonlocal renewals
            renewals += 1
            await renew()

        fleet._renew = counted  # type: ignore[method-assign]
        async with fleet, session(fake, fleet) as gb:
            job = await gb.create_batch("cashback", [item(n) for n in range(24)])  # ~3 s
            with anyio.fail_after(30):
                status = await job.wait()
            key = fleet.keys.process(fleet.process_id)
            assert await redis_client.pttl(key) > 0  # alive, renewed by the beats
        assert status.state is BatchState.COMPLETED
        # the announce, and at most the beats before shared polling's first one
        # (one every 0.2 s for ~3 s before)
        assert renewals <= 3, renewals
