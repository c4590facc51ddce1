"""What the fleet tests share: items, the fake, session builders, bounded waits,
a test-only fleet that shares polling only, and the multi-process harness.

The worker programs the process tests start (``_worker.py``,
``_burst_worker.py``, ``_view_worker.py``) are programs of their own; every
helper a test module imports lives here, so no test module writes one again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Final

import aiohttp
import anyio
import attrs
import redis.asyncio as aioredis
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from gameball_async import (
    BatchJob,
    BatchStatus,
    GameballSession,
    Operation,
    PollPolicy,
    RateLimit,
    RetryPolicy,
)
from gameball_async._coordination import Attachment, Claim, Coordinator, Fetch, SessionLink
from gameball_async._ratelimit import LocalRateLimiter, RateLimiter
from gameball_async.fleet import FleetSnapshot, RedisFleet
from gameball_async.fleet._breaker import Breaker
from gameball_async.fleet._keys import Keys
from gameball_async.fleet._polls import SharedPolls
from gameball_async.testing import FakeGameball, InjectedReply

__all__ = [
    "FAST_POLL",
    "FAST_RETRY",
    "LIMIT",
    "PAUSE",
    "PATIENCE",
    "ROOT",
    "WHEN",
    "Child",
    "Fake",
    "PollsFleet",
    "Running",
    "Workers",
    "burst_workers",
    "child",
    "eventually",
    "fake_process",
    "fake_server",
    "fast_breaker",
    "fleet_session",
    "poll_workers",
    "running_fleet",
    "ids",
    "item",
    "items",
    "sdk_tasks",
    "until",
    "worker_config",
]

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parents[1]
# The same as tests/_support.py's (that module is out of reach of a mypy run
# over tests/fleet alone).
WHEN: Final = "2024-10-16T08:13:29.290Z"
FAST_RETRY: Final = RetryPolicy(backoff=0.01, max_backoff=0.05)
FAST_POLL: Final = PollPolicy(initial_delay=0.05, min_delay=0.02, max_delay=0.3)
#: Bound on any single wait: generous, it only turns a hang into a failure.
PATIENCE: Final = 20.0
#: The Retry-After of the 429 :func:`running_fleet` injects: the fleet's pause lasts this long.
PAUSE: Final = 30
#: The account's limit in :func:`running_fleet`.
LIMIT: Final = RateLimit(per_second=50, per_window=500)
#: Bound on starting processes and on one multi-process run.
PROCESS_PATIENCE: Final = 60.0

# -- items, the fake, sessions -----------------------------------------------------

_serial = itertools.count()


def item(n: int, tag: str = "t") -> dict[str, Any]:
    """Cashback item ``n`` as a plain dict (customer ``c<n>``, transaction ``<tag><n>``)."""
    return {
        "customerId": f"c{n}",
        "transactionId": f"{tag}{n}",
        "transactionTime": WHEN,
        "amount": 1,
    }


def items(count: int) -> list[dict[str, Any]]:
    """``count`` cashback items whose transaction ids are unique in the test run
    (a repeated one fails with 9004, so jobs built from these never collide)."""
    return [item(n, tag=f"u{next(_serial)}-") for n in range(count)]


@asynccontextmanager
async def fake_server(**options: Any) -> AsyncIterator[FakeGameball]:
    """An in-process fake that starts jobs at once and enforces no limit, unless
    ``options`` (FakeGameball's) say otherwise."""
    options.setdefault("enforce_rate_limit", False)
    options.setdefault("queue_delay", 0.0)
    async with FakeGameball(**options) as fake:
        yield fake


def fleet_session(
    fake: FakeGameball,
    fleet: Coordinator,
    *,
    max_delay: float = 0.2,
    rate_limit: RateLimit | None = None,
    **options: Any,
) -> GameballSession:
    """A session of ``fake`` on ``fleet``: a limit that does not bind, quick polls."""
    return GameballSession(
        fake.api_key,
        fake.secret_key,
        base_url=fake.base_url,
        fleet=fleet,
        rate_limit=rate_limit
        if rate_limit is not None
        else RateLimit(per_second=100, per_window=1000),
        poll=PollPolicy(initial_delay=0.05, min_delay=0.02, max_delay=max_delay),
        **options,
    )


# -- bounded waits ---------------------------------------------------------------


async def until(predicate: Callable[[], bool], timeout: float = PATIENCE) -> None:
    """Wait, bounded, for a condition other tasks (or processes) make true."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 (other tasks make it true)
            await anyio.sleep(0.005)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = PATIENCE) -> None:
    """Wait, bounded, for a state in Redis (or a server) that ``check()`` reads."""
    with anyio.fail_after(timeout):
        while not await check():  # noqa: ASYNC110 (a state elsewhere: no event to wait on)
            await anyio.sleep(0.01)


def sdk_tasks() -> list[asyncio.Task[Any]]:
    """The SDK's tasks still running on this loop (they are named ``gameball_async...``)."""
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("gameball_async") and not task.done()
    ]


