"""``RedisFleet``: the processes of one Gameball account, coordinated on Redis."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import uuid
from types import TracebackType
from typing import Any, Final, cast

import anyio
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from gameball_async._closing import end_tasks, start_close, wait_closed
from gameball_async._coordination import Fetch, SessionLink
from gameball_async._errors import GameballError
from gameball_async._models import BatchStatus, Operation
from gameball_async._ratelimit import RateLimit

from ._background import Background
from ._bounded import abort_client
from ._breaker import Breaker, RedisUnavailable
from ._keys import Keys, check_namespace
from ._limiter import FleetRateLimiter
from ._polls import SharedPolls
from ._registry import DEFAULT_RETENTION, RedisClaim, Registry, redis_down
from ._snapshot import (
    DEFAULT_ENDED_WITHIN,
    DEFAULT_MAX_ENDED,
    TerminalStatuses,
    find_namespaces,
    read_snapshot,
)
from ._snapshot_types import FleetSnapshot

__all__ = ["RedisFleet"]

logger: Final = logging.getLogger("gameball_async")

#: Seconds between renewals of this process's heartbeat key.
DEFAULT_HEARTBEAT: Final = 1.0
#: Seconds a process's heartbeat key lives: after that, its claims count as abandoned.
DEFAULT_PROCESS_TTL: Final = 5.0
#: Seconds ``aclose`` waits for pending registry writes.
CLOSE_PATIENCE: Final = 2.0

_sessions: Final = itertools.count()


class RedisFleet:
    """A fleet of processes sharing one Gameball account, coordinated on Redis.

    Give it to every session of the account (``GameballSession(fleet=fleet)``):
    the session's ``RateLimit`` then holds for the whole account across every
    process, awaited jobs are polled once for the fleet, every created job is
    registered (:meth:`open_jobs`), and ``idempotency_key`` works::

        async with RedisFleet.from_url("redis://127.0.0.1:6379/0", expected_processes=8) as fleet:
            async with GameballSession(api_key, secret_key, fleet=fleet) as gb:
                job = await gb.create_batch("cashback", items, idempotency_key="nightly/17")

    A fleet serves the sessions of one event loop. Every Redis call is bounded
    by ``redis_timeout`` behind a circuit breaker: when Redis is slow or down,
    the limiter falls back to ``RateLimit / expected_processes`` in each
    process, polling to local polling, and registry writes are retried in the
    background (WARNING on fallback, INFO when coordination resumes on its
    own). An ``idempotency_key`` cannot be claimed without Redis: that
    creation raises :class:`~gameball_async.TransportError` naming Redis,
    with nothing sent.

    :param client: a ``redis.asyncio.Redis``, or a
        ``redis.asyncio.cluster.RedisCluster``, to borrow (never closed here).
    :param namespace: the account's name in Redis (1-64 characters of
        ``[A-Za-z0-9_.:-]``); by default learnt from the first session that
        attaches (a one-way hash of its API key).
    :param expected_processes: processes sharing the account, for the local
        share of the limit while Redis is unavailable.
    :param retention: seconds job records and idempotency keys are kept.
    :param redis_timeout: seconds one Redis call may take.
    :param heartbeat: seconds between renewals of this process's heartbeat.
    :param process_ttl: seconds the heartbeat key lives: a process silent for
        that long counts as dead (its claims as possibly sent).
    """

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        namespace: str | None = None,
        expected_processes: int = 1,
        retention: float = DEFAULT_RETENTION,
        redis_timeout: float = 0.5,
        heartbeat: float = DEFAULT_HEARTBEAT,
        process_ttl: float = DEFAULT_PROCESS_TTL,
    ) -> None:
        if not isinstance(expected_processes, int) or expected_processes < 1:
            raise ValueError(
                f"expected_processes must be an integer >= 1, got {expected_processes!r}"
            )
        for name, value in (
            ("retention", retention),
            ("redis_timeout", redis_timeout),
            ("heartbeat", heartbeat),
        ):
            if not value > 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if not process_ttl > heartbeat:
            raise ValueError(f"process_ttl must exceed heartbeat, got {process_ttl!r}")
        if isinstance(client, RedisCluster) and not hasattr(client, "pubsub"):
            raise ValueError(
                f"a fleet on Redis Cluster needs redis-py's cluster pub/sub (redis-py 6 or "
                f"later); redis-py {redis.__version__} is installed"
            )
        # a RedisCluster answers every command the fleet sends as a Redis does: its
        # keys share one slot, so scripts and pipelines go to one node
        self._client = cast(aioredis.Redis, client)
        self._owns_client = False
        self._keys = Keys(namespace) if namespace is not None else None
        self._account: str | None = None
        self.expected_processes = expected_processes
        self.retention = retention
        self._heartbeat = heartbeat
        self._process_ttl_ms = math.ceil(process_ttl * 1000)
        #: This process's id in the fleet (random; it names nothing secret).
        self.process_id = uuid.uuid4().hex[:16]
        self._breaker = Breaker(timeout=redis_timeout)
        self._background = Background()
        self._breaker.on_recovery = self._background.wake
        self._registry: Registry | None = None
        self._terminal_statuses = TerminalStatuses()  # what snapshots read once
        self._attachments: set[_Attachment] = set()
        self._beating: asyncio.Task[None] | None = None
        self._stop: anyio.Event | None = None
        self._alive = False
        self._renewed_at = -math.inf
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> RedisFleet:
        """A fleet on its own client of ``url`` (closed by :meth:`aclose`).

        Synchronous, like ``redis.asyncio.from_url``: nothing connects until
        first use. ``rediss://user:password@host:port/0`` for TLS and an ACL
        user (``?ssl_ca_certs=PATH`` for a private CA). ``cluster=True`` for a
        Redis Cluster (any node's URL): a ``redis.asyncio.cluster.RedisCluster``.
        ``options`` are those of :class:`RedisFleet`.
        """
        client: Any = RedisCluster.from_url(url) if cluster else aioredis.from_url(url)
        fleet = cls(client, **options)
        fleet._owns_client = True
        return fleet

    def __repr__(self) -> str:
        namespace = self._keys.namespace if self._keys is not None else "?"
        state = "closed" if self._closed else "open"
        return f"<RedisFleet namespace={namespace} process={self.process_id} {state}>"

    async def __aenter__(self) -> RedisFleet:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def namespace(self) -> str | None:
        """The account's name in Redis, once given or learnt."""
        return self._keys.namespace if self._keys is not None else None

    @property
    def keys(self) -> Keys:
        """The account's key names.

        :raises GameballError: no namespace is known yet.
        """
        if self._keys is None:
            raise GameballError(
                "this RedisFleet has no namespace yet: pass namespace= to RedisFleet, or "
                "open a GameballSession with fleet= first (it is learnt from the API key)"
            )
        return self._keys

    @property
    def _registry_now(self) -> Registry:
        # the job registry and idempotency claims (a namespace is needed)
        if self._registry is None:
            self._registry = Registry(
                self._client,
                self.keys,
                self._breaker,
                self._background,
                process_id=self.process_id,
                retention=self.retention,
            )
        return self._registry

    async def open_jobs(self) -> list[str]:
        """Job tokens (``gb.resume(token)``) of the jobs created through the
        fleet, by any process, and not yet seen terminal.

        :raises GameballError: no namespace is known yet.
        :raises TransportError: Redis could not be reached.
        """
        return await self._registry_now.open_jobs()

    async def snapshot(
        self,
        *,
        limit: RateLimit | None = None,
        ended_within: float = DEFAULT_ENDED_WITHIN,
        max_ended: int = DEFAULT_MAX_ENDED,
        timeout: float | None = None,
    ) -> FleetSnapshot:
        """What the account's fleet looks like in Redis now: open jobs with
        their shared status and lease holder, the limiter's windows, pause and
        waiters, the processes alive, the jobs that ended lately.

        Read-only (nothing is written, no session or API key is needed) and
        bounded: it returns or raises within ``timeout``. A snapshot's reads do
        not count against the fleet's circuit breaker.

        :param limit: the limits the limiter's counts are compared against
            (default: those of a session attached to this fleet, else the
            documented ``RateLimit()``).
        :param ended_within: seconds back to look for ended jobs.
        :param max_ended: ended jobs listed at most (the most recent).
        :param timeout: seconds the whole read may take (default: the larger
            of ``redis_timeout`` and 2 s).
        :raises ValueError: ``ended_within`` or ``max_ended`` is negative.
        :raises GameballError: no namespace is known yet, or the fleet is closed.
        :raises TransportError: Redis did not answer in time, or failed.
        """
        self._check_open()
        if not ended_within >= 0 or not isinstance(max_ended, int) or max_ended < 0:
            raise ValueError("ended_within and max_ended must be >= 0")
        if limit is None:
            limit = next(
                (attachment.limiter.limit for attachment in self._attachments), RateLimit()
            )
        return await read_snapshot(
            self._client,
            self.keys,
            self._breaker.calls,
            limit=limit,
            timeout=max(self._breaker.timeout, 2.0) if timeout is None else timeout,
            kept=self._terminal_statuses,
            ended_within=ended_within,
            max_ended=max_ended,
        )

    async def namespaces(self, *, timeout: float | None = None) -> list[str]:
        """The namespaces (accounts) that have fleet keys in this Redis, sorted.

        Read-only (``SCAN``, never ``KEYS``) and bounded by ``timeout``
        (default: the larger of ``redis_timeout`` and 2 s).

        :raises GameballError: the fleet is closed.
        :raises TransportError: Redis did not answer in time, or failed.
        """
        self._check_open()
        bound = max(self._breaker.timeout, 2.0) if timeout is None else timeout
        return await find_namespaces(self._client, self._breaker.calls, timeout=bound)

    def _check_open(self) -> None:
        # a closed fleet's own client is closed: a read would open a connection nobody closes
        if self._closed:
            raise GameballError("this RedisFleet is closed")

    # -- attaching sessions --------------------------------------------------

    def attach(self, link: SessionLink) -> _Attachment:
        """Attach a session opening in the running event loop (the Coordinator protocol).

        :raises GameballError: the fleet is closed, or serves another account.
        """
        if self._closed:
            raise GameballError("this RedisFleet is closed")
        if self._account is not None and link.account != self._account:
            raise GameballError(
                "this RedisFleet already serves another Gameball account (another API key); "
                "use one RedisFleet per account"
            )
        if self._keys is None:
            self._keys = Keys(check_namespace(link.account))
        self._account = link.account
        attachment = _Attachment(self, link)
        self._attachments.add(attachment)
        self._start()
        return attachment

    def _start(self) -> None:
        if self._beating is None:
            self._stop = anyio.Event()
            self._beating = asyncio.get_running_loop().create_task(
                self._beat(), name="gameball_async fleet heartbeat"
            )

    async def _announce(self) -> None:
        # this process's heartbeat, written before its first claim (a claim whose
        # owner has no heartbeat counts as abandoned); raises RedisUnavailable
        if not self._alive:
            await self._renew()

    async def _renew(self) -> None:
        key = self.keys.process(self.process_id)
        ttl = self._process_ttl_ms
        await self._breaker.call(lambda: self._client.set(key, b"1", px=ttl))
        self._renewed()

    def _renewed(self) -> None:
        # the key was renewed here or by a session's shared-polling beat
        self._alive = True
        self._renewed_at = time.monotonic()

    def _renewal_due(self) -> bool:
        # skipped while a shared-polling beat renews the key: it must still
        # live at the next look, a beat and a Redis call's timeout away; never
        # while the breaker is open (this beat is the trial that closes it)
        if self._breaker.is_open:
            return True
        lives_until = self._renewed_at + self._process_ttl_ms / 1000
        return lives_until <= time.monotonic() + 2 * self._heartbeat + self._breaker.timeout

    async def _beat(self) -> None:
        # one task per fleet (not one per job or claim): the process's heartbeat,
        # and the trial call that closes the breaker once Redis answers again
        # it ends when told (not by cancellation, which a Redis call in progress
        # may absorb)
        stop = self._stop
        assert stop is not None
        while not stop.is_set():
            if self._renewal_due():
                with contextlib.suppress(RedisUnavailable):
                    await self._renew()
            with anyio.move_on_after(self._heartbeat):
                await stop.wait()

    def _detached(self, attachment: _Attachment) -> None:
        self._attachments.discard(attachment)

    @property
    def close_bound(self) -> float:
        """Seconds :meth:`aclose` takes at most: ``2 + 6 * redis_timeout``
        (5 s by default), whatever Redis or the client library does."""
        return CLOSE_PATIENCE + 6 * self._breaker.timeout

    async def aclose(self) -> None:
        """Detach every session, flush the registry writes (briefly), stop the
        heartbeat, and close the client if this fleet owns it. Idempotent.

        It returns within :attr:`close_bound`: what has not ended by then is
        abandoned with its connections closed hard, and a WARNING says so. A
        cancellation or timeout of the caller takes effect at once, and the
        close goes on in the background to its end; calling ``aclose()``
        again waits for it.
        """
        if self._closed:
            if self._closing is not None:
                await wait_closed(self._closing)
            return
        self._closed = True
        self._closing = start_close(self._shut(), name="gameball_async fleet close")
        await wait_closed(self._closing)

    async def _shut(self) -> None:
        breaker = self._breaker
        breaker.hurry()  # Redis may be back: let the writes below try at once
        if self._stop is not None:
            self._stop.set()
        patience = breaker.timeout + 0.5
        with anyio.move_on_after(self.close_bound) as scope:
            for attachment in list(self._attachments):
                await attachment.aclose()
            await self._background.aclose(CLOSE_PATIENCE)
            beating, self._beating = self._beating, None
            if beating is not None:
                await asyncio.wait([beating], timeout=patience)
                if await end_tasks([beating], patience=patience, what="fleet heartbeat"):
                    self._abort_client()
            if self._alive and self._keys is not None:
                # gone: a claim this process left open now counts as possibly sent
                key = self._keys.process(self.process_id)
                with contextlib.suppress(RedisUnavailable):
                    await breaker.call(lambda: self._client.delete(key))
            await breaker.calls.settle(patience)
            if self._owns_client:
                try:
                    await breaker.calls.call(self._client.aclose, breaker.timeout)
                except Exception:  # frozen or gone: no goodbye
                    abort_client(self._client)
        if scope.cancelled_caught:
            logger.warning(
                "gameball_async: the fleet's close took longer than %.1f s; what was "
                "still running is abandoned and its connections closed",
                self.close_bound,
            )
            for attachment in list(self._attachments):
                attachment.abort()
            self._background.abort()
            if self._beating is not None:
                self._beating.cancel()
            self._abort_client()

    def _abort_client(self) -> None:
        # a borrowed client's pool belongs to its owner: only our own is cut
        if self._owns_client:
            abort_client(self._client)


class _Attachment:
    """A session's view of a :class:`RedisFleet` (the Attachment protocol)."""

    def __init__(self, fleet: RedisFleet, link: SessionLink) -> None:
        self._fleet = fleet
        self._registry = fleet._registry_now
        self._limiter = FleetRateLimiter(
            fleet._client,
            fleet.keys,
            fleet._breaker,
            link.rate_limit,
            request_bound=link.request_bound,
            process_id=fleet.process_id,
            expected_processes=fleet.expected_processes,
            spawn=fleet._background.spawn,
        )
        # one lease owner name per session: two sessions of one process must
        # not both take a lease as theirs
        self._polls = SharedPolls(
            fleet._client,
            fleet.keys,
            fleet._breaker,
            link,
            process_id=f"{fleet.process_id}.{next(_sessions)}",
            on_terminal=self._terminal,
            process_key=(fleet.keys.process(fleet.process_id), fleet._process_ttl_ms / 1000),
            on_renewed=fleet._renewed,
            releases=self._limiter.take_releases,
        )
        self._polls.start()
        self._closed = False

    def _terminal(self, job_id: str) -> None:
        self._registry.terminal(job_id)

    @property
    def limiter(self) -> FleetRateLimiter:
        """The rate limiter shared by every process of the account."""
        return self._limiter

    @property
    def fetch(self) -> Fetch:
        """The status-read strategy the session's poller calls."""
        return self._polls.fetch

    async def claim(self, key: str, operation: Operation, *, deadline: float | None) -> RedisClaim:
        """Claim an idempotency key before sending (see :meth:`Registry.claim`)."""
        try:
            await self._fleet._announce()
        except RedisUnavailable as exc:
            raise redis_down(f"claim idempotency_key {key!r} ({exc})") from exc
        return await self._registry.claim(key, operation, deadline=deadline)

    async def created(self, token: str, operation: Operation, job_id: str) -> None:
        """Record a job created through the session (in the background when
        Redis does not answer at once)."""
        await self._registry.created(token, operation, job_id)

    def observed(self, status: BatchStatus) -> None:
        """A status the session read outside its poller."""
        self._polls.observed(status)

    async def aclose(self) -> None:
        """Stop the shared polling of this session. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._limiter.flush_releases()  # the last replies' releases, before the background ends
        self._fleet._detached(self)
        await self._polls.aclose()

    def abort(self) -> None:
        """Stop at once: cancel what still runs and close its connection."""
        self._closed = True
        self._limiter.drop_releases()
        self._fleet._detached(self)
        self._polls.abort()
