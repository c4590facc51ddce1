"""``GameballSession``: creation, management and reattach (its life: ``_lifecycle.py``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Any, Final

import anyio

from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_ROUTES,
)
from ._coordination import Claim
from ._creation import InputReader, OnJob, submit_chunks
from ._errors import (
    AuthenticationError,
    InvalidBatchError,
    SessionClosedError,
)
from ._idempotency import check_idempotency_key, claimed, earlier_job
from ._job import BatchJob, check_job_id
from ._lifecycle import SessionLifecycle
from ._models import BatchStatus, Operation
from ._reply import CreationGuard
from ._schema import MAX_BATCH_ITEMS, encode_batch

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_ROUTES", "GameballSession"]

logger: Final = logging.getLogger("gameball_async")

DEFAULT_MAX_CONCURRENCY: Final = 4

# Errors after which submitting further chunks could only fail the same way.
_FATAL: Final = (AuthenticationError, SessionClosedError)


class GameballSession(SessionLifecycle):
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
        calls = self._calls()
        claim: Claim | None = None
        if idempotency_key is not None:
            assert self._attachment is not None  # checked before: a fleet is attached
            claim = await self._attachment.claim(idempotency_key, op, deadline=deadline)
            earlier = earlier_job(claim, idempotency_key, op, batch)
            if earlier is not None:
                job_id, known = earlier
                return BatchJob(self, job_id, known or op, input_range=input_range)

        async def send(guard: CreationGuard) -> BatchJob:
            return await calls.create(
                self,
                op,
                batch,
                body,
                input_range=input_range,
                deadline=deadline,
                guard=guard,
                on_job=(on_job, self._on_job),
            )

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

    # -- what job handles and the poller use (the JobBackend protocol) -----

    async def _fetch_status(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        """One status read: the decoded status and the reply's Retry-After, if any."""
        return await self._calls().fetch_status(job_id, operation)

    async def _send_stop(self, job_id: str, operation: Operation | None) -> BatchStatus | None:
        """One stop call: the status the reply carried, if it carried one."""
        return await self._calls().send_stop(job_id, operation)
