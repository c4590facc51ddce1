"""The background work of a fleet: fire-and-forget Redis calls and retried writes.

Nothing on a request's path waits on Redis for bookkeeping: a limiter slot's
release and a pause are sent in the background (a lost one only makes the
fleet more careful), and registry writes go through one ordered writer that
retries them until Redis answers (in order, so a job is never removed from the
open set before it was added), logging the first failure of an outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio

from ._bounded import end_tasks

__all__ = ["Background"]

logger: Final = logging.getLogger("gameball_async")

#: Seconds between retries of a failed write, growing to :data:`MAX_RETRY`.
FIRST_RETRY: Final = 0.1
MAX_RETRY: Final = 2.0

Make = Callable[[], Awaitable[Any]]


class Background:
    """Tasks of one fleet on its event loop, all ended by :meth:`aclose`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writes: deque[tuple[str, Make]] = deque()
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._closing = False
        #: Writes that failed at least once and were retried (for tests and logs).
        self.retried = 0

    @property
    def pending_writes(self) -> int:
        """Registry writes not yet stored."""
        return len(self._writes)

    def spawn(self, make: Make) -> None:
        """Run ``make()`` once in the background; a failure is logged at DEBUG."""
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._once(make))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def write(self, what: str, make: Make) -> None:
        """Store something in Redis soon, retried until it succeeds (in order).

        :param what: what it stores, for the log (never a secret).
        """
        if self._closed:
            logger.warning("gameball_async: the fleet is closed; %s was not recorded", what)
            return
        self._writes.append((what, make))
        if self._writer is None:
            self._wake = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(
                self._write_all(), name="gameball_async fleet writer"
            )
        assert self._wake is not None
        self._wake.set()

    async def _once(self, make: Make) -> None:
        try:
            await make()
        except Exception as exc:  # RedisUnavailable mostly: the breaker logged it
            logger.debug("gameball_async: a background Redis call failed: %r", exc)

    async def _write_all(self) -> None:
        assert self._wake is not None
        delay = FIRST_RETRY
        while True:
            if not self._writes:
                self._wake.clear()
                await self._wake.wait()
                continue
            what, make = self._writes[0]
            try:
                await make()
            except Exception as exc:
                if delay == FIRST_RETRY:
                    logger.warning(
                        "gameball_async: the fleet could not record %s in Redis (%s); "
                        "retrying in the background",
                        what,
                        exc,
                    )
                self.retried += 1
                if not self._closing:
                    # a close cuts the wait short: its drain is the last chance
                    self._wake.clear()
                    with anyio.move_on_after(delay):
                        await self._wake.wait()
                    delay = min(delay * 2, MAX_RETRY)
                else:
                    await asyncio.sleep(FIRST_RETRY)
                continue
            if delay != FIRST_RETRY:
                logger.info("gameball_async: the fleet recorded %s in Redis after retries", what)
            delay = FIRST_RETRY
            self._writes.popleft()

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every pending write; whether all were stored."""
        with anyio.move_on_after(timeout):
            while self._writes:  # noqa: ASYNC110 (the writer pops them; no event per write)
                await anyio.sleep(0.01)
        return not self._writes

    def wake(self) -> None:
        """Retry the pending writes now (Redis answers again)."""
        if self._wake is not None:
            self._wake.set()

    def abort(self) -> None:
        """Stop at once: cancel every task (pending writes are dropped)."""
        self._closed = True
        for task in [*self._tasks, *([self._writer] if self._writer is not None else [])]:
            task.cancel()

    async def aclose(self, timeout: float) -> None:
        """Flush writes (up to ``timeout`` seconds), then end every task
        (within about ``timeout`` more). Idempotent."""
        if self._closed:
            return
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        await self.drain(timeout)
        self._closed = True
        for what, _make in self._writes:
            logger.warning("gameball_async: the fleet closed before recording %s in Redis", what)
        self._writes.clear()
        tasks = [*self._tasks, *([self._writer] if self._writer is not None else [])]
        with anyio.move_on_after(timeout):
            # fire-and-forget calls are short (the breaker bounds them): let them end
            while any(not task.done() for task in self._tasks):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await end_tasks(tasks, patience=timeout, what="background write")