# -- a fleet that shares polling and nothing else ----------------------------------


def fast_breaker() -> Breaker:
    """A breaker with short timeouts, so outage tests fall back (and recover) quickly."""
    return Breaker(timeout=0.25, failures=2, cooldown=0.3)


@attrs.define
class _Attachment:
    limiter: RateLimiter
    polls: SharedPolls

    @property
    def fetch(self) -> Fetch:
        return self.polls.fetch

    async def claim(self, key: str, operation: Operation, *, deadline: float | None) -> Claim:
        raise NotImplementedError("the test-only PollsFleet has no idempotency claims")

    async def created(self, token: str, operation: Operation, job_id: str) -> None:
        pass

    def observed(self, status: BatchStatus) -> None:
        self.polls.observed(status)

    async def aclose(self) -> None:
        await self.polls.aclose()


class PollsFleet:
    """A Coordinator whose attachments share polling through :class:`SharedPolls`
    (a local rate limiter, no idempotency claims): shared polling tested alone.

    :ivar polls: the :class:`SharedPolls` of the session attached last.
    :ivar terminal: job ids ``on_terminal`` was called with, in order.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        process_id: str,
        breaker: Breaker | None = None,
        lease_ttl: float = 3.0,
        heartbeat: float = 1.0,
    ) -> None:
        self.client = client
        self.process_id = process_id
        self.breaker = breaker if breaker is not None else fast_breaker()
        self.lease_ttl = lease_ttl
        self.heartbeat = heartbeat
        self.terminal: list[str] = []
        self._polls: SharedPolls | None = None
        self.keys: Keys | None = None

    @property
    def polls(self) -> SharedPolls:
        """The attached session's shared polling."""
        assert self._polls is not None, "no session attached yet"
        return self._polls

    def attach(self, link: SessionLink) -> Attachment:
        """Attach a session opening on the running loop."""
        self.keys = Keys(link.account)
        self._polls = SharedPolls(
            self.client,
            self.keys,
            self.breaker,
            link,
            process_id=self.process_id,
            on_terminal=self.terminal.append,
            lease_ttl=self.lease_ttl,
            heartbeat=self.heartbeat,
        )
        self._polls.start()
        return _Attachment(LocalRateLimiter(link.rate_limit), self._polls)


# -- processes: the fake in its own process, and fleet workers ---------------------


def _env() -> dict[str, str]:
    # the worktree's package first (the installed one when it is not there)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


class Child:
    """A child process speaking JSON lines on its stdin and stdout."""

    def __init__(self, process: Process, name: str) -> None:
        self.process = process
        self.name = name
        assert process.stdout is not None
        self._out = BufferedByteReceiveStream(process.stdout)

    async def line(self) -> dict[str, Any]:
        """The next JSON line it printed."""
        raw = await self._out.receive_until(b"\n", 1 << 22)
        data = json.loads(raw)
        assert isinstance(data, dict)
        return data

    async def send(self, data: dict[str, Any]) -> None:
        """One JSON line to its stdin."""
        assert self.process.stdin is not None
        await self.process.stdin.send((json.dumps(data) + "\n").encode())


