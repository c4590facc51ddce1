"""The awaitable job handle.

Waiting on many handles at once (``as_completed``, ``wait_all``) is in
``_waiting.py``; the backend of an unpickled handle is in ``_detached.py``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from types import TracebackType
from typing import Any, Protocol

import anyio

from ._detached import DETACHED
from ._entry import Entry, Subscriber, status_changed
from ._errors import BatchFailedError, BatchStoppedError, PollTimeoutError
from ._jobid import check_job_id, dump_token, load_token
from ._models import BatchState, BatchStatus, Operation
from ._poller import Poller

# check_job_id is handed on: the session, which names jobs by id too, takes it from here
__all__ = ["BatchJob", "JobBackend", "check_job_id", "outcome"]


class JobBackend(Protocol):
    """What a job handle needs from its session."""

    @property
    def _poller(self) -> Poller:
        """The session's poll scheduler."""

    async def _fetch_status(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        """One status poll: the status and the reply's Retry-After."""

    async def _send_stop(self, job_id: str, operation: Operation | None) -> BatchStatus | None:
        """One stop call: the status the reply carried, if any."""


class _Signal:
    """A waiter's doorbell: rung by the poller on news about the job."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = anyio.Event()

    def notify(self, entry: Entry) -> None:
        self.event.set()


class BatchJob:
    """A handle on one batch job; ``await job`` waits for its outcome.

    Handles are cheap: several may exist for one job (``gb.job(id)``), and any
    number of tasks may wait on one handle; they share one stream of polls.
    Cancelling a task that waits stops the waiting for that task only: the
    remote job keeps running (call :meth:`stop` for that).

    :ivar job_id: the job's id, as a string.
    :ivar operation: the job's operation, when known.
    :ivar input_range: positions of this job's items in the input they came from
        (``submit_many``'s whole input; ``range(len(items))`` for ``create_batch``;
        ``None`` for a handle made from a job id or token).
    """

    __slots__ = (
        "__weakref__",
        "_backend",
        "_entry",
        "_error",
        "_seen",
        "_submitted_at",
        "input_range",
        "job_id",
        "operation",
    )

    def __init__(
        self,
        backend: JobBackend,
        job_id: str,
        operation: Operation | None = None,
        status: BatchStatus | None = None,
        *,
        input_range: range | None = None,
        submitted_at: float | None = None,
    ) -> None:
        self._backend = backend
        self.job_id = job_id
        self.operation = operation
        self.input_range = input_range
        # the last status seen; for a job this session created, its SUBMITTED
        # status is built on first read (see _status), not for every creation
        self._seen = status
        # (error, traceback) that ended polling, raised once by the next wait
        self._error: tuple[BaseException, TracebackType | None] | None = None
        # The poller's entry from an earlier wait: its backoff and progress
        # estimate carry over a gap between waits, and its news reaches
        # ``status`` even while nobody waits.
        self._entry: Entry | None = None
        # monotonic time the creation was sent, when this session created the job
        self._submitted_at = submitted_at

    @property
    def _status(self) -> BatchStatus | None:
        status = self._seen
        if status is None and self._submitted_at is not None:
            # a state to show straight after creation, claiming nothing more
            total = len(self.input_range) if self.input_range is not None else None
            status = BatchStatus.submitted(self.job_id, self.operation, total_count=total)
            self._seen = status
        return status

    @_status.setter
    def _status(self, status: BatchStatus | None) -> None:
        self._seen = status

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle what the handle knows, never its session (nor so its keys).

        It unpickles as a detached handle: ``done()``, ``status`` and
        ``to_token()`` work; polling raises :class:`SessionClosedError` until it
        is attached to a session again with ``gb.resume(job.to_token())``.
        """
        self._sync()
        return (_detached_job, (self.job_id, self.operation, self._status, self.input_range))

    def __repr__(self) -> str:
        self._sync()
        state = self._status.state.value if self._status is not None else "not polled"
        operation = self.operation.value if self.operation is not None else "?"
        return f"<BatchJob {self.job_id} {operation} {state}>"

    @property
    def status(self) -> BatchStatus | None:
        """The last status this handle has seen.

        A job this session just created starts with a
        :attr:`BatchState.SUBMITTED` status (its id and the item count sent,
        nothing the server has not said); a handle made from an id or a token
        starts with ``None``.

        It is not refreshed on its own: await the job, :meth:`refresh` it or
        :meth:`watch` it for news.
        """
        self._sync()
        return self._status

    def done(self) -> bool:
        """``True`` once a terminal status (Completed, Failed, Stopped) was seen."""
        self._sync()
        return self._status is not None and self._status.is_terminal

    def _sync(self) -> None:
        entry = self._entry
        if entry is not None:
            self._absorb(entry)

    def __await__(self) -> Generator[Any, None, BatchStatus]:
        return self.wait().__await__()

    async def wait(
        self, *, timeout: float | None = None, raise_on_failure: bool = True
    ) -> BatchStatus:
        """Poll (through the session's shared scheduler) until the job ends.

        :param timeout: bound in seconds on the whole wait, every poll and retry
            included; ``None`` takes the session's ``PollPolicy.timeout``.
        :param raise_on_failure: raise for a job that ended Failed or Stopped;
            with ``False`` any terminal status is returned.
        :return: the terminal status (Completed, unless ``raise_on_failure=False``).
        :raises BatchFailedError: the job ended Failed (``.status`` holds every result).
        :raises BatchStoppedError: the job ended Stopped.
        :raises PollTimeoutError: ``timeout`` ran out; waiting again resumes.
        :raises GameballError: polling failed past the retry policy (e.g.
            :class:`NotFoundError`), or the session was closed.
        """
        self._sync()
        self._raise_error()
        status = self._status
        if status is None or not status.is_terminal:
            if timeout is None:
                timeout = self._backend._poller.default_timeout
            status = None
            with anyio.move_on_after(timeout):
                status = await self._until_terminal()
            if status is None:
                raise PollTimeoutError(
                    f"job {self.job_id} was not done within {timeout} s "
                    f"(last state: {self._status.state.value if self._status else 'unknown'})",
                    last_status=self._status,
                )
        return outcome(status, raise_on_failure)

    def _subscribe(self, poller: Poller, subscriber: Subscriber) -> Entry:
        entry = poller.subscribe(
            self.job_id,
            self.operation,
            self._status,
            subscriber,
            entry=self._entry,
            not_running_at=self._submitted_at,
        )
        self._entry = entry
        return entry

    async def _until_terminal(self) -> BatchStatus:
        poller = self._backend._poller
        signal = _Signal()
        entry = self._subscribe(poller, signal)
        try:
            while True:
                signal.event = anyio.Event()
                self._absorb(entry)
                entry.raise_error()
                status = self._status
                if status is not None and status.is_terminal:
                    return status
                await signal.event.wait()
        finally:
            poller.unsubscribe(entry, signal)

    def _raise_error(self) -> None:
        """Raise, once, the error that ended polling for this handle, if any."""
        if self._error is not None:
            (error, tb), self._error = self._error, None
            raise error.with_traceback(tb)

    def _settle(self, entry: Entry) -> None:
        """Take the news of an entry whose polling ended, its error included."""
        self._entry = entry
        self._absorb(entry)
        if entry.error is not None and not self.done():
            self._error = (entry.error, entry.error_tb)

    def _absorb(self, entry: Entry) -> None:
        status = entry.status
        if status is not None and status is not self._status:
            current = self._status
            if current is None or not current.is_terminal:
                self._status = status

    def _take(self, status: BatchStatus, ticket: int) -> None:
        """Apply a status this handle read itself, unless a newer one is known."""
        newest = self._backend._poller.feed(self.job_id, status, ticket, entry=self._entry)
        current = self._status
        if current is None or not current.is_terminal:
            self._status = newest if newest is not None else status

    async def refresh(self) -> BatchStatus:
        """Poll the job once, now, and return the status read.

        ``status`` becomes the newest status known, which is this one unless a
        poll sent later already reported more (a terminal status never changes).
        """
        poller = self._backend._poller
        ticket = poller.ticket()
        status, _ = await self._backend._fetch_status(self.job_id, self.operation)
        self._take(status, ticket)
        return status

    async def stop(self, *, wait: bool = False) -> BatchStatus | None:
        """Ask the server to stop the job.

        The job may take a moment to report ``Stopped``; waiters are told when
        it does (polling speeds up right after the stop).

        :param wait: also wait for the terminal status and return it.
        :return: with ``wait``, the terminal status (whatever it is); otherwise
            the status the stop reply carried, or ``None`` when it carried none.
        """
        poller = self._backend._poller
        ticket = poller.ticket()
        status = await self._backend._send_stop(self.job_id, self.operation)
        if status is not None:
            self._take(status, ticket)
        poller.poll_soon(self.job_id)
        if wait:
            return await self.wait(raise_on_failure=False)
        return status

    async def watch(self) -> AsyncGenerator[BatchStatus, None]:
        """Yield each changed status (state or counts) until the terminal one.

        A slow consumer gets the newest status, not a backlog. Use
        ``contextlib.aclosing`` when breaking out early, so polling for this
        watcher stops at once.
        """
        last: BatchStatus | None = None
        if self.done():
            assert self._status is not None
            yield self._status
            return
        poller = self._backend._poller
        signal = _Signal()
        entry = self._subscribe(poller, signal)
        try:
            while True:
                signal.event = anyio.Event()
                self._absorb(entry)
                entry.raise_error()
                status = self._status
                if (
                    status is not None
                    and status.state is not BatchState.SUBMITTED
                    and status_changed(last, status)
                ):
                    last = status
                    yield status
                    if status.is_terminal:
                        return
                    continue
                await signal.event.wait()
        finally:
            poller.unsubscribe(entry, signal)

    def to_token(self) -> str:
        """A small versioned JSON string to restore this handle with ``gb.resume()``.

        It holds the job id and operation, never a key or a status.
        """
        return dump_token(self.job_id, self.operation)

    @staticmethod
    def parse_token(token: str) -> tuple[str, Operation | None]:
        """Read a token from :meth:`to_token`.

        :raises InvalidJobIdError: when the token is not one.
        """
        return load_token(token)


def _detached_job(
    job_id: str,
    operation: Operation | None,
    status: BatchStatus | None,
    input_range: range | None,
) -> BatchJob:
    # the pickle of a handle names this function (``BatchJob.__reduce__``): keep it here
    return BatchJob(DETACHED, job_id, operation, status, input_range=input_range)


def outcome(status: BatchStatus, raise_on_failure: bool) -> BatchStatus:
    """Return a terminal ``status``, or raise for one that did not complete.

    :param raise_on_failure: with ``False``, every terminal status is returned.
    :raises BatchFailedError: ``status`` is Failed (and ``raise_on_failure``).
    :raises BatchStoppedError: ``status`` is Stopped (and ``raise_on_failure``).
    """
    if raise_on_failure:
        if status.state is BatchState.FAILED:
            raise BatchFailedError(
                f"job {status.job_id} failed ({status.finished_count} succeeded, "
                f"{status.error_count} failed of {status.total_count})",
                status=status,
            )
        if status.state is BatchState.STOPPED:
            raise BatchStoppedError(
                f"job {status.job_id} was stopped ({status.finished_count} succeeded, "
                f"{status.error_count} failed of {status.total_count})",
                status=status,
            )
    return status
