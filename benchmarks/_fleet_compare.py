"""``python -m benchmarks.fleet --checkout LABEL=PATH ...``: fleet cells of several
checkouts side by side (see :mod:`benchmarks.fleet`, which calls it: nothing
here imports it, each checkout's own runs its cells).

Each checkout runs its cells with its own package and its own
``benchmarks/fleet.py`` (its fake, its Redis, its workers), so a commit from
before a change is measured as it was; the checkouts take turns in each round.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Final

#: The cells of a side-by-side run unless ``--cell`` names others.
COMPARED: Final = (
    "2:split:fleet",
    "2:split:default",
    "4:skew:fleet",
    "4:same:fleet",
    "8:same:fleet",
    "8:same:default",
)
_FIGURES: Final = (
    "status_per_job",
    "rate_limited_429",
    "lag_p99_s",
    "redis_per_request",
    "cpu_ms_per_request",
)
# one checkout's cells, run by that checkout's own benchmarks/fleet.py; it
# repeats run()'s set-up with names every checkout since the fleet benchmark has
# (one_run, RedisCounter, RATE), so a commit from before this module runs too
_CELLS = """
import json, random, sys
from benchmarks.fleet import RATE, RedisCounter, one_run
from benchmarks._common import FakeProcess
from gameball_async.testing import RedisServer
rng = random.Random(17)
sizes = [rng.randint(20, 400) for _ in range(40)]
server = RedisServer()
server.start()
try:
    delay = str(round(0.5 + 40 / 30, 2))
    with FakeProcess("--processing-rate", str(RATE), "--queue-delay", delay) as fake:
        counter = RedisCounter(server.url)
        try:
            for cell in sys.argv[1:]:
                p, scenario, setup = cell.split(":")
                row = one_run(fake, counter, server.url, sizes, int(p), scenario, setup)
                print(json.dumps(row), flush=True)
        finally:
            counter.close()
finally:
    server.close()
"""


def _by_command(runs: list[dict[str, Any]]) -> dict[str, float]:
    # the median per command (a checkout from before the breakdown has none)
    names = sorted({name for run in runs for name in run.get("redis_by_command", {})})
    return {
        name: statistics.median(run.get("redis_by_command", {}).get(name, 0) for run in runs)
        for name in names
    }


def compare(
    checkouts: dict[str, str], cells: list[str], rounds: int, *, patience: float
) -> dict[str, Any]:
    """The ``cells`` (checked by the caller) with each checkout's code, checkouts
    taking turns in each round; each checkout's run may take ``patience`` seconds
    a cell."""
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for _ in range(rounds):
        for label, path in checkouts.items():
            env = {**os.environ, "PYTHONPATH": path}
            done = subprocess.run(
                [sys.executable, "-c", _CELLS, *cells],
                check=False,
                cwd=path,
                env=env,
                capture_output=True,
                text=True,
                timeout=patience * len(cells),
            )
            if done.returncode:
                raise RuntimeError(f"{label}'s cells failed: {done.stderr[-2000:]}")
            rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            for cell, row in zip(cells, rows, strict=True):
                seen.setdefault((cell, label), []).append(row)
    table = [
        {
            "cell": cell,
            "checkout": label,
            **{key: statistics.median(run[key] for run in seen[cell, label]) for key in _FIGURES},
            "cpu_ms_per_request_rounds": [run["cpu_ms_per_request"] for run in seen[cell, label]],
            "redis_by_command": _by_command(seen[cell, label]),
        }
        for cell in cells
        for label in checkouts
    ]
    return {
        "checkouts": checkouts,
        "rounds": rounds,
        "jobs": 40,
        "rows": table,
        "wall_s": round(time.perf_counter() - started, 1),
    }
