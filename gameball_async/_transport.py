"""The requests of one session: rate limiting, retries, errors, ambiguous creations.

Each try takes a rate-limiter slot (held until the reply), goes out through a
:class:`~gameball_async._http.Wire` (aiohttp, unless a test gives another), and
what came back is read into a reply or a miss; the retry rules
(:func:`~gameball_async._retry_rules.decide`) then say what follows a miss:

- ``GET`` and ``DELETE`` are retried on 429, 5xx, timeouts, network errors and
  2xx replies that are not JSON;
- ``POST`` (creation) only where it provably did not take effect: a connection
  never made, a 429 or a 503. Anything else after the body may have been sent
  raises :class:`AmbiguousSubmissionError` with the items, and is not resent.
- Redirects are never followed: a 3xx is a :class:`RedirectError` (an
  :class:`AmbiguousSubmissionError` for a creation, which a 303 may have processed).
- Every ``Retry-After`` is clamped to ``RetryPolicy.max_retry_after`` before it
  pauses the limiter or delays anything; a 429 pauses every request of the session.

Reply bytes are never altered; the keys are redacted only in the text shown
(exception messages and attributes, log lines).
"""

from __future__ import annotations

import logging
import random
import ssl as ssl_module
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import aiohttp
import anyio

from ._config import DEFAULT_CONNECTION_LIMIT, DEFAULT_TIMEOUT, Timeout
from ._coordination import REQUEST_SENT
from ._errors import AmbiguousSubmissionError, CreationTimeoutError, GameballError, ProtocolError
from ._http import AiohttpWire, Failed, Wire
from ._models import Operation
from ._policy import RetryPolicy
from ._ratelimit import RateLimiter
from ._reply import CreationGuard, Miss, Reply, read_answer, read_failure, redact
from ._retry_rules import Action, Method, Outcome, decide
from ._stats import Counters

__all__ = ["Transport"]

logger: Final = logging.getLogger("gameball_async")


class Transport:
    """Sends the Batch API's requests for one session.

    :param base_url: the API base URL, without a trailing slash.
    :param secrets: strings that must never appear in an error message.
    :param retry: the retry policy.
    :param limiter: the session's rate limiter.
    :param counters: the session's counters (fresh ones by default).
    :param wire: what sends one request; by default an
        :class:`~gameball_async._http.AiohttpWire` made of the options below.
    :param headers: headers for every request, the keys included.
    :param timeout: per-request time limits.
    :param http_session: a caller's aiohttp session to borrow (never closed here).
    :param connection_limit: connection pool size of an owned session.
    :param ssl: an SSL context for HTTPS, or ``None`` for the system's defaults.
    """

    def __init__(
        self,
        *,
        base_url: str,
        secrets: Sequence[str],
        retry: RetryPolicy,
        limiter: RateLimiter,
        counters: Counters | None = None,
        wire: Wire | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        http_session: aiohttp.ClientSession | None = None,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url
        self.counters = counters if counters is not None else Counters()
        self._secrets = tuple(s for s in secrets if s)
        self._retry = retry
        self._limiter = limiter
        if wire is None:
            wire = AiohttpWire(
                headers=headers or {},
                timeout=timeout,
                http_session=http_session,
                connection_limit=connection_limit,
                ssl=ssl,
            )
        self._wire = wire
        self._rng = random.Random()

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter every request of the session goes through."""
        return self._limiter

    async def aclose(self) -> None:
        """Close the wire: an owned aiohttp session (a borrowed one is left open). Idempotent."""
        await self._wire.aclose()

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
        read = await self._attempt("GET", path, None)
        if isinstance(read, Miss):
            raise read.error
        if read.payload is None:
            raise ProtocolError(f"GET {path} answered {read.status} with an empty body")
        return read

    async def delete(self, path: str) -> Reply:
        """``DELETE`` with the same retries as :meth:`get` (stopping twice is harmless)."""
        return await self._send("DELETE", path, None)

    # -- the retry loop and one attempt ------------------------------------

    async def _send(
        self,
        method: Method,
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
            read = await self._attempt(
                method, path, body, operation=operation, deadline=deadline, guard=guard
            )
            if isinstance(read, Reply):
                return read
            miss = read
            attempt += 1
            decision = decide(
                method,
                miss.outcome,
                attempt,
                policy,
                miss.retry_after,
                too_long=miss.too_long,
                rng=self._rng,
            )
            if decision.action is Action.AMBIGUOUS:
                ambiguous = self._ambiguous(operation, items, miss.why)
                if miss.outcome is Outcome.REDIRECT:
                    raise ambiguous  # no redirect error was raised: nothing to chain
                raise ambiguous from miss.error
            # A miss created nothing, so the request is no longer one to wait for.
            if guard is not None:
                guard.in_flight = False
            if decision.action is Action.RAISE:
                if decision.gave_up and attempt > 1:
                    logger.warning(
                        "gameball_async: giving up on %s %s after %d tries: %s",
                        method,
                        path,
                        attempt,
                        miss.error,
                    )
                raise miss.error
            if guard is not None and guard.stop:
                raise miss.error  # the caller has gone (or the session is closing)
            delay = decision.delay
            if deadline is not None and anyio.current_time() + delay >= deadline:
                raise self._timed_out(operation, f"; the last try got: {miss.error}") from (
                    miss.error
                )
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("retrying %s %s in %.2fs after: %s", method, path, delay, miss.error)
            self.counters.retries += 1
            await anyio.sleep(delay)

    async def _attempt(
        self,
        method: Method,
        path: str,
        body: bytes | None,
        *,
        operation: Operation | None = None,
        deadline: float | None = None,
        guard: CreationGuard | None = None,
    ) -> Reply | Miss:
        """One request, its reply read (a 429 pauses the limiter), nothing decided."""
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
        started = time.perf_counter() if logger.isEnabledFor(logging.DEBUG) else 0.0
        try:
            if guard is not None:
                guard.in_flight = True
            REQUEST_SENT.set(time.monotonic())
            answer = await self._wire.send(method, self.base_url + path, body)
        finally:
            await slot.__aexit__(None, None, None)
        if isinstance(answer, Failed):
            counters.network_errors += 1
            return read_failure(method, path, answer, self._secrets)
        if started:
            elapsed = (time.perf_counter() - started) * 1000
            logger.debug("%s %s -> %d in %.1f ms", method, path, answer.status, elapsed)
        read = read_answer(
            method,
            path,
            answer,
            max_retry_after=self._retry.max_retry_after,
            base_url=self.base_url,
            secrets=self._secrets,
            now=time.time(),
        )
        if isinstance(read, Miss):
            if read.outcome is Outcome.RATE_LIMITED:
                counters.rate_limited += 1
                pause = read.retry_after if read.retry_after is not None else 1.0
                self._limiter.pause(pause)
                logger.info(
                    "gameball_async: %s %s was rate limited (429); the session's requests "
                    "pause for %.1f s",
                    method,
                    path,
                    pause,
                )
            elif read.outcome in (Outcome.UNAVAILABLE, Outcome.SERVER_ERROR):
                counters.server_errors += 1
        return read

    @staticmethod
    def _timed_out(operation: Operation | None, detail: str) -> CreationTimeoutError:
        what = f"a {operation.value} batch" if operation is not None else "a batch"
        return CreationTimeoutError(
            f"create_batch(timeout=...) ran out before the request creating {what} was "
            f"sent{detail}; nothing was created"
        )

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
