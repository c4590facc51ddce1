"""The hint listener: one pub/sub connection per process for shared polling.

Owners publish a job's id when they store news of it; the listener hands each
id to a callback, which brings that job's next read forward. A hint is only
a hint: one lost on a reconnect costs a follower some latency, never a status
(the status key is the truth). So after every reconnect, the listener's own or
the client's, ``on_reconnect`` runs and the followers read their jobs again.

The connection is checked while quiet (a PING that must be answered), so a
frozen or paused Redis does not hold a dead subscription forever; every step
is bounded and a failure only means a new connection a moment later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import anyio
import redis.asyncio as aioredis

from ._breaker import Breaker
from ._polls_scripts import text

__all__ = ["HintListener"]

logger: Final = logging.getLogger("gameball_async")


class HintListener:
    """Listens on one channel, reconnecting for as long as it runs.

    :param client: the Redis client whose pool gives the connection.
    :param channel: the hints channel.
    :param breaker: bounds the subscribe and the pings.
    :param on_hint: called with each hinted job id.
    :param on_reconnect: called after each reconnect (hints may have been lost).
    :param quiet: seconds without a message after which the connection is pinged.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        channel: str,
        breaker: Breaker,
        *,
        on_hint: Callable[[str], None],
        on_reconnect: Callable[[], None],
        quiet: float,
    ) -> None:
        self._client = client
        self._channel = channel
        self._breaker = breaker
        self._on_hint = on_hint
        self._on_reconnect = on_reconnect
        self._quiet = quiet
        self._pubsub: Any = None
        self._closed = False
        #: Whether the listener is subscribed now.
        self.listening = False
        #: Subscriptions made (the first one and every reconnect).
        self.subscriptions = 0
        #: Hints received.
        self.hints = 0

    async def run(self) -> None:
        """Listen until cancelled or closed."""
        broken = False
        while not self._closed:
            pubsub = self._pubsub = self._client.pubsub()
            try:
                await self._breaker.call(partial(pubsub.subscribe, self._channel))
                self.subscriptions += 1
                self.listening = True
                if pubsub.connection is not None:
                    pubsub.connection.register_connect_callback(self._reconnected)
                if self.subscriptions > 1:
                    if broken:
                        logger.info("gameball_async: fleet hints listening again")
                    broken = False
                    self._on_reconnect()
                await self._listen(pubsub)
            except Exception as exc:  # RedisUnavailable, a dropped connection, no pong
                if not broken:
                    broken = True
                    logger.info(
                        "gameball_async: fleet hints interrupted (%s); reconnecting",
                        type(exc).__name__,
                    )
            finally:
                self.listening = False
                self._pubsub = None
                await self._drop(pubsub)
            await asyncio.sleep(self._quiet)

    async def aclose(self) -> None:
        """Stop for good (the task running :meth:`run` is cancelled by its owner)."""
        self._closed = True
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await self._drop(pubsub)

    async def _listen(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged: float | None = None
        patience = self._quiet + self._breaker.timeout
        while True:
            with anyio.fail_after(patience + 1.0):  # get_message has its own timeout
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self._quiet
                )
            now = loop.time()
            if message is None:
                if pinged is not None and now - pinged > patience:
                    raise TimeoutError("the hints connection answers no PING")
                if pinged is None and now - heard >= 2 * self._quiet:
                    await self._breaker.call(pubsub.ping)
                    pinged = now
                continue
            heard, pinged = now, None
            if message.get("type") == "message":
                job_id = text(message.get("data"))
                if job_id:
                    self.hints += 1
                    self._on_hint(job_id)

    def _reconnected(self, connection: Any) -> None:
        # the client reconnected the subscription by itself: hints may be lost
        self._on_reconnect()

    async def _drop(self, pubsub: Any) -> None:
        if pubsub.connection is not None:
            # the connection goes back to the client's pool: our callback must not
            pubsub.connection.deregister_connect_callback(self._reconnected)
        with anyio.move_on_after(self._breaker.timeout):
            try:
                await pubsub.aclose()
            except Exception:  # a dead connection: nothing to close politely
                logger.debug("gameball_async: closing the hints connection failed")
