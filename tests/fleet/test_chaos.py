"""The fleet's chaos matrix (issue 15): every Redis fault in every phase of a
fleet's life, on a real redis-server.

For every cell: every wait ends with the job's true state (the fake's), every
close returns within its bound, no task of the SDK is left on the loop, no job
is lost (every job the fake created reached the caller) or created twice (no
creation body created two jobs), and coordination resumes on its own (the
breaker closes and the hints listen again once Redis is back).

The cells of the ``mid-wait`` phase and of the ``kill`` fault run in every
suite; the rest, and the 10 s freeze and pause, are marked ``chaos`` and run
once in CI (``-m chaos``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Final

import anyio
import pytest
import redis
from _fleet_support import FAST_POLL, item, sdk_tasks, until

from gameball_async import (
    AmbiguousSubmissionError,
    BatchJob,
    BatchState,
    BatchStatus,
    GameballSession,
    RateLimit,
    Timeout,
    TransportError,
)
from gameball_async.fleet import RedisFleet
from gameball_async.testing import FakeGameball, RedisServer

pytestmark = pytest.mark.anyio

REDIS_TIMEOUT: Final = 0.25
REQUEST_TIMEOUT: Final = 5.0
#: Bound on a wait or on coordination resuming: turns a hang into a failure.
PATIENCE: Final = 30.0
#: Seconds a lasting fault lasts in the quick cells.
QUICK: Final = 1.5

FAULTS: Final = (
    "kill",
    "freeze",
    "pause",
    "kill-normal",
    "kill-pubsub",
    "flushall",
    "oom",
    "readonly",
)
PHASES: Final = ("idle", "mid-wait", "idempotent", "close", "after-recovery", "second-fleet")


def _cells() -> list[Any]:
    cells = []
    for fault in FAULTS:
        for phase in PHASES:
            marks = [] if phase == "mid-wait" or fault == "kill" else [pytest.mark.chaos]
            cells.append(pytest.param(fault, phase, QUICK, marks=marks, id=f"{fault}-{phase}"))
    for fault in ("freeze", "pause"):  # the 10 s
        for phase in ("mid-wait", "close"):
            cells.append(
                pytest.param(fault, phase, 10.0, marks=[pytest.mark.chaos], id=f"{fault}10-{phase}")
            )
    return cells


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Fault:
    """One fault of the matrix, struck on and lifted from a real redis-server."""

    def __init__(self, kind: str, server: RedisServer, duration: float) -> None:
        self.kind = kind
        self.server = server
        self.duration = duration
        self.lasting = kind in ("kill", "freeze", "pause", "oom", "readonly")

    def _admin(self) -> redis.Redis:
        return redis.Redis(port=self.server.port, socket_timeout=5)

    def strike(self) -> None:
        kind = self.kind
        if kind == "kill":
            self.server.kill()
        elif kind == "freeze":
            self.server.freeze()
        else:
            with self._admin() as admin:
                if kind == "pause":
                    admin.execute_command("CLIENT", "PAUSE", int(self.duration * 1000), "ALL")
                elif kind == "kill-normal":
                    admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
                elif kind == "kill-pubsub":
                    admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
                elif kind == "flushall":
                    admin.flushall()
                elif kind == "oom":
                    admin.config_set("maxmemory-policy", "noeviction")
                    admin.config_set("maxmemory", 1)
                elif kind == "readonly":
                    admin.execute_command("REPLICAOF", "127.0.0.1", _dead_port())

    async def lift(self) -> None:
        """End the fault after its duration (a momentary one has ended already)."""
        if not self.lasting:
            return
        await anyio.sleep(self.duration)  # the fault's own length, not a synchronisation
        kind = self.kind
        if kind == "kill":
            self.server.start()
        elif kind == "freeze":
            self.server.thaw()
        elif kind == "pause":
            with self._admin() as admin:
                admin.ping()  # answered once the pause has run out
        else:
            with self._admin() as admin:
                if kind == "oom":
                    admin.config_set("maxmemory", 0)
                else:
                    admin.execute_command("REPLICAOF", "NO", "ONE")


class Cell:
    """One fleet process's life through a fault, and what the checks need."""

    def __init__(self, fake: FakeGameball, server: RedisServer, fault: Fault) -> None:
        self.fake = fake
        self.server = server
        self.fault = fault
        self.reported: set[str] = set()
        self.statuses: list[BatchStatus] = []
        self.fleets: list[RedisFleet] = []
        self.sessions: list[GameballSession] = []
        self.count = 0

    def open(self) -> tuple[RedisFleet, GameballSession]:
        fleet = RedisFleet.from_url(self.server.url, redis_timeout=REDIS_TIMEOUT)
        gb = GameballSession(
            self.fake.api_key,
            self.fake.secret_key,
            base_url=self.fake.base_url,
            fleet=fleet,
            poll=FAST_POLL,
            rate_limit=RateLimit(per_second=50, per_window=500),
            timeout=Timeout(total=REQUEST_TIMEOUT),
            on_job=lambda job: self.reported.add(job.job_id),
        )
        self.fleets.append(fleet)
        self.sessions.append(gb)
        return fleet, gb

    async def create(self, gb: GameballSession, **options: Any) -> BatchJob:
        self.count += 1
        return await gb.create_batch("cashback", [item(self.count, tag="t-")], **options)

    async def wait(self, jobs: list[BatchJob]) -> None:
        with anyio.fail_after(PATIENCE):
            for job in jobs:
                self.statuses.append(await job.wait(raise_on_failure=False))

    async def close(self, fleet: RedisFleet, gb: GameballSession) -> None:
        # the documented bounds, with room for a loaded machine
        with anyio.fail_after(REQUEST_TIMEOUT + 1 + fleet.close_bound * 2 + 5):
            await gb.close()
            await fleet.aclose()

    async def resumed(self, fleet: RedisFleet, gb: GameballSession) -> None:
        """Coordination resumes on its own: a job awaited now is shared through
        Redis again, the breaker closed and the hints listening."""
        job = await self.create(gb)
        await self.wait([job])
        breaker = fleet._breaker
        attachment = next(iter(fleet._attachments))
        await until(lambda: not breaker.is_open and attachment._polls.listening, timeout=PATIENCE)

    async def idempotent(self, fleet: RedisFleet, gb: GameballSession) -> None:
        key = "chaos/1"

        async def first() -> BatchJob | BaseException:
            try:
                return await self.create(gb, idempotency_key=key)
            except (TransportError, AmbiguousSubmissionError) as exc:
                return exc

        creating = asyncio.ensure_future(first())
        await anyio.lowlevel.checkpoint()
        self.fault.strike()
        with anyio.fail_after(PATIENCE):
            outcome = await creating
        await self.fault.lift()
        if isinstance(outcome, BatchJob):
            await self.wait([outcome])
        if self.fault.kind == "flushall":
            return  # the flush erased the key's memory: a retry would be a new creation
        # the same call again, once Redis is back: never a second job
        with anyio.fail_after(PATIENCE):
            while True:
                try:
                    again = await gb.create_batch(
                        "cashback", [item(self.count, tag="t-")], idempotency_key=key
                    )
                except TransportError:
                    await anyio.sleep(0.1)  # Redis not answering yet: nothing was sent
                    continue
                except AmbiguousSubmissionError:
                    assert not isinstance(outcome, BatchJob), "a created key became ambiguous"
                    return
                break
        if isinstance(outcome, BatchJob):
            assert again.job_id == outcome.job_id
        await self.wait([again])


