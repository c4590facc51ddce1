"""Fleet (issue 11): P processes on one account, with and without ``RedisFleet``.

One fake in its own process enforces the account's limit (30 requests/s and
360 per 30 s, its defaults) for every run; one real ``redis-server``
(``gameball_async.testing.RedisServer``) serves the fleet. For P = 2, 4 and 8
processes, three scenarios:

- ``split``: each process awaits its own share of the jobs;
- ``skew``: one process holds 70% of the jobs, the others share the rest;
- ``same``: every process awaits every job (replicas awaiting the same work);

each with three client setups, one after the other in the same run: ``fleet``
(``GameballSession(fleet=RedisFleet.from_url(url, expected_processes=P))``,
default ``RateLimit``), ``default`` (today's default ``RateLimit`` in each
process, no fleet) and ``divided`` (``RateLimit(per_second=30 // P,
per_window=360 // P)``, no fleet). The baseline of *same* is one process with
the default session awaiting every job (P = 1), in the same run.

A run: the P workers (``python -m benchmarks._fleet_worker``) start and open
their sessions; the parent creates the jobs (one session, no fleet), resets the
fake's counters and windows and empties Redis, then gives every worker its job
ids on stdin at once (the barrier). Each awaits its jobs with ``as_completed``
and reports per-job detection lag (time after the fake finished the job:
``startedAt + totalCount / rate``), its CPU while awaiting and its counters.
The workers start before the jobs exist because eight interpreters take
seconds to start on two cores: created first, the jobs would end before anyone
waited. They are created at the account's rate and stay queued until
after the barrier.

Figures per run: status requests per job (the fake's count / jobs), 429s (the
fake's), lag p50/p99 over every waiter's detections, Redis round trips (the
commands clients sent, counted on a ``MONITOR`` connection; the commands the
Lua scripts ran are counted apart) and per HTTP request, client CPU ms per
request. Apart, the limiter's own cost: N acquire/release pairs of the fleet
limiter against the local Redis with a limit that never makes them wait, ms
per request, against the local limiter and against a bare redis-py call of a
one-line script (the floor of one round trip); then N more taken by 16 tasks
at once (a burst of one process's polls, which one acquire serves together).

Job set: 40 jobs of 20..400 items at 100 items/s (0.2-4 s of work each),
queued for 0.5 s + jobs / 30 s (1.83 s: every creation, at 30/s, lands before
the barrier). Chosen so that the 27 runs plus the baseline take about 7 minutes
on two cores: jobs of varied length keep progress-aware polling honest, and the
longest run, *same* at P = 8 without shared polling, sends some 8 x 40 x 2.5 =
800 polls, which the account's 360 per 30 s stretches to about 35 s; more jobs
would mostly lengthen that one run. ``--quick``: P = 2 only, 8 jobs of 20..60
items queued for 0.57 s (about 20 s in all).

Run: ``python -m benchmarks.fleet [--quick]``.

Side by side: ``python -m benchmarks.fleet --checkout base=PATH --checkout
new=PATH [--cell 2:split:fleet ...] [--rounds 3]`` runs the given cells
(``P:scenario:setup``; by default *split* P = 2 with and without the fleet,
*skew* P = 4, *same* P = 4 and 8, and *same* P = 8 without the fleet) with
each checkout's own package and benchmark code (its fake, Redis and workers),
the checkouts taking turns in each round; each figure is the median of the
rounds. The 40-job set is the full run's.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from gameball_async import BalanceInquiry, GameballSession, RateLimit
from gameball_async._ratelimit import LocalRateLimiter, RateLimiter
from gameball_async.fleet._background import Background
from gameball_async.fleet._breaker import Breaker
from gameball_async.fleet._keys import Keys
from gameball_async.fleet._limiter import FleetRateLimiter
from gameball_async.testing import RedisServer

from ._common import FakeProcess, add_quick, run_main, spread
from ._fleet_compare import COMPARED, compare

ROOT = Path(__file__).resolve().parent.parent
RATE = 100.0  # items per second per job on the fake
BURST_TASKS = 16  # tasks asking for slots at once in the limiter's burst figure
SCENARIOS = ("split", "skew", "same")
SETUPS = ("fleet", "default", "divided")
#: Bound on one run (start-up to the last worker's line): a hang becomes an error.
PATIENCE = 300.0
_MARK = "gbbench-mark-"


def _script_names() -> dict[str, str]:
    # each fleet script's SHA1 (what EVALSHA names it by) to its constant's name
    from gameball_async.fleet import _limiter_scripts, _polls_scripts, _registry

    names: dict[str, str] = {}
    for module in (_limiter_scripts, _polls_scripts, _registry):
        for name, value in vars(module).items():
            if name.lstrip("_").isupper() and isinstance(value, str) and "redis.call" in value:
                where = module.__name__.rsplit("._", 1)[-1].removesuffix("_scripts")
                names[hashlib.sha1(value.encode()).hexdigest()] = f"{where}.{name.strip('_')}"
    return names


class RedisCounter:
    """Counts the commands Redis runs, on a ``MONITOR`` connection in a thread.

    :meth:`mark` sends a marker (``ECHO``) and returns the counts once the
    monitor has seen it, so every command sent before it is counted.
    """

    def __init__(self, url: str) -> None:
        self._control = redis.Redis.from_url(url)
        # no read timeout: the monitor is silent while workers start
        self._monitor = redis.Redis.from_url(url, socket_timeout=None)
        self._lock = threading.Condition()
        self._counts = {"round_trips": 0, "script_commands": 0}
        self._scripts = _script_names()
        self._seen: dict[str, dict[str, int]] = {}
        self._marks = 0
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the MONITOR connection did not open")

    def _listen(self) -> None:
        with self._monitor.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._ready.set()
            for command in monitor.listen():
                text = str(command["command"])
                if text.startswith(f"ECHO {_MARK}"):
                    name = text.split(" ", 1)[1]
                    with self._lock:
                        self._seen[name] = dict(self._counts)
                        self._lock.notify_all()
                    if name.endswith("-stop"):
                        return
                elif command["client_type"] == "lua":
                    self._counts["script_commands"] += 1
                else:
                    self._counts["round_trips"] += 1
                    words = text.split(" ", 2)
                    kind = words[0].upper()
                    if kind in ("EVALSHA", "EVAL") and len(words) > 1:
                        kind = self._scripts.get(words[1].strip("'\""), kind)
                    # by command (a script by its name), "cmd:" keeping them apart
                    key = f"cmd:{kind}"
                    self._counts[key] = self._counts.get(key, 0) + 1

    def mark(self, stop: bool = False) -> dict[str, int]:
        """The counts so far (every command sent before this call included)."""
        self._marks += 1
        name = f"{_MARK}{self._marks}{'-stop' if stop else ''}"
        self._control.echo(name)
        with self._lock:
            if not self._lock.wait_for(lambda: name in self._seen, timeout=30):
                raise RuntimeError("the MONITOR connection stopped counting")
            return self._seen.pop(name)

    def flush(self) -> None:
        """Empty Redis (the last run's limiter log and registry)."""
        self._control.flushall()

    def close(self) -> None:
        """Stop the monitor thread and close both connections."""
        self.mark(stop=True)
        self._thread.join(10)
        self._control.close()
        self._monitor.close()


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def create_jobs(fake: FakeProcess, sizes: list[int], tag: str) -> list[str]:
    """Create the jobs with one default session (no fleet), at the account's rate."""
    async with GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url) as gb:
        jobs = await asyncio.gather(
            *(
                gb.create_batch(
                    "balance-inquiry",
                    [BalanceInquiry(customer_id=f"{tag}-{n}-{i}") for i in range(size)],
                )
                for n, size in enumerate(sizes)
            )
        )
    return [job.job_id for job in jobs]


