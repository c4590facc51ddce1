"""``GameballSession``: configuration, lifecycle, creation, management and reattach."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl as ssl_module
import time
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

import aiohttp
import anyio
import attrs

from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECTION_LIMIT,
    DEFAULT_ROUTES,
    DEFAULT_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_SECRET_KEY,
    Timeout,
    check_base_url,
    check_routes,
    connector_ssl,
    from_environment,
    verifies,
)
from ._coordination import Attachment, Claim, Coordinator, Fetch, SessionLink, account_namespace
from ._creation import Creations, InputReader, OnJob, announce, submit_chunks
from ._decode import decode_job_id, decode_status
from ._errors import (
    AmbiguousSubmissionError,
    AuthenticationError,
    GameballError,
    InvalidBatchError,
    ProtocolError,
    SessionClosedError,
)
from ._idempotency import check_idempotency_key, claimed, earlier_job
from ._job import BatchJob, check_job_id
from ._models import BatchStatus, Operation
from ._policy import DEFAULT_POLL_POLICY, DEFAULT_RETRY_POLICY, PollPolicy, RetryPolicy
from ._poller import DEFAULT_MAX_IN_FLIGHT, Poller
from ._ratelimit import LocalRateLimiter, RateLimit, RateLimiter
from ._reply import CreationGuard, Reply
from ._schema import MAX_BATCH_ITEMS, encode_batch
from ._stats import Counters, SessionStats
from ._transport import Transport

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_ROUTES", "GameballSession"]

logger: Final = logging.getLogger("gameball_async")

DEFAULT_MAX_CONCURRENCY: Final = 4

# Errors after which submitting further chunks could only fail the same way.
_FATAL: Final = (AuthenticationError, SessionClosedError)


class GameballSession:
    """An async session with Gameball's Batch API.

    Use it as an async context manager (or call :meth:`close`)::

        async with GameballSession(api_key, secret_key) as gb:
            job = await gb.create_batch("cashback", records)
            status = await job

    It owns one aiohttp ``ClientSession``, opened on first use inside the
    running loop, unless ``http_session`` lends one (never closed here). It
    holds one rate limiter and one poll scheduler shared by all its calls. A
    closed session cannot be reopened.

    :param api_key: the account's API key (``APIKey`` header); when not given,
        the ``GAMEBALL_API_KEY`` environment variable.
    :param secret_key: the account's secret key (``SecretKey`` header); when not
        given, the ``GAMEBALL_SECRET_KEY`` environment variable. It never
        appears in a repr, a log record, an exception or a URL.
    :param base_url: the API base URL; when not given, the ``GAMEBALL_BASE_URL``
        environment variable, else :data:`DEFAULT_BASE_URL`. Plain ``http://``
        only to loopback hosts unless ``allow_insecure``.
    :param poll: poll timing for awaited jobs.
    :param retry: which failures are retried, and how.
    :param rate_limit: the client-side request rate (Gameball's limits by default).
    :param timeout: per-request limits, or a number of seconds for the whole request.
    :param http_session: an aiohttp session to borrow instead of owning one.
    :param routes: route overrides, keyed by operation value or ``"job"``.
    :param allow_insecure: allow plain ``http://`` to any host.
    :param connection_limit: connection pool size of the owned aiohttp session.
    :param ssl: an SSL context for HTTPS (e.g. trusting a private CA).
        Certificate verification cannot be turned off.
    :param max_in_flight_polls: status polls in flight at once.
    :param on_job: called with every job this session creates, the moment it
        exists (after the call's own ``on_job``); an exception it raises is
        logged (ERROR) and does not propagate. It is how a job whose caller was
        cancelled while its request was in flight is heard of.
    :param fleet: a fleet of processes sharing the account (e.g.
        ``gameball_async.fleet.RedisFleet``): the rate limit then holds for the
        whole account, each awaited job is polled by one process for all of
        them, created jobs are registered, and ``idempotency_key`` works.
    :raises ValueError: for bad or missing keys (naming the parameter or the
        environment variable, never the value), a bad base URL or bad routes.
    """

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
        if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
            raise ValueError("ssl must be an ssl.SSLContext; verification cannot be turned off")
        # aiohttp uses a borrowed session's connector setting unless ssl= overrides it
        setting: object = ssl
        if ssl is None:
            https = base_url.lower().startswith("https:")
            setting = connector_ssl(http_session) if https else True
        if not verifies(setting):
            raise ValueError(
                "certificate verification cannot be turned off: pass an ssl.SSLContext "
                "that verifies (CERT_REQUIRED, check_hostname), e.g. trusting a private CA"
            )
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
        self._transport: Transport | None = None
        self._poller_if_open: Poller | None = None
        self._creations = Creations()
        self._counters = Counters()
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

    async def __aenter__(self) -> GameballSession:
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
            self._poller_if_open = Poller(
                fetch, self._poll_policy, max_in_flight=self._max_in_flight
            )
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
        close the owned aiohttp session. Remote jobs are not stopped. Idempotent."""
        if self._state == "closed":
            return
        self._state = "closed"
        if self._poller_if_open is None and self._transport is None:
            return
        # In a task of its own, waited for to the end: anyio's shield does not
        # stop a plain task.cancel(), which would leave waiters hanging and the
        # connection pool open. The caller's cancellation is re-raised after.
        closing = asyncio.get_running_loop().create_task(
            _shut(
                self._creations,
                self._request_bound,
                self._poller_if_open,
                self._transport,
                self._attachment,
            ),
            name="gameball_async close",
        )
        cancelled: BaseException | None = None
        with anyio.CancelScope(shield=True):
            while not closing.done():
                try:
                    await asyncio.wait([closing])
                except asyncio.CancelledError as exc:
                    cancelled = exc
        if cancelled is not None:
            raise cancelled
        closing.result()

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

    # -- creation ----------------------------------------------------------

    async def create_batch(
        self,
        operation: Operation | str,
        items: Iterable[Any],
        *,
        timeout: float | None = None,
        on_job: OnJob | None = None,
        idempotency_key: str | None = None,
    ) -> BatchJob:
        """Create one batch job of 1 to 1,000 items.

        Once its request is sent, the job is never lost: if the caller is
        cancelled (a cancel scope, ``asyncio.wait_for``, a web framework) while
        the request is in flight, the request still completes (bounded by the
        request timeout), the job goes to the ``on_job`` callbacks and a WARNING
        on the ``gameball_async`` logger names it; the cancellation propagates.
        A caller cancelled before the request was sent sends nothing.

        :param operation: an :class:`Operation` or its string value.
        :param items: records of the operation's class, or plain mappings
            (camelCase, passed through); order-id strings for
            ``order-transactions``.
        :param timeout: seconds for the whole call, the rate-limiter wait and the
            pauses between tries included; ``None`` for no limit. Once the request
            is sent it is not cut short: the call then returns its job, up to one
            request timeout past ``timeout``.
        :param on_job: called with the job the moment it exists (before the
            session's own ``on_job``); an exception it raises is logged and does
            not propagate.
        :param idempotency_key: at most one job per key across the fleet (needs
            ``fleet=``): a later call with the key returns a handle to the same
            job and sends nothing; a concurrent one waits (within ``timeout``) for
            the first call's outcome.
        :return: the job's handle (``input_range`` is ``range(len(items))``);
            ``await`` it for the outcome.
        :raises InvalidBatchError: before anything is sent, for an unknown
            operation, an empty batch, more than 1,000 items or a bad item
            (naming its index and field).
        :raises CreationTimeoutError: ``timeout`` ran out before the request was
            sent; nothing was created.
        :raises AmbiguousSubmissionError: the request may have created a job
            (it is not resent); carries the items. With ``idempotency_key``, also
            when an earlier call with the key may have sent its request and
            recorded no job (a crash mid-request).
        :raises APIError: the server refused the batch.
        :raises TransportError: the server could not be reached.
        :raises ValueError: ``idempotency_key`` without a fleet (nothing is sent).
        """
        check_idempotency_key(idempotency_key, fleet=self._fleet is not None)
        op = Operation.parse(operation)
        batch: Sequence[Any] = items if isinstance(items, (list, tuple)) else list(items)
        body = encode_batch(op, batch)
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
        deadline = anyio.current_time() + timeout if timeout is not None else None
        return await self._create(
            op,
            batch,
            body,
            input_range=range(len(batch)),
            on_job=on_job,
            deadline=deadline,
            idempotency_key=idempotency_key,
        )

    async def _create(
        self,
        op: Operation,
        batch: Sequence[Any],
        body: bytes,
        *,
        input_range: range,
        on_job: OnJob | None,
        deadline: float | None,
        idempotency_key: str | None = None,
    ) -> BatchJob:
        transport = self._open()
        claim: Claim | None = None
        if idempotency_key is not None:
            assert self._attachment is not None  # checked before: a fleet is attached
            claim = await self._attachment.claim(idempotency_key, op, deadline=deadline)
            earlier = earlier_job(claim, idempotency_key, op, batch)
            if earlier is not None:
                job_id, known = earlier
                return BatchJob(self, job_id, known or op, input_range=input_range)

        async def send(guard: CreationGuard) -> BatchJob:
            reply = await transport.create(
                self._routes[op.value],
                body,
                operation=op,
                items=batch,
                deadline=deadline,
                guard=guard,
            )
            try:
                job_id = check_job_id(decode_job_id(reply.payload))
            except GameballError as exc:
                transport.redact_error(exc)  # it may quote the reply
                raise AmbiguousSubmissionError(
                    f"the server accepted a {op.value} batch of {len(batch)} items but its "
                    f"reply named no usable job id ({exc}); it was not resent",
                    operation=op,
                    items=batch,
                ) from exc
            logger.debug("created %s job %s with %d items", op.value, job_id, len(batch))
            job = BatchJob(self, job_id, op, input_range=input_range, submitted_at=time.monotonic())
            self._counters.jobs_created += 1
            if self._attachment is not None:
                self._attachment.created(job.to_token(), op, job_id)
            announce(job, (on_job, self._on_job))
            return job

        runs = send if claim is None else claimed(claim, send)
        return await self._creations.run(runs, operation=op, items=batch)

    async def submit_many(
        self,
        operation: Operation | str,
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        chunk_size: int = MAX_BATCH_ITEMS,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        on_job: OnJob | None = None,
        idempotency_key: str | None = None,
    ) -> list[BatchJob]:
        """Split items into batches and create them concurrently, in input order.

        The input is read lazily, so it may be a generator over a huge file.
        Every exit reports what was created: ``on_job`` hears of each job the
        moment it exists, and a :class:`SubmissionError` carries the jobs, the
        failed chunks and the items read but not sent. When the call is
        cancelled, the requests in flight complete and their jobs reach
        ``on_job`` and a WARNING log (see :meth:`create_batch`); the
        cancellation propagates.

        :param chunk_size: items per batch, 1 to 1,000.
        :param max_concurrency: creation requests in flight at once.
        :param on_job: called with each job the moment it exists (before the
            session's ``on_job``), e.g. to persist it; exceptions are logged.
        :param idempotency_key: a prefix (needs ``fleet=``): chunk ``n`` (from 0)
            is created with the key ``f"{idempotency_key}/{n}"``, so a retried
            call resends nothing that an earlier one created.
        :return: one job per chunk, in input order; each job's ``input_range``
            holds the positions of its items in the input.
        :raises SubmissionError: when some chunks failed, or the input raised
            (then the input's exception is its ``__cause__`` and
            ``input_error``). It carries the jobs created, each failed chunk's
            items with its error and the items read but never sent, so nothing
            is lost or sent twice. After an authentication error (or a closed
            session) no further input is read.
        """
        check_idempotency_key(idempotency_key, fleet=self._fleet is not None)
        op = Operation.parse(operation)
        if not 1 <= chunk_size <= MAX_BATCH_ITEMS:
            raise InvalidBatchError(
                f"chunk_size must be within 1..{MAX_BATCH_ITEMS}, got {chunk_size}"
            )
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")

        async def create(start: int, chunk: list[Any]) -> BatchJob:
            body = encode_batch(op, chunk)
            span = range(start, start + len(chunk))
            key = None if idempotency_key is None else f"{idempotency_key}/{start // chunk_size}"
            return await self._create(
                op,
                chunk,
                body,
                input_range=span,
                on_job=on_job,
                deadline=None,
                idempotency_key=key,
            )

        return await submit_chunks(
            create, InputReader(items, chunk_size), max_concurrency=max_concurrency, fatal=_FATAL
        )

    # -- management --------------------------------------------------------

    def job(self, job_id: int | str, operation: Operation | str | None = None) -> BatchJob:
        """A handle for a job created elsewhere (another process, an earlier run).

        :raises InvalidJobIdError: for an id that could change the route.
        """
        op = Operation.parse(operation) if operation is not None else None
        return BatchJob(self, check_job_id(job_id), op)

    def resume(self, token: str) -> BatchJob:
        """Restore a handle from :meth:`BatchJob.to_token`.

        :raises InvalidJobIdError: when the token is not a valid job token.
        """
        job_id, operation = BatchJob.parse_token(token)
        return BatchJob(self, job_id, operation)

    async def get_status(self, job_id: int | str) -> BatchStatus:
        """Read a job's status once (``GET /batch/{jobId}``).

        :raises NotFoundError: for an unknown job.
        :raises ProtocolError: when the reply is not a status.
        """
        status, _ = await self._fetch_status(check_job_id(job_id), None)
        return status

    async def stop(self, job_id: int | str) -> BatchStatus | None:
        """Ask the server to stop a job (``DELETE /batch/{jobId}``).

        :return: the status the reply carried, or ``None`` when it carried none.
        """
        return await self._send_stop(check_job_id(job_id), None)

    # -- what job handles and the poller use --------------------------------

    def _job_path(self, job_id: str) -> str:
        return self._routes["job"].replace("{job_id}", job_id)

    async def _fetch_status(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        """One status poll: the decoded status and the reply's Retry-After, if any."""
        transport = self._open()
        reply = await transport.get(self._job_path(job_id))
        if reply.payload is None:
            raise ProtocolError(f"the status reply for job {job_id} was empty")
        status, retry_after = self._decode_status(transport, reply, job_id, operation)
        if self._attachment is not None:
            self._attachment.observed(status)
        return status, retry_after

    async def _poll_once(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        # The poller's fetch: one attempt, no retry loop and no sleeping, so a slow
        # or failing job costs one request timeout per poll; the poller retries.
        transport = self._open()
        reply = await transport.get_once(self._job_path(job_id))
        # While a job runs the scheduler needs its state and counts only: a
        # halfway 1,000-item reply would otherwise stay held by every entry.
        return self._decode_status(transport, reply, job_id, operation, results=False)

    @staticmethod
    def _decode_status(
        transport: Transport,
        reply: Reply,
        job_id: str,
        operation: Operation | None,
        *,
        results: bool = True,
    ) -> tuple[BatchStatus, float | None]:
        try:
            status = decode_status(
                reply.payload, job_id=job_id, operation=operation, results=results
            )
        except ProtocolError as exc:
            transport.redact_error(exc)  # it may quote the reply
            raise
        word = transport.redact(status.state_word)
        if word is not status.state_word and word != status.state_word:
            # shown in reprs and messages; ``raw`` keeps the reply as received
            status = attrs.evolve(status, state_word=word)
        return status, reply.retry_after

    async def _send_stop(self, job_id: str, operation: Operation | None) -> BatchStatus | None:
        """One stop call: the status the reply carried, if it carried one."""
        reply = await self._open().delete(self._job_path(job_id))
        payload = reply.payload
        if isinstance(payload, Mapping) and ("status" in payload or "state" in payload):
            try:
                status = decode_status(payload, job_id=job_id, operation=operation)
            except ProtocolError:
                return None
            if self._attachment is not None:
                self._attachment.observed(status)
            return status
        return None


async def _shut(
    creations: Creations,
    bound: float,
    poller: Poller | None,
    transport: Transport | None,
    attachment: Attachment | None,
) -> None:
    # first: a creation in flight may still create a job, which must be heard of
    await creations.aclose(bound)
    if poller is not None:
        await poller.aclose()
    if attachment is not None:
        await attachment.aclose()  # after the poller: nothing polls through it any more
    if transport is not None:
        await transport.aclose()
