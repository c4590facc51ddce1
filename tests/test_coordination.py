"""The session's side of the fleet seam: what GameballSession(fleet=...) asks of a
fleet and does with its answers, with a fleet kept in memory (no Redis here;
tests/fleet/ runs the Redis fleet)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from _memory_fleet import MemoryFleet
from _support import FAST_POLL, FAST_RETRY, PATIENCE, until

from gameball_async import (
    AmbiguousSubmissionError,
    BatchState,
    CreationTimeoutError,
    GameballSession,
    InvalidRequestError,
    RateLimit,
)
from gameball_async._coordination import account_namespace
from gameball_async.testing import FakeGameball, InjectedReply

pytestmark = pytest.mark.anyio

ITEMS = [{"customerId": "c1"}, {"customerId": "c2"}]


@pytest.fixture
async def fake() -> AsyncIterator[FakeGameball]:
    async with FakeGameball(enforce_rate_limit=False, queue_delay=0.0) as server:
        yield server


def _session(fake: FakeGameball, fleet: MemoryFleet | None, **options: Any) -> GameballSession:
    settings: dict[str, Any] = {
        "base_url": fake.base_url,
        "poll": FAST_POLL,
        "retry": FAST_RETRY,
        "rate_limit": RateLimit.disabled(),
        "fleet": fleet,
    }
    settings.update(options)
    return GameballSession(fake.api_key, fake.secret_key, **settings)


class TestWithoutAFleet:
    async def test_create_batch_refuses_a_key_and_sends_nothing(self, fake: FakeGameball) -> None:
        async with _session(fake, None) as gb:
            with pytest.raises(ValueError, match="idempotency_key needs a fleet"):
                await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
        assert fake.counts.get("requests", 0) == 0

    async def test_submit_many_refuses_a_key_and_reads_nothing(self, fake: FakeGameball) -> None:
        read: list[int] = []

        def items() -> Any:
            for n in range(3):
                read.append(n)
                yield {"customerId": f"c{n}"}

        async with _session(fake, None) as gb:
            with pytest.raises(ValueError, match="idempotency_key needs a fleet"):
                await gb.submit_many("balance-inquiry", items(), idempotency_key="k")
        assert read == []
        assert fake.counts.get("requests", 0) == 0


class TestLink:
    async def test_the_fleet_learns_the_account_as_a_hash_and_paces_every_request(
        self, fake: FakeGameball
    ) -> None:
        fleet = MemoryFleet()
        async with _session(fake, fleet) as gb:
            job = await gb.create_batch("balance-inquiry", ITEMS)
            await job.wait(timeout=PATIENCE)
            [attachment] = fleet.attachments
            assert gb._open().limiter is attachment.limiter
        link = attachment.link
        assert link.account == account_namespace(fake.api_key)
        assert fake.api_key not in link.account
        assert fake.api_key not in repr(link)
        assert fake.secret_key not in repr(link)
        assert attachment.closed == 1
        assert fleet.fetches  # the poller read statuses through the fleet's strategy

    async def test_a_fetch_with_nothing_to_tell_is_asked_again_not_counted_as_failing(
        self, fake: FakeGameball
    ) -> None:
        fleet = MemoryFleet(quiet_fetches=3)
        async with _session(fake, fleet) as gb:
            job = await gb.create_batch("balance-inquiry", ITEMS)
            status = await job.wait(timeout=PATIENCE)
            stats = gb.stats()
        assert status.state is BatchState.COMPLETED
        assert len(fleet.fetches) >= 4
        assert stats.polls_failed == 0

    async def test_created_jobs_are_registered_and_terminal_reads_close_them(
        self, fake: FakeGameball
    ) -> None:
        fleet = MemoryFleet()
        async with _session(fake, fleet) as gb:
            job = await gb.create_batch("balance-inquiry", ITEMS)
            assert fleet.registry == {job.job_id: job.to_token()}
            assert fleet.open_jobs == {job.job_id}
            await until(lambda: fake.job_state(int(job.job_id)) == "Completed")
            await job.refresh()
        assert [status.job_id for status in fleet.observed] == [job.job_id]
        assert fleet.open_jobs == set()


class TestIdempotency:
    async def test_a_second_call_returns_the_same_job_and_sends_nothing(
        self, fake: FakeGameball
    ) -> None:
        fleet = MemoryFleet()
        async with _session(fake, fleet) as gb:
            first = await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
            again = await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
        assert again.job_id == first.job_id
        assert again.operation is first.operation
        assert fake.counts["create"] == 1
        assert fleet.outcomes == [("k", "created")]

    async def test_concurrent_callers_with_one_key_get_one_job(self, fake: FakeGameball) -> None:
        fake.inject("create", InjectedReply(action="slow", delay=0.2))
        fleet = MemoryFleet()
        async with _session(fake, fleet) as gb:
            jobs = await asyncio.gather(
                *(gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k") for _ in range(5))
            )
        assert len({job.job_id for job in jobs}) == 1
        assert fake.counts["create"] == 1

    async def test_a_key_that_may_have_been_sent_raises_and_sends_nothing(
        self, fake: FakeGameball
    ) -> None:
        fleet = MemoryFleet()
        fleet.claims["k"] = {"state": "ambiguous", "settled": anyio.Event()}
        async with _session(fake, fleet) as gb:
            with pytest.raises(AmbiguousSubmissionError, match="idempotency_key 'k'") as info:
                await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
        assert list(info.value.items) == ITEMS
        assert fake.counts.get("requests", 0) == 0

    async def test_a_refused_creation_gives_the_key_back(self, fake: FakeGameball) -> None:
        fake.inject("create", InjectedReply(status=422))
        fleet = MemoryFleet()
        async with _session(fake, fleet) as gb:
            with pytest.raises(InvalidRequestError):
                await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
            assert "k" not in fleet.claims
            job = await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
        assert fleet.outcomes == [("k", "not_sent"), ("k", "created")]
        assert fleet.claims["k"]["token"] == job.to_token()

    async def test_an_ambiguous_creation_marks_the_key_and_is_never_resent(
        self, fake: FakeGameball
    ) -> None:
        fake.inject("create", InjectedReply(action="drop_after"))
        fleet = MemoryFleet()
        async with _session(fake, fleet) as gb:
            with pytest.raises(AmbiguousSubmissionError):
                await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
            with pytest.raises(AmbiguousSubmissionError, match="may have sent"):
                await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
        assert fake.counts["create"] == 1
        assert fleet.outcomes == [("k", "ambiguous")]

    async def test_a_caller_cancelled_mid_request_still_records_the_job(
        self, fake: FakeGameball
    ) -> None:
        fake.inject("create", InjectedReply(action="slow", delay=0.3))
        fleet = MemoryFleet()
        async with _session(fake, fleet) as gb:
            task = asyncio.get_running_loop().create_task(
                gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
            )
            await until(lambda: fake.counts.get("create", 0) == 1)  # in flight
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: fleet.outcomes == [("k", "created")])
            again = await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k")
        assert fleet.claims["k"]["token"] == again.to_token()
        assert fake.counts["create"] == 1

    async def test_a_caller_cancelled_before_sending_gives_the_key_back(
        self, fake: FakeGameball
    ) -> None:
        fleet = MemoryFleet()
        limit = RateLimit(per_second=1, per_window=100)
        async with _session(fake, fleet, rate_limit=limit) as gb:
            await gb.create_batch("balance-inquiry", ITEMS)  # the second waits for the limiter
            with pytest.raises(CreationTimeoutError):
                await gb.create_batch("balance-inquiry", ITEMS, idempotency_key="k", timeout=0.05)
        assert fleet.outcomes == [("k", "not_sent")]
        assert fake.counts["create"] == 1

    async def test_submit_many_keys_each_chunk_and_a_retry_sends_nothing(
        self, fake: FakeGameball
    ) -> None:
        fleet = MemoryFleet()
        items = [{"customerId": f"c{n}"} for n in range(5)]
        async with _session(fake, fleet) as gb:
            first = await gb.submit_many(
                "balance-inquiry", items, chunk_size=2, idempotency_key="K"
            )
            again = await gb.submit_many(
                "balance-inquiry", items, chunk_size=2, idempotency_key="K"
            )
        assert sorted(fleet.claims) == ["K/0", "K/1", "K/2"]
        assert [job.job_id for job in again] == [job.job_id for job in first]
        assert [job.input_range for job in again] == [range(0, 2), range(2, 4), range(4, 5)]
        assert fake.counts["create"] == 3
