"""Redis calls that a caller's cancellation always reaches, and tasks that always end.

redis-py can absorb a cancellation delivered inside a call. The case found
(issue 15): with a ``socket_timeout`` (redis-py 8 sets 5 s by default) a
command is sent through ``asyncio.wait_for``, and on Python 3.10 and 3.11
``wait_for`` returns the inner result and drops the cancellation when the
send completes in the same loop turn as the cancel (CPython gh-86296, fixed by
3.12's rewrite). Its reconnect and pub/sub paths catch broad exceptions too.
A task whose cancellation was dropped carries on to its next wait: a fleet
that stopped its tasks by cancelling them once hung on close.

So nothing here relies on redis-py passing a cancellation on:

- :func:`call` runs each Redis call in a task of its own, bounded by a
  deadline there (anyio's deadline is re-delivered until it takes effect),
  while the caller only waits on that task: a caller's cancellation or
  timeout takes effect at once, and the abandoned call ends by its own
  deadline (it is kept in :class:`Calls` until then).
- the fleet's background tasks end when told (an event), every wait of
  theirs bounded; :func:`end_tasks` cancels what is still running after
  that, again and again, and after its bound abandons what will not end,
  saying so at WARNING, for its owner to close the connection under it
  (:func:`abort_connection`, :func:`abort_client`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, Final, TypeVar

import anyio

from gameball_async._closing import end_tasks

__all__ = ["Calls", "abort_client", "abort_connection", "end_tasks"]

logger: Final = logging.getLogger("gameball_async")

T = TypeVar("T")

_EAGER: Final = sys.version_info >= (3, 12)
_NAME: Final = "gameball_async fleet redis call"


async def _bounded(make: Callable[[], Awaitable[T]], timeout: float) -> T:
    with anyio.fail_after(timeout):
        return await make()


def _start(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    # Python 3.12+ starts it at once (up to its first wait): no loop turn lost
    if _EAGER:
        return asyncio.Task(work, loop=loop, name=_NAME, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(work, name=_NAME)


def _wake(waiter: asyncio.Future[None], _task: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Calls:
    """The Redis calls of one fleet in flight, each in a task of its own."""

    def __init__(self) -> None:
        self._abandoned: set[asyncio.Task[Any]] = set()

    @property
    def abandoned(self) -> int:
        """Calls whose caller went away and which have not ended yet."""
        return len(self._abandoned)

    async def call(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        """``await make()`` in a task of its own, bounded by ``timeout`` seconds.

        :raises TimeoutError: the call took longer than ``timeout``.
        :raises Exception: what the call raised.
        """
        loop = asyncio.get_running_loop()
        task = _start(loop, _bounded(make, timeout))
        # a plain future to wait on: the caller's cancellation reaches it at
        # once, whatever the call does with the one it may get
        waiter = loop.create_future()
        task.add_done_callback(partial(_wake, waiter))
        try:
            await waiter
        except BaseException:
            # the caller goes now; the call ends by its own deadline, and what it
            # raises is read here (never "exception was never retrieved")
            if task.done():
                self._ended(task)
            else:
                task.cancel()
                self._abandoned.add(task)
                task.add_done_callback(self._ended)
            raise
        return task.result()

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("gameball_async: an abandoned Redis call failed: %r", task.exception())

    async def settle(self, patience: float) -> None:
        """Wait up to ``patience`` seconds for the abandoned calls to end."""
        await end_tasks(list(self._abandoned), patience=patience, what="Redis call")


def abort_connection(connection: Any) -> None:
    """Close one redis-py connection's socket at once (no goodbye to the server).

    A call still reading from it fails at once with a connection error, which
    ends a task that would not end when cancelled. Best effort: redis-py's
    internals (``_writer``) are read defensively.
    """
    writer = getattr(connection, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is not None:
        transport.abort()


def abort_client(client: Any) -> None:
    """:func:`abort_connection` for every connection of a client's pool, or of
    every node's pool for a ``RedisCluster``."""
    pool = getattr(client, "connection_pool", None)
    for name in ("_available_connections", "_in_use_connections"):
        for connection in list(getattr(pool, name, None) or ()):
            abort_connection(connection)
    nodes = getattr(client, "get_nodes", None)
    for node in nodes() if callable(nodes) else ():
        for connection in list(getattr(node, "_connections", None) or ()):
            abort_connection(connection)
