"""The client side of ``benchmarks.polling --attached``, run as a script in its own process.

``python benchmarks/_attached_client.py BASE_URL API_KEY SECRET_KEY RATE`` with
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
client's CPU seconds from the first id to the last return.
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


def end_time(raw: Any, rate: float) -> float:
    """Wall-clock time at which the fake finished the job."""
    started = datetime.fromisoformat(str(raw["startedAt"]).replace("Z", "+00:00"))
    return started.timestamp() + float(raw["totalCount"]) / rate


async def main(base_url: str, api_key: str, secret_key: str, rate: float) -> dict[str, Any]:
    lags: list[float] = []
    cpu_start: float | None = None
    async with GameballSession(api_key, secret_key, base_url=base_url) as gb:

        async def one(job_id: str) -> None:
            attached = time.time()
            status = await gb.job(job_id, "cashback").wait(raise_on_failure=False)
            # a job that ended before it was handed over is late from then on
            lags.append(time.time() - max(attached, end_time(status.raw, rate)))

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
    return {"package": gameball_async.__file__, "lags": lags, "cpu_seconds": cpu}


if __name__ == "__main__":
    base_url, api_key, secret_key, rate = sys.argv[1:5]
    print(json.dumps(asyncio.run(main(base_url, api_key, secret_key, float(rate)))), flush=True)
