"""Polling strategies: the shared scheduler against the loops people write today.

Each strategy awaits its own fresh set of N jobs with the same varied lengths
on the fake server (a child process enforcing Gameball's documented limits,
30 requests/s and 360 per 30 s), one strategy after the other, in one run:

- ``ours``: ``GameballSession`` defaults (shared scheduler, progress-aware
  polling, client-side rate limit), jobs awaited with ``as_completed``;
- ``naive-1s``: a task per job, ``GET`` then ``sleep(1)``;
- ``expo-1s-x2-cap30``: a task per job, sleeping 1 s, x2, capped at 30 s;
- ``backoff``: ``backoff.on_predicate(backoff.expo, max_value=30)``;
- ``tenacity``: ``retry_if_result`` with ``wait_exponential(max=30)``.

The peers use raw aiohttp and sleep 1 s on a 429 (as such code does). For
each: polls per job, detection lag after the job ended (p50/p99, from the
fake's start time and processing rate), 429s received, client CPU per 1,000
polls and per job (``cpu_ms_per_job``), wall time; a full run repeats the
strategies three times, interleaved, and keeps the medians (the spread of
``cpu_ms_per_job`` too). Then ``drain``: 1,000 jobs that are already finished, where
the best any client can do is one poll each at the rate limit, so the wall
time is compared with that bound (polls needed / 30 per second).

Run: ``python -m benchmarks.polling [--quick]``.

``--attached`` runs another profile instead: jobs of about 3 s to 40 s
(``ATTACHED_RATE`` items per second each, ``startedAt`` in the replies),
created one every ``ATTACHED_SPACING`` seconds by this process and each awaited
at once from its id (``gb.job(id, "cashback")``) by a client in a process of its
own, as a service awaiting jobs created elsewhere does. ``--checkout LABEL=PATH``
(repeatable) names the package checkouts to measure; each client runs with
``PYTHONPATH=PATH`` against a fake of its own, all checkouts side by side in
each round (so a busy machine slows them alike), and each figure is the median
of the rounds. Polls and 429s are the fake's counts of status reads and
rate-limited replies; CPU is the client process's from its first id to its
last return. Without ``--checkout`` it measures this checkout alone.

``--wall-offset S`` runs the fake's clock S seconds off ours (``serve
--wall-offset``), so the replies' ``startedAt`` is that far off too.

Run: ``python -m benchmarks.polling --attached --checkout 0.1.0=/tmp/v010
--checkout HEAD=. [--rounds 3] [--wall-offset S] [--quick]``.

``--ours-only`` runs the default profile with ours alone, a row per round and
checkout, the checkouts taking turns one after the other (``--checkout`` as
above): ``python -m benchmarks.polling --ours-only --checkout base=/tmp/base
--checkout new=. --rounds 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import backoff
import tenacity

from gameball_async import BalanceInquiry, GameballSession, RateLimit, as_completed
from gameball_async._decode import decode_status
from gameball_async._wire import parse_datetime

from ._common import FakeProcess, add_quick, run_main, spread

RATE = 20.0  # items per second per job on the fake
QUEUE_DELAY = 0.5
FAST = RateLimit(per_second=1000, per_window=100_000)  # for setting jobs up


@dataclass
class Result:
    strategy: str
    jobs: int
    polls: int = 0
    rate_limited: int = 0
    lags: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        lags = sorted(self.lags)
        return {
            "strategy": self.strategy,
            "jobs": self.jobs,
            "polls_per_job": round(self.polls / self.jobs, 2),
            "lag_p50_s": round(statistics.median(lags), 3),
            "lag_p99_s": round(lags[min(len(lags) - 1, int(0.99 * len(lags)))], 3),
            "rate_limited_429": self.rate_limited,
            "cpu_ms_per_1000_polls": round(1e6 * self.cpu_seconds / max(self.polls, 1), 1),
            # Per poll, a strategy that polls only near the end pays for the
            # biggest replies (every per-item result); per job is the fair unit.
            "cpu_ms_per_job": round(1e3 * self.cpu_seconds / self.jobs, 2),
            "wall_s": round(self.wall_seconds, 1),
        }


def end_time(raw: dict[str, Any]) -> float:
    """Wall-clock time at which the fake finished the job."""
    started = parse_datetime(raw["startedAt"])
    assert started is not None
    return started.timestamp() + float(raw["totalCount"]) / RATE


async def create_jobs(fake: FakeProcess, sizes: list[int], tag: str) -> list[str]:
    """Create the jobs quickly (the fake's limit is reset afterwards)."""
    async with GameballSession(
        fake.api_key, fake.secret_key, base_url=fake.base_url, rate_limit=FAST
    ) as gb:
        ids = []
        for n, size in enumerate(sizes):
            items = [BalanceInquiry(customer_id=f"{tag}-{n}-{i}") for i in range(size)]
            ids.append((await gb.create_batch("balance-inquiry", items)).job_id)
    fake.reset()
    return ids


async def run_ours(fake: FakeProcess, ids: list[str], result: Result) -> None:
    async with GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url) as gb:
        jobs = [gb.job(job_id, "balance-inquiry") for job_id in ids]
        cpu, wall = time.process_time(), time.perf_counter()
        async for job in as_completed(jobs):
            detected = time.time()
            assert job.status is not None
            assert job.status.is_terminal
            result.lags.append(detected - end_time(dict(job.status.raw)))
        result.cpu_seconds = time.process_time() - cpu
        result.wall_seconds = time.perf_counter() - wall
        result.polls = gb.stats().polls
    result.rate_limited = fake.stats()["counts"].get("rate_limited", 0)


