"""The seam between a session and a fleet of processes sharing one account.

A session without a fleet paces itself with a :class:`LocalRateLimiter`, polls
every awaited job itself and keeps no registry. A session given a fleet
(``GameballSession(fleet=...)``) hands it a :class:`SessionLink` when it opens
and from then on uses what the returned :class:`Attachment` gives: the rate
limiter shared by the account, the status-read strategy its poller calls (a
fleet lets one process poll each job and shares what it reads), idempotency
claims, and the registry of created jobs. The core knows these protocols only;
``gameball_async.fleet.RedisFleet`` implements them on Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from ._models import BatchStatus, Operation
    from ._ratelimit import RateLimit, RateLimiter

__all__ = [
    "Attachment",
    "Claim",
    "Coordinator",
    "Fetch",
    "NoStatusYet",
    "REQUEST_SENT",
    "SessionLink",
    "account_namespace",
]

#: The strategy that reads one status: ``(job_id, operation) -> (status, retry_after)``.
#: One attempt; failures raise :class:`GameballError` subclasses.
Fetch = Callable[[str, "Operation | None"], Awaitable[tuple["BatchStatus", "float | None"]]]


#: When the request a :data:`Fetch` read its status with went out
#: (``time.monotonic()``), set by the transport once the request's rate-limiter
#: slot is taken: the server counted what it read after that, not after the
#: poll began waiting for its slot. Read by the poller in the same task, right
#: after the fetch; a value from an earlier request is older than the poll.
REQUEST_SENT: ContextVar[float] = ContextVar("gameball_async_request_sent", default=0.0)


class NoStatusYet(Exception):
    """Raised by a :data:`Fetch` with nothing to tell yet, and nothing wrong.

    A fleet follower whose job's owner has not shared a status yet raises it;
    the poller asks again after ``retry_in`` seconds without counting a failure.
    """

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"no status shared yet; ask again in {retry_in:.2f} s")
        self.retry_in = retry_in


def account_namespace(api_key: str) -> str:
    """The account's name in shared stores: a one-way hash of the API key.

    Sixteen hex digits of a domain-separated SHA-256: every process on one
    account derives the same name, and nothing of the key can be read back.
    """
    digest = hashlib.sha256(b"gameball_async account\x00" + api_key.encode("utf-8"))
    return digest.hexdigest()[:16]


@attrs.frozen(kw_only=True)
class SessionLink:
    """What a session gives the fleet it attaches to.

    :param account: :func:`account_namespace` of the session's API key.
    :param rate_limit: the account's limit, to enforce across every process.
    :param fetch: the session's own status read (one attempt, one request).
    :param poll_soon: bring a job's next poll forward (a shared status changed,
        or its owner went away).
    :param awaited: whether the session still awaits a job (its poller holds
        it); a fleet keeps its lease on such jobs only.
    :param request_bound: seconds a request can be in flight at most (its
        deadline): slots of a process killed mid-request free after it.
    """

    account: str
    rate_limit: RateLimit
    fetch: Fetch = attrs.field(repr=False)
    poll_soon: Callable[[str], None] = attrs.field(repr=False)
    awaited: Callable[[str], bool] = attrs.field(repr=False)
    request_bound: float


class Claim(Protocol):
    """An idempotency key claimed before a creation is sent.

    ``existing`` holds the token of the job an earlier call with the key
    created: the caller uses it and sends nothing. ``maybe_sent`` says an
    earlier call may have sent its request and recorded no job (it crashed or
    its outcome was ambiguous): the caller must raise, never resend. Otherwise
    the claim is this caller's, and exactly one of the three methods records
    what came of its request.
    """

    @property
    def existing(self) -> str | None:
        """The token of the job an earlier call with this key created."""
        ...

    @property
    def maybe_sent(self) -> bool:
        """Whether an earlier call may have sent its request, recording no job."""
        ...

    async def created(self, token: str) -> None:
        """Record the job this claim's request created (its token)."""
        ...

    async def not_sent(self) -> None:
        """Give the key back: this claim's request provably created nothing."""
        ...

    async def ambiguous(self) -> None:
        """Mark the key as possibly sent: later calls raise instead of resending."""
        ...


class Attachment(Protocol):
    """A session's view of the fleet, from its opening to its close."""

    @property
    def limiter(self) -> RateLimiter:
        """The rate limiter shared by every process of the account."""
        ...

    @property
    def fetch(self) -> Fetch:
        """The status-read strategy the session's poller calls."""
        ...

    async def claim(self, key: str, operation: Operation, *, deadline: float | None) -> Claim:
        """Claim an idempotency key, waiting (until ``deadline``, anyio time)
        for a concurrent caller's outcome; raises ``CreationTimeoutError`` when
        the deadline passes first."""
        ...

    async def created(self, token: str, operation: Operation, job_id: str) -> None:
        """Record a job created through the session before the creation returns
        (bounded: a fleet whose store does not answer records it later)."""
        ...

    def observed(self, status: BatchStatus) -> None:
        """A status the session read outside its poller (refresh, stop)."""
        ...

    async def aclose(self) -> None:
        """Detach: give back leases and stop listening. Idempotent."""
        ...


class Coordinator(Protocol):
    """What ``GameballSession(fleet=...)`` accepts: a fleet sessions attach to."""

    def attach(self, link: SessionLink) -> Attachment:
        """Attach a session opening in the running event loop."""
        ...
