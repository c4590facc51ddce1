"""SharedPolls against a real Redis with scripted status reads (no HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
import redis.asyncio as aioredis
from _fleet_support import WHEN, fast_breaker

from gameball_async import BatchState, BatchStatus, Operation, RateLimit, ServerError
from gameball_async._coordination import NoStatusYet, SessionLink
from gameball_async._decode import decode_status
from gameball_async.fleet import _polls, _polls_scripts
from gameball_async.fleet._keys import Keys
from gameball_async.fleet._polls import FAILURES_BEFORE_RELEASE, SharedPolls
from gameball_async.fleet._polls_scripts import STATUS_TTL, encode_status, text
from gameball_async.testing import RedisServer

pytestmark = pytest.mark.anyio

KEYS = Keys("unit")


def running(job_id: str, finished: int) -> BatchStatus:
    payload = {
        "operation": "cashback",
        "status": "Running",
        "totalCount": 10,
        "finishedCount": finished,
        "errorCount": 0,
        "createdAt": WHEN,
        "startedAt": WHEN,
    }
    return decode_status(payload, job_id=job_id, operation=Operation.CASHBACK, results=False)


def completed(job_id: str) -> BatchStatus:
    payload = {
        "operation": "cashback",
        "status": "Completed",
        "totalCount": 2,
        "finishedCount": 1,
        "errorCount": 1,
        "createdAt": WHEN,
        "startedAt": WHEN,
        "response": {
            "succeeded": [{"index": 0, "customerId": "c0"}],
            "failed": [{"index": 1, "code": 7000, "message": "Customer not found"}],
        },
    }
    return decode_status(payload, job_id=job_id, operation=Operation.CASHBACK)


async def stored(client: aioredis.Redis, job_id: str) -> BatchStatus:
    """The status the fleet stored for a job (a SUBMITTED one before any)."""
    data = await client.hget(KEYS.status(job_id), "data")
    if data is None:
        return BatchStatus.submitted(job_id, Operation.CASHBACK, total_count=None)
    return _polls_scripts.decode_status(data)


async def beat(shared: SharedPolls, link: Link) -> None:
    """The process's next heartbeat, now: it stores the running statuses read
    since the last (its session awaits the jobs it owns: a beat gives back the
    others)."""
    link.awaited |= shared.owned
    await shared._beat()


class Link:
    """A session's side of the link: scripted reads, recorded poll_soon calls."""

    def __init__(self) -> None:
        self.replies: dict[str, BatchStatus] = {}
        self.sent: list[str] = []
        self.soon: list[str] = []
        self.awaited: set[str] = set()

    async def fetch(
        self, job_id: str, operation: Operation | None
    ) -> tuple[BatchStatus, float | None]:
        self.sent.append(job_id)
        return self.replies[job_id], None

    def link(self) -> SessionLink:
        return SessionLink(
            account="unit",
            rate_limit=RateLimit(),
            fetch=self.fetch,
            poll_soon=self.soon.append,
            awaited=self.awaited.__contains__,
            request_bound=10.0,
        )


@asynccontextmanager
async def polls(
    client: aioredis.Redis,
    link: Link,
    process_id: str,
    *,
    started: bool = False,
    terminal: Callable[[str], None] | None = None,
    releases: Callable[[], tuple[str, int, list[str | int]] | None] | None = None,
) -> AsyncIterator[SharedPolls]:
    shared = SharedPolls(
        client,
        KEYS,
        fast_breaker(),
        link.link(),
        process_id=process_id,
        on_terminal=terminal or (lambda job_id: None),
        lease_ttl=1.0,
        heartbeat=0.2,
        releases=releases,
    )
    if started:
        shared.start()
    try:
        yield shared
    finally:
        await shared.aclose()


async def test_owner_polls_and_shares_follower_reads(redis_client: aioredis.Redis) -> None:
    a, b = Link(), Link()
    a.replies["1"] = running("1", 3)
    async with polls(redis_client, a, "a") as owner, polls(redis_client, b, "b") as follower:
        assert await owner.fetch("1", None) == (a.replies["1"], None)
        assert owner.owned == {"1"}
        # a running status is stored by the owner's next heartbeat, not by its poll
        assert await redis_client.exists(KEYS.status("1")) == 0
        await beat(owner, a)
        status, retry_after = await follower.fetch("1", None)
        assert (status, retry_after) == (a.replies["1"], None)
        assert status.to_dict(raw=True) == a.replies["1"].to_dict(raw=True)
        assert b.sent == []
        assert a.sent == ["1"]
        assert follower.followed == {"1"}
        assert follower.shared_reads == 1
        lease = text(await redis_client.get(KEYS.lease("1")))
        assert lease is not None
        assert lease.startswith("a|")