def shares(ids: list[str], scenario: str, processes: int) -> list[list[str]]:
    """The job ids each process awaits."""
    if scenario == "same":
        return [list(ids) for _ in range(processes)]
    if scenario == "split" or processes == 1:
        return [ids[p::processes] for p in range(processes)]
    held = round(0.7 * len(ids))
    rest = ids[held:]
    return [ids[:held], *(rest[p :: processes - 1] for p in range(processes - 1))]


def _env() -> dict[str, str]:
    # this checkout's package and benchmarks first, whatever the caller's cwd
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def one_run(
    fake: FakeProcess,
    counter: RedisCounter,
    redis_url: str,
    sizes: list[int],
    processes: int,
    scenario: str,
    setup: str,
) -> dict[str, Any]:
    """One (P, scenario, setup): start the workers, create the jobs, release the barrier."""
    config = {
        "setup": setup,
        "processes": processes,
        "base_url": fake.base_url,
        "api_key": fake.api_key,
        "secret_key": fake.secret_key,
        "redis_url": redis_url,
        "rate": RATE,
    }
    command = [sys.executable, "-m", "benchmarks._fleet_worker", json.dumps(config)]
    workers = [
        subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_env()
        )
        for _ in range(processes)
    ]

    def kill_all() -> None:
        for worker in workers:
            worker.kill()

    watchdog = threading.Timer(PATIENCE, kill_all)
    watchdog.start()
    try:
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a {setup} worker did not start (exit {worker.poll()})")
        fake.reset()  # the last run's requests are still in the fake's windows
        ids = asyncio.run(create_jobs(fake, sizes, f"{processes}-{scenario}-{setup}"))
        fake.reset()
        counter.flush()
        before = counter.mark()
        for worker, share in zip(workers, shares(ids, scenario, processes), strict=True):
            assert worker.stdin is not None
            worker.stdin.write(json.dumps(share) + "\n")
            worker.stdin.flush()
        results = []
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            if not line:
                raise RuntimeError(f"a {setup} worker ended without its figures")
            results.append(json.loads(line))
        for worker in workers:
            worker.wait(PATIENCE)
    finally:
        watchdog.cancel()
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            for stream in (worker.stdin, worker.stdout):
                if stream is not None:
                    stream.close()
    after = counter.mark()
    stats = fake.stats()
    counts = stats["counts"]
    lags = [lag for result in results for lag in result["lags"]]
    requests = sum(result["requests"] for result in results)
    round_trips = after["round_trips"] - before["round_trips"]
    return {
        "processes": processes,
        "scenario": scenario,
        "setup": setup,
        "jobs": len(ids),
        "status_per_job": round(counts.get("status", 0) / len(ids), 2),
        "rate_limited_429": counts.get("rate_limited", 0),
        "lag_p50_s": round(statistics.median(lags), 3),
        "lag_p99_s": round(_p99(lags), 3),
        "http_requests": counts.get("requests", 0),
        "max_per_second": stats["max_per_second"],
        "max_per_window": stats["max_per_window"],
        "redis_round_trips": round_trips,
        "redis_script_commands": after["script_commands"] - before["script_commands"],
        "redis_per_request": round(round_trips / max(counts.get("requests", 0), 1), 2),
        # per HTTP request, by command (a fleet script by its constant's name)
        "redis_by_command": {
            key[4:]: round((after[key] - before.get(key, 0)) / max(counts.get("requests", 0), 1), 3)
            for key in sorted(after)
            if key.startswith("cmd:") and after[key] > before.get(key, 0)
        },
        "cpu_ms_per_request": round(
            1e3 * sum(result["cpu_seconds"] for result in results) / max(requests, 1), 3
        ),
        "wall_s": round(max(result["wall_seconds"] for result in results), 1),
        # the fleet's own view: slots taken from the local share while Redis was
        # unavailable, and which status-read strategy its sessions used
        "limiter_fallback_slots": sum(r.get("limiter_fallback_slots") or 0 for r in results),
        "polls_strategy": sorted({str(r.get("polls_strategy")) for r in results}),
    }


