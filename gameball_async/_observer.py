"""The private seam through which a session's jobs and requests are watched.

``gameball_async.otel`` plugs a tracer in here; the core knows only this
protocol, never OpenTelemetry. Nothing is watched unless an observer is set, and
then the hot paths (a poll, a creation) pay one ``is None`` check each.

The core calls:

- :meth:`Observer.creating` around a creation request (its retries included),
  and tells the scope the job's id once the reply named one;
- :meth:`Observer.job_awaited` when a job gets its first waiter in the poll
  scheduler (a job attached by id or resumed is first heard of there);
- :meth:`Observer.around_request` around each request sent for a known job (a
  scheduler poll, a status read, a stop), in the task that sends it, so whatever
  the observer makes current there is current for the HTTP client too;
- :meth:`Observer.status_seen` with every status decoded or handed to the
  scheduler (a terminal one ends the job's watch);
- :meth:`Observer.session_closed` once the session has closed.

An observer never raises into the core and never keeps a status's item results.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from ._models import BatchStatus, Operation

__all__ = ["Creating", "Observer", "RequestKind"]

#: What a request sent for a job is: a scheduler poll, a status read, a stop.
RequestKind = Literal["poll", "status", "stop"]


class Creating(Protocol):
    """The scope of one creation request, from :meth:`Observer.creating`."""

    def created(self, job_id: str) -> None:
        """The reply named this job id: the job exists from now on."""


class Observer(Protocol):
    """Hooks a session calls as its jobs and requests go (see the module docstring)."""

    def creating(self, operation: Operation, items: int) -> AbstractContextManager[Creating]:
        """Around one creation request of ``items`` items, retries included.

        Leaving it by an exception before :meth:`Creating.created` means no job
        came of it (as far as the session knows).
        """

    def job_awaited(self, job_id: str, operation: Operation | None) -> None:
        """A job got its first waiter in the poll scheduler."""

    def around_request(self, job_id: str, kind: RequestKind) -> AbstractContextManager[None]:
        """Around one request sent for a job, in the task that sends it."""

    def status_seen(self, status: BatchStatus) -> None:
        """A status of a job was read (or handed over by a fleet)."""

    def session_closed(self) -> None:
        """The session closed: whatever is still watched ends now."""