async def test_a_follower_before_any_status_is_told_to_ask_again(
    redis_client: aioredis.Redis,
) -> None:
    a, b = Link(), Link()
    async with polls(redis_client, a, "a"), polls(redis_client, b, "b") as follower:
        await redis_client.set(KEYS.lease("7"), "a|99", px=5000)
        with pytest.raises(NoStatusYet) as caught:
            await follower.fetch("7", None)
        assert caught.value.retry_in > 0
        assert b.sent == []


async def test_a_stale_owners_write_is_refused(redis_client: aioredis.Redis) -> None:
    a, b = Link(), Link()
    a.replies["1"] = running("1", 2)
    b.replies["1"] = running("1", 6)
    async with polls(redis_client, a, "a") as stale, polls(redis_client, b, "b") as fresh:
        await stale.fetch("1", None)
        old_lease = await redis_client.get(KEYS.lease("1"))
        # the stale owner froze: its lease ran out and another process took the job
        await redis_client.delete(KEYS.lease("1"))
        await fresh.fetch("1", None)
        await beat(fresh, b)
        assert fresh.owned == {"1"}
        assert b.sent == ["1"]
        new_lease = await redis_client.get(KEYS.lease("1"))
        assert new_lease != old_lease
        # it wakes up and polls once more: its heartbeat finds the lease gone
        # and stores nothing, and it follows now
        a.replies["1"] = running("1", 1)
        status, _ = await stale.fetch("1", None)
        assert status.finished_count == 1  # its own poller still gets its read
        await beat(stale, a)
        assert stale.leases_lost == 1
        assert stale.owned == frozenset()
        stored, _ = await stale.fetch("1", None)
        assert stored.finished_count == 6
        assert a.sent == ["1", "1"]
        assert await redis_client.get(KEYS.lease("1")) == new_lease


async def test_an_older_fence_never_overwrites_a_newer_one(redis_client: aioredis.Redis) -> None:
    a = Link()
    a.replies["1"] = running("1", 2)
    async with polls(redis_client, a, "a") as owner:
        await owner.fetch("1", None)
        lease = text(await redis_client.get(KEYS.lease("1")))
        assert lease is not None
        # a newer owner stored under a higher fence, then its lease went: a
        # lease re-created with the old value still cannot overwrite that
        await redis_client.hset(KEYS.status("1"), "fence", 10**6)
        a.replies["1"] = running("1", 3)
        await owner.fetch("1", None)
        await beat(owner, a)
        assert owner.writes_refused == 1
        assert owner.owned == frozenset()  # it follows now
        assert await redis_client.hget(KEYS.status("1"), "data") is None
        assert text(await redis_client.get(KEYS.lease("1"))) == lease


async def test_terminal_is_stored_with_results_releases_and_stays(
    redis_client: aioredis.Redis,
) -> None:
    a, b = Link(), Link()
    seen: list[str] = []
    a.replies["1"] = completed("1")
    await redis_client.zadd(KEYS.open_jobs, {"1": 1})
    async with polls(redis_client, a, "a", terminal=seen.append) as owner:
        status, _ = await owner.fetch("1", None)
        # the stored terminal status settled the registry: nothing to tell
        assert seen == []
        assert await redis_client.zscore(KEYS.open_jobs, "1") is None
        assert owner.owned == frozenset()
        assert await redis_client.exists(KEYS.lease("1")) == 0
        async with polls(redis_client, b, "b", terminal=seen.append) as other:
            stored, _ = await other.fetch("1", None)
            assert stored == status
            assert stored.to_dict(raw=True) == status.to_dict(raw=True)
            assert [r.code for r in stored.failed] == [7000]
            assert seen == []
            assert b.sent == []
            # no lease was taken for a job known terminal
            assert await redis_client.exists(KEYS.lease("1")) == 0
            # a late running status cannot replace a terminal one
            b.replies["1"] = running("1", 1)
            await redis_client.set(KEYS.lease("1"), "b|1")
            assert (
                await other._scripts.store(
                    "1", "b|1", encode_status(b.replies["1"]), terminal=False
                )
                == 2
            )


