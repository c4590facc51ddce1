"""A tiny status server for the memory benchmark, run in a child process.

Every ``GET`` (any path, so any job id) gets the same precomputed bytes: a
cashback job halfway through 1,000 items (Running, 500 finished, the 500
per-item results so far), with ``Retry-After: 3600`` so a client that honours
it polls each job once and then not again within the measurement. The reply
names no job, so it is taken as the one asked for.

``python -m benchmarks._status_server`` prints ``{"base_url": ...}`` on one
line once listening, then serves until SIGTERM. :class:`StatusServer` starts
and stops it from the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from typing import Any

from aiohttp import web

TOTAL = 1000
FINISHED = 500
RETRY_AFTER = 3600


def halfway_reply(total: int = TOTAL, finished: int = FINISHED) -> dict[str, Any]:
    """The status object of a job ``finished`` items into ``total``."""
    return {
        "operation": "cashback",
        "status": "Running",
        "totalCount": total,
        "finishedCount": finished,
        "errorCount": 0,
        "createdAt": "2026-11-26T02:00:00.000Z",
        "startedAt": "2026-11-26T02:00:01.000Z",
        "response": {
            "succeeded": [
                {"index": i, "customerId": f"customer-{i:05d}", "transactionId": f"tx-{i:07d}"}
                for i in range(finished)
            ],
            "failed": [],
        },
    }


async def _serve() -> None:
    body = json.dumps(halfway_reply()).encode()
    headers = {"Content-Type": "application/json", "Retry-After": str(RETRY_AFTER)}

    async def status(_: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", status)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sys.stdout.write(json.dumps({"base_url": f"http://127.0.0.1:{port}/api/v4.0"}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class StatusServer:
    """The server above in a child process (its CPU and memory are not the client's)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._status_server"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.base_url: str = json.loads(self.proc.stdout.readline())["base_url"]

    def __enter__(self) -> StatusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    asyncio.run(_serve())
