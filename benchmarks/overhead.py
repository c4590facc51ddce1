"""Per-request overhead: GameballSession against a minimal raw aiohttp loop.

Client CPU (``time.process_time``) per 1,000 status polls and per 1,000
creation calls, sequential, against the fake server in a child process with no
rate limit. The raw loop sends the same requests with pre-built headers and
parses the JSON reply; ours includes validation, model conversion, the rate
limiter (set high enough never to wait), retries' bookkeeping and decoding.
After a warm-up, rounds alternate which side goes first; each figure is the
median of the rounds, each ratio the median of the per-round ratios. Ours
uses orjson when the ``speedups`` extra is installed; ``*_ours_pure`` is the
same session with the stdlib's JSON codec (the default install), in the same
rounds.

Run: ``python -m benchmarks.overhead [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from datetime import datetime, timezone
from typing import Any

import aiohttp

from gameball_async import Cashback, GameballSession, RateLimit, _json

from ._common import FakeProcess, pure_json, section_main, spread

ITEMS_PER_BATCH = 10
UNLIMITED = RateLimit(per_second=10**9, per_window=10**9)


def _records(call: int) -> list[Cashback]:
    now = datetime.now(timezone.utc)
    return [
        Cashback(
            customer_id=f"c{n}",
            transaction_id=f"tx-{call}-{n}",
            transaction_time=now,
            amount=12.5,
        )
        for n in range(ITEMS_PER_BATCH)
    ]


def _dicts(call: int) -> list[dict[str, Any]]:
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
    return [
        {
            "customerId": f"c{n}",
            "transactionId": f"raw-{call}-{n}",
            "transactionTime": stamp,
            "amount": 12.5,
        }
        for n in range(ITEMS_PER_BATCH)
    ]


async def _cpu(calls: int, one: Callable[[int], Awaitable[None]]) -> float:
    """CPU milliseconds per 1,000 calls of ``one``."""
    start = time.process_time()
    for call in range(calls):
        await one(call)
    return (time.process_time() - start) * 1000 * 1000 / calls


async def measure(calls: int, rounds: int) -> dict[str, Any]:
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "poll_ours",
            "poll_ours_pure",
            "poll_raw",
            "create_ours",
            "create_ours_pure",
            "create_raw",
        )
    }
    with FakeProcess("--no-rate-limit", "--processing-rate", "1000000") as fake:
        headers = {"APIKey": fake.api_key, "SecretKey": fake.secret_key}
        async with (
            GameballSession(
                fake.api_key, fake.secret_key, base_url=fake.base_url, rate_limit=UNLIMITED
            ) as gb,
            aiohttp.ClientSession() as http,
        ):
            job = await gb.create_batch("cashback", _records(-1))
            await job
            poll_url = f"{fake.base_url}/batch/{job.job_id}"
            create_url = f"{fake.base_url}/batch/cashback"

            async def poll_ours(_: int) -> None:
                await gb.get_status(job.job_id)

            async def poll_raw(_: int) -> None:
                async with http.get(poll_url, headers=headers) as reply:
                    body = await reply.read()
                    if reply.status != 200:
                        raise RuntimeError(reply.status)
                json.loads(body)

            offset = 0

            async def create_ours(call: int) -> None:
                await gb.create_batch("cashback", _records(offset + call))

            async def create_raw(call: int) -> None:
                body = json.dumps({"body": _dicts(offset + call)}).encode()
                async with http.post(
                    create_url, data=body, headers={**headers, "Content-Type": "application/json"}
                ) as reply:
                    data = await reply.read()
                    if reply.status != 200:
                        raise RuntimeError(reply.status)
                json.loads(data)["jobId"]

            # Warm up both (connections, caches) before anything is measured.
            await _cpu(calls // 4, poll_ours)
            await _cpu(calls // 4, poll_raw)
            pairs = (
                ("poll_ours", poll_ours),
                ("poll_ours_pure", poll_ours),
                ("poll_raw", poll_raw),
            )
            creations = (
                ("create_ours", create_ours),
                ("create_ours_pure", create_ours),
                ("create_raw", create_raw),
            )
            for round_ in range(rounds):
                # Alternate which goes first, so drift in the machine's load
                # does not always favour the same side.
                for group in (pairs, creations):
                    for name, call in group if round_ % 2 == 0 else group[::-1]:
                        # *_pure: the stdlib's JSON codec, as without the speedups extra
                        with pure_json() if name.endswith("_pure") else nullcontext():
                            results[name].append(await _cpu(calls, call))
                        offset += calls
    polls = [o / r for o, r in zip(results["poll_ours"], results["poll_raw"], strict=False)]
    creates = [o / r for o, r in zip(results["create_ours"], results["create_raw"], strict=False)]
    pure_polls = [
        o / r for o, r in zip(results["poll_ours_pure"], results["poll_raw"], strict=False)
    ]
    pure_creates = [
        o / r for o, r in zip(results["create_ours_pure"], results["create_raw"], strict=False)
    ]
    return {
        "json_codec": "orjson" if _json.FAST else "stdlib",
        "calls_per_round": calls,
        "items_per_batch": ITEMS_PER_BATCH,
        "cpu_ms_per_1000": {k: spread(v) for k, v in results.items()},
        "ratio_poll": spread(polls),
        "ratio_create": spread(creates),
        "ratio_poll_pure": spread(pure_polls),
        "ratio_create_pure": spread(pure_creates),
        "target_poll": 1.15,
        "target_create": 1.3,
    }


def run(quick: bool) -> dict[str, Any]:
    """Run the overhead benchmark and return its figures."""
    calls, rounds = (300, 3) if quick else (2000, 7)
    return asyncio.run(measure(calls, rounds))


def main() -> None:
    """Run this section alone and print its figures as JSON."""
    section_main(__doc__, run)


if __name__ == "__main__":
    main()
