"""Submission throughput: a million cashback records as 1,000 batches.

``ours`` streams ``Cashback`` records from a generator through
``GameballSession.submit_many`` (validation, conversion to camelCase JSON,
bounded concurrency); ``raw`` posts the same batches, JSON pre-serialised
before the clock starts, with aiohttp and the same concurrency. The fake
(a child process) enforces no rate limit here: the documented limit of 360
requests per 30 s would cap any client at 12 batches (12,000 records) per
second, which says nothing about the client.

``ours`` uses orjson when the ``speedups`` extra is installed;
``ours_pure`` is the same client with the stdlib's JSON codec (the default
install), side by side in each round.

Also reported: the share of ours' client CPU spent validating and converting
records (measured by encoding the same batches alone).

Run: ``python -m benchmarks.throughput [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import aiohttp

from gameball_async import Cashback, GameballSession, Operation, RateLimit, _json
from gameball_async._schema import encode_batch

from ._common import FakeProcess, pure_json, section_main, spread

BATCH = 1000
CONCURRENCY = 8


def _records(total: int, tag: str) -> Iterator[Cashback]:
    now = datetime.now(timezone.utc)
    for n in range(total):
        yield Cashback(
            customer_id=f"c{n % 50_000}",
            transaction_id=f"{tag}-{n}",
            transaction_time=now,
            amount=9.5,
        )


async def _ours(fake: FakeProcess, total: int, tag: str) -> tuple[float, float]:
    async with GameballSession(
        fake.api_key,
        fake.secret_key,
        base_url=fake.base_url,
        rate_limit=RateLimit.disabled(),
    ) as gb:
        cpu, wall = time.process_time(), time.perf_counter()
        jobs = await gb.submit_many(
            "cashback", _records(total, tag), chunk_size=BATCH, max_concurrency=CONCURRENCY
        )
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    assert len(jobs) == total // BATCH
    return wall, cpu


async def _raw(fake: FakeProcess, total: int, tag: str) -> tuple[float, float]:
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
    bodies = [
        json.dumps(
            {
                "body": [
                    {
                        "customerId": f"c{n % 50_000}",
                        "transactionId": f"{tag}-{n}",
                        "transactionTime": stamp,
                        "amount": 9.5,
                    }
                    for n in range(start, start + BATCH)
                ]
            }
        ).encode()
        for start in range(0, total, BATCH)
    ]
    headers = {
        "APIKey": fake.api_key,
        "SecretKey": fake.secret_key,
        "Content-Type": "application/json",
    }
    url = f"{fake.base_url}/batch/cashback"
    slots = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes) -> str:
            async with slots, http.post(url, data=body, headers=headers) as reply:
                data = await reply.read()
                if reply.status != 200:
                    raise RuntimeError(reply.status)
            return str(json.loads(data)["jobId"])

        cpu, wall = time.process_time(), time.perf_counter()
        ids = await asyncio.gather(*(post(body) for body in bodies))
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    assert len(ids) == len(bodies)
    return wall, cpu


def _encode_share(total: int) -> float:
    """CPU seconds to validate and encode ``total`` records, batch by batch."""
    records = _records(total, "enc")
    start = time.process_time()
    while True:
        chunk = [record for _, record in zip(range(BATCH), records, strict=False)]
        if not chunk:
            break
        encode_batch(Operation.CASHBACK, chunk)
    return time.process_time() - start


def run(quick: bool) -> dict[str, Any]:
    """Run the throughput benchmark and return its figures."""
    total, rounds = (30_000, 2) if quick else (1_000_000, 3)
    names = ("ours", "ours_pure", "raw")
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    with FakeProcess("--no-rate-limit", "--processing-rate", "1000000") as fake:
        for r in range(rounds):
            for name in names:
                fn = _raw if name == "raw" else _ours
                if name == "ours_pure":
                    with pure_json():
                        wall, cpu = asyncio.run(fn(fake, total, f"{name}{r}"))
                else:
                    wall, cpu = asyncio.run(fn(fake, total, f"{name}{r}"))
                walls[name].append(wall)
                cpus[name].append(cpu)
                fake.reset()
    encode = [_encode_share(total) for _ in range(rounds)]
    with pure_json():
        encode_pure = [_encode_share(total) for _ in range(rounds)]
    rate = {k: [total / w for w in v] for k, v in walls.items()}
    return {
        "records": total,
        "json_codec": "orjson" if _json.FAST else "stdlib",
        "batch": BATCH,
        "concurrency": CONCURRENCY,
        "records_per_second": {k: spread(v) for k, v in rate.items()},
        "client_cpu_seconds": {k: spread(v) for k, v in cpus.items()},
        "validate_and_encode_cpu_seconds": spread(encode),
        "validate_and_encode_cpu_seconds_pure": spread(encode_pure),
        "validate_and_encode_share_of_ours_cpu": spread(
            [e / c for e, c in zip(encode, cpus["ours"], strict=False)]
        ),
        "ratio_records_per_second": spread(
            [o / r for o, r in zip(rate["ours"], rate["raw"], strict=False)]
        ),
        "ratio_records_per_second_pure": spread(
            [o / r for o, r in zip(rate["ours_pure"], rate["raw"], strict=False)]
        ),
    }


def main() -> None:
    """Run this section alone and print its figures as JSON."""
    section_main(__doc__, run)


if __name__ == "__main__":
    main()
