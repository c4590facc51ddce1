"""Reading a read-only, versioned view of one account's fleet: :class:`FleetSnapshot`.

The classes are in ``_snapshot_types.py``; this module reads them from Redis.

What ``await fleet.snapshot()`` returns, and what ``gameball-batch fleet`` and
any dashboard read, so no second copy of the key layout exists outside the
fleet. Everything is read from Redis; nothing is written (no script that
writes, no key touched): a snapshot can be taken by a process that has no
session and no API key, while the fleet runs.

What it reads, all under the account's hash tag (see ``_keys.py``):

- the server's ``TIME`` (every age and remaining time is on Redis's clock);
- the registry's open set (job id, created time), each job's record
  (operation), its shared status (state, counts), and its lease (the session
  polling it for the fleet);
- the limiter's log (requests in the short and long window, as the acquire
  script counts them, and those still in flight), its pause key, and its
  waiters queue (waiters that asked within the stale bound);
- the heartbeat keys of the live processes;
- the records of jobs that ended (the registry keeps them for its
  retention; a shared status for a day), with their outcome.

Reads are bounded like every other fleet call (``_bounded.Calls``): a
snapshot that Redis cannot give in time raises
:class:`~gameball_async.TransportError`, it never hangs. Snapshot reads do
not count against the fleet's circuit breaker: a slow dashboard must not send
the working sessions to their fallbacks.
"""

from __future__ import annotations

import math
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gameball_async._errors import TransportError
from gameball_async._models import BatchState
from gameball_async._ratelimit import RateLimit

from ._bounded import Calls
from ._keys import Keys
from ._limiter_scripts import STALE_WAITER_MS, window_ms
from ._polls_scripts import STATUS_TTL, decode_status, holder_of, text
from ._snapshot_types import (
    SNAPSHOT_VERSION,
    EndedJob,
    FleetSnapshot,
    JobProgress,
    LimiterView,
    LiveProcess,
    OpenJob,
    utc_from_ms,
)

__all__ = [
    "DEFAULT_ENDED_WITHIN",
    "DEFAULT_MAX_ENDED",
    "TerminalStatuses",
    "find_namespaces",
    "process_of",
    "read_snapshot",
]

#: Seconds back :meth:`RedisFleet.snapshot` looks for ended jobs by default.
DEFAULT_ENDED_WITHIN: Final = 900.0
#: Ended jobs a snapshot lists at most by default (the most recent first).
DEFAULT_MAX_ENDED: Final = 50
#: Keys one SCAN step asks for, and keys a snapshot examines at most per scan
#: (a registry holds a week of records): past that, the list says it is partial.
SCAN_COUNT: Final = 1000
MAX_SCANNED: Final = 20_000


def process_of(owner: str) -> str:
    """The process id in a lease owner's name (``<process id>.<session number>``,
    see ``_fleet._Attachment``); a name without a session number is the process."""
    process, dot, number = owner.rpartition(".")
    return process if dot and number.isdigit() else owner


# -- reading -----------------------------------------------------------------


def _number(value: Any) -> float | None:
    word = text(value)
    if word is None:
        return None
    try:
        return float(word)
    except ValueError:
        return None


def _ttl(value: Any) -> float | None:
    # PTTL: -2 no key, -1 no expiry
    ms = int(value)
    return ms / 1000 if ms >= 0 else None


def _progress(data: Any, terminal: Any) -> JobProgress | None:
    stored = text(data)
    if stored is None:
        return None
    try:
        status = decode_status(stored)
    except ValueError:  # not something this version wrote
        return None
    state = status.state.value if status.state is not BatchState.UNKNOWN else status.state_word
    return JobProgress(
        state=state or BatchState.UNKNOWN.value,
        finished=status.finished_count,
        failed=status.error_count,
        total=status.total_count,
        terminal=text(terminal) == "1" or status.is_terminal,
    )


async def _scan(client: aioredis.Redis, pattern: str) -> tuple[list[str], bool]:
    # SCAN (never KEYS): at most MAX_SCANNED keys; whether it stopped early
    found: list[str] = []
    cursor: Any = 0
    while True:
        cursor, batch = await client.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
        found.extend(name for name in (text(key) for key in batch) if name is not None)
        if int(cursor) == 0:
            return found, False
        if len(found) >= MAX_SCANNED:
            return found, True


def _glob(text_: str) -> str:
    # a key prefix as a SCAN pattern: its glob characters taken literally
    return "".join("\\" + char if char in "*?[]\\" else char for char in text_)


