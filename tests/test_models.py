"""Tests of gameball_async._models: records, Operation, BatchState, BatchStatus."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from _support import OPERATION_WORDS
from hypothesis import given, settings
from hypothesis import strategies as st

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
from gameball_async._decode import decode_status

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
                    customer_id="c",
                    transaction_id="t",
                    transaction_time=WHEN,
                    amount=1,
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
        assert {op.value for op in Operation} == OPERATION_WORDS

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


# -- to_dict / from_dict (issue 12, point 2) -----------------------------------------

FAILED_REPLY = {
    "jobId": 77,
    "operation": "balance-inquiry",
    "status": "Failed",
    "totalCount": 3,
    "finishedCount": 1,
    "errorCount": 2,
    "createdAt": "2024-10-16T10:13:29.290+02:00",
    "startedAt": "2024-10-16T08:13:30.2901234Z",
    "response": {
        "succeeded": [{"index": 0, "result": {"balance": 120}}],
        "failed": [
            {"index": 1, "code": 7000, "message": "Customer not found."},
            {"index": 2, "error": {"code": 9008, "message": "Insufficient balance."}},
        ],
    },
}


class TestToDict:
    def test_a_decoded_status_as_json_ready_data(self) -> None:
        status = decode_status(FAILED_REPLY, job_id="77")
        data = status.to_dict()
        assert data == {
            "job_id": "77",
            "operation": "balance-inquiry",
            "state": "Failed",
            "state_word": "Failed",
            "total_count": 3,
            "finished_count": 1,
            "error_count": 2,
            "created_at": "2024-10-16T08:13:29.290000Z",  # +02:00 given, UTC written
            "started_at": "2024-10-16T08:13:30.290123Z",
            "succeeded": [{"index": 0, "ok": True, "code": None, "message": None}],
            "failed": [
                {"index": 1, "ok": False, "code": 7000, "message": "Customer not found."},
                {"index": 2, "ok": False, "code": 9008, "message": "Insufficient balance."},
            ],
        }
        assert json.loads(json.dumps(data)) == data

    def test_raw_only_when_asked(self) -> None:
        status = decode_status(FAILED_REPLY, job_id="77")
        data = status.to_dict(raw=True)
        assert data["raw"] == FAILED_REPLY
        assert data["succeeded"][0]["raw"] == {"index": 0, "result": {"balance": 120}}
        json.dumps(data)
        assert "raw" not in status.to_dict()
        assert "raw" not in status.to_dict()["failed"][0]

    def test_a_status_built_by_hand_dumps_with_its_default_raw(self) -> None:
        # the default raw is a read-only mapping, which json.dumps refuses
        status = _status(created_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
        data = status.to_dict(raw=True)
        assert json.loads(json.dumps(data))["raw"] == {}
        assert data["created_at"] == "2024-01-02T03:04:05.000000Z"
        assert data["started_at"] is None
        assert data["operation"] == "cashback"
        assert _status(operation=None).to_dict()["operation"] is None

    def test_a_naive_datetime_is_refused(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            _status(started_at=datetime(2024, 1, 2)).to_dict()

    @pytest.mark.parametrize("raw", [False, True])
    def test_round_trip_through_json(self, raw: bool) -> None:
        status = decode_status(FAILED_REPLY, job_id="77")
        back = BatchStatus.from_dict(json.loads(json.dumps(status.to_dict(raw=raw))))
        assert back == status
        assert back.created_at == status.created_at
        assert [(r.index, r.ok, r.code, r.message) for r in back.failed] == [
            (r.index, r.ok, r.code, r.message) for r in status.failed
        ]
        if raw:
            assert back.raw == FAILED_REPLY
            assert back.succeeded[0].raw == {"index": 0, "result": {"balance": 120}}
        else:
            assert back.raw == {}

    def test_unknown_keys_are_ignored_and_missing_defaults_apply(self) -> None:
        back = BatchStatus.from_dict({"job_id": "5", "state": "Unknown", "added_later": [1]})
        assert back == BatchStatus(
            job_id="5", operation=None, state=BatchState.UNKNOWN, state_word="Unknown"
        )

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"state": None}, "'state' is not str"),
            ({"job_id": 5}, "'job_id' is not str"),
            ({"state": "Paused"}, "Paused"),
            ({"operation": "refunds"}, "refunds"),
            ({"total_count": "3"}, "'total_count' is not int"),
            ({"error_count": True}, "'error_count' is not int"),
            ({"created_at": "yesterday"}, "'created_at' is not ISO 8601"),
            ({"created_at": "2024-10-16T08:13:29"}, "'created_at' has no time zone"),
            ({"succeeded": {"index": 0}}, "'succeeded' is not list"),
            ({"failed": [{"index": 0}]}, "ItemResult: 'ok' is missing"),
            ({"failed": [{"ok": "no"}]}, "ItemResult: 'ok' is not bool"),
            ({"failed": ["x"]}, "ItemResult: expected a dict"),
            ({"raw": [1]}, "'raw' is not an object"),
        ],
    )
    def test_bad_data_is_a_value_error_naming_the_field(
        self, change: dict[str, Any], message: str
    ) -> None:
        data = {**decode_status(FAILED_REPLY, job_id="77").to_dict(), **change}
        with pytest.raises(ValueError, match=re.escape(message)):
            BatchStatus.from_dict(data)

    def test_missing_fields(self) -> None:
        with pytest.raises(ValueError, match="'job_id' is missing"):
            BatchStatus.from_dict({"state": "Running"})
        with pytest.raises(ValueError, match="expected a dict"):
            BatchStatus.from_dict([])  # type: ignore[arg-type]

    def test_item_result(self) -> None:
        result = ItemResult(index=3, ok=False, code=9004, message="dup", raw={"index": 3})
        assert result.to_dict() == {"index": 3, "ok": False, "code": 9004, "message": "dup"}
        assert ItemResult.from_dict(result.to_dict()) == result
        back = ItemResult.from_dict(json.loads(json.dumps(result.to_dict(raw=True))))
        assert (back, back.raw) == (result, {"index": 3})
        assert ItemResult.from_dict({"ok": True}) == ItemResult(index=None, ok=True)


_zones = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_moments = st.none() | st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2199, 12, 30), timezones=_zones
)
_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False)
)
_json_values = st.recursive(
    _json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_counts = st.integers(min_value=0, max_value=10**12)
_item_results = st.builds(
    ItemResult,
    index=st.none() | _counts,
    ok=st.booleans(),
    code=st.none() | st.integers(),
    message=st.none() | st.text(max_size=10),
    raw=_json_values,
)
_statuses = st.builds(
    BatchStatus,
    job_id=st.text(min_size=1, max_size=12),
    operation=st.none() | st.sampled_from(Operation),
    state=st.sampled_from(BatchState),
    state_word=st.text(max_size=12),
    total_count=st.none() | _counts,
    finished_count=_counts,
    error_count=_counts,
    created_at=_moments,
    started_at=_moments,
    succeeded=st.lists(_item_results, max_size=3),
    failed=st.lists(_item_results, max_size=3),
    raw=st.dictionaries(st.text(max_size=6), _json_values, max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(_statuses, st.booleans())
def test_to_dict_round_trips_through_json(status: BatchStatus, raw: bool) -> None:
    data = json.loads(json.dumps(status.to_dict(raw=raw)))
    back = BatchStatus.from_dict(data)
    assert back == status
    assert back.to_dict(raw=raw) == data
    if raw:
        assert back.raw == status.raw
        assert [r.raw for r in back.succeeded] == [r.raw for r in status.succeeded]
