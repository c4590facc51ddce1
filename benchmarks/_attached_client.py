"""The client side of ``benchmarks.polling --attached``, run as a script in its own process.

``python benchmarks/_attached_client.py BASE_URL API_KEY SECRET_KEY RATE [OFFSET]`` with
``PYTHONPATH`` pointing at the checkout to measure, so 0.1.0 (or any commit)
and today's package run the same profile in one benchmark run. It uses only
what 0.1.0 already had: ``GameballSession(api_key, secret_key, base_url=)``,
``gb.job(id, "cashback")`` and ``job.wait(raise_on_failure=False)``.

Job ids arrive on stdin, one a line, as another process creates them; each is
awaited at once from its id, as a service awaiting jobs created elsewhere does.
An empty line ends the input. The last line written to stdout is a JSON object:
the package's path, each job's detection lag (seconds from the end the fake's
``startedAt`` and processing rate put it at, or from its hand-over when that
came later, to the wait's return), and the
client's CPU seconds from the first id to the last return, and how many jobs
had ended before they were handed over (one poll is all those need).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from typing import Any

import gameball_async
from gameball_async import GameballSession


def end_time(raw: Any, rate: float, offset: float) -> float:
    """Wall-clock time (ours) at which the fake, its clock ``offset`` s ahead, finished the job."""
    started = datetime.fromisoformat(str(raw["startedAt"]).replace("Z", "+00:00"))
    return started.timestamp() - offset + float(raw["totalCount"]) / rate


async def main(
    base_url: str, api_key: str, secret_key: str, rate: float, offset: float
) -> dict[str, Any]:
    lags: list[float] = []
    ended_before: list[str] = []
    cpu_start: float | None = None
    async with GameballSession(api_key, secret_key, base_url=base_url) as gb:

        async def one(job_id: str) -> None:
            attached = time.time()
            status = await gb.job(job_id, "cashback").wait(raise_on_failure=False)
            end = end_time(status.raw, rate, offset)
            # a job that ended before it was handed over is late from then on
            lags.append(time.time() - max(attached, end))
            if end <= attached:
                ended_before.append(job_id)

        tasks = []
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if not line:
                break
            if cpu_start is None:
                cpu_start = time.process_time()
            tasks.append(asyncio.ensure_future(one(line)))
        await asyncio.gather(*tasks)
        cpu = time.process_time() - (cpu_start or time.process_time())
    return {
        "package": gameball_async.__file__,
        "lags": lags,
        "ended_before_attach": len(ended_before),
        "cpu_seconds": cpu,
    }


if __name__ == "__main__":
    base_url, api_key, secret_key, rate = sys.argv[1:5]
    offset = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    report = asyncio.run(main(base_url, api_key, secret_key, float(rate), offset))
    print(json.dumps(report), flush=True)
