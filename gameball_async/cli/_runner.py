"""The concurrent core of ``gameball-batch``: send chunks, follow jobs, write outcomes.

Three groups of tasks, nested so that an interruption unwinds them in order:

* the reader reads chunks and starts one creation per chunk, at most
  ``concurrency`` in flight and ``max_pending`` jobs unfinished (so memory
  stays flat whatever the file size);
* creations run outside the reader's cancel scope: on Ctrl-C the reader stops
  at once, and requests in flight finish, so their job ids reach the manifest;
* each created job is followed by a watcher, which writes the job's outcomes
  (flush, fsync) and then its ``done`` line.

Nothing here is resent: a creation whose outcome is unknown is recorded as
such, and one certainly not created is released for ``resume``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import aclosing
from typing import Final

import anyio
import anyio.abc

from gameball_async import (
    AmbiguousSubmissionError,
    APIError,
    BatchJob,
    BatchStatus,
    GameballError,
    GameballSession,
    InvalidBatchError,
    InvalidRequestError,
    Operation,
)

from ._exit import RunOutcome
from ._input import Chunk, InputError
from ._lines import LineRanges
from ._manifest import ManifestWriter
from ._results import ResultsWriter, item_outcomes
from ._track import FAILED, NOT_PROCESSED, SUCCEEDED, UNKNOWN, Tracker, UserInterface

__all__ = ["Runner"]

# Stopping remote jobs on Ctrl-C must not hang the exit for long.
_STOP_TIMEOUT: Final = 30.0


class Runner:
    """Sends chunks and follows jobs for one ``submit`` or ``resume`` run.

    What it learns is read as one :class:`RunOutcome` (:attr:`outcome`).
    """

    def __init__(
        self,
        gb: GameballSession,
        operation: Operation,
        *,
        manifest: ManifestWriter,
        results: ResultsWriter,
        tracker: Tracker,
        ui: UserInterface,
        interrupt: anyio.Event,
        concurrency: int,
        max_pending: int,
        stop_on_interrupt: bool,
        next_chunk: int = 0,
    ) -> None:
        self._gb = gb
        self._op = operation
        self._manifest = manifest
        self._results = results
        self._tracker = tracker
        self._ui = ui
        self._interrupt = interrupt
        self._slots = anyio.Semaphore(concurrency)
        self._pending = anyio.Semaphore(max_pending)
        self._stop_on_interrupt = stop_on_interrupt
        self._next_chunk = next_chunk
        self._reader: anyio.CancelScope | None = None
        self._active: dict[str, BatchJob] = {}
        self._interrupted = False
        self._fatal: BaseException | None = None
        self._released = 0
        self._lost = 0
        self._exhausted = False

    @property
    def outcome(self) -> RunOutcome:
        """What the run has learned so far (final once :meth:`execute` returns)."""
        return RunOutcome(
            interrupted=self._interrupted,
            stopped_by=None if self._fatal is None else str(self._fatal),
            released=self._released,
            lost=self._lost,
            exhausted=self._exhausted,
        )

    async def execute(
        self, chunks: Iterator[Chunk] | None, reattach: list[tuple[BatchJob, LineRanges]]
    ) -> None:
        """Send ``chunks`` (if any) and follow their jobs and the ``reattach`` ones."""
        creations_over = anyio.Event()
        async with anyio.create_task_group() as outer:
            async with anyio.create_task_group() as watchers:
                outer.start_soon(self._guard, creations_over, watchers)
                for job, lines in reattach:
                    self._follow(watchers, job, lines, permit=False)
                try:
                    if chunks is not None:
                        async with anyio.create_task_group() as creators:
                            with anyio.CancelScope() as self._reader:
                                await self._dispatch(chunks, creators, watchers)
                finally:
                    creations_over.set()
                if self._tracker.phase != "interrupted":
                    self._tracker.phase = "waiting"
            outer.cancel_scope.cancel()
        if self._interrupted and self._stop_on_interrupt and self._active:
            await self._stop_remote()
        self._tracker.phase = "interrupted" if self._interrupted else "done"

    async def _guard(self, creations_over: anyio.Event, watchers: anyio.abc.TaskGroup) -> None:
        await self._interrupt.wait()
        self._interrupted = True
        self._tracker.phase = "interrupted"
        self._ui.error(
            "interrupted: no more chunks will be sent; waiting for the requests in flight "
            "(press Ctrl-C again to abort at once)"
        )
        if self._reader is not None:
            self._reader.cancel()
        await creations_over.wait()
        watchers.cancel_scope.cancel()

    async def _dispatch(
        self,
        chunks: Iterator[Chunk],
        creators: anyio.abc.TaskGroup,
        watchers: anyio.abc.TaskGroup,
    ) -> None:
        self._tracker.phase = "submitting"
        try:
            for chunk in chunks:
                if self._interrupt.is_set():
                    return  # set before the guard could cancel this scope
                await self._pending.acquire()
                try:
                    await self._slots.acquire()
                except BaseException:
                    self._pending.release()
                    raise
                if self._fatal is not None or self._interrupt.is_set():
                    self._slots.release()
                    self._pending.release()
                    return
                number = self._next_chunk
                self._next_chunk += 1
                # Written before the request: after a crash, a chunk announced
                # here without a job id may exist remotely and is never resent.
                self._manifest.chunk(number, chunk.lines)
                creators.start_soon(self._create, number, chunk, watchers)
        except InputError as exc:  # e.g. the file changed or vanished since it was validated
            self._ui.error(f"stopped reading the input: {exc}; the rest was not sent")
            self._stop_reading(exc)
            return
        self._exhausted = True

    def _stop_reading(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
        if self._reader is not None:
            self._reader.cancel()

    async def _create(self, number: int, chunk: Chunk, watchers: anyio.abc.TaskGroup) -> None:
        handed = False
        lines = chunk.lines
        try:
            try:
                job = await self._gb.create_batch(self._op, chunk.items)
            except AmbiguousSubmissionError as exc:
                self.settle(number, lines, UNKNOWN, exc, ambiguous=True)
            except (InvalidRequestError, InvalidBatchError) as exc:
                # The server (or the SDK) refused this payload: resending cannot help.
                self.settle(number, lines, "not_submitted", exc, ambiguous=False)
            except GameballError as exc:
                # Certainly not created (auth, 404, 429 or 503 after retries, no
                # connection): stop sending and leave these records for resume.
                self._release(number, lines, exc)
                self._stop_reading(exc)
            else:
                self._manifest.job(number, job.job_id, self._op.value, lines)
                self._tracker.submitted += lines.count
                self._tracker.job_created(job.job_id, lines.first, lines.last, lines.count)
                self._ui.note(
                    f"job {job.job_id} created: {lines.count:,} records (lines {lines.describe()})"
                )
                self._follow(watchers, job, lines, permit=True)
                handed = True
        finally:
            self._slots.release()
            if not handed:
                self._pending.release()

    def settle(
        self,
        number: int,
        lines: LineRanges,
        outcome: str,
        error: BaseException | str,
        *,
        ambiguous: bool,
    ) -> None:
        """Write the outcome of a chunk that has no job, then mark it settled."""
        code = error.code if isinstance(error, APIError) else None
        message = str(error)
        counts = self._results.write_unit((line, None, outcome, code, message) for line in lines)
        self._manifest.write(
            {
                "type": "unsubmitted",
                "chunk": number,
                "lines": lines.pairs,
                "ambiguous": ambiguous,
                "error": message,
            }
        )
        self._tracker.outcomes.update(counts)
        what = "may or may not have been created (not resent)" if ambiguous else "were not sent"
        self._ui.error(f"{lines.count:,} records (lines {lines.describe()}) {what}: {message}")

    def _release(self, number: int, lines: LineRanges, error: BaseException) -> None:
        self._manifest.write(
            {"type": "released", "chunk": number, "lines": lines.pairs, "error": str(error)}
        )
        self._released += lines.count
        self._ui.error(f"{lines.count:,} records (lines {lines.describe()}) were not sent: {error}")

    def _follow(
        self, watchers: anyio.abc.TaskGroup, job: BatchJob, lines: LineRanges, *, permit: bool
    ) -> None:
        self._active[job.job_id] = job
        watchers.start_soon(self._watch, job, lines, permit)

    async def _watch(self, job: BatchJob, lines: LineRanges, permit: bool) -> None:
        try:
            final: BatchStatus | None = None
            try:
                async with aclosing(job.watch()) as statuses:
                    async for final in statuses:
                        self._tracker.job_status(job.job_id, final)
            except GameballError as exc:
                self._lost += 1
                self._ui.error(
                    f"lost track of job {job.job_id} (lines {lines.describe()}): {exc}; "
                    "its outcomes are not written yet (run resume later)"
                )
                self._active.pop(job.job_id, None)
                return
            if final is not None:
                self._write_job(job.job_id, lines, final)
            # Only a job followed to its end leaves: after Ctrl-C the rest are
            # the ones --stop-on-interrupt stops.
            self._active.pop(job.job_id, None)
        finally:
            if permit:
                self._pending.release()

    def _write_job(self, job_id: str, lines: LineRanges, status: BatchStatus) -> None:
        outcomes = item_outcomes(status, lines.count)
        rows = (
            (line, job_id, outcome, code, message)
            for line, (outcome, code, message) in zip(lines, outcomes, strict=True)
        )
        counts = self._results.write_unit(rows)
        state = status.state.value
        self._manifest.write(
            {
                "type": "done",
                "job_id": job_id,
                "state": state,
                **{key: counts[key] for key in (SUCCEEDED, FAILED, NOT_PROCESSED, UNKNOWN)},
            }
        )
        self._tracker.outcomes.update(counts)
        self._tracker.job_written(job_id, state)
        extra = "".join(
            f", {counts[key]:,} {key.replace('_', ' ')}"
            for key in (NOT_PROCESSED, UNKNOWN)
            if counts[key]
        )
        self._ui.note(
            f"job {job_id} {state}: {counts[SUCCEEDED]:,} succeeded, {counts[FAILED]:,} failed"
            f"{extra}"
        )

    async def _stop_remote(self) -> None:
        jobs = list(self._active.values())
        self._ui.error(f"stopping {len(jobs):,} remote jobs (--stop-on-interrupt)")
        with anyio.move_on_after(_STOP_TIMEOUT, shield=True):
            async with anyio.create_task_group() as tg:
                for job in jobs:
                    tg.start_soon(self._stop_one, job)

    async def _stop_one(self, job: BatchJob) -> None:
        async with self._slots:
            try:
                await job.stop()
            except GameballError as exc:
                self._ui.error(f"could not stop job {job.job_id}: {exc}")
