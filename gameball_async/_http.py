"""One HTTP request through aiohttp: the transport's seam onto the network.

A :class:`Wire` sends one request and returns what came back, an
:class:`Answer` (status, headers, body bytes), or a :class:`Failed` naming the
kind of network failure. It never retries, never follows a redirect and raises
nothing of aiohttp's: every aiohttp exception is translated here, and
cancellation passes through untouched. :class:`AiohttpWire` is the real one;
tests give the transport a scripted one.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import sys
from collections.abc import AsyncGenerator, Mapping
from typing import Final, Protocol

import aiohttp
import attrs

from ._config import Timeout
from ._errors import SessionClosedError
from ._retry_rules import Outcome
from ._version import __version__

__all__ = ["AiohttpWire", "Answer", "Failed", "Wire", "user_agent"]


def user_agent() -> str:
    """``gameball_async/<version> Python/<x.y> aiohttp/<x.y>``, sent with every request."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    http = ".".join(aiohttp.__version__.split(".")[:2])
    return f"gameball_async/{__version__} Python/{python} aiohttp/{http}"


_USER_AGENT: Final = user_agent()


@attrs.frozen
class Answer:
    """An HTTP reply of any status, as received.

    :ivar headers: looked up by their canonical names (``Retry-After``).
    """

    status: int
    headers: Mapping[str, str]
    data: bytes


@attrs.frozen
class Failed:
    """A request that got no reply.

    :ivar outcome: :attr:`~Outcome.NEVER_CONNECTED`, :attr:`~Outcome.TLS_FAILED`,
        :attr:`~Outcome.DROPPED` or :attr:`~Outcome.TIMEOUT`.
    :ivar reason: the cause as the network library put it (not yet redacted).
    """

    outcome: Outcome
    reason: str


class Wire(Protocol):
    """Sends one request at a time for a transport."""

    async def send(self, method: str, url: str, body: bytes | None) -> Answer | Failed:
        """One request; ``body``, when given, is JSON.

        :raises SessionClosedError: when the wire (or its HTTP session) is closed.
        """
        ...

    async def aclose(self) -> None:
        """Release the connections. Idempotent."""
        ...


class AiohttpWire:
    """Requests through an aiohttp ``ClientSession``, owned or borrowed.

    :param headers: headers for every request, the keys included.
    :param timeout: per-request time limits.
    :param http_session: a caller's aiohttp session to borrow (never closed here).
    :param connection_limit: connection pool size of an owned session.
    :param ssl: an SSL context for HTTPS, or ``None`` for the system's defaults.
    """

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        timeout: Timeout,
        http_session: aiohttp.ClientSession | None,
        connection_limit: int,
        ssl: ssl_module.SSLContext | None,
    ) -> None:
        # per request, not as the aiohttp session's default: a borrowed session
        # would send its own instead
        self._headers = {"User-Agent": _USER_AGENT, **headers}
        # A creation body is JSON; without this aiohttp labels bytes application/octet-stream.
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._client_timeout = timeout.to_aiohttp()
        self._borrowed = http_session
        self._owned: aiohttp.ClientSession | None = None
        self._finalizer: AsyncGenerator[None, None] | None = None
        self._connection_limit = connection_limit
        self._ssl: ssl_module.SSLContext | bool = ssl if ssl is not None else True
        self._closed = False

    async def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise SessionClosedError("the session is closed")
        if self._borrowed is not None:
            if self._borrowed.closed:
                raise SessionClosedError(
                    "the aiohttp ClientSession lent as http_session= was closed by its "
                    "owner; keep it open while the GameballSession is in use, or close "
                    "the GameballSession first"
                )
            return self._borrowed
        if self._owned is None:
            # Created on first use, inside the running loop (aiohttp's rule).
            connector = aiohttp.TCPConnector(limit=self._connection_limit, ssl=self._ssl)
            self._owned = aiohttp.ClientSession(
                connector=connector,
                timeout=self._client_timeout,
            )
            # asyncio.run() (and asyncio.Runner) finalize the async generators still
            # alive before closing their loop: this one closes the owned session then,
            # should the GameballSession never be closed, so that nothing is left
            # bound to a dead loop (no ResourceWarning, no "Event loop is closed").
            self._finalizer = self._close_at_loop_end()
            await self._finalizer.asend(None)
        return self._owned

    async def _close_at_loop_end(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._closed = True
            await self._close_owned()

    async def _close_owned(self) -> None:
        owned, self._owned = self._owned, None
        if owned is not None:
            await owned.close()

    async def aclose(self) -> None:
        """Close the owned aiohttp session (a borrowed one is left open). Idempotent."""
        self._closed = True
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            await finalizer.aclose()  # runs its finally: closes the owned session
        await self._close_owned()

    async def send(self, method: str, url: str, body: bytes | None) -> Answer | Failed:
        """One request; a redirect is returned as it is, never followed.

        :raises SessionClosedError: when the session (or a borrowed one) is closed.
        """
        client = await self._client()
        # The failure is returned, not raised from here: raised in an except block
        # the error would chain the aiohttp error, whose request_info holds the
        # request headers (the keys).
        try:
            async with client.request(
                method,
                url,
                data=body,
                headers=self._headers if body is None else self._json_headers,
                timeout=self._client_timeout,
                ssl=self._ssl,
                # per request, so a borrowed session's default cannot turn it back on:
                # a redirect would carry the APIKey and SecretKey headers elsewhere
                allow_redirects=False,
            ) as response:
                data = await response.read()
                return Answer(response.status, response.headers, data)
        except aiohttp.ClientSSLError as exc:
            return Failed(Outcome.TLS_FAILED, _reason(exc))
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return Failed(Outcome.NEVER_CONNECTED, _reason(exc))
        except asyncio.TimeoutError as exc:  # 3.10: not TimeoutError; aiohttp's are both
            return Failed(Outcome.TIMEOUT, _reason(exc))
        except aiohttp.ClientError as exc:
            return Failed(Outcome.DROPPED, _reason(exc))


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
