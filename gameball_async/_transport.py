"""HTTP through aiohttp: headers, timeouts, retries, error mapping, rate limiting.

This is the one place where aiohttp is touched. Every aiohttp exception is
translated here (``raise ... from exc``); cancellation passes through untouched.
What is retried follows DESIGN section 2:

- ``GET`` and ``DELETE`` are retried on 429, 5xx, timeouts and network errors;
- ``POST`` (creation) only where it provably did not take effect: a connection
  never made, a 429 or a 503. Anything else after the body may have been sent
  raises :class:`AmbiguousSubmissionError` with the items, and is not resent.
- Redirects are never followed: a 3xx is a :class:`RedirectError` (an
  :class:`AmbiguousSubmissionError` for a creation, which a 303 may have processed).
- Every ``Retry-After`` is clamped to ``RetryPolicy.max_retry_after`` before it
  pauses the limiter or delays anything.

Reply bytes are never altered; the keys are redacted only in the text shown
(exception messages and attributes, log lines).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
import sys
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Final

import aiohttp
import anyio

from ._config import Timeout
from ._decode import decode_error, decode_json
from ._errors import (
    AmbiguousSubmissionError,
    APIError,
    CreationTimeoutError,
    GameballError,
    ProtocolError,
    RedirectError,
    SessionClosedError,
    TransportError,
)
from ._models import Operation
from ._policy import RetryPolicy, retry_delay
from ._ratelimit import RateLimiter
from ._reply import CreationGuard, Miss, Reply, redact, redirect_target, server_delay
from ._stats import Counters
from ._version import __version__

__all__ = ["Transport", "user_agent"]

logger: Final = logging.getLogger("gameball_async")


def user_agent() -> str:
    """``gameball_async/<version> Python/<x.y> aiohttp/<x.y>``, sent with every request."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    http = ".".join(aiohttp.__version__.split(".")[:2])
    return f"gameball_async/{__version__} Python/{python} aiohttp/{http}"


_USER_AGENT: Final = user_agent()