async def run(cell: Cell, phase: str) -> None:
    fault = cell.fault
    fleet, gb = cell.open()
    await gb.__aenter__()
    try:
        if phase == "idle":
            fault.strike()
            job = await cell.create(gb)
            await cell.wait([job])
            await fault.lift()
            await cell.resumed(fleet, gb)
        elif phase == "mid-wait":
            jobs = [await cell.create(gb) for _ in range(3)]
            waiting = asyncio.ensure_future(cell.wait(jobs))
            await until(lambda: cell.fake.counts["status"] >= 1, timeout=PATIENCE)
            fault.strike()
            await fault.lift()
            with anyio.fail_after(PATIENCE):
                await waiting
            await cell.resumed(fleet, gb)
        elif phase == "idempotent":
            await cell.idempotent(fleet, gb)
            await cell.resumed(fleet, gb)
        elif phase == "close":
            job = await cell.create(gb)
            waiter = asyncio.ensure_future(job.wait(raise_on_failure=False))
            await until(lambda: cell.fake.counts["status"] >= 1, timeout=PATIENCE)
            fault.strike()
            await cell.close(fleet, gb)
            await fault.lift()
            with anyio.fail_after(PATIENCE):
                await asyncio.wait([waiter])
            if waiter.exception() is None:
                cell.statuses.append(waiter.result())
        elif phase == "after-recovery":
            fault.strike()
            await fault.lift()
            await cell.resumed(fleet, gb)
        elif phase == "second-fleet":
            fault.strike()
            await fault.lift()
            second, other = cell.open()
            async with other:
                with anyio.fail_after(PATIENCE):
                    while True:
                        try:
                            await second.open_jobs()
                            break
                        except TransportError:  # Redis not answering yet
                            await anyio.sleep(0.1)
            await cell.close(second, other)
            await cell.resumed(fleet, gb)
    finally:
        await cell.close(fleet, gb)


@pytest.mark.parametrize(("fault", "phase", "duration"), _cells())
async def test_chaos(fault: str, phase: str, duration: float) -> None:
    server = RedisServer()
    server.start()
    try:
        async with FakeGameball(processing_rate=0.5) as fake:
            cell = Cell(fake, server, Fault(fault, server, duration))
            await run(cell, phase)
            # every wait ended with the job's true state
            for status in cell.statuses:
                assert status.state.value == fake.job_state(int(status.job_id)), status
                assert status.state is BatchState.COMPLETED
            # nothing lost, nothing created twice
            assert {str(job_id) for job_id in fake.jobs} <= cell.reported
            assert max(fake.created_bodies.values(), default=0) <= 1
            # nothing of the SDK left on the loop
            await until(lambda: not sdk_tasks(), timeout=10)
    finally:
        server.close()
