"""Tests of gameball_async._models: records, Operation, BatchState, BatchStatus."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import attrs
import pytest

from gameball_async import (
    BalanceAdjustment,
    BalanceInquiry,
    BatchState,
    BatchStatus,
    Cashback,
    Customer,
    CustomerAttributes,
    Event,
    InvalidBatchError,
    ItemResult,
    Operation,
    Order,
    Redemption,
)

WHEN = datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=timezone.utc)

RECORDS: list[Any] = [
    CustomerAttributes(display_name="Ann"),
    Customer(customer_id="c1"),
    Order(customer_id="c1", order_id="o1", order_date=WHEN, total_paid=10.0),
    BalanceInquiry(customer_id="c1"),
    BalanceAdjustment(customer_id="c1", amount=5.0),
    Cashback(customer_id="c1", transaction_id="t1", transaction_time=WHEN, amount=1.0),
    Redemption(customer_id="c1", transaction_id="t1", transaction_time=WHEN, points=3),
    Event(customer_id="c1", events={"purchase": {"sku": "x"}}),
]


def _status(**overrides: Any) -> BatchStatus:
    fields: dict[str, Any] = {
        "job_id": "1",
        "operation": Operation.CASHBACK,
        "state": BatchState.RUNNING,
        "state_word": "Running",
    }
    fields.update(overrides)
    return BatchStatus(**fields)


class TestRecords:
    @pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
    def test_frozen_and_slotted(self, record: Any) -> None:
        assert "__slots__" in type(record).__dict__
        assert not hasattr(record, "__dict__")
        first = attrs.fields(type(record))[0].name
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(record, first, "changed")
        with pytest.raises((AttributeError, attrs.exceptions.FrozenInstanceError)):
            record.not_a_field = 1

    @pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
    def test_extra_defaults_to_empty(self, record: Any) -> None:
        assert dict(record.extra) == {}

    def test_extra_is_kept(self) -> None:
        extra = {"newField": 1, "nested": {"a": [1, 2]}}
        record = Cashback(
            customer_id="c1", transaction_id="t1", transaction_time=WHEN, amount=1.0, extra=extra
        )
        assert record.extra == extra
        assert attrs.evolve(record, amount=2.0).extra == extra

    @pytest.mark.parametrize(
        ("build", "clash"),
        [
            (lambda extra: Customer(customer_id="c1", extra=extra), "customerId"),
            (lambda extra: Customer(customer_id="c1", extra=extra), "deviceToken"),
            (lambda extra: CustomerAttributes(extra=extra), "displayName"),
            (
                lambda extra: Order(
                    customer_id="c", order_id="o", order_date=WHEN, total_paid=1, extra=extra
                ),
                "totalPaid",
            ),
            (lambda extra: BalanceInquiry(customer_id="c", extra=extra), "customerId"),
            (lambda extra: BalanceAdjustment(customer_id="c", amount=1, extra=extra), "reason"),
            (
                lambda extra: Cashback(
                    customer_id="c", transaction_id="t", transaction_time=WHEN, amount=1,
                    extra=extra,
                ),
                "transactionTime",
            ),
            (
                lambda extra: Redemption(
                    customer_id="c", transaction_id="t", transaction_time=WHEN, extra=extra
                ),
                "holdReference",
            ),
            (lambda extra: Event(customer_id="c", events={}, extra=extra), "events"),
        ],
    )
    def test_extra_colliding_with_typed_field_is_refused(self, build: Any, clash: str) -> None:
        with pytest.raises(InvalidBatchError) as info:
            build({clash: "x", "harmless": 1})
        assert info.value.field == "extra"
        assert clash in str(info.value)

    def test_extra_with_snake_case_name_of_a_field_is_not_a_clash(self) -> None:
        # Only the wire (camelCase) names collide; anything else passes through.
        record = Customer(customer_id="c1", extra={"customer_id": "other"})
        assert record.extra == {"customer_id": "other"}

    def test_records_compare_by_value(self) -> None:
        one = Order(customer_id="c", order_id="o", order_date=WHEN, total_paid=1.0)
        two = Order(customer_id="c", order_id="o", order_date=WHEN, total_paid=1.0)
        assert one == two
        assert one != attrs.evolve(two, order_id="p")


class TestOperation:
    @pytest.mark.parametrize("operation", list(Operation))
    def test_parse_value(self, operation: Operation) -> None:
        assert Operation.parse(operation.value) is operation
        assert Operation.parse(operation) is operation
        assert str(operation) == operation.value

    def test_values_are_the_documented_ones(self) -> None:
        assert {op.value for op in Operation} == {
            "customers",
            "orders",
            "order-transactions",
            "balance-inquiry",
            "balance-adjustment",
            "cashback",
            "redeem",
            "events",
        }

    @pytest.mark.parametrize("value", ["refunds", "", "Cashback", "CASHBACK", "order_transactions"])
    def test_parse_unknown(self, value: str) -> None:
        with pytest.raises(InvalidBatchError) as info:
            Operation.parse(value)
        assert "order-transactions" in str(info.value)  # lists the known ones
        assert info.value.index is None


class TestBatchState:
    @pytest.mark.parametrize(
        ("state", "terminal"),
        [
            (BatchState.QUEUED, False),
            (BatchState.RUNNING, False),
            (BatchState.UNKNOWN, False),
            (BatchState.COMPLETED, True),
            (BatchState.FAILED, True),
            (BatchState.STOPPED, True),
        ],
    )
    def test_is_terminal(self, state: BatchState, terminal: bool) -> None:
        assert state.is_terminal is terminal
        assert _status(state=state).is_terminal is terminal

    def test_str_is_the_guide_word(self) -> None:
        assert str(BatchState.COMPLETED) == "Completed"


class TestBatchStatus:
    def test_progress_unknown_without_total(self) -> None:
        assert _status(total_count=None, finished_count=3).progress is None

    @pytest.mark.parametrize(
        ("total", "finished", "errors", "expected"),
        [(10, 0, 0, 0.0), (10, 3, 2, 0.5), (4, 4, 0, 1.0), (4, 1, 3, 1.0), (3, 5, 1, 1.0)],
    )
    def test_progress_share(self, total: int, finished: int, errors: int, expected: float) -> None:
        status = _status(total_count=total, finished_count=finished, error_count=errors)
        assert status.progress == pytest.approx(expected)
        assert status.processed_count == finished + errors

    def test_progress_of_empty_job(self) -> None:
        assert _status(total_count=0).progress == 0.0
        assert _status(total_count=0, state=BatchState.COMPLETED).progress == 1.0

    def test_frozen_and_raw_not_compared(self) -> None:
        one = _status(raw={"a": 1})
        two = _status(raw={"b": 2})
        assert one == two
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            one.state = BatchState.FAILED  # type: ignore[misc]

    def test_item_results_kept(self) -> None:
        failed = (ItemResult(index=2, ok=False, code=7000, message="no customer", raw={"x": 1}),)
        status = _status(failed=failed)
        assert status.failed[0].code == 7000
        assert status.failed[0].raw == {"x": 1}
        assert status.succeeded == ()
