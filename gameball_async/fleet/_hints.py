"""The hint listener: one pub/sub connection per process for shared polling.

Owners publish a job's id (and the status itself, see ``_polls_scripts.py``)
when they store news of it; the listener hands each message to a callback,
which brings that job's next read forward. A hint is only
a hint: one lost on a reconnect costs a follower some latency, never a status
(the status key is the truth). So after every reconnect, the listener's own or
the client's, ``on_reconnect`` runs and the followers read their jobs again.

The connection is checked while quiet (a PING that must be answered), so a
frozen or paused Redis does not hold a dead subscription forever; every step
is bounded and a failure only means a new connection a moment later. It stops
when told (:meth:`HintListener.aclose`), not by cancellation, which redis-py
can drop inside ``get_message`` (see ``_bounded.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import anyio
import redis.asyncio as aioredis

from ._bounded import abort_connection
from ._breaker import Breaker
from ._polls_scripts import text

__all__ = ["HintListener"]

logger: Final = logging.getLogger("gameball_async")


class HintListener:
    """Listens on one channel, reconnecting for as long as it runs.

    :param client: the Redis client whose pool gives the connection.
    :param channel: the hints channel.
    :param breaker: bounds the subscribe and the pings.
    :param on_hint: called with each message's text.
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
        self._stopped = asyncio.Event()
        #: Whether the listener is subscribed now.
        self.listening = False
        #: Subscriptions made (the first one and every reconnect).
        self.subscriptions = 0
        #: Hints received.
        self.hints = 0

    async def run(self) -> None:
        """Listen until :meth:`aclose` (or a cancellation)."""
        broken = False
        while not self._closed:
            pubsub = self._pubsub = self._client.pubsub()
            try:
                await self._breaker.call(partial(pubsub.subscribe, self._channel))
                self.subscriptions += 1
                self.listening = True
                if pubsub.connection is not None:
                    _connect_callbacks(pubsub.connection, "register")(self._reconnected)
                if self.subscriptions > 1:
                    if broken:
                        logger.info("gameball_async: fleet hints listening again")
                    broken = False
                    self._on_reconnect()
                await self._listen(pubsub)
            except Exception as exc:  # RedisUnavailable, a dropped connection, no pong
                if not broken and not self._closed:
                    broken = True
                    logger.info(
                        "gameball_async: fleet hints interrupted (%s); reconnecting",
                        type(exc).__name__,
                    )
            finally:
                self.listening = False
                self._pubsub = None
                await self._drop(pubsub)
            with anyio.move_on_after(self._quiet):
                await self._stopped.wait()

    async def aclose(self) -> None:
        """Stop for good: :meth:`run` returns within about one ``quiet`` period
        plus the breaker's timeout (its owner cancels it after that)."""
        self._closed = True
        self._stopped.set()

    def abort(self) -> None:
        """Close the subscription's connection at once, without a word to the
        server (for a listener that did not stop when told)."""
        pubsub = self._pubsub
        if pubsub is not None:
            abort_connection(pubsub.connection)

    async def _listen(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged: float | None = None
        patience = self._quiet + self._breaker.timeout
        calls = self._breaker.calls
        while not self._closed:
            # in a task of its own: redis-py may drop a cancellation delivered
            # inside get_message, and a close must not wait on that
            message = await calls.call(
                partial(pubsub.get_message, ignore_subscribe_messages=True, timeout=self._quiet),
                patience + 1.0,  # get_message has its own timeout
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
                hint = text(message.get("data"))
                if hint:
                    self.hints += 1
                    self._on_hint(hint)

    def _reconnected(self, connection: Any) -> None:
        # the client reconnected the subscription by itself: hints may be lost
        self._on_reconnect()

    async def _drop(self, pubsub: Any) -> None:
        connection = pubsub.connection
        if connection is not None:
            # the connection goes back to the client's pool: our callback must not
            _connect_callbacks(connection, "deregister")(self._reconnected)
        try:
            await self._breaker.calls.call(pubsub.aclose, self._breaker.timeout)
        except Exception:  # a dead or frozen connection: nothing to close politely
            logger.debug("gameball_async: closing the hints connection failed")
            abort_connection(connection)


def _connect_callbacks(connection: Any, verb: str) -> Callable[[Any], None]:
    # redis-py 5.0 names them _register_connect_callback and
    # _deregister_connect_callback; later versions drop the underscore
    method: Callable[[Any], None] | None = getattr(connection, f"{verb}_connect_callback", None)
    if method is None:
        method = getattr(connection, f"_{verb}_connect_callback")
    return method
