"""What ``gameball-batch`` knows about a run while it goes, for the display.

Plain counters and small per-job views, with no I/O and no ``rich``: the run
updates them, the display (live or plain) reads them. Finished jobs leave the
per-job table, so a run of any size keeps this small.
"""

from __future__ import annotations

import collections
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final, Protocol

import attrs

from gameball_async import BatchState, BatchStatus

__all__ = [
    "FAILED",
    "NOT_PROCESSED",
    "NOT_SUBMITTED",
    "OUTCOMES",
    "REJECTED",
    "SUCCEEDED",
    "UNKNOWN",
    "JobView",
    "Report",
    "RunInterface",
    "Tracker",
    "UserInterface",
]

#: The item was processed and succeeded.
SUCCEEDED: Final = "succeeded"
#: The item was processed and failed (``code`` and ``message`` say why).
FAILED: Final = "failed"
#: The item's job ended Failed or Stopped before reporting a result for it.
NOT_PROCESSED: Final = "not_processed"
#: The item was never sent: the server refused its chunk outright.
NOT_SUBMITTED: Final = "not_submitted"
#: The item's chunk may or may not have been created (never resent), or the
#: server reported no usable result for it.
UNKNOWN: Final = "unknown"
#: The record was invalid and skipped (``--skip-invalid``); it was never sent.
REJECTED: Final = "rejected"
#: Every outcome a results line can have, in display order.
OUTCOMES: Final = (SUCCEEDED, FAILED, NOT_PROCESSED, NOT_SUBMITTED, UNKNOWN, REJECTED)


class UserInterface(Protocol):
    """Where a run reports events: the live display, or plain lines."""

    def note(self, text: str) -> None:
        """An event worth a line (a job created, a job finished)."""

    def error(self, text: str) -> None:
        """A problem the user must see (on stderr)."""


@attrs.define
class JobView:
    """The last known state of one job that has not been written out yet."""

    job_id: str
    first_line: int
    last_line: int
    total: int
    state: str = BatchState.QUEUED.value
    finished: int = 0
    errors: int = 0


@attrs.define
class Tracker:
    """Counters of one ``submit`` or ``resume`` run.

    :ivar phase: ``validating``, ``submitting``, ``waiting``, ``interrupted`` or ``done``.
    :ivar lines_read: input lines read by the validation pass.
    :ivar records: valid records to send in this run.
    :ivar rejected: invalid records found.
    :ivar submitted: records in jobs created by this run.
    :ivar jobs_created: jobs created (or reattached) by this run.
    :ivar outcomes: outcomes written to the results file by this run.
    :ivar jobs_ended: final states of the jobs written out, by state word.
    """

    operation: str
    phase: str = "validating"
    lines_read: int = 0
    records: int = 0
    rejected: int = 0
    submitted: int = 0
    jobs_created: int = 0
    outcomes: collections.Counter[str] = attrs.field(factory=collections.Counter)
    jobs_ended: collections.Counter[str] = attrs.field(factory=collections.Counter)
    active: dict[str, JobView] = attrs.field(factory=dict)
    started: float = attrs.field(factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    def job_created(self, job_id: str, first_line: int, last_line: int, total: int) -> None:
        """Count a job created (or reattached) by this run."""
        self.jobs_created += 1
        self.active[job_id] = JobView(job_id, first_line, last_line, total)

    def job_status(self, job_id: str, status: BatchStatus) -> bool:
        """Take a new status of an active job; return whether its state changed."""
        view = self.active.get(job_id)
        if view is None:
            return False
        changed = view.state != status.state.value
        view.state = status.state.value
        view.finished = status.finished_count
        view.errors = status.error_count
        if status.total_count is not None:
            view.total = status.total_count
        return changed

    def job_written(self, job_id: str, state: str) -> None:
        """A job's outcomes are in the results file: it leaves the active table."""
        self.active.pop(job_id, None)
        self.jobs_ended[state] += 1

    def count_jobs(self) -> tuple[int, int, int]:
        """``(queued, running, done)`` over the jobs this run follows."""
        # list() copies in one C call: the live display reads from its own thread.
        views = list(self.active.values())
        queued = running = 0
        done = sum(list(self.jobs_ended.values()))
        for view in views:
            if view.state == BatchState.QUEUED.value:
                queued += 1
            elif view.state in _TERMINAL_WORDS:
                done += 1  # terminal, results being written
            else:
                running += 1  # Running, or a state word nobody documents
        return queued, running, done

    def item_counts(self) -> tuple[int, int]:
        """``(succeeded, failed)`` items so far: written ones plus active jobs' counts."""
        succeeded = self.outcomes[SUCCEEDED]
        failed = self.outcomes[FAILED]
        for view in list(self.active.values()):
            succeeded += view.finished
            failed += view.errors
        return succeeded, failed

    def active_views(self) -> list[JobView]:
        """A copy of the active jobs' views, oldest first."""
        return list(self.active.values())


_TERMINAL_WORDS: Final = frozenset(state.value for state in BatchState if state.is_terminal)


@attrs.define
class Report:
    """The end of a ``submit`` or ``resume`` run, for the summary table.

    :ivar expected: records in the input (valid and rejected).
    :ivar outcomes: outcomes in the whole results file.
    :ivar failures: ``(outcome, code, count, sample message)``, most frequent first.
    :ivar files: ``(label, path)`` of the files the run wrote.
    :ivar hints: what to do next.
    """

    title: str
    expected: int
    outcomes: collections.Counter[str]
    failures: list[tuple[str, int | None, int, str]]
    tracker: Tracker
    files: list[tuple[str, str]]
    hints: list[str]
    exit_code: int
    exit_meaning: str


class RunInterface(UserInterface, Protocol):
    """A :class:`UserInterface` that can also show a run live and sum it up."""

    def live(self, tracker: Tracker) -> AbstractContextManager[None]:
        """Show the tracker while the context lasts (live, or not at all)."""

    def report(self, report: Report) -> None:
        """Print the summary of a run."""

    def resumable(self, manifest: Path) -> None:
        """The run can be finished from ``manifest`` from now on (said if it is aborted)."""
