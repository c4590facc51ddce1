"""Multi-process harness of the fleet tests: the fake in its own process, and
fleet workers (``_burst_worker.py``) started together on one Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from anyio.abc import ByteReceiveStream, Process

__all__ = ["Fake", "Workers", "fake_process", "workers"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: Bound on starting processes and on one run: turns a hang into a failure.
PATIENCE = 60.0


class Lines:
    """Lines of a child's stdout, read as they come."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


def _env() -> dict[str, str]:
    # the worktree's package first (the installed one when it is not there)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


class Fake:
    """The fake, served by ``python -m gameball_async.testing serve``."""

    def __init__(self, info: dict[str, str]) -> None:
        self.base_url = info["base_url"]
        self.api_key = info["api_key"]
        self.secret_key = info["secret_key"]
        self.origin = self.base_url.split("/api/", 1)[0]

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.origin + "/_fake/stats") as reply:
            data: dict[str, Any] = await reply.json()
            return data


@asynccontextmanager
async def fake_process(*options: str) -> AsyncIterator[Fake]:
    """The fake in its own process (it enforces the account limits it is given)."""
    command = [sys.executable, "-m", "gameball_async.testing", "serve", "--port", "0", *options]
    async with await anyio.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(), cwd=ROOT
    ) as process:
        assert process.stdout is not None
        try:
            with anyio.fail_after(PATIENCE):
                info = json.loads(await Lines(process.stdout).next())
            yield Fake(info)
        finally:
            if process.returncode is None:
                process.terminate()
            with anyio.fail_after(PATIENCE):
                await process.wait()


class Workers:
    """Fleet workers started together; :meth:`go` releases them at once."""

    def __init__(self, processes: Sequence[Process]) -> None:
        self.processes = list(processes)
        self._lines = [Lines(p.stdout) for p in self.processes if p.stdout is not None]

    async def ready(self) -> None:
        """Wait until every worker has its session open."""
        with anyio.fail_after(PATIENCE):
            for lines in self._lines:
                assert await lines.next() == "ready"

    async def results(self) -> list[dict[str, Any]]:
        """Every worker's JSON result line."""
        with anyio.fail_after(PATIENCE):
            return [json.loads(await lines.next()) for lines in self._lines]

    async def go(self, client: Any) -> None:
        """Release every worker at once (one token each on the ``test:go`` list)."""
        await client.rpush("test:go", *([1] * len(self.processes)))

    def kill(self, index: int) -> None:
        """``kill -9`` one worker."""
        os.kill(self.processes[index].pid, signal.SIGKILL)


@asynccontextmanager
async def workers(mode: str, configs: Sequence[dict[str, Any]]) -> AsyncIterator[Workers]:
    """Start one ``_burst_worker.py`` per config; all are killed on the way out."""
    started: list[Process] = []
    try:
        for config in configs:
            started.append(
                await anyio.open_process(
                    [sys.executable, str(HERE / "_burst_worker.py"), mode, json.dumps(config)],
                    stdout=subprocess.PIPE,
                    stderr=None,
                    env=_env(),
                    cwd=ROOT,
                )
            )
        yield Workers(started)
    finally:
        for process in started:
            if process.returncode is None:
                process.kill()
        with anyio.fail_after(PATIENCE), anyio.CancelScope(shield=True):
            for process in started:
                await process.wait()
                await process.aclose()
