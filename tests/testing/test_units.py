"""Pure parts of the fake: job lifecycle, ledger, rate-limit arithmetic, validation."""

from __future__ import annotations

import pytest

from gameball_async.testing import FakeJob
from gameball_async.testing._jobs import ItemOutcome, Ledger, render_status
from gameball_async.testing._sliding_window import (
    SlidingWindowLimiter,
    max_in_window,
    retry_after_seconds,
)
from gameball_async.testing._wire import PayloadError, is_iso_datetime, parse_creation


def make_job(outcomes: list[bool], *, fail_at: int | None = None) -> FakeJob:
    return FakeJob(
        job_id=1,
        operation="cashback",
        items=tuple(range(len(outcomes))),
        outcomes=tuple(
            ItemOutcome.success(n=n) if ok else ItemOutcome.failure(9004, "dup")
            for n, ok in enumerate(outcomes)
        ),
        created_at=0.0,
        queue_delay=1.0,
        processing_rate=2.0,
        fail_at=fail_at,
    )


class TestFakeJob:
    def test_lifecycle(self) -> None:
        job = make_job([True, False, True, True])
        assert [job.state(t) for t in (0.0, 0.99, 1.0, 2.9, 3.0, 99.0)] == [
            "Queued",
            "Queued",
            "Running",
            "Running",
            "Completed",
            "Completed",
        ]
        assert [job.counts(t) for t in (0.5, 1.5, 2.0, 3.0)] == [(0, 0), (1, 0), (1, 1), (3, 1)]

    def test_fail_at(self) -> None:
        job = make_job([True] * 4, fail_at=2)
        assert job.state(1.9) == "Running"
        assert job.state(2.0) == "Failed"
        assert job.counts(50.0) == (2, 0)

    def test_stop_and_fail_freeze(self) -> None:
        job = make_job([True] * 4)
        assert job.stop(1.6)
        assert not job.stop(2.0)
        assert not job.fail(2.0)
        assert (job.state(9.0), job.processed(9.0)) == ("Stopped", 1)

    def test_render_guide_and_openapi(self) -> None:
        job = make_job([True, False])
        guide = render_status(job, 2.0, "guide", str)
        assert guide["response"]["failed"] == [
            {
                "index": 1,
                "item": 1,
                "code": 9004,
                "type": "DuplicateTransactionId",
                "message": "dup",
            }
        ]
        assert guide["startedAt"] == "1.0"
        openapi = render_status(job, 1.5, "openapi", str, word="Odd")
        assert (openapi["status"], openapi["progress"]) == ("odd", 50.0)


class TestLedger:
    def test_effects_in_item_order(self) -> None:
        ledger = Ledger(default_balance=5.0)
        item = {"customerId": "c", "transactionId": "t1", "amount": 4}
        outcomes = ledger.decide("redeem", [item, {**item, "transactionId": "t2"}, item])
        assert [o.code for o in outcomes] == [0, 9008, 9004]
        assert ledger.balance("c") == 1.0

    def test_failed_transaction_id_can_be_reused(self) -> None:
        ledger = Ledger(customers_must_exist=True)
        item = {"customerId": "c", "transactionId": "t1", "amount": 4}
        assert ledger.decide("cashback", [item])[0].code == 7000
        ledger.add_customer("c", 0.0)
        assert ledger.decide("cashback", [item])[0].ok


class TestRateLimit:
    def test_limiter(self) -> None:
        limiter = SlidingWindowLimiter(((2, 1.0), (3, 10.0)))
        assert limiter.acquire("k", 0.0) is None
        assert limiter.acquire("k", 0.1) is None
        assert limiter.acquire("k", 0.2) == pytest.approx(0.8)
        assert limiter.acquire("other", 0.2) is None
        assert limiter.acquire("k", 1.0) is None
        assert limiter.acquire("k", 2.5) == pytest.approx(7.5)
        limiter.reset()
        assert limiter.acquire("k", 2.5) is None

    def test_retry_after_seconds(self) -> None:
        assert [retry_after_seconds(w) for w in (0.01, 1.0, 1.2, 7.5)] == [1, 1, 2, 8]

    def test_max_in_window(self) -> None:
        assert max_in_window([], 1.0) == 0
        assert max_in_window([3.0, 0.0, 0.5, 0.99, 1.0, 1.2], 1.0) == 4
        assert max_in_window([0.0, 1.0, 2.0], 1.0) == 1


class TestValidation:
    @pytest.mark.parametrize(
        "value",
        [
            "2024-10-16T08:13:29.290Z",
            "2024-10-16T08:13:29Z",
            "2024-10-16T08:13:29+02:00",
            "2024-10-16",
            "2024-10-16T08:13",
        ],
    )
    def test_iso_accepted(self, value: str) -> None:
        assert is_iso_datetime(value)

    @pytest.mark.parametrize("value", ["2024-13-01", "16/10/2024", "", "2024-10-16T25:00", 5])
    def test_iso_rejected(self, value: object) -> None:
        assert not is_iso_datetime(value)

    def test_codes(self) -> None:
        with pytest.raises(PayloadError) as info:
            parse_creation(b'{"body": [{"customerId": "c", "events": {}}]}', "events")
        assert (info.value.code, info.value.status) == (3003, 422)
        assert "body[0].events" in str(info.value)
        assert parse_creation(b'{"body": ["o1"]}', "order-transactions") == ["o1"]
