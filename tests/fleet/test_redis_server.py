"""The fleet tests' redis-server: real, on loopback, restartable."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from gameball_async.testing import RedisServer

pytestmark = pytest.mark.anyio


async def test_the_server_answers_and_restarts_empty(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    await redis_client.set("k", "v")
    assert await redis_client.get("k") == b"v"
    version = (await redis_client.info("server"))["redis_version"]
    assert tuple(int(part) for part in str(version).split(".")[:2]) >= (6, 2)
    redis_server.kill()
    redis_server.start()
    fresh = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await fresh.get("k") is None
    finally:
        await fresh.aclose()