async def test_every_key_expires(redis_client: aioredis.Redis) -> None:
    a = Link()
    a.replies["1"] = running("1", 1)
    async with polls(redis_client, a, "a") as owner:
        await owner.fetch("1", None)
        await beat(owner, a)
        assert 0 < await redis_client.pttl(KEYS.lease("1")) <= 1000
        assert 0 < await redis_client.pttl(KEYS.status("1")) <= STATUS_TTL * 1000
        assert await redis_client.pttl(KEYS.fence) > STATUS_TTL * 1000


async def test_heartbeat_renews_releases_and_spots_a_gone_owner(
    redis_client: aioredis.Redis,
) -> None:
    a, b = Link(), Link()
    a.replies["1"] = a.replies["2"] = b.replies["2"] = running("1", 1)
    a.awaited |= {"1", "2"}
    b.awaited |= {"1", "2"}
    async with (
        polls(redis_client, a, "a", started=True) as owner,
        polls(redis_client, b, "b", started=True) as follower,
    ):
        await owner.fetch("1", None)
        await owner.fetch("2", None)
        await beat(owner, a)
        await follower.fetch("1", None)
        await follower.fetch("2", None)
        # renewed past its 1 s TTL by the heartbeat
        with anyio.fail_after(10):
            await anyio.sleep(1.5)  # longer than a lease lives without renewals
        assert await redis_client.exists(KEYS.lease("1"), KEYS.lease("2")) == 2
        # job 2 is no longer awaited by the owner: released at the next beat,
        # the follower hears of it and polls
        b.soon.clear()
        a.awaited.discard("2")
        with anyio.fail_after(10):
            while "2" not in b.soon:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert owner.owned == {"1"}
        await follower.fetch("2", None)
        assert follower.owned == {"2"}
        assert b.sent == ["2"]


async def test_observed_terminal_from_a_follower_is_shared(redis_client: aioredis.Redis) -> None:
    a, b = Link(), Link()
    a.replies["1"] = running("1", 1)
    seen: list[str] = []
    async with (
        polls(redis_client, a, "a") as owner,
        polls(redis_client, b, "b", terminal=seen.append) as follower,
    ):
        await owner.fetch("1", None)
        await redis_client.zadd(KEYS.open_jobs, {"1": 1})
        stopped = completed("1")
        follower.observed(stopped)
        with anyio.fail_after(10):
            while await redis_client.hget(KEYS.status("1"), "terminal") != b"1":  # noqa: ASYNC110
                await anyio.sleep(0.01)
        # the shared write took it out of the open set: no registry write of its own
        assert await redis_client.zscore(KEYS.open_jobs, "1") is None
        assert seen == []
        status, _ = await owner.fetch("1", None)  # the owner still polls for itself
        assert status.state is BatchState.RUNNING
        assert (await redis_client.hget(KEYS.status("1"), "terminal")) == b"1"


async def test_observed_by_the_owner_is_stored_and_told_once(
    redis_client: aioredis.Redis,
) -> None:
    a = Link()
    a.replies["1"] = running("1", 1)
    seen: list[str] = []
    async with polls(redis_client, a, "a", terminal=seen.append) as owner:
        await owner.fetch("1", None)
        owner.observed(running("1", 4))
        with anyio.fail_after(10):  # stored by a heartbeat once the owner has taken it
            while (await stored(redis_client, "1")).finished_count != 4:
                await anyio.sleep(0.01)
                await beat(owner, a)
        owner.observed(completed("1"))
        with anyio.fail_after(10):
            while await redis_client.exists(KEYS.lease("1")):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert seen == []  # stored, so settled in the registry by that write
        assert owner.owned == frozenset()
        assert a.sent == ["1"]


async def test_a_hint_brings_a_followers_read_forward(redis_client: aioredis.Redis) -> None:
    a, b = Link(), Link()
    a.replies["1"] = running("1", 1)
    b.awaited.add("1")
    async with (
        polls(redis_client, a, "a", started=True) as owner,
        polls(redis_client, b, "b", started=True) as follower,
    ):
        with anyio.fail_after(10):
            while not (owner.listening and follower.listening):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await owner.fetch("1", None)
        with anyio.fail_after(10):
            while "1" not in b.soon:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert b.sent == []


