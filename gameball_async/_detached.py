"""The backend of a job handle that belongs to no session (one that was unpickled).

A pickled :class:`~gameball_async.BatchJob` carries what it knows, never its
session nor so its keys; once unpickled it answers ``done()``, ``status`` and
``to_token()``, and every call that would reach the server refuses here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NoReturn

from ._errors import SessionClosedError

if TYPE_CHECKING:
    from ._models import BatchStatus, Operation
    from ._poller import Poller

__all__ = ["DETACHED", "Detached"]


class Detached:
    """A job backend that refuses every call with :class:`SessionClosedError`."""

    __slots__ = ()

    @staticmethod
    def _refuse() -> NoReturn:
        raise SessionClosedError(
            "this job handle was unpickled and belongs to no session: attach it with "
            "gb.job(job.job_id, job.operation) or gb.resume(job.to_token())"
        )

    @property
    def _poller(self) -> Poller:
        self._refuse()

    async def _fetch_status(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        self._refuse()

    async def _send_stop(self, job_id: str, operation: Operation | None) -> BatchStatus | None:
        self._refuse()


#: The one backend every unpickled handle shares (it holds nothing).
DETACHED: Final = Detached()
