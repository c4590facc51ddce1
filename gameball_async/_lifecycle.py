"""The life of a session: its configuration, opening in the running loop (the
transport, the poller and the fleet attachment, built on first use), and its
close, which nothing the session started outlives."""

from __future__ import annotations

import asyncio
import os
import ssl as ssl_module
from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from ._calls import Calls
from ._closing import start_close, wait_closed
from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_SECRET_KEY,
    Timeout,
    check_base_url,
    check_routes,
    check_tls,
    from_environment,
)
from ._coordination import Attachment, Coordinator, Fetch, SessionLink, account_namespace
from ._creation import Creations, OnJob
from ._errors import GameballError, SessionClosedError
from ._models import BatchStatus, Operation
from ._observer import Observer
from ._policy import DEFAULT_POLL_POLICY, DEFAULT_RETRY_POLICY, PollPolicy, RetryPolicy
from ._poller import DEFAULT_MAX_IN_FLIGHT, Poller
from ._ratelimit import LocalRateLimiter, RateLimit, RateLimiter
from ._stats import Counters, SessionStats
from ._transport import Transport

__all__ = ["SessionLifecycle"]

_Opened = TypeVar("_Opened", bound="SessionLifecycle")


class SessionLifecycle:
    """Configuration, opening and closing of a :class:`GameballSession` (its
    base class; the calls live in ``_session.py``). See ``GameballSession``
    for the parameters."""

    def __init__(
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        *,
        base_url: str | None = None,
        poll: PollPolicy = DEFAULT_POLL_POLICY,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        rate_limit: RateLimit | None = None,
        timeout: Timeout | float = DEFAULT_TIMEOUT,
        http_session: aiohttp.ClientSession | None = None,
        routes: Mapping[str, str] | None = None,
        allow_insecure: bool = False,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
        ssl: ssl_module.SSLContext | None = None,
        max_in_flight_polls: int = DEFAULT_MAX_IN_FLIGHT,
        on_job: OnJob | None = None,
        fleet: Coordinator | None = None,
    ) -> None:
        api_key = from_environment(api_key, "api_key", ENV_API_KEY)
        secret_key = from_environment(secret_key, "secret_key", ENV_SECRET_KEY)
        if base_url is None:
            base_url = os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        check_tls(ssl, base_url, http_session)
        if isinstance(timeout, (int, float)):
            timeout = Timeout(total=float(timeout))
        if connection_limit < 1 or max_in_flight_polls < 1:
            raise ValueError("connection_limit and max_in_flight_polls must be >= 1")
        self._base_url = check_base_url(base_url, allow_insecure)
        self._routes = check_routes(routes)
        self._poll_policy = poll
        self._rate_limit = rate_limit if rate_limit is not None else RateLimit()
        self._max_in_flight = max_in_flight_polls
        self._state = "unopened"
        self._entered = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed_why = "the session is closed"
        self._transport_args: dict[str, Any] = {
            "base_url": self._base_url,
            "headers": {"APIKey": api_key, "SecretKey": secret_key},
            "secrets": (secret_key, api_key),
            "retry": retry,
            "timeout": timeout,
            "http_session": http_session,
            "connection_limit": connection_limit,
            "ssl": ssl,
        }
        self._on_job = on_job
        self._fleet = fleet
        self._account = account_namespace(api_key) if fleet is not None else ""
        self._attachment: Attachment | None = None
        self._closing: asyncio.Task[None] | None = None
        self._transport: Transport | None = None
        self._calls_if_open: Calls | None = None
        self._poller_if_open: Poller | None = None
        self._creations = Creations()
        self._counters = Counters()
        self._observer: Observer | None = None
        # a request in flight takes at most this long (aiohttp's total timeout)
        self._request_bound = (timeout.total or DEFAULT_TOTAL_TIMEOUT) + 1.0

    def __reduce__(self) -> Any:
        # It holds the keys and an event loop's connections: neither travels.
        raise TypeError(
            "a GameballSession cannot be pickled (it holds the keys and live "
            "connections); pickle job handles or job.to_token() instead"
        )

    def __repr__(self) -> str:
        return f"<GameballSession {self._base_url} api_key=*** secret_key=*** {self._state}>"

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self: _Opened) -> _Opened:
        if self._state == "closed":
            raise SessionClosedError(
                "a closed GameballSession cannot be reopened; create a new one"
            )
        if self._entered:
            # the inner block's exit would close the session under the outer block
            raise GameballError(
                "this GameballSession is already entered by an `async with` block; "
                "use it there without entering it again (its exit closes the session)"
            )
        self._open()
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        await self.close()

    def _open(self) -> Transport:
        if self._state == "closed":
            raise SessionClosedError(self._closed_why)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._check_loop(loop)
        if self._transport is None:
            # anyio primitives need the running loop: build them on first use.
            limiter: RateLimiter
            fetch: Fetch = self._poll_once
            if self._fleet is not None:
                attachment = self._attachment = self._fleet.attach(self._link())
                limiter, fetch = attachment.limiter, attachment.fetch
            else:
                limiter = LocalRateLimiter(self._rate_limit)
            self._transport = Transport(
                limiter=limiter, counters=self._counters, **self._transport_args
            )
            self._calls_if_open = Calls(
                self._transport, self._routes, self._counters, self._attachment, self._observer
            )
            self._poller_if_open = Poller(
                fetch,
                self._poll_policy,
                max_in_flight=self._max_in_flight,
                # a fleet's limiter cannot tell its room without asking Redis
                pace=limiter if isinstance(limiter, LocalRateLimiter) else None,
                counters=self._counters,
            )
            self._poller_if_open.observer = self._observer
            self._state = "open"
        return self._transport

    def _link(self) -> SessionLink:
        def poll_soon(job_id: str) -> None:
            if self._poller_if_open is not None:
                self._poller_if_open.poll_soon(job_id)

        def awaited(job_id: str) -> bool:
            return self._poller_if_open is not None and self._poller_if_open.holds(job_id)

        return SessionLink(
            account=self._account,
            rate_limit=self._rate_limit,
            fetch=self._poll_once,
            poll_soon=poll_soon,
            awaited=awaited,
            request_bound=self._request_bound,
        )

    def _check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is None:
            self._loop = loop
            return
        ended = "has ended" if self._loop.is_closed() else "is still running"
        why = (
            f"a GameballSession belongs to the event loop it was first used in, and that "
            f"loop {ended}: create one GameballSession per event loop (e.g. inside the "
            "coroutine given to asyncio.run)"
        )
        if self._loop.is_closed():
            # what it held died with that loop (the owned aiohttp session was closed
            # as the loop ended): nothing here can be used again
            self._state, self._closed_why = "closed", why
        raise SessionClosedError(why)

    async def close(self) -> None:
        """Stop polling, wake every waiter with :class:`SessionClosedError`, and
        close the owned aiohttp session. Remote jobs are not stopped. Idempotent.

        It returns within a bound: a creation in flight is given up to the
        request timeout (``Timeout.total``) plus 1 s to be heard of, the
        scheduler about 1 s to stop, and a fleet attachment its own bound
        (about 3 s with the default ``redis_timeout``). A cancellation or
        timeout of the caller takes effect at once, and the close goes on in
        the background to its end (waiters are still woken, a job still being
        created is still reported); calling ``close()`` again waits for it.
        """
        if self._state == "closed":
            if self._closing is not None:
                await wait_closed(self._closing)
            return
        self._state = "closed"
        if self._poller_if_open is None and self._transport is None:
            return
        self._closing = start_close(
            _shut(
                self._creations,
                self._request_bound,
                self._poller_if_open,
                self._transport,
                self._attachment,
                observer=self._observer,
            ),
            name="gameball_async close",
        )
        await wait_closed(self._closing)

    def stats(self) -> SessionStats:
        """A frozen snapshot of this session's counters (requests, retries,
        429s, ambiguous creations, jobs awaited, time spent waiting for the
        rate limiter...), for a metrics endpoint; see :class:`SessionStats`."""
        poller = self._poller_if_open
        if poller is None:
            return self._counters.snapshot(polls=0, polls_failed=0, jobs_awaited=0)
        return self._counters.snapshot(
            polls=poller.polls_sent,
            polls_failed=poller.polls_failed,
            jobs_awaited=poller.awaited_jobs,
        )

    def _watch(self, observer: Observer) -> None:
        """Set the observer of this session's jobs and requests (``gameball_async.otel``).

        :raises ValueError: when one is set already.
        """
        if self._observer is not None:
            raise ValueError("this GameballSession is instrumented already")
        self._observer = observer
        if self._calls_if_open is not None:
            self._calls_if_open.observer = observer
        if self._poller_if_open is not None:
            self._poller_if_open.observer = observer

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._state == "closed"

    @property
    def base_url(self) -> str:
        """The API base URL in use."""
        return self._base_url

    # -- what job handles use (the JobBackend protocol; not public) --------

    @property
    def _poller(self) -> Poller:
        """The session's poll scheduler (one per session), built on first use."""
        self._open()
        assert self._poller_if_open is not None
        return self._poller_if_open

    def _calls(self) -> Calls:
        self._open()
        assert self._calls_if_open is not None
        return self._calls_if_open

    async def _poll_once(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        return await self._calls().poll_once(job_id, operation)


async def _shut(
    creations: Creations,
    bound: float,
    poller: Poller | None,
    transport: Transport | None,
    attachment: Attachment | None,
    *,
    observer: Observer | None,
) -> None:
    try:
        # first: a creation in flight may still create a job, which must be heard of
        await creations.aclose(bound)
        if poller is not None:
            await poller.aclose()
        if attachment is not None:
            await attachment.aclose()  # after the poller: nothing polls through it any more
        if transport is not None:
            await transport.aclose()
    finally:
        if observer is not None:
            observer.session_closed()  # last: no job of the session can end after this