async def test_redis_down_falls_back_to_local_polling_at_once(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    a = Link()
    a.replies["1"] = running("1", 1)
    async with polls(redis_client, a, "a", started=True) as shared:
        redis_server.kill()
        with anyio.fail_after(5):
            for _ in range(5):
                status, _ = await shared.fetch("1", None)
                assert status == a.replies["1"]
        assert a.sent == ["1"] * 5
        assert shared.local_fallbacks == 5
        assert shared._breaker.is_open
        with anyio.fail_after(0.2):  # the breaker is open: no Redis call is even tried
            await shared.fetch("1", None)
        redis_server.start()
        with anyio.fail_after(10):
            while shared._breaker.is_open:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await shared.fetch("1", None)
        assert shared.owned == {"1"}


async def test_an_owner_whose_polls_keep_failing_gives_the_job_back(
    redis_client: aioredis.Redis,
) -> None:
    a, b = Link(), Link()
    b.replies["1"] = running("1", 5)

    async def failing(job_id: str, operation: Operation | None) -> tuple[BatchStatus, None]:
        a.sent.append(job_id)
        raise ServerError("unavailable", http_status=503)

    a.fetch = failing  # type: ignore[method-assign]
    async with polls(redis_client, a, "a") as owner, polls(redis_client, b, "b") as other:
        for _ in range(FAILURES_BEFORE_RELEASE - 1):
            with pytest.raises(ServerError):
                await owner.fetch("1", None)
            assert owner.owned == {"1"}
        with pytest.raises(ServerError):
            await owner.fetch("1", None)
        assert owner.owned == frozenset()
        assert owner.leases_released == 1
        with anyio.fail_after(10):
            while await redis_client.exists(KEYS.lease("1")):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        status, _ = await other.fetch("1", None)
        assert status.finished_count == 5
        assert other.owned == {"1"}
        await beat(other, b)
        # and the first one follows: its next poll reads what the other stored
        stored, _ = await owner.fetch("1", None)
        assert stored.finished_count == 5
        assert a.sent == ["1"] * FAILURES_BEFORE_RELEASE


async def test_a_job_ending_while_redis_is_down_is_told_for_the_registrys_own_write(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    # no shared write can settle it, so the registry must retry its own
    a, b = Link(), Link()
    a.replies["1"] = running("1", 1)
    seen: list[str] = []
    async with (
        polls(redis_client, a, "a", terminal=seen.append) as owner,
        polls(redis_client, b, "b", terminal=seen.append) as other,
    ):
        await owner.fetch("1", None)
        assert owner.owned == {"1"}
        redis_server.kill()
        a.replies["1"] = completed("1")
        with anyio.fail_after(5):
            await owner.fetch("1", None)  # the owner's terminal write fails
            other.observed(completed("2"))  # and a terminal seen without a lease
            while sorted(seen) != ["1", "2"]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        redis_server.start()


@asynccontextmanager
async def owner_and_follower(
    client: aioredis.Redis, *, started: bool = True
) -> AsyncIterator[tuple[SharedPolls, Link, SharedPolls, Link]]:
    """Processes ``a`` and ``b`` (polls and links), both awaiting job "1", whose
    reply to ``a`` is running("1", 1); ``started``: both listening to hints."""
    a, b = Link(), Link()
    a.replies["1"] = running("1", 1)
    a.awaited.add("1")
    b.awaited.add("1")
    async with (
        polls(client, a, "a", started=started) as owner,
        polls(client, b, "b", started=started) as follower,
    ):
        if started:
            await _listening(owner, follower)
        yield owner, a, follower, b


async def _listening(*shared: SharedPolls) -> None:
    with anyio.fail_after(10):
        while not all(each.listening for each in shared):  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def _told(link: Link, job_id: str) -> None:
    with anyio.fail_after(10):
        while job_id not in link.soon:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    link.soon.clear()


async def test_a_hint_carries_the_status_so_the_follower_reads_nothing(
    redis_client: aioredis.Redis,
) -> None:
    # issue 15 §3: a follower gets each status the owner stored from its hint;
    # with nothing new, its poller is told so without a Redis call
    async with owner_and_follower(redis_client) as (owner, a, follower, b):
        await owner.fetch("1", None)
        await _told(b, "1")  # the hint of a job not followed yet brings its first read forward
        await follower.fetch("1", None)  # its first read
        assert follower.takes == 1
        with pytest.raises(NoStatusYet):
            await follower.fetch("1", None)  # nothing new: no read
        a.replies["1"] = running("1", 6)
        await owner.fetch("1", None)
        await _told(b, "1")
        status, _ = await follower.fetch("1", None)
        assert status.processed_count == 6
        assert status.to_dict(raw=True) == a.replies["1"].to_dict(raw=True)
        a.replies["1"] = completed("1")
        await owner.fetch("1", None)
        await _told(b, "1")
        status, _ = await follower.fetch("1", None)
        assert status.state is BatchState.COMPLETED
        assert status.to_dict(raw=True) == a.replies["1"].to_dict(raw=True)
        assert follower.takes == 1
        assert follower.hinted_reads == 2
        assert follower.followed == frozenset()
        assert b.sent == []


async def test_first_reads_at_once_go_in_one_take_call(redis_client: aioredis.Redis) -> None:
    a, b = Link(), Link()
    ids = [str(n) for n in range(1, 6)]
    async with polls(redis_client, a, "a") as owner, polls(redis_client, b, "b") as follower:
        for job_id in ids:
            a.replies[job_id] = running(job_id, int(job_id))
            await owner.fetch(job_id, None)
        await beat(owner, a)
        got: dict[str, BatchStatus] = {}

        async def read(job_id: str) -> None:
            got[job_id] = (await follower.fetch(job_id, None))[0]

        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(read, job_id)
        assert {job_id: status.processed_count for job_id, status in got.items()} == {
            job_id: int(job_id) for job_id in ids
        }
        assert follower.takes == 1
        assert follower.followed == set(ids)
        assert b.sent == []


async def test_a_read_cancelled_while_gathered_leaves_the_others_theirs(
    redis_client: aioredis.Redis,
) -> None:
    a, b = Link(), Link()
    a.replies["1"] = running("1", 2)
    b.replies["2"] = running("2", 3)
    b.awaited |= {"1", "2"}
    async with polls(redis_client, a, "a") as owner, polls(redis_client, b, "b") as other:
        await owner.fetch("1", None)
        await beat(owner, a)
        got: list[BatchStatus] = []

        async def read(job_id: str) -> None:
            got.append((await other.fetch(job_id, None))[0])

        async with anyio.create_task_group() as tg:
            tg.start_soon(read, "1")
            with anyio.CancelScope() as scope:
                scope.cancel()
                await other.fetch("2", None)  # cancelled at once, its read still goes
        assert [status.processed_count for status in got] == [2]
        # the lease its read took is held (and given back by the heartbeat)
        assert other.owned == {"2"}


async def test_a_status_too_long_for_a_hint_is_read_by_the_follower(
    redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_polls_scripts, "HINT_DATA_MAX", 10)
    async with owner_and_follower(redis_client) as (owner, a, follower, b):
        await owner.fetch("1", None)
        await _told(b, "1")
        await follower.fetch("1", None)
        a.replies["1"] = running("1", 7)
        await owner.fetch("1", None)
        await _told(b, "1")
        status, _ = await follower.fetch("1", None)
        assert status.processed_count == 7
        assert follower.takes == 2
        assert follower.hinted_reads == 0


async def test_a_lost_hint_is_caught_by_the_heartbeat(redis_client: aioredis.Redis) -> None:
    async with owner_and_follower(redis_client) as (owner, _a, follower, b):
        await owner.fetch("1", None)
        await _told(b, "1")
        await follower.fetch("1", None)
        # the owner's next write, its hint lost: the key and its version only
        await redis_client.hset(KEYS.status("1"), "data", encode_status(running("1", 8)))
        await redis_client.hincrby(KEYS.status("1"), "version", 1)
        await _told(b, "1")  # within two beats
        status, _ = await follower.fetch("1", None)
        assert status.processed_count == 8
        assert follower.takes == 2


async def test_a_lease_gone_with_a_newer_write_waits_for_its_hint(
    redis_client: aioredis.Redis,
) -> None:
    # issue 15 §3: the owner's terminal write takes the lease with it; a
    # follower's heartbeat that sees the lease gone before it read the write's
    # hint waits HINT_GRACE for the hint instead of reading the job itself (in
    # *same* at P = 8, a take per job and process); a hint that never comes
    # (this follower listens to none) is made up for by a read after that
    async with owner_and_follower(redis_client, started=False) as (owner, a, follower, b):
        await owner.fetch("1", None)
        await beat(owner, a)  # the running status stored
        await follower.fetch("1", None)  # following: read once
        assert follower.takes == 1
        a.replies["1"] = completed("1")
        await owner.fetch("1", None)  # stored at once, the lease deleted
        assert not await redis_client.exists(KEYS.lease("1"))
        started = anyio.current_time()
        await follower._beat()
        assert b.soon == []  # not at once: its hint may be on its way
        await _told(b, "1")  # none came: read after the grace
        assert anyio.current_time() - started >= _polls.HINT_GRACE
        status, _ = await follower.fetch("1", None)
        assert status.state is BatchState.COMPLETED
        assert follower.takes == 2


async def test_a_lease_gone_with_its_terminal_hint_in_hand_reads_nothing(
    redis_client: aioredis.Redis,
) -> None:
    # the hint came, its status not yet asked for by the poller, when the
    # heartbeat finds the lease gone: the hint's status is used, no take
    async with owner_and_follower(redis_client) as (owner, a, follower, b):
        await owner.fetch("1", None)
        await beat(owner, a)
        await _told(b, "1")
        await follower.fetch("1", None)
        assert follower.takes == 1
        a.replies["1"] = completed("1")
        await owner.fetch("1", None)
        await _told(b, "1")  # the terminal hint, in hand
        await follower._beat()  # the lease is gone
        assert b.soon == []
        status, _ = await follower.fetch("1", None)
        assert status.state is BatchState.COMPLETED
        assert follower.takes == 1
        assert follower.hinted_reads >= 1


async def test_the_owners_store_carries_the_limiters_releases(redis_client: aioredis.Redis) -> None:
    # issue 15 §3: the slot's release (its re-score to the reply time) rides
    # on the store made right after a terminal reply, not on a call of its own
    a = Link()
    a.replies["1"] = completed("1")
    far = 10**13  # a request in flight is entered at its deadline
    await redis_client.zadd(KEYS.limiter_log, {"p.0:1": far})
    waiting: list[tuple[str, int, list[str | int]]] = [
        (KEYS.limiter_log, 60_000, [250, "p.0:1", 250, "p.0:gone"])
    ]

    def releases() -> tuple[str, int, list[str | int]] | None:
        return waiting.pop() if waiting else None

    async with polls(redis_client, a, "a", releases=releases) as owner:
        await owner.fetch("1", None)
    seconds, micros = await redis_client.time()
    now_ms = seconds * 1000 + micros // 1000
    score = await redis_client.zscore(KEYS.limiter_log, "p.0:1")
    assert score is not None
    assert now_ms - 10_000 < score <= now_ms - 250
    assert await redis_client.zscore(KEYS.limiter_log, "p.0:gone") is None  # XX: never added
    assert 0 < await redis_client.pttl(KEYS.limiter_log) <= 60_000
    assert waiting == []


async def test_running_statuses_wait_for_the_heartbeat_which_stores_the_newest(
    redis_client: aioredis.Redis,
) -> None:
    # issue 15 §3: an owner's poll of a running job makes no Redis call; its
    # next heartbeat stores the newest such status of each job it owns with
    # the leases' renewal, and hints it to the followers
    a, b = Link(), Link()
    b.awaited.add("1")
    async with polls(redis_client, a, "a") as owner, polls(redis_client, b, "b") as follower:
        a.replies["1"] = running("1", 1)
        await owner.fetch("1", None)
        await beat(owner, a)
        await follower.fetch("1", None)  # it follows, at version 1
        follower.start()
        with anyio.fail_after(10):
            while not follower.listening:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        for finished in (2, 3, 4):
            a.replies["1"] = running("1", finished)
            await owner.fetch("1", None)
        assert (await stored(redis_client, "1")).finished_count == 1
        await beat(owner, a)
        assert (await stored(redis_client, "1")).finished_count == 4
        assert await redis_client.hget(KEYS.status("1"), "version") == b"2"  # one write
        with anyio.fail_after(10):
            while "1" not in b.soon:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        status, _ = await follower.fetch("1", None)
        assert status.finished_count == 4
        assert follower.hinted_reads == 1
        assert b.sent == []
        await beat(owner, a)  # nothing new: nothing written
        assert await redis_client.hget(KEYS.status("1"), "version") == b"2"