async def _read(
    client: aioredis.Redis,
    keys: Keys,
    *,
    limit: RateLimit,
    ended_within: float,
    max_ended: int,
    kept: TerminalStatuses,
) -> FleetSnapshot:
    async with client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zrange(keys.open_jobs, 0, -1, withscores=True)
        pipe.zrange(keys.limiter_log, 0, -1, withscores=True)
        pipe.get(keys.limiter_pause)
        pipe.zrange(keys.limiter_seen, 0, -1, withscores=True)
        clock, open_ids, log, pause, seen = await pipe.execute()
    now = int(clock[0]) * 1000 + int(clock[1]) // 1000

    # the limiter, counted as the acquire script counts (see _limiter_scripts.ACQUIRE)
    short_ms, long_ms = window_ms(limit)
    scores = [float(score) for _member, score in log]
    paused_until = _number(pause) or 0.0
    limiter = LimiterView(
        per_second=limit.per_second,
        per_window=limit.per_window,
        window=limit.window,
        last_second=sum(1 for score in scores if score > now - short_ms),
        last_window=sum(1 for score in scores if score > now - long_ms),
        in_flight=sum(1 for score in scores if score > now),
        paused_for=max(0.0, (paused_until - now) / 1000),
        waiting=sum(1 for _member, score in seen if float(score) > now - STALE_WAITER_MS),
    )

    # the open jobs: record, shared status, lease
    ids = [(text(raw) or "", float(score)) for raw, score in open_ids]
    async with client.pipeline(transaction=False) as pipe:
        for job_id, _ in ids:
            pipe.hget(keys.job(job_id), "operation")
            pipe.hmget(keys.status(job_id), "data", "terminal")
            pipe.get(keys.lease(job_id))
            pipe.pttl(keys.lease(job_id))
        replies = await pipe.execute() if ids else []
    open_jobs = []
    for index, (job_id, created_ms) in enumerate(ids):
        operation, (data, terminal), lease, lease_ttl = replies[4 * index : 4 * index + 4]
        lease_value = text(lease)
        holder = holder_of(lease_value) if lease_value is not None else None
        open_jobs.append(
            OpenJob(
                job_id=job_id,
                operation=text(operation),
                created_at=utc_from_ms(created_ms),
                age=max(0.0, (now - created_ms) / 1000),
                status=_progress(data, terminal),
                lease_holder=holder,
                process_id=process_of(holder) if holder is not None else None,
                lease_expires_in=_ttl(lease_ttl) if holder is not None else None,
            )
        )

    # the live processes (heartbeat keys)
    prefix = keys.process("")
    names, _ = await _scan(client, _glob(prefix) + "*")
    names.sort()
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.pttl(name)
        ttls = await pipe.execute() if names else []
    processes = tuple(
        LiveProcess(process_id=name[len(prefix) :], expires_in=_ttl(ttl))
        for name, ttl in zip(names, ttls, strict=True)
        if int(ttl) != -2  # gone between the scan and the read
    )

    ended: list[EndedJob] = []
    partial = False
    if max_ended > 0 and ended_within > 0:  # the one read that grows with the registry
        still_open = {job_id for job_id, _ in ids}
        ended, partial = await _ended(
            client,
            keys,
            now=now,
            still_open=still_open,
            within=ended_within,
            most=max_ended,
            kept=kept,
        )
    return FleetSnapshot(
        version=SNAPSHOT_VERSION,
        namespace=keys.namespace,
        taken_at=utc_from_ms(now),
        open_jobs=tuple(open_jobs),
        limiter=limiter,
        processes=processes,
        ended_jobs=tuple(ended),
        ended_partial=partial,
    )


class TerminalStatuses:
    """The terminal shared statuses a fleet's snapshots have read, by job.

    A terminal status never changes (no write goes over one), and one holds
    every item's result (megabytes for a large job): each is read once, then
    kept here (the latest :data:`MAX_KEPT`).
    """

    MAX_KEPT: Final = 4096

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], JobProgress | None] = {}

    def get(self, namespace: str, job_id: str) -> tuple[bool, JobProgress | None]:
        """Whether ``job_id``'s status is kept, and the status."""
        key = (namespace, job_id)
        return key in self._kept, self._kept.get(key)

    def keep(self, namespace: str, job_id: str, progress: JobProgress | None) -> None:
        """Keep one job's terminal status (``None``: none could be read)."""
        self._kept[(namespace, job_id)] = progress
        while len(self._kept) > self.MAX_KEPT:
            del self._kept[next(iter(self._kept))]


#: Terminal statuses read per round trip (each may be megabytes).
_DATA_BATCH: Final = 8