class _Throttled(Exception):
    pass


Poll = Callable[[str], Awaitable[Any]]


def peer(make_poll: Callable[[Poll], Poll]) -> Callable[..., Awaitable[None]]:
    """A strategy polling each job from its own task with raw aiohttp."""

    async def run(fake: FakeProcess, ids: list[str], result: Result) -> None:
        headers = {"APIKey": fake.api_key, "SecretKey": fake.secret_key}
        async with aiohttp.ClientSession(headers=headers) as http:

            async def get(job_id: str) -> Any:
                result.polls += 1
                async with http.get(f"{fake.base_url}/batch/{job_id}") as reply:
                    body = await reply.read()
                    if reply.status == 429:
                        result.rate_limited += 1
                        raise _Throttled
                return decode_status(json.loads(body), job_id=job_id)

            poll = make_poll(get)

            async def one(job_id: str) -> None:
                status = await poll(job_id)
                result.lags.append(time.time() - end_time(dict(status.raw)))

            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(job_id) for job_id in ids))
            result.cpu_seconds = time.process_time() - cpu
            result.wall_seconds = time.perf_counter() - wall

    return run


def sleeping_loop(delay_for: Callable[[int], float]) -> Callable[[Poll], Poll]:
    def make(get: Poll) -> Poll:
        async def poll(job_id: str) -> Any:
            attempt = 0
            while True:
                try:
                    status = await get(job_id)
                except _Throttled:
                    await asyncio.sleep(1.0)
                    continue
                if status.is_terminal:
                    return status
                await asyncio.sleep(delay_for(attempt))
                attempt += 1

        return poll

    return make


def with_backoff(get: Poll) -> Poll:
    @backoff.on_exception(backoff.constant, _Throttled, interval=1, jitter=None)
    @backoff.on_predicate(backoff.expo, lambda status: not status.is_terminal, max_value=30)
    async def poll(job_id: str) -> Any:
        return await get(job_id)

    return poll


def with_tenacity(get: Poll) -> Poll:
    @tenacity.retry(
        retry=tenacity.retry_if_result(lambda status: not status.is_terminal)
        | tenacity.retry_if_exception_type(_Throttled),
        wait=tenacity.wait_exponential(multiplier=1, max=30),
    )
    async def poll(job_id: str) -> Any:
        return await get(job_id)

    return poll


STRATEGIES: dict[str, Callable[..., Awaitable[None]]] = {
    "ours": run_ours,
    "naive-1s": peer(sleeping_loop(lambda attempt: 1.0)),
    "expo-1s-x2-cap30": peer(sleeping_loop(lambda attempt: min(30.0, 2.0**attempt))),
    "backoff": peer(with_backoff),
    "tenacity": peer(with_tenacity),
}


