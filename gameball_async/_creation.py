"""Creation requests that are never lost, and the reading of ``submit_many``'s input.

A creation request, once sent, may create a job whatever its caller does next.
So each one runs in a task of its own, which its caller awaits. When the caller
is cancelled (an anyio cancel scope, or a plain ``task.cancel()`` from
``asyncio.wait_for`` or a web framework, which anyio's shield would not stop):

- before its request was sent (waiting for the rate limiter, or between two
  tries that provably created nothing), the task is cancelled: nothing is sent;
- while a request is in flight, the task runs on (bounded by the request
  timeout) and reports its job through the ``on_job`` callbacks and a WARNING
  on the ``gameball_async`` logger naming the job id, or logs the outcome at
  WARNING when no job came of it.

Either way the caller's cancellation propagates. ``GameballSession.close()``
waits for the tasks still in flight (bounded), so none outlives the session.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._errors import (
    AmbiguousSubmissionError,
    GameballError,
    InvalidBatchError,
    SessionClosedError,
    SubmissionError,
)
from ._reply import CreationGuard

if TYPE_CHECKING:
    from ._job import BatchJob
    from ._models import Operation

__all__ = ["Creations", "InputReader", "OnJob", "announce", "shift", "submit_chunks"]

logger: Final = logging.getLogger("gameball_async")

#: Called with each job the moment it exists (e.g. to persist its id).
OnJob = Callable[["BatchJob"], None]


def announce(job: BatchJob, callbacks: Sequence[OnJob | None]) -> None:
    """Call each ``on_job`` callback with ``job``, in order.

    A callback's exception is logged (ERROR, naming the job id) and does not
    propagate: the job still reaches the caller and the other callbacks.
    """
    for callback in callbacks:
        if callback is None:
            continue
        try:
            callback(job)
        except Exception:
            # named, not repr'd: a partial's repr shows its arguments, a key maybe
            name = getattr(callback, "__qualname__", type(callback).__name__)
            logger.exception(
                "on_job callback %s raised for job %s; the job is not lost: it is still "
                "returned to the caller and given to the other callbacks",
                name,
                job.job_id,
            )


class Creations:
    """The creation requests of one session, each in a task of its own."""

    def __init__(self) -> None:
        # each task's guard, and the future its caller waits on
        self._tasks: dict[asyncio.Task[BatchJob], tuple[CreationGuard, asyncio.Future[None]]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    async def run(
        self,
        send: Callable[[CreationGuard], Coroutine[Any, Any, BatchJob]],
        *,
        operation: Operation,
        items: Sequence[Any],
    ) -> BatchJob:
        """Run ``send`` in its own task and wait for its job (see the module's docstring).

        :raises SessionClosedError: the session closed before the request was sent.
        :raises AmbiguousSubmissionError: the session closed while it was in flight
            and its wait for it ran out.
        """
        what = f"{operation.value} creation of {len(items)} items"
        loop = asyncio.get_running_loop()
        guard = CreationGuard()
        # The caller waits on a future of its own, not on the task: cancelling the
        # caller then cancels that future, never the task. The task's coroutine sets
        # it as it ends (asyncio.wait((task,)) took one more turn of the loop, and
        # its set and callbacks, for every creation).
        done = loop.create_future()
        task = loop.create_task(_sending(send, guard, done), name=f"gameball_async {what}")
        self._tasks[task] = (guard, done)
        task.add_done_callback(self._forget)
        try:
            await done
        except asyncio.CancelledError:
            _abandon(task, guard, what)
            raise
        # ``done`` is set in the task's last step, so the task is done by now
        if task.cancelled():  # by close(): the caller's own cancellation is handled above
            if guard.in_flight:
                raise AmbiguousSubmissionError(
                    f"the session was closed while a {what} was in flight and waited for "
                    "longer than its request timeout; it may or may not have created a job",
                    operation=operation,
                    items=items,
                )
            raise SessionClosedError(f"the session was closed before a {what} was sent")
        return task.result()

    def _forget(self, task: asyncio.Task[BatchJob]) -> None:
        entry = self._tasks.pop(task, None)
        # a task cancelled before its first step never ran the coroutine that sets it
        if entry is not None and not entry[1].done():
            entry[1].set_result(None)

    async def aclose(self, bound: float) -> None:
        """Cancel the creations not sent; wait up to ``bound`` seconds for those in flight."""
        tasks = list(self._tasks.items())
        for task, (guard, _) in tasks:
            guard.stop = True
            if not guard.in_flight:
                task.cancel()
        if not tasks:
            return
        _, late = await asyncio.wait([task for task, _ in tasks], timeout=bound)
        for task in late:
            logger.warning(
                "close() cut short %s still in flight after %.0f s: it may have created a job",
                task.get_name().removeprefix("gameball_async "),
                bound,
            )
            task.cancel()
        if late:
            await asyncio.wait(late)


async def _sending(
    send: Callable[[CreationGuard], Coroutine[Any, Any, BatchJob]],
    guard: CreationGuard,
    done: asyncio.Future[None],
) -> BatchJob:
    try:
        return await send(guard)
    finally:
        if not done.done():  # cancelled when the caller was
            done.set_result(None)


def _abandon(task: asyncio.Task[BatchJob], guard: CreationGuard, what: str) -> None:
    guard.stop = True
    if task.done():
        _report(task, what=what)
    elif guard.in_flight:
        task.add_done_callback(functools.partial(_report, what=what))
    else:
        task.cancel()  # nothing sent: a wait for the limiter or between tries


def _report(task: asyncio.Task[BatchJob], *, what: str) -> None:
    """Log the outcome of a creation whose caller was cancelled."""
    if task.cancelled():
        return  # by close(), which logs it
    error = task.exception()
    if error is None:
        logger.warning(
            "job %s was created by a %s whose caller was cancelled; it was given to the "
            "on_job callbacks (when set) and is not lost: resume it with gb.job(%r)",
            task.result().job_id,
            what,
            task.result().job_id,
        )
    elif isinstance(error, AmbiguousSubmissionError):
        logger.warning(
            "a %s whose caller was cancelled may or may not have created a job: %s", what, error
        )
    else:
        logger.warning("a %s whose caller was cancelled created no job: %s", what, error)


class InputReader:
    """Reads ``submit_many``'s input in chunks and remembers how far it got, so
    every exit can tell which items were read and not sent.

    :ivar read: items handed out in chunks so far.
    :ivar pending: items read into a chunk not yet handed out (when the input failed).
    """

    def __init__(self, items: Iterable[Any] | AsyncIterable[Any], size: int) -> None:
        self._items = items
        self._size = size
        self.read = 0
        self.pending: list[Any] = []

    def _take(self) -> tuple[int, list[Any]]:
        chunk, self.pending = self.pending, []
        start, self.read = self.read, self.read + len(chunk)
        return start, chunk

    async def chunks(self) -> AsyncGenerator[tuple[int, list[Any]], None]:
        """``(position of the first item, items)`` per chunk, in input order."""
        items = self._items
        if isinstance(items, AsyncIterable):
            async for item in items:
                self.pending.append(item)
                if len(self.pending) == self._size:
                    yield self._take()
        else:
            for item in items:
                self.pending.append(item)
                if len(self.pending) == self._size:
                    yield self._take()
        if self.pending:
            yield self._take()


def shift(error: InvalidBatchError, offset: int) -> InvalidBatchError:
    """Renumber a chunk's validation error to the item's place in the whole input."""
    if error.index is None or offset == 0:
        return error
    index = error.index + offset
    message = str(error).replace(f"item {error.index}:", f"item {index}:", 1)
    shifted = InvalidBatchError(message, index=index, field=error.field)
    shifted.__cause__ = error
    return shifted


async def submit_chunks(
    create: Callable[[int, list[Any]], Awaitable[BatchJob]],
    reader: InputReader,
    *,
    max_concurrency: int,
    fatal: tuple[type[BaseException], ...],
) -> list[BatchJob]:
    """``submit_many``'s engine: ``create(start, chunk)`` for each chunk of ``reader``,
    at most ``max_concurrency`` at once; see :meth:`GameballSession.submit_many`.

    :param fatal: errors after which no further input is read.
    :raises SubmissionError: when anything read was not created, or the input raised.
    """
    jobs: list[BatchJob | None] = []
    failed: list[tuple[int, list[Any], BaseException]] = []
    not_sent: list[tuple[int, Any]] = []
    slots = anyio.Semaphore(max_concurrency)
    stopped: list[BaseException] = []
    input_error: Exception | None = None

    async def submit(position: int, start: int, chunk: list[Any]) -> None:
        try:
            jobs[position] = await create(start, chunk)
        except InvalidBatchError as exc:
            failed.append((position, chunk, shift(exc, start)))
        except GameballError as exc:
            failed.append((position, chunk, exc))
            if isinstance(exc, fatal):
                stopped.append(exc)
        finally:
            slots.release()

    async with anyio.create_task_group() as tg:
        try:
            async with aclosing(reader.chunks()) as chunks:
                async for start, chunk in chunks:
                    await slots.acquire()
                    if stopped:
                        slots.release()
                        not_sent.extend(enumerate(chunk, start))
                        break
                    jobs.append(None)
                    tg.start_soon(submit, len(jobs) - 1, start, chunk)
        except Exception as exc:  # the caller's input failed: report, don't drop
            input_error = exc
            not_sent.extend(enumerate(reader.pending, reader.read))
    created = [job for job in jobs if job is not None]
    if failed or not_sent or input_error is not None:
        failed.sort(key=lambda entry: entry[0])
        raise SubmissionError(
            _summary(len(jobs), created, failed, not_sent, input_error),
            jobs=created,
            failed=[(chunk, error) for _, chunk, error in failed],
            not_sent=not_sent,
            input_error=input_error,
        ) from input_error
    return created


def _summary(
    chunks: int,
    created: list[BatchJob],
    failed: list[tuple[int, list[Any], BaseException]],
    not_sent: list[tuple[int, Any]],
    input_error: BaseException | None,
) -> str:
    parts = []
    if failed:
        parts.append(f"{len(failed)} of {chunks} chunks were not submitted")
    if not_sent:
        parts.append(f"{len(not_sent)} items read were not sent")
    if input_error is not None:
        parts.append(f"the input raised {type(input_error).__name__}: {input_error}")
    text = "; ".join(parts) + f" ({len(created)} jobs created)"
    if failed:
        text += f"; first error: {failed[0][2]}"
    return text