async def _ended(
    client: aioredis.Redis,
    keys: Keys,
    *,
    now: int,
    still_open: set[str],
    within: float,
    most: int,
    kept: TerminalStatuses,
) -> tuple[list[EndedJob], bool]:
    # the registry's records marked terminal; the end time is when the shared
    # terminal status was stored: it lives STATUS_TTL from that write
    prefix = keys.job("")
    names, partial = await _scan(client, _glob(prefix) + "*")
    job_ids = [name[len(prefix) :] for name in names if name[len(prefix) :] not in still_open]
    async with client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(keys.job(job_id), "operation", "created_ms", "terminal")
        records = await pipe.execute() if job_ids else []
    settled = [
        (job_id, record)
        for job_id, record in zip(job_ids, records, strict=True)
        if text(record[2]) is not None
    ]
    # cheap first: whether a terminal status is shared, and since when
    async with client.pipeline(transaction=False) as pipe:
        for job_id, _ in settled:
            pipe.hget(keys.status(job_id), "terminal")
            pipe.pttl(keys.status(job_id))
        marks = await pipe.execute() if settled else []
    horizon = now - within * 1000
    status_ms = STATUS_TTL * 1000
    recent: list[tuple[float, float, str, list[Any], float | None]] = []
    for index, (job_id, record) in enumerate(settled):
        terminal, status_ttl = marks[2 * index : 2 * index + 2]
        created_ms = _number(record[1])
        ended_ms = None
        if text(terminal) == "1" and int(status_ttl) >= 0:
            ended_ms = now - (status_ms - int(status_ttl))
        # without an end time, a job counts as recent when it was created recently
        when = ended_ms if ended_ms is not None else created_ms
        if when is None or when < horizon:
            continue
        # the latest end first; those without an end time after, newest created first
        order = ended_ms if ended_ms is not None else -math.inf
        recent.append((order, created_ms or 0.0, job_id, record, ended_ms))
    recent.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
    del recent[most:]
    # then the statuses shown, each read once (kept), a few per round trip
    namespace = keys.namespace
    missing = [
        entry[2]
        for entry in recent
        if entry[4] is not None and not kept.get(namespace, entry[2])[0]
    ]
    for start in range(0, len(missing), _DATA_BATCH):
        chunk = missing[start : start + _DATA_BATCH]
        async with client.pipeline(transaction=False) as pipe:
            for job_id in chunk:
                pipe.hget(keys.status(job_id), "data")
            blobs = await pipe.execute()
        for job_id, data in zip(chunk, blobs, strict=True):
            kept.keep(namespace, job_id, _progress(data, "1"))
    found: list[EndedJob] = []
    for _order, _created, job_id, (operation, created, word), ended_ms in recent:
        created_ms = _number(created)
        progress = kept.get(namespace, job_id)[1] if ended_ms is not None else None
        found.append(
            EndedJob(
                job_id=job_id,
                operation=text(operation),
                created_at=utc_from_ms(created_ms) if created_ms is not None else None,
                ended_at=utc_from_ms(ended_ms) if ended_ms is not None else None,
                outcome=progress.state if progress is not None else text(word) or "terminal",
                finished=progress.finished if progress is not None else None,
                failed=progress.failed if progress is not None else None,
                total=progress.total if progress is not None else None,
            )
        )
    return found, partial


async def read_snapshot(
    client: aioredis.Redis,
    keys: Keys,
    calls: Calls,
    *,
    limit: RateLimit,
    timeout: float,
    kept: TerminalStatuses,
    ended_within: float = DEFAULT_ENDED_WITHIN,
    max_ended: int = DEFAULT_MAX_ENDED,
) -> FleetSnapshot:
    """Read one account's :class:`FleetSnapshot` (read-only), bounded by ``timeout``.

    :param kept: the terminal statuses read by earlier snapshots (each is read once).
    :raises TransportError: Redis did not answer in ``timeout`` seconds, or failed.
    """
    try:
        return await calls.call(
            lambda: _read(
                client,
                keys,
                limit=limit,
                ended_within=ended_within,
                max_ended=max_ended,
                kept=kept,
            ),
            timeout,
        )
    except TimeoutError as exc:
        raise TransportError(
            f"the fleet's Redis did not give a snapshot of {keys.namespace!r} within {timeout:g} s"
        ) from exc
    except RedisError as exc:
        raise TransportError(
            f"the fleet's Redis could not be read for a snapshot of {keys.namespace!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    except OSError as exc:
        raise TransportError(
            f"the fleet's Redis could not be reached for a snapshot: {type(exc).__name__}: {exc}"
        ) from exc


async def find_namespaces(client: aioredis.Redis, calls: Calls, *, timeout: float) -> list[str]:
    """The namespaces that have fleet keys in Redis (SCAN, never KEYS), sorted.

    :raises TransportError: Redis did not answer in ``timeout`` seconds, or failed.
    """
    template = Keys("x").prefix  # gameball:{x}: -> the part around the namespace
    head, tail = template.split("x", 1)

    async def read() -> list[str]:
        # every fleet key of every account matches: only the namespaces are
        # kept, and the whole scan is bounded by the timeout, not by a count
        found: set[str] = set()
        pattern = _glob(head) + "*" + _glob(tail) + "*"
        cursor: Any = 0
        while True:
            cursor, batch = await client.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
            for key in batch:
                inner = (text(key) or "")[len(head) :].split(tail, 1)
                if len(inner) == 2 and inner[0]:
                    found.add(inner[0])
            if int(cursor) == 0:
                return sorted(found)

    try:
        return await calls.call(read, timeout)
    except TimeoutError as exc:
        raise TransportError(f"the fleet's Redis did not answer within {timeout:g} s") from exc
    except (RedisError, OSError) as exc:
        raise TransportError(
            f"the fleet's Redis could not be read: {type(exc).__name__}: {exc}"
        ) from exc