@asynccontextmanager
async def child(command: Sequence[str], name: str, logs: Path | None) -> AsyncIterator[Child]:
    """Run ``command``; its stderr goes to ``logs/<name>.err`` (or nowhere); it is
    killed (woken first, if the test stopped it) and reaped on the way out."""
    with contextlib.ExitStack() as files:
        errors: Any = subprocess.DEVNULL
        if logs is not None:
            errors = files.enter_context((logs / f"{name}.err").open("wb"))
        process = await anyio.open_process(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=ROOT,
            env=_env(),
        )
        try:
            yield Child(process, name)
        finally:
            if process.returncode is None:
                # a stopped child must die too; one the test killed may be reaped
                # already (its returncode is set only by a wait)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
                    process.kill()
            with anyio.move_on_after(15), anyio.CancelScope(shield=True):
                await process.wait()
            await process.aclose()


@attrs.frozen
class Fake:
    """The fake served by ``python -m gameball_async.testing serve``, from outside."""

    base_url: str
    api_key: str
    secret_key: str

    @property
    def origin(self) -> str:
        """Scheme, host and port: where its ``/_fake/`` routes are."""
        return self.base_url.split("/api/", 1)[0]

    async def stats(self) -> dict[str, Any]:
        """Its counters."""
        async with aiohttp.ClientSession() as http, http.get(self.origin + "/_fake/stats") as r:
            data = await r.json()
            assert isinstance(data, dict)
            return data

    async def reset(self) -> None:
        """Clear its counters and rate-limit windows (jobs are kept)."""
        async with aiohttp.ClientSession() as http, http.post(self.origin + "/_fake/reset") as r:
            assert r.status < 300

    async def create(
        self,
        count: int,
        size: int,
        on_job: Callable[[str, bool], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Create ``count`` jobs of ``size`` items from a session of its own at 4/s."""
        async with GameballSession(
            self.api_key,
            self.secret_key,
            base_url=self.base_url,
            rate_limit=RateLimit(per_second=4, per_window=60),
        ) as gb:
            jobs: list[str] = []
            for n in range(count):
                jobs.append((await gb.create_batch("cashback", items(size))).job_id)
                if on_job is not None:
                    await on_job(jobs[-1], n == count - 1)
            return jobs


@asynccontextmanager
async def fake_process(*options: str, logs: Path | None = None) -> AsyncIterator[Fake]:
    """The fake in its own process (it enforces the account limits it is given)."""
    command = [sys.executable, "-m", "gameball_async.testing", "serve", "--port", "0", *options]
    async with child(command, "fake", logs) as fake:
        with anyio.fail_after(PROCESS_PATIENCE):
            info = await fake.line()
        yield Fake(info["base_url"], info["api_key"], info["secret_key"])
        fake.process.terminate()


def worker_config(
    fake: Fake, redis_url: str, limit: tuple[int, int, float], **extra: Any
) -> dict[str, Any]:
    """The configuration of one ``_burst_worker.py``: the fake, Redis, the account's
    limit as (per second, per window, window) and what ``extra`` adds."""
    per_second, per_window, window = limit
    config = {
        "redis_url": redis_url,
        "base_url": fake.base_url,
        "api_key": fake.api_key,
        "secret_key": fake.secret_key,
        "rate_limit": {"per_second": per_second, "per_window": per_window, "window": window},
    }
    config.update(extra)
    return config


class _Lines:
    """Lines of a child's stdout, read as they come."""

    def __init__(self, stream: ByteReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


class Workers:
    """``_burst_worker.py`` processes started together; :meth:`go` releases them at once."""

    def __init__(self, processes: Sequence[Process]) -> None:
        self.processes = list(processes)
        self._lines = [_Lines(p.stdout) for p in self.processes if p.stdout is not None]

    async def ready(self) -> None:
        """Wait until every worker has its session open."""
        with anyio.fail_after(PROCESS_PATIENCE):
            for lines in self._lines:
                assert await lines.next() == "ready"

    async def results(self) -> list[dict[str, Any]]:
        """Every worker's JSON result line."""
        with anyio.fail_after(PROCESS_PATIENCE):
            return [json.loads(await lines.next()) for lines in self._lines]

    async def go(self, client: Any) -> None:
        """Release every worker at once (one token each on the ``test:go`` list),
        and wait until each has taken its own: a fault the test makes next must
        find every worker past the barrier (one still waiting on Redis there
        would fail outside the fleet's code and never start)."""
        await client.rpush("test:go", *([1] * len(self.processes)))
        with anyio.fail_after(PROCESS_PATIENCE):
            while await client.llen("test:go"):  # noqa: ASYNC110 (a Redis list, no event)
                await anyio.sleep(0.01)

    def kill(self, index: int) -> None:
        """``kill -9`` one worker."""
        os.kill(self.processes[index].pid, signal.SIGKILL)


@asynccontextmanager
async def burst_workers(mode: str, configs: Sequence[dict[str, Any]]) -> AsyncIterator[Workers]:
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
        with anyio.fail_after(PROCESS_PATIENCE), anyio.CancelScope(shield=True):
            for process in started:
                await process.wait()
                await process.aclose()


@asynccontextmanager
async def poll_workers(
    fake: Fake, redis_url: str, count: int, logs: Path, *extra: str
) -> AsyncIterator[list[Child]]:
    """``count`` ``_worker.py`` processes awaiting jobs on one Redis, each ready."""
    async with AsyncExitStack() as stack:
        children = []
        for n in range(count):
            command = [
                sys.executable,
                str(HERE / "_worker.py"),
                "--redis", redis_url,
                "--base-url", fake.base_url,
                "--api-key", fake.api_key,
                "--secret-key", fake.secret_key,
                "--process-id", f"w{n}",
                *extra,
            ]  # fmt: skip
            children.append(await stack.enter_async_context(child(command, f"w{n}", logs)))
        with anyio.fail_after(PROCESS_PATIENCE):
            for worker in children:
                assert await worker.line() == {"ready": True}
        yield children


# -- a real fleet at work, for the read-only view's tests ------------------------


@attrs.frozen(kw_only=True)
class Running:
    """The fleet at work: what it holds, to compare a snapshot with."""

    fleet: RedisFleet
    gb: GameballSession
    fake: FakeGameball
    open_jobs: tuple[BatchJob, ...]
    ended: BatchJob


@asynccontextmanager
async def running_fleet(url: str, *, pause: bool = True) -> AsyncIterator[Running]:
    """A session of a fleet on ``url`` with one job awaited to its end, two large ones
    awaited (their leases held, their statuses shared) and still running, and then,
    with ``pause``, a 429 injected on a status read so the fleet's pause key is set."""
    async with (
        fake_server(processing_rate=2) as fake,
        RedisFleet.from_url(url) as fleet,
        GameballSession(
            fake.api_key,
            fake.secret_key,
            base_url=fake.base_url,
            fleet=fleet,
            poll=PollPolicy(initial_delay=0.05, min_delay=0.05, max_delay=0.2),
            rate_limit=LIMIT,
        ) as gb,
    ):
        ended = await gb.create_batch("cashback", items(1))
        await ended.wait()
        open_jobs = (
            await gb.create_batch("cashback", items(200)),
            await gb.create_batch("cashback", items(300)),
        )
        async with anyio.create_task_group() as tg:
            for job in open_jobs:
                tg.start_soon(job.wait)

            async def shared() -> bool:
                snapshot = await fleet.snapshot()
                return (
                    all(
                        job.status is not None and job.lease_holder is not None
                        for job in snapshot.open_jobs
                    )
                    and len(snapshot.open_jobs) == 2
                )

            await eventually(shared)
            if pause:
                fake.inject(
                    "status", InjectedReply(status=429, headers={"Retry-After": str(PAUSE)})
                )

                async def paused() -> bool:
                    return (await fleet.snapshot()).limiter.paused_for > 0

                await eventually(paused)
            yield Running(fleet=fleet, gb=gb, fake=fake, open_jobs=open_jobs, ended=ended)
            tg.cancel_scope.cancel()


def ids(snapshot: FleetSnapshot) -> list[str]:
    """The open jobs' ids."""
    return [job.job_id for job in snapshot.open_jobs]