class _Failure(Exception):
    """A classified network failure, internal to the retry loop."""

    def __init__(self, error: GameballError, *, never_connected: bool, retryable: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.never_connected = never_connected
        self.retryable = retryable


class Transport:
    """Sends the Batch API's requests for one session.

    :param base_url: the API base URL, without a trailing slash.
    :param headers: headers for every request, the keys included.
    :param secrets: strings that must never appear in an error message.
    :param retry: the retry policy.
    :param limiter: the session's rate limiter.
    :param timeout: per-request time limits.
    :param http_session: a caller's aiohttp session to borrow (never closed here).
    :param connection_limit: connection pool size of an owned session.
    :param ssl: an SSL context for HTTPS, or ``None`` for the system's defaults.
    """

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        secrets: Sequence[str],
        retry: RetryPolicy,
        limiter: RateLimiter,
        timeout: Timeout,
        http_session: aiohttp.ClientSession | None,
        connection_limit: int,
        ssl: ssl_module.SSLContext | None,
        counters: Counters | None = None,
    ) -> None:
        self.base_url = base_url
        self.counters = counters if counters is not None else Counters()
        # per request, not as the aiohttp session's default: a borrowed session
        # would send its own instead
        self._headers = {"User-Agent": _USER_AGENT, **headers}
        # A creation body is JSON; without this aiohttp labels bytes application/octet-stream.
        self._json_headers = {**self._headers, "Content-Type": "application/json"}
        self._secrets = tuple(s for s in secrets if s)
        self._retry = retry
        self._limiter = limiter
        self._timeout = timeout
        self._client_timeout = timeout.to_aiohttp()
        self._borrowed = http_session
        self._owned: aiohttp.ClientSession | None = None
        self._finalizer: AsyncGenerator[None, None] | None = None
        self._connection_limit = connection_limit
        self._ssl: ssl_module.SSLContext | bool = ssl if ssl is not None else True
        self._rng = random.Random()
        self._closed = False

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter every request of the session goes through."""
        return self._limiter

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

    def redact(self, text: str) -> str:
        """Replace every key in ``text`` with ``***`` (see :func:`redact`)."""
        return redact(text, self._secrets)

    def redact_error(self, error: GameballError) -> GameballError:
        """Redact a decoding error's message in place (it may quote the reply)."""
        message = str(error)
        clean = self.redact(message)
        if clean != message:
            error.args = (clean,)
        return error

    # -- the calls ---------------------------------------------------------

    async def create(
        self,
        path: str,
        body: bytes,
        *,
        operation: Operation,
        items: Sequence[Any],
        deadline: float | None = None,
        guard: CreationGuard | None = None,
    ) -> Reply:
        """``POST`` a creation request; retried only where it provably did not land.

        :param deadline: an :func:`anyio.current_time` after which no request is
            sent (the limiter wait and the pauses between tries are bounded by
            it); a request already sent is never cut short by it.
        :param guard: shared with the caller: tells it whether a request is in
            flight, and stops the retries once it is gone.
        :raises AmbiguousSubmissionError: when the request may have created a job.
        :raises CreationTimeoutError: when ``deadline`` passed before a request could
            be sent (nothing was created).
        """
        return await self._send(
            "POST", path, body, operation=operation, items=items, deadline=deadline, guard=guard
        )

    async def get(self, path: str) -> Reply:
        """``GET`` with retries on 429, 5xx, timeouts, network errors and garbled JSON."""
        return await self._send("GET", path, None)

    async def get_once(self, path: str) -> Reply:
        """One ``GET`` attempt: no retry, no sleeping (the caller schedules the next).

        It still takes a rate-limiter slot, waits out a limiter pause and, on a
        429, pauses the limiter (for the clamped ``Retry-After``).

        :return: a 2xx reply whose payload is decoded JSON (never ``None``).
        :raises RateLimitError: on 429, ``retry_after`` clamped to ``max_retry_after``.
        :raises ServerError: on 5xx.
        :raises APIError: on any other error status (its subclasses by status).
        :raises TransportError: when the network failed.
        :raises ProtocolError: on a 2xx whose body is empty or not JSON.
        """
        outcome = await self._attempt("GET", path, None)
        if isinstance(outcome, Miss):
            raise outcome.error
        if outcome.payload is None:
            raise ProtocolError(f"GET {path} answered {outcome.status} with an empty body")
        return outcome

    async def delete(self, path: str) -> Reply:
        """``DELETE`` with the same retries as :meth:`get` (stopping twice is harmless)."""
        return await self._send("DELETE", path, None)

    # -- the retry loop and one attempt ------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        operation: Operation | None = None,
        items: Sequence[Any] = (),
        deadline: float | None = None,
        guard: CreationGuard | None = None,
    ) -> Reply:
        policy = self._retry
        attempt = 0
        while True:
            outcome = await self._attempt(
                method, path, body, operation=operation, items=items, deadline=deadline, guard=guard
            )
            if isinstance(outcome, Reply):
                return outcome
            attempt += 1
            if not outcome.retryable or attempt >= policy.attempts or outcome.too_long:
                if outcome.retryable and attempt > 1:
                    logger.warning(
                        "gameball_async: giving up on %s %s after %d tries: %s",
                        method,
                        path,
                        attempt,
                        outcome.error,
                    )
                raise outcome.error
            if guard is not None and guard.stop:
                raise outcome.error  # the caller has gone (or the session is closing)
            delay = retry_delay(policy, attempt - 1, retry_after=outcome.retry_after, rng=self._rng)
            if deadline is not None and anyio.current_time() + delay >= deadline:
                raise self._timed_out(operation, f"; the last try got: {outcome.error}") from (
                    outcome.error
                )
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "retrying %s %s in %.2fs after: %s", method, path, delay, outcome.error
                )
            self.counters.retries += 1
            await anyio.sleep(delay)

    async def _attempt(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        operation: Operation | None = None,
        items: Sequence[Any] = (),
        deadline: float | None = None,
        guard: CreationGuard | None = None,
    ) -> Reply | Miss:
        """One request. A creation that may have landed raises
        :class:`AmbiguousSubmissionError`; every other failure is returned as a
        :class:`Miss` for the caller to retry or raise."""
        creating = method == "POST"
        policy = self._retry
        failure: _Failure | None = None
        # the slot is held until the reply: see RateLimiter.slot
        slot = self._limiter.slot()
        waited = time.monotonic()
        if deadline is None:
            await slot.__aenter__()
        else:
            if anyio.current_time() >= deadline:
                raise self._timed_out(operation, "")
            # cancelled before the slot is taken, the wait takes nothing
            with anyio.CancelScope(deadline=deadline) as waiting:  # anyio 4.2 has no move_on_at
                await slot.__aenter__()
            if waiting.cancelled_caught:
                raise self._timed_out(operation, " while waiting for the rate limiter")
        counters = self.counters
        counters.limiter_wait_seconds += time.monotonic() - waited
        counters.requests += 1
        try:
            if guard is not None:
                guard.in_flight = True
            status, headers, data = await self._once(method, self.base_url + path, body)
        except _Failure as exc:
            failure = exc
        finally:
            await slot.__aexit__(None, None, None)
        if failure is not None:
            counters.network_errors += 1
            # handled here, outside the except block: raised there, the error would
            # chain the aiohttp error, whose request_info holds the request headers
            if creating and not failure.never_connected:
                raise self._ambiguous(operation, items, str(failure.error)) from failure.error
            retryable = failure.retryable and policy.retry_network_errors
            return self._missed(guard, failure.error, retryable, None, too_long=False)
        asked = server_delay(headers.get("Retry-After"), headers.get("Date"), now=time.time())
        retry_after = min(asked, policy.max_retry_after) if asked is not None else None
        too_long = asked is not None and asked > policy.max_retry_after
        if status < 300:
            payload = self._payload(data, status, method, path)
            if payload is not _GARBLED:
                return Reply(status, payload, retry_after)
            error: GameballError = ProtocolError(
                f"{method} {path} answered {status} with a non-JSON body"
            )
            if creating:
                raise self._ambiguous(
                    operation, items, "the reply to the creation was not JSON"
                ) from error
            return self._missed(guard, error, True, retry_after, too_long=False)
        if status < 400:
            target = self.redact(redirect_target(headers.get("Location"), self.base_url))
            if creating:
                raise self._ambiguous(
                    operation, items, f"the server answered {status}, a redirect to {target}"
                )
            redirect = RedirectError(
                f"{method} {path} answered {status}, a redirect to {target}; redirects are "
                "never followed (the keys would travel with them): check base_url and routes",
                http_status=status,
            )
            return self._missed(guard, redirect, False, retry_after, too_long=False)
        error = self._error(status, data, retry_after)
        if status == 429:
            counters.rate_limited += 1
            pause = retry_after if retry_after is not None else 1.0
            self._limiter.pause(pause)
            logger.info(
                "gameball_async: %s %s was rate limited (429); the session's requests "
                "pause for %.1f s",
                method,
                path,
                pause,
            )
            return self._missed(
                guard, error, policy.retry_rate_limited, retry_after, too_long=too_long
            )
        if status >= 500:
            counters.server_errors += 1
            if creating and status != 503:
                raise self._ambiguous(operation, items, f"the server answered {status}") from error
            return self._missed(
                guard, error, policy.retry_server_errors, retry_after, too_long=too_long
            )
        return self._missed(guard, error, False, retry_after, too_long=too_long)

    @staticmethod
    def _missed(
        guard: CreationGuard | None,
        error: GameballError,
        retryable: bool,
        retry_after: float | None,
        *,
        too_long: bool,
    ) -> Miss:
        # A miss created nothing, so the request is no longer one to wait for.
        if guard is not None:
            guard.in_flight = False
        return Miss(error, retryable, retry_after, too_long=too_long)

    @staticmethod
    def _timed_out(operation: Operation | None, detail: str) -> CreationTimeoutError:
        what = f"a {operation.value} batch" if operation is not None else "a batch"
        return CreationTimeoutError(
            f"create_batch(timeout=...) ran out before the request creating {what} was "
            f"sent{detail}; nothing was created"
        )

    def _payload(self, data: bytes, status: int, method: str, path: str) -> Any:
        if not data.strip():
            return None
        try:
            return decode_json(data, f"the reply to {method} {path}")
        except ProtocolError:
            return _GARBLED

    def _error(self, status: int, data: bytes, retry_after: float | None) -> APIError:
        error = decode_error(status, data, retry_after=retry_after)
        if self._secrets:
            error.message = self.redact(error.message)
            error.args = (error.message,)
            if error.body is not None:
                error.body = self.redact(error.body)
            # str(error) shows these too: a server echoing a header must not leak it
            if error.type is not None:
                error.type = self.redact(error.type)
            if error.request_id is not None:
                error.request_id = self.redact(error.request_id)
        return error

    def _ambiguous(
        self, operation: Operation | None, items: Sequence[Any], why: str
    ) -> AmbiguousSubmissionError:
        assert operation is not None
        self.counters.ambiguous_creations += 1
        logger.warning(
            "gameball_async: creating a %s batch of %d items may have landed (%s); "
            "it was not resent",
            operation.value,
            len(items),
            self.redact(why),
        )
        return AmbiguousSubmissionError(
            f"creating a {operation.value} batch of {len(items)} items may or may not have "
            f"succeeded ({self.redact(why)}); it was not resent. Check the account before "
            "submitting these items again.",
            operation=operation,
            items=items,
        )

    async def _once(
        self, method: str, url: str, body: bytes | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        client = await self._client()
        started = time.perf_counter() if logger.isEnabledFor(logging.DEBUG) else 0.0
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
                status = response.status
                headers = response.headers
        except aiohttp.ClientSSLError as exc:
            raise _Failure(
                TransportError(f"TLS failed for {method} {self._where(url)}: {self._why(exc)}"),
                never_connected=True,
                retryable=False,
            ) from exc
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _Failure(
                TransportError(
                    f"could not connect for {method} {self._where(url)}: {self._why(exc)}"
                ),
                never_connected=True,
                retryable=True,
            ) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # 3.10: not TimeoutError
            raise _Failure(
                TransportError(f"{method} {self._where(url)} failed: {self._why(exc)}"),
                never_connected=False,
                retryable=True,
            ) from exc
        if started:
            logger.debug(
                "%s %s -> %d in %.1f ms",
                method,
                self._where(url),
                status,
                (time.perf_counter() - started) * 1000,
            )
        return status, headers, data

    def _where(self, url: str) -> str:
        return url[len(self.base_url) :] if url.startswith(self.base_url) else url

    def _why(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        return self.redact(f"{type(exc).__name__}: {text}" if str(exc) else text)


_GARBLED: Final = object()