async def _slots(limiter: RateLimiter, n: int) -> tuple[float, float]:
    for _ in range(50):  # warm: connection, script load
        async with limiter.slot():
            pass
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        async with limiter.slot():
            pass
    return time.process_time() - cpu, time.perf_counter() - wall


async def _burst(limiter: RateLimiter, n: int, tasks: int) -> tuple[float, float]:
    # n slots taken by `tasks` tasks at once, as a process's burst of polls asks
    left = n

    async def ask() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with limiter.slot():
                await asyncio.sleep(0)  # the request, a loop turn in flight

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(ask() for _ in range(tasks)))
    return time.process_time() - cpu, time.perf_counter() - wall


async def _bare_script(client: aioredis.Redis, n: int) -> tuple[float, float]:
    # the floor: one redis-py script call (a one-line script) per request
    script = client.register_script("return 1")
    for _ in range(50):
        await script(keys=["bench-overhead:floor"], args=[1])
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await script(keys=["bench-overhead:floor"], args=[1])
    return time.process_time() - cpu, time.perf_counter() - wall


async def limiter_overhead(url: str, n: int) -> dict[str, Any]:
    """N acquire/release pairs of the fleet limiter (never made to wait) against the local one."""
    never_waits = RateLimit(per_second=10**7, per_window=10**8)
    local_cpu, local_wall = await _slots(LocalRateLimiter(never_waits), n)
    client = aioredis.Redis.from_url(url)
    background = Background()
    limiter = FleetRateLimiter(
        client,
        Keys("bench-overhead"),
        Breaker(timeout=0.5),
        never_waits,
        request_bound=31.0,
        process_id="bench",
        expected_processes=1,
        spawn=background.spawn,
    )
    try:
        floor_cpu, floor_wall = await _bare_script(client, n)
        cpu, wall = await _slots(limiter, n)
        trips = limiter.round_trips
        burst_cpu, burst_wall = await _burst(limiter, n, BURST_TASKS)
        burst_trips = limiter.round_trips - trips
        started = time.perf_counter()
        await background.aclose(10.0)  # the releases still in flight count too
        wall += time.perf_counter() - started
    finally:
        await client.aclose()
    return {
        "requests": n,
        "fleet_ms_per_request": round(1e3 * wall / n, 4),
        "fleet_cpu_ms_per_request": round(1e3 * cpu / n, 4),
        "local_ms_per_request": round(1e3 * local_wall / n, 4),
        "local_cpu_ms_per_request": round(1e3 * local_cpu / n, 4),
        "round_trips_per_request": round(trips / (n + 50), 2),
        "bare_script_ms_per_request": round(1e3 * floor_wall / n, 4),
        "bare_script_cpu_ms_per_request": round(1e3 * floor_cpu / n, 4),
        "burst_tasks": BURST_TASKS,
        "burst_ms_per_request": round(1e3 * burst_wall / n, 4),
        "burst_cpu_ms_per_request": round(1e3 * burst_cpu / n, 4),
        "burst_round_trips_per_request": round(burst_trips / n, 3),
        "target_ms": 1.0,
    }


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the rounds of a (P, scenario, setup): medians, and totals of the 429s
    and fallback slots (one 429 in any round counts)."""
    row: dict[str, Any] = {"rounds": len(runs)}
    for key, value in runs[0].items():
        if key in ("rate_limited_429", "limiter_fallback_slots"):
            row[key] = sum(run[key] for run in runs)
        elif key == "polls_strategy":
            row[key] = sorted({name for run in runs for name in run[key]})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            row[key] = statistics.median(run[key] for run in runs)
        elif key == "redis_by_command":
            names = sorted({name for run in runs for name in run[key]})
            row[key] = {n: statistics.median(run[key].get(n, 0) for run in runs) for n in names}
        else:
            row[key] = value
    if len(runs) > 1:
        row["lag_p99_s_spread"] = spread([run["lag_p99_s"] for run in runs])
    return row


def run(quick: bool, seed: int = 17, rounds: int = 3) -> dict[str, Any]:
    """Run the fleet benchmark and return its figures (P = 2, a tiny job set and one
    round with ``quick``).

    *split* and *skew* (and the baseline) run ``rounds`` times, interleaved, and
    each figure is the median (the p99 of 40 lags is nearly their maximum: one
    round is noisy); *same*, the long one, runs once.
    """
    jobs, max_items, counts = (8, 60, (2,)) if quick else (40, 400, (2, 4, 8))
    rounds = 1 if quick else rounds
    rng = random.Random(seed)
    sizes = [rng.randint(20, max_items) for _ in range(jobs)]
    seen: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    skew_ratios: dict[int, list[float]] = {p: [] for p in counts}
    server = RedisServer()
    server.start()
    started = time.perf_counter()
    try:
        overhead = asyncio.run(limiter_overhead(server.url, 500 if quick else 5000))
        # queued long enough for every creation (at 30/s) to land before the barrier
        queue_delay = round((0.3 if quick else 0.5) + jobs / 30, 2)
        with FakeProcess("--processing-rate", str(RATE), "--queue-delay", str(queue_delay)) as fake:
            counter = RedisCounter(server.url)

            def once(p: int, scenario: str, setup: str) -> dict[str, Any]:
                row = one_run(fake, counter, server.url, sizes, p, scenario, setup)
                seen.setdefault((p, scenario, setup), []).append(row)
                return row

            try:
                for _ in range(rounds):
                    once(1, "same", "default")
                for p in counts:
                    for _ in range(rounds):
                        lag = {
                            s: {u: once(p, s, u)["lag_p99_s"] for u in SETUPS}
                            for s in SCENARIOS[:2]
                        }
                        skew_ratios[p].append(
                            lag["skew"]["fleet"] / max(lag["split"]["fleet"], 1e-9)
                        )
                    for setup in SETUPS:
                        once(p, "same", setup)
            finally:
                counter.close()
    finally:
        server.close()
    rows = [
        merge(seen[p, scenario, setup])
        for p in counts
        for scenario in SCENARIOS
        for setup in SETUPS
    ]
    return {
        "jobs": jobs,
        "item_counts": f"20..{max_items} items at {RATE:g} items/s, {queue_delay:g} s queued",
        "processes": list(counts),
        "rounds": rounds,
        "baseline": merge(seen[1, "same", "default"]),
        "rows": rows,
        # per round, the fleet's skew p99 over its split p99 of the same round
        "skew_p99_ratio": {str(p): spread(ratios) for p, ratios in skew_ratios.items()},
        "limiter_overhead": overhead,
        # whether the fleet's sessions polled through the shared polling (before it
        # is in, RedisFleet's stand-in polls each process's jobs locally)
        "shared_polling": all(
            "_LocalPolls" not in r["polls_strategy"] for r in rows if r["setup"] == "fleet"
        ),
        "targets": {"same_polls_ratio": 1.15, "skew_p99_ratio": 1.3, "limiter_ms": 1.0},
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_quick(parser)
    parser.add_argument(
        "--checkout",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a checkout to run side by side with the others (repeatable)",
    )
    parser.add_argument(
        "--cell", action="append", default=[], metavar="P:SCENARIO:SETUP", help="(repeatable)"
    )
    parser.add_argument("--rounds", type=int, default=3)


def _main(args: argparse.Namespace) -> None:
    if args.checkout:
        checkouts = dict(item.split("=", 1) for item in args.checkout)
        checkouts = {label: str(Path(path).resolve()) for label, path in checkouts.items()}
        cells = args.cell or list(COMPARED)
        for cell in cells:
            p, scenario, setup = [*cell.split(":"), "", ""][:3]
            if not p.isdigit() or scenario not in SCENARIOS or setup not in SETUPS:
                known = f"{SCENARIOS}, {SETUPS}"
                raise SystemExit(f"a cell is P:scenario:setup ({known}), not {cell!r}")
        figures = compare(checkouts, cells, args.rounds, patience=PATIENCE)
    else:
        figures = run(args.quick, rounds=args.rounds)
    print(json.dumps(figures, indent=2))


def main() -> None:
    """Run this section alone (or checkouts side by side) and print its figures as JSON."""
    run_main(__doc__, _arguments, _main)


if __name__ == "__main__":
    main()
