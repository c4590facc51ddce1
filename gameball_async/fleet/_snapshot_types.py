"""The shape of a fleet's read-only view: :class:`FleetSnapshot` and its parts.

Frozen attrs classes, versioned by :data:`SNAPSHOT_VERSION`, each with a
JSON-ready ``to_dict()``. They hold values only; ``_snapshot.py`` reads them
from Redis.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = [
    "SNAPSHOT_VERSION",
    "EndedJob",
    "FleetSnapshot",
    "JobProgress",
    "LimiterView",
    "LiveProcess",
    "OpenJob",
    "utc_from_ms",
]

#: The version of :class:`FleetSnapshot`'s shape (and of its ``to_dict()``):
#: raised when a field changes meaning or goes; new fields keep it.
SNAPSHOT_VERSION: Final = 1
_EPOCH: Final = datetime.timezone.utc


def utc_from_ms(ms: float) -> datetime.datetime:
    """A Redis time in milliseconds as an aware UTC datetime."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=_EPOCH)


def _iso(value: datetime.datetime) -> str:
    return value.astimezone(_EPOCH).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    # to_dict(): JSON-ready values (datetimes as UTC ISO 8601 with Z)
    if isinstance(value, datetime.datetime):
        return _iso(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _to_dict(instance: Any) -> dict[str, Any]:
    result: dict[str, Any] = _plain(attrs.asdict(instance, recurse=True))
    return result


@attrs.frozen(kw_only=True)
class JobProgress:
    """A job's shared status as its lease holder last stored it.

    :ivar state: the :class:`~gameball_async.BatchState` value (``"Running"``,
        ``"Completed"``...), or the
        server's own word when it is not one this version knows.
    :ivar finished: items processed successfully so far.
    :ivar failed: items that failed so far.
    :ivar total: items in the job, when the server said.
    :ivar terminal: whether this status is the job's last.
    """

    state: str
    finished: int
    failed: int
    total: int | None
    terminal: bool

    @property
    def done(self) -> int:
        """Items processed so far, succeeded or failed."""
        return self.finished + self.failed

    @property
    def progress(self) -> float | None:
        """``done / total`` (0.0-1.0), or ``None`` when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``done`` and ``progress`` included)."""
        return {**_to_dict(self), "done": self.done, "progress": self.progress}


@attrs.frozen(kw_only=True)
class OpenJob:
    """A job created through the fleet and not yet seen terminal (the registry's open set).

    :ivar job_id: the job's id.
    :ivar operation: its operation's value (``"cashback"``...), or ``None`` when
        its record is gone (older than the registry's retention).
    :ivar created_at: when it was registered (Redis time).
    :ivar age: seconds since then, at the snapshot's time.
    :ivar status: its shared status, or ``None`` before anyone stored one (no
        process awaits it, or its first poll has not answered).
    :ivar lease_holder: the session polling it for the fleet
        (``<process id>.<session number>``), or ``None``.
    :ivar process_id: the process of :attr:`lease_holder` (a heartbeat's id).
    :ivar lease_expires_in: seconds until the lease runs out unless renewed.
    """

    job_id: str
    operation: str | None
    created_at: datetime.datetime
    age: float
    status: JobProgress | None
    lease_holder: str | None
    process_id: str | None
    lease_expires_in: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = _to_dict(self)
        data["status"] = None if self.status is None else self.status.to_dict()
        return data


@attrs.frozen(kw_only=True)
class LimiterView:
    """The account's limiter, as its log in Redis counts it.

    The windows are those the acquire script checks: 1 s plus the limit's
    margin, and the limit's window plus its margin. A request counts from its
    reply (while in flight, until its deadline), so :attr:`last_second` can
    include requests still in flight.

    :ivar per_second: the limit per second this snapshot compares against.
    :ivar per_window: the limit per window.
    :ivar window: the window's length in seconds.
    :ivar last_second: requests counting in the 1 s window now.
    :ivar last_window: requests counting in the long window now.
    :ivar in_flight: requests whose reply has not come (entered at their deadline).
    :ivar paused_for: seconds the fleet still holds after a 429 (0.0: no pause).
    :ivar waiting: limiters waiting for a slot (one per waiting session, however
        many tasks queue in it locally).
    """

    per_second: int
    per_window: int
    window: float
    last_second: int
    last_window: int
    in_flight: int
    paused_for: float
    waiting: int

    @property
    def full(self) -> bool:
        """Whether a request asking now would wait for a window."""
        return self.last_second >= self.per_second or self.last_window >= self.per_window

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``full`` included)."""
        return {**_to_dict(self), "full": self.full}


@attrs.frozen(kw_only=True)
class LiveProcess:
    """A process of the fleet whose heartbeat key is alive.

    :ivar process_id: its id (``RedisFleet.process_id``).
    :ivar expires_in: seconds until its heartbeat key runs out unless renewed
        (it is renewed about once a second; a process silent for its
        ``process_ttl`` counts as dead).
    """

    process_id: str
    expires_in: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _to_dict(self)


@attrs.frozen(kw_only=True)
class EndedJob:
    """A job of the registry that was seen terminal.

    :ivar job_id: the job's id.
    :ivar operation: its operation's value.
    :ivar created_at: when it was registered (Redis time).
    :ivar ended_at: when its terminal status was stored (Redis time), or
        ``None`` when no shared status says (it was settled without one).
    :ivar outcome: the terminal state's value (``"Completed"``, ``"Failed"``,
        ``"Stopped"``), or the registry's own word when no shared status is
        kept (``"terminal"``, ``"expired"``).
    :ivar finished: items that succeeded, when known.
    :ivar failed: items that failed, when known.
    :ivar total: items in the job, when known.
    """

    job_id: str
    operation: str | None
    created_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    outcome: str
    finished: int | None
    failed: int | None
    total: int | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _to_dict(self)


@attrs.frozen(kw_only=True)
class FleetSnapshot:
    """What one account's fleet looks like in Redis at one moment (read-only).

    From :meth:`RedisFleet.snapshot() <gameball_async.fleet.RedisFleet.snapshot>`.
    Reading it costs a few Redis round trips and writes nothing.

    :ivar version: :data:`SNAPSHOT_VERSION` of the code that took it.
    :ivar namespace: the account's name in Redis.
    :ivar taken_at: Redis's ``TIME`` when it was taken.
    :ivar open_jobs: the registry's open jobs, oldest first.
    :ivar limiter: the account's limiter.
    :ivar processes: the processes alive, by id.
    :ivar ended_jobs: jobs that ended within the snapshot's look-back, the most
        recent first (those without an end time last).
    :ivar ended_partial: whether the registry held more records than one
        snapshot examines, so :attr:`ended_jobs` may miss some.

    It is read in a few round trips, not atomically: a job that ends between
    them may show as open with a terminal status; it is never listed twice.
    Listing the ended jobs scans the registry's records (``SCAN``, up to
    20,000 keys), the one read whose cost grows with the
    registry; ``max_ended=0`` skips it.
    """

    version: int
    namespace: str
    taken_at: datetime.datetime
    open_jobs: tuple[OpenJob, ...]
    limiter: LimiterView
    processes: tuple[LiveProcess, ...]
    ended_jobs: tuple[EndedJob, ...]
    ended_partial: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps`` takes it as it is); datetimes as
        UTC ISO 8601 strings with ``Z``."""
        return {
            "version": self.version,
            "namespace": self.namespace,
            "taken_at": _iso(self.taken_at),
            "open_jobs": [job.to_dict() for job in self.open_jobs],
            "limiter": self.limiter.to_dict(),
            "processes": [process.to_dict() for process in self.processes],
            "ended_jobs": [job.to_dict() for job in self.ended_jobs],
            "ended_partial": self.ended_partial,
        }
