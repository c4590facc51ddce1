"""Clock skew (issue 9.7): detection lag with the server's clock off by 10 s.

The same job set (same sizes, created and awaited by one session with its
defaults) runs against three fakes in child processes: one whose replies carry
no ``startedAt`` at all (the baseline: the client has only its own
observations), one whose clock is 10 s behind ours and one 10 s ahead
(``--wall-offset``). ``startedAt`` is the server's word about when a job began;
read at face value against our clock, a server 10 s behind makes every job look
10 s older, hence slower, and its next poll late. The target: lag p50 and p99
within 1.5x of the no-``startedAt`` case, per round.

Lag is the time from the job's end (the fake's ``createdAt``, corrected by the
known offset, plus the queue delay and ``totalCount / rate``) to ``as_completed``
yielding it.

Run: ``python -m benchmarks.skew [--quick]``.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from typing import Any

from gameball_async import BalanceInquiry, GameballSession, as_completed
from gameball_async._wire import parse_datetime

from ._common import FakeProcess, section_main, spread

RATE = 20.0
QUEUE_DELAY = 0.5
OFFSET = 10.0
CASES: dict[str, tuple[str, ...]] = {
    "no_started_at": ("--no-started-at",),
    "server_10s_behind": ("--wall-offset", str(-OFFSET)),
    "server_10s_ahead": ("--wall-offset", str(OFFSET)),
}
OFFSETS = {"no_started_at": 0.0, "server_10s_behind": -OFFSET, "server_10s_ahead": OFFSET}


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def _lags(fake: FakeProcess, sizes: list[int], offset: float, tag: str) -> list[float]:
    lags: list[float] = []
    async with GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url) as gb:
        jobs = [
            await gb.create_batch(
                "balance-inquiry",
                [BalanceInquiry(customer_id=f"{tag}-{n}-{i}") for i in range(size)],
            )
            for n, size in enumerate(sizes)
        ]
        async for job in as_completed(jobs):
            detected = time.time()
            assert job.status is not None
            assert job.status.is_terminal
            created = parse_datetime(job.status.raw["createdAt"])
            assert created is not None
            assert job.status.total_count is not None
            ended = created.timestamp() - offset + QUEUE_DELAY + job.status.total_count / RATE
            lags.append(detected - ended)
    return lags


def run(quick: bool, seed: int = 11) -> dict[str, Any]:
    """Run the clock-skew benchmark and return its figures."""
    jobs, max_items, rounds = (8, 80, 1) if quick else (30, 200, 3)
    rng = random.Random(seed)
    sizes = [rng.randint(20, max_items) for _ in range(jobs)]
    per_round: dict[str, dict[str, list[float]]] = {
        case: {"p50": [], "p99": [], "ratio_p50": [], "ratio_p99": []} for case in CASES
    }
    for r in range(rounds):
        seen: dict[str, tuple[float, float]] = {}
        for case, flags in CASES.items():
            with FakeProcess(
                "--processing-rate", str(RATE), "--queue-delay", str(QUEUE_DELAY), *flags
            ) as fake:
                lags = asyncio.run(_lags(fake, sizes, OFFSETS[case], f"{case}-{r}"))
            seen[case] = (statistics.median(lags), _p99(lags))
        base50, base99 = seen["no_started_at"]
        for case, (p50, p99) in seen.items():
            per_round[case]["p50"].append(p50)
            per_round[case]["p99"].append(p99)
            per_round[case]["ratio_p50"].append(p50 / base50)
            per_round[case]["ratio_p99"].append(p99 / base99)
    return {
        "jobs": jobs,
        "item_counts": f"20..{max_items} items at {RATE:g} items/s, {QUEUE_DELAY:g} s queued",
        "rounds": rounds,
        "lag_s": {
            case: {name: spread(values) for name, values in figures.items()}
            for case, figures in per_round.items()
        },
        "target_ratio": 1.5,
    }


def main() -> None:
    """Run this section alone and print its figures as JSON."""
    section_main(__doc__, run)


if __name__ == "__main__":
    main()
