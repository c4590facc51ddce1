"""A fleet kept in this process's memory, for tests of the session's side of the
coordination seam (``gameball_async._coordination``) without Redis.

It keeps what a real fleet keeps (claims, a registry, open jobs) in dicts, and
records every call the session makes through the seam.
"""

from __future__ import annotations

from typing import Any

import anyio

from gameball_async import BatchStatus, CreationTimeoutError, Operation
from gameball_async._coordination import Fetch, NoStatusYet, SessionLink
from gameball_async._ratelimit import LocalRateLimiter, RateLimiter


class MemoryClaim:
    """A claim on one key of :class:`MemoryFleet`."""

    def __init__(self, fleet: MemoryFleet, key: str, record: dict[str, Any], mine: bool) -> None:
        self._fleet = fleet
        self._key = key
        self._record = record
        self._mine = mine

    @property
    def existing(self) -> str | None:
        return None if self._mine else self._record.get("token")

    @property
    def maybe_sent(self) -> bool:
        return not self._mine and self._record["state"] == "ambiguous"

    def _settle(self, state: str, token: str | None = None) -> None:
        assert self._mine, "only the claim's owner records its outcome"
        self._fleet.outcomes.append((self._key, state))
        if state == "not_sent":
            del self._fleet.claims[self._key]
        else:
            self._record.update(state=state, token=token)
        self._record["settled"].set()

    async def created(self, token: str) -> None:
        self._settle("created", token)

    async def not_sent(self) -> None:
        self._settle("not_sent")

    async def ambiguous(self) -> None:
        self._settle("ambiguous")


class MemoryAttachment:
    """One session's attachment to a :class:`MemoryFleet`."""

    def __init__(self, fleet: MemoryFleet, link: SessionLink) -> None:
        self._fleet = fleet
        self.link = link
        self._limiter = LocalRateLimiter(link.rate_limit)
        self.closed = 0

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    @property
    def fetch(self) -> Fetch:
        return self._fetch

    async def _fetch(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        fleet = self._fleet
        fleet.fetches.append(job_id)
        if fleet.quiet_fetches > 0:
            fleet.quiet_fetches -= 1
            raise NoStatusYet(0.01)
        return await self.link.fetch(job_id, operation)

    async def claim(self, key: str, operation: Operation, *, deadline: float | None) -> MemoryClaim:
        fleet = self._fleet
        while True:
            record = fleet.claims.get(key)
            if record is None:
                record = fleet.claims[key] = {"state": "sending", "settled": anyio.Event()}
                return MemoryClaim(fleet, key, record, mine=True)
            if record["state"] != "sending":
                return MemoryClaim(fleet, key, record, mine=False)
            # a concurrent caller's request is in flight: wait for its outcome
            with anyio.move_on_after(
                None if deadline is None else deadline - anyio.current_time()
            ) as scope:
                await record["settled"].wait()
            if scope.cancelled_caught:
                raise CreationTimeoutError("the deadline passed waiting for the key's first caller")

    async def created(self, token: str, operation: Operation, job_id: str) -> None:
        self._fleet.registry[job_id] = token
        self._fleet.open_jobs.add(job_id)

    def observed(self, status: BatchStatus) -> None:
        self._fleet.observed.append(status)
        if status.is_terminal:
            self._fleet.open_jobs.discard(status.job_id)

    async def aclose(self) -> None:
        self.closed += 1


class MemoryFleet:
    """A :class:`~gameball_async._coordination.Coordinator` in memory.

    :param quiet_fetches: the first this many status reads raise
        :class:`NoStatusYet` (a follower whose owner shared nothing yet).
    """

    def __init__(self, *, quiet_fetches: int = 0) -> None:
        self.quiet_fetches = quiet_fetches
        self.attachments: list[MemoryAttachment] = []
        self.claims: dict[str, dict[str, Any]] = {}
        self.outcomes: list[tuple[str, str]] = []
        self.registry: dict[str, str] = {}
        self.open_jobs: set[str] = set()
        self.observed: list[BatchStatus] = []
        self.fetches: list[str] = []

    def attach(self, link: SessionLink) -> MemoryAttachment:
        attachment = MemoryAttachment(self, link)
        self.attachments.append(attachment)
        return attachment