async def strategies(jobs: int, max_items: int, seed: int, rounds: int) -> list[dict[str, Any]]:
    """Every strategy once per round, interleaved; each figure is the median of the rounds."""
    rng = random.Random(seed)
    sizes = [rng.randint(20, max_items) for _ in range(jobs)]
    seen: dict[str, list[dict[str, Any]]] = {name: [] for name in STRATEGIES}
    with FakeProcess("--processing-rate", str(RATE), "--queue-delay", str(QUEUE_DELAY)) as fake:
        for r in range(rounds):
            for name, strategy in STRATEGIES.items():
                ids = await create_jobs(fake, sizes, f"{name}-{r}")
                result = Result(name, jobs)
                await strategy(fake, ids, result)
                seen[name].append(result.row())
    rows = []
    for name, runs in seen.items():
        row: dict[str, Any] = {"strategy": name, "jobs": jobs, "rounds": rounds}
        for key in runs[0]:
            if key not in row:
                row[key] = statistics.median(run[key] for run in runs)
        row["cpu_ms_per_job_spread"] = spread([run["cpu_ms_per_job"] for run in runs])
        rows.append(row)
    return rows


def fastest_schedule(
    requests: int, per_second: int = 30, per_window: int = 360, window: float = 30.0
) -> float:
    """Seconds the last of ``requests`` needs at the earliest under both limits.

    Greedy: request k goes as soon as the windows allow, so at the later of
    1 s after request k-30 and 30 s after request k-360 (30 at once, 360 in
    the first 12 s, then nothing until the first leaves the 30 s window).
    """
    times: list[float] = []
    for k in range(requests):
        earliest = 0.0
        if k >= per_second:
            earliest = max(earliest, times[k - per_second] + 1.0)
        if k >= per_window:
            earliest = max(earliest, times[k - per_window] + window)
        times.append(earliest)
    return times[-1] if times else 0.0


async def drain(jobs: int) -> dict[str, Any]:
    """Await ``jobs`` already-finished jobs: the rate limit is the only bound."""
    with FakeProcess("--processing-rate", "1000000", "--queue-delay", "0") as fake:
        ids = await create_jobs(fake, [1] * jobs, "drain")
        async with GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url) as gb:
            handles = [gb.job(job_id, "balance-inquiry") for job_id in ids]
            started = time.perf_counter()
            async for _ in as_completed(handles):
                pass
            wall = time.perf_counter() - started
            polls = gb.stats().polls
        stats = fake.stats()
    bound = fastest_schedule(polls)
    return {
        "jobs": jobs,
        "polls": polls,
        "wall_s": round(wall, 2),
        "lower_bound_s": round(bound, 2),
        "ratio_to_bound": round(wall / bound, 3) if bound else None,
        "rate_limited_429": stats["counts"].get("rate_limited", 0),
        "target_ratio": 1.2,
    }


def run(quick: bool, seed: int = 7, rounds: int = 3) -> dict[str, Any]:
    """Run the polling benchmark and return its figures (one round with ``quick``)."""
    jobs, max_items = (12, 120) if quick else (60, 800)
    rows = asyncio.run(strategies(jobs, max_items, seed, 1 if quick else rounds))
    drained = asyncio.run(drain(40 if quick else 1000))
    return {
        "jobs": jobs,
        "item_counts": f"20..{max_items} items at {RATE:g} items/s, {QUEUE_DELAY:g} s queued",
        "strategies": rows,
        "drain": drained,
    }


ATTACHED_RATE = 20.0  # items per second per job: 60 items run 3 s, 800 run 40 s
ATTACHED_SPACING = 0.5  # seconds between two creations
ATTACHED_QUEUE_DELAY = 0.3
# The client learns each id this long after its creation (uniform from 0): a
# service picking ids up from a queue or a table, so it first polls most jobs
# part-way through their run.
ATTACH_AFTER_MAX = 10.0
_CLIENT = Path(__file__).with_name("_attached_client.py")
_HERE = str(Path(__file__).resolve().parent.parent)


def attached_sizes(jobs: int, seed: int, shortest: float = 3.0, longest: float = 40.0) -> list[int]:
    """Item counts of jobs running ``shortest`` to ``longest`` seconds, evenly spread, shuffled."""
    step = (longest - shortest) / max(jobs - 1, 1)
    sizes = [round((shortest + k * step) * ATTACHED_RATE) for k in range(jobs)]
    random.Random(seed).shuffle(sizes)
    return sizes


