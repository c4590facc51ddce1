"""Closing what a session or a fleet started, within a bound, whatever its tasks do.

A close must return within a bound that can be documented, and a caller's
cancellation or timeout around it must take effect at once; what the close
still has to do then goes on in the background (bounded too), so nothing that
was created is lost. A task that does not end when cancelled (a dependency
can drop a cancellation delivered inside a call) is cancelled again and again,
then abandoned with a WARNING, never waited for forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import Any, Final

__all__ = ["RECANCEL", "end_tasks", "start_close", "wait_closed"]

logger: Final = logging.getLogger("gameball_async")

#: Seconds between repeated cancellations of a task that goes on.
RECANCEL: Final = 0.1

# closes whose caller left: held here so they are not collected before they end
_closing: Final[set[asyncio.Task[Any]]] = set()


def start_close(work: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
    """Start ``work`` (a close, which must be bounded) in a task of its own,
    held until it ends even when nobody waits for it any more."""
    task = asyncio.get_running_loop().create_task(work, name=name)
    _closing.add(task)
    task.add_done_callback(_closing.discard)
    return task


async def wait_closed(task: asyncio.Task[None]) -> None:
    """Wait for a close started by :func:`start_close`.

    The caller's cancellation takes effect at once and is re-raised; the close
    goes on in the background to its own end.

    :raises Exception: what the close raised.
    """
    # a plain wait: the caller's cancellation reaches it whatever the close does
    await asyncio.wait((task,))
    task.result()


async def end_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, patience: float, what: str
) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` until they end, for at most ``patience`` seconds.

    The cancellation is repeated every :data:`RECANCEL` seconds while a task
    goes on (one delivered inside a Redis call can be dropped there). The
    caller's own cancellation ends the wait at once.

    :param what: what the tasks are, for the WARNING.
    :return: the tasks that did not end (abandoned: their owner closes the
        connections they use); one WARNING names them.
    """
    pending = [task for task in tasks if not task.done()]
    if not pending:
        return []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        for task in pending:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        await asyncio.wait(pending, timeout=min(RECANCEL, left))
        pending = [task for task in pending if not task.done()]
        if not pending:
            return []
    logger.warning(
        "gameball_async: %d %s task(s) did not end within %.1f s of being told to; abandoned (%s)",
        len(pending),
        what,
        patience,
        ", ".join(sorted(task.get_name() for task in pending)),
    )
    return pending
