"""The session's single calls: one creation request, one status read, one stop.

Each turns a reply into what the caller gets (a job handle, a decoded status)
and tells the fleet, when there is one, what it learnt: a created job for the
registry, a status read outside the poller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._creation import OnJob, announce
from ._decode import decode_job_id, decode_status
from ._errors import AmbiguousSubmissionError, GameballError, ProtocolError
from ._job import BatchJob, check_job_id

if TYPE_CHECKING:
    from ._coordination import Attachment
    from ._job import JobBackend
    from ._models import BatchStatus, Operation
    from ._observer import Observer, RequestKind
    from ._reply import CreationGuard, Reply
    from ._stats import Counters
    from ._transport import Transport

__all__ = ["Calls"]

logger: Final = logging.getLogger("gameball_async")


class Calls:
    """The single calls of one open session.

    :param transport: the session's transport.
    :param routes: the checked routes (operation values and ``"job"``).
    :param counters: the session's counters.
    :param attachment: the session's fleet attachment, if it has a fleet.
    :param observer: what watches the session's jobs and requests, if anything
        (``gameball_async.otel``); settable later through :attr:`observer`.
    """

    def __init__(
        self,
        transport: Transport,
        routes: Mapping[str, str],
        counters: Counters,
        attachment: Attachment | None,
        observer: Observer | None = None,
    ) -> None:
        self._transport = transport
        self._routes = routes
        self._counters = counters
        self._attachment = attachment
        self.observer = observer

    def _job_path(self, job_id: str) -> str:
        return self._routes["job"].replace("{job_id}", job_id)

    async def create(
        self,
        owner: JobBackend,
        op: Operation,
        batch: Sequence[Any],
        body: bytes,
        *,
        input_range: range,
        deadline: float | None,
        guard: CreationGuard,
        on_job: Sequence[OnJob | None],
    ) -> BatchJob:
        """Send one creation (retried only where nothing can have been created)
        and return the job's handle, announced to ``on_job`` and the registry."""
        observer = self.observer
        if observer is None:
            return await self._create(
                owner,
                op,
                batch,
                body,
                input_range=input_range,
                deadline=deadline,
                guard=guard,
                on_job=on_job,
            )
        with observer.creating(op, len(batch)) as creating:
            return await self._create(
                owner,
                op,
                batch,
                body,
                input_range=input_range,
                deadline=deadline,
                guard=guard,
                on_job=on_job,
                created=creating.created,
            )

    async def _create(
        self,
        owner: JobBackend,
        op: Operation,
        batch: Sequence[Any],
        body: bytes,
        *,
        input_range: range,
        deadline: float | None,
        guard: CreationGuard,
        on_job: Sequence[OnJob | None],
        created: Callable[[str], None] | None = None,
    ) -> BatchJob:
        transport = self._transport
        # the job cannot start before its creation is sent: a floor under startedAt
        sending = time.monotonic()
        reply = await transport.create(
            self._routes[op.value], body, operation=op, items=batch, deadline=deadline, guard=guard
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
        job = BatchJob(owner, job_id, op, input_range=input_range, submitted_at=sending)
        self._counters.jobs_created += 1
        if created is not None:
            created(job_id)
        if self._attachment is not None:
            await self._attachment.created(job.to_token(), op, job_id)
        announce(job, on_job)
        return job

    async def fetch_status(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        """One status read, retried: the decoded status and the reply's Retry-After."""
        transport = self._transport
        observer = self.observer
        if observer is None:
            reply = await transport.get(self._job_path(job_id))
        else:
            with observer.around_request(job_id, "status"):
                reply = await transport.get(self._job_path(job_id))
        if reply.payload is None:
            raise ProtocolError(f"the status reply for job {job_id} was empty")
        status, retry_after = self._decode(reply, job_id, operation)
        if self._attachment is not None:
            self._attachment.observed(status)
        if observer is not None:
            observer.status_seen(status)
        return status, retry_after

    async def poll_once(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        """The poller's read: one attempt, no retry loop and no sleeping, so a slow
        or failing job costs one request timeout per poll; the poller retries."""
        observer = self.observer
        if observer is not None:
            return await self._poll_watched(observer, job_id, operation)
        reply = await self._transport.get_once(self._job_path(job_id))
        # While a job runs the scheduler needs its state and counts only: a
        # halfway 1,000-item reply would otherwise stay held by every entry.
        return self._decode(reply, job_id, operation, results=False)

    async def _poll_watched(
        self, observer: Observer, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        # poll_once with an observer: kept apart so the plain path stays as it was
        with observer.around_request(job_id, "poll"):
            reply = await self._transport.get_once(self._job_path(job_id))
        status, retry_after = self._decode(reply, job_id, operation, results=False)
        observer.status_seen(status)
        return status, retry_after

    async def send_stop(self, job_id: str, operation: Operation | None) -> BatchStatus | None:
        """One stop call: the status the reply carried, if it carried one."""
        with self._around(job_id, "stop"):
            reply = await self._transport.delete(self._job_path(job_id))
        payload = reply.payload
        if not (isinstance(payload, Mapping) and ("status" in payload or "state" in payload)):
            return None
        try:
            status = decode_status(payload, job_id=job_id, operation=operation)
        except ProtocolError:
            return None
        if self._attachment is not None:
            self._attachment.observed(status)
        if self.observer is not None:
            self.observer.status_seen(status)
        return status

    def _around(self, job_id: str, kind: RequestKind) -> AbstractContextManager[None]:
        observer = self.observer
        return nullcontext() if observer is None else observer.around_request(job_id, kind)

    def _decode(
        self, reply: Reply, job_id: str, operation: Operation | None, *, results: bool = True
    ) -> tuple[BatchStatus, float | None]:
        transport = self._transport
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