async def start_client(
    fake: FakeProcess, checkout: str, rate: float, wall_offset: float = 0.0
) -> asyncio.subprocess.Process:
    """``_attached_client.py`` against ``fake``, importing the package of ``checkout``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(_CLIENT),
        fake.base_url,
        fake.api_key,
        fake.secret_key,
        str(rate),
        str(wall_offset),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": checkout},
    )


async def attached_once(
    label: str,
    checkout: str,
    sizes: list[int],
    attach_after: list[float],
    tag: str,
    wall_offset: float = 0.0,
) -> dict[str, Any]:
    """One client of ``checkout`` awaiting jobs created at a steady rate, against its own fake."""
    args = (
        "--processing-rate",
        str(ATTACHED_RATE),
        "--queue-delay",
        str(ATTACHED_QUEUE_DELAY),
        "--wall-offset",
        str(wall_offset),
    )
    with FakeProcess(*args) as fake:
        client = await start_client(fake, checkout, ATTACHED_RATE, wall_offset)
        assert client.stdin is not None
        stdin = client.stdin

        async def hand_over(job_id: str, after: float) -> None:
            await asyncio.sleep(after)
            stdin.write(f"{job_id}\n".encode())
            await stdin.drain()

        handing: list[asyncio.Future[None]] = []
        wall = time.perf_counter()
        async with GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url) as gb:
            for n, size in enumerate(sizes):
                items = [
                    {
                        "customerId": f"{tag}-{n}-{i}",
                        "transactionId": f"{tag}-{n}-{i}",
                        "transactionTime": "2026-12-01T00:00:00.000Z",
                        "amount": 10,
                    }
                    for i in range(size)
                ]
                job = await gb.create_batch("cashback", items)
                handing.append(asyncio.ensure_future(hand_over(job.job_id, attach_after[n])))
                await asyncio.sleep(ATTACHED_SPACING)
            await asyncio.gather(*handing)
        client.stdin.write(b"\n")
        await client.stdin.drain()
        out, _ = await client.communicate()
        wall = time.perf_counter() - wall
        if client.returncode != 0:
            raise RuntimeError(f"the {label} client failed ({client.returncode})")
        report = json.loads(out.decode().strip().splitlines()[-1])
        counts = (await asyncio.to_thread(fake.stats))["counts"]
    lags = sorted(report["lags"])
    jobs = len(sizes)
    return {
        "checkout": label,
        "package": report["package"],
        "jobs": jobs,
        "polls_per_job": round(counts.get("status", 0) / jobs, 3),
        # one poll for a job that ended before it was handed over, else one to
        # see it running and one at its end
        "information_limit": round((2 * jobs - report["ended_before_attach"]) / jobs, 3),
        "lag_p50_s": round(statistics.median(lags), 3),
        "lag_p99_s": round(lags[min(len(lags) - 1, int(0.99 * len(lags)))], 3),
        "lag_max_s": round(lags[-1], 3),
        "rate_limited_429": counts.get("rate_limited", 0),
        "cpu_ms_per_job": round(1e3 * report["cpu_seconds"] / jobs, 2),
        "wall_s": round(wall, 1),
    }


async def attached(
    checkouts: dict[str, str], jobs: int, seed: int, rounds: int, wall_offset: float = 0.0
) -> list[dict[str, Any]]:
    """Every checkout side by side, ``rounds`` times; each figure the median of the rounds."""
    sizes = attached_sizes(jobs, seed)
    rng = random.Random(seed + 1)
    attach_after = [rng.uniform(0.0, ATTACH_AFTER_MAX) for _ in sizes]
    seen: dict[str, list[dict[str, Any]]] = {label: [] for label in checkouts}
    for r in range(rounds):
        runs = await asyncio.gather(
            *(
                attached_once(label, path, sizes, attach_after, f"{label}-{r}", wall_offset)
                for label, path in checkouts.items()
            )
        )
        for run_ in runs:
            seen[run_["checkout"]].append(run_)
            print(json.dumps({"round": r, **run_}), file=sys.stderr, flush=True)
    rows = []
    for label, runs_ in seen.items():
        row: dict[str, Any] = {"checkout": label, "path": checkouts[label], "rounds": rounds}
        for key in (
            "jobs",
            "polls_per_job",
            "information_limit",
            "lag_p50_s",
            "lag_p99_s",
            "lag_max_s",
            "rate_limited_429",
            "cpu_ms_per_job",
            "wall_s",
        ):
            row[key] = statistics.median(run_[key] for run_ in runs_)
        row["attach_after_s"] = f"0..{ATTACH_AFTER_MAX:g}"
        row["polls_per_job_spread"] = spread([run_["polls_per_job"] for run_ in runs_])
        row["cpu_ms_per_job_spread"] = spread([run_["cpu_ms_per_job"] for run_ in runs_])
        rows.append(row)
    return rows


def run_attached(
    checkouts: dict[str, str],
    quick: bool,
    seed: int = 7,
    rounds: int = 3,
    wall_offset: float = 0.0,
) -> dict[str, Any]:
    """The attached profile's figures (12 jobs, one round with ``quick``)."""
    jobs = 12 if quick else 60
    rows = asyncio.run(attached(checkouts, jobs, seed, 1 if quick else rounds, wall_offset))
    return {
        "profile": (
            f"{jobs} jobs of 3..40 s at {ATTACHED_RATE:g} items/s, one created every "
            f"{ATTACHED_SPACING:g} s, each awaited from its id by a client process "
            f"0..{ATTACH_AFTER_MAX:g} s after its creation; server clock {wall_offset:+g} s"
        ),
        "checkouts": rows,
    }


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_quick(parser)
    parser.add_argument("--attached", action="store_true", help="the jobs-attached-by-id profile")
    parser.add_argument(
        "--checkout",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a checkout whose package --attached or --ours-only measures (repeatable)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--ours-only",
        action="store_true",
        help="the default profile with ours alone, a row per round (no peers, no drain)",
    )
    parser.add_argument(
        "--wall-offset",
        type=float,
        default=0.0,
        help="seconds the attached profile's fake clock runs ahead of ours (negative: behind)",
    )


def _main(args: argparse.Namespace) -> None:
    if args.attached:
        checkouts = dict(item.split("=", 1) for item in args.checkout) or {"this": _HERE}
        checkouts = {label: str(Path(path).resolve()) for label, path in checkouts.items()}
        figures = run_attached(
            checkouts, args.quick, rounds=args.rounds, wall_offset=args.wall_offset
        )
    elif args.ours_only:
        checkouts = dict(item.split("=", 1) for item in args.checkout) or {"this": _HERE}
        checkouts = {label: str(Path(path).resolve()) for label, path in checkouts.items()}
        figures = asyncio.run(ours_rounds(checkouts, args.quick, rounds=args.rounds))
    else:
        figures = run(args.quick, rounds=args.rounds)
    print(json.dumps(figures, indent=2))


async def ours_rounds(
    checkouts: dict[str, str], quick: bool, *, rounds: int, seed: int = 7
) -> dict[str, Any]:
    """The default profile with ours alone, a row per round and checkout.

    In each round the checkouts take turns (the order alternates), each one's
    client (``_attached_client.py`` with ``PYTHONPATH`` at the checkout) given
    every job id at once against a fake of its own; one after the other, not
    side by side, so none competes with another for the CPU. The round to
    round spread of this profile (when the jobs started against when their
    first looks fall due) is larger than most changes: compare checkouts
    round by round.
    """
    jobs, max_items = (12, 120) if quick else (60, 800)
    rng = random.Random(seed)
    sizes = [rng.randint(20, max_items) for _ in range(jobs)]
    rows: list[dict[str, Any]] = []
    for r in range(rounds):
        turn = list(checkouts.items())
        for label, checkout in turn if r % 2 == 0 else turn[::-1]:
            queued = ("--processing-rate", str(RATE), "--queue-delay", str(QUEUE_DELAY))
            with FakeProcess(*queued) as fake:
                ids = await create_jobs(fake, sizes, f"{label}-{r}")
                client = await start_client(fake, checkout, RATE)
                out, _ = await client.communicate("".join(f"{i}\n" for i in [*ids, ""]).encode())
                if client.returncode != 0:
                    raise RuntimeError(f"the {label} client failed ({client.returncode})")
                report = json.loads(out.decode().strip().splitlines()[-1])
                counts = (await asyncio.to_thread(fake.stats))["counts"]
            lags = sorted(report["lags"])
            rows.append(
                {
                    "round": r,
                    "checkout": label,
                    "package": report["package"],
                    "polls_per_job": round(counts.get("status", 0) / jobs, 3),
                    "lag_p50_s": round(statistics.median(lags), 3),
                    "lag_max_s": round(lags[-1], 3),
                    "rate_limited_429": counts.get("rate_limited", 0),
                    "cpu_ms_per_job": round(1e3 * report["cpu_seconds"] / jobs, 2),
                }
            )
    means = {
        label: round(
            statistics.mean(row["polls_per_job"] for row in rows if row["checkout"] == label), 3
        )
        for label in checkouts
    }
    return {"jobs": jobs, "rounds": rows, "mean_polls_per_job": means}


def main() -> None:
    """Run this section alone and print its figures as JSON."""
    run_main(__doc__, _arguments, _main)


if __name__ == "__main__":
    main()
