"""Tests of local batch validation (gameball_async._schema) through create_batch.

Every refusal must name the item index and the field, and nothing may be sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gameball_async import (
    BalanceAdjustment,
    BalanceInquiry,
    Cashback,
    Customer,
    CustomerAttributes,
    Event,
    GameballSession,
    InvalidBatchError,
    Operation,
    Order,
    RateLimit,
    Redemption,
    _checks,
)
from gameball_async._checks import Kind, Spec, compile_validator, misspelling
from gameball_async._schema import encode_batch
from gameball_async.testing import FakeGameball
from gameball_async.testing._wire import parse_creation

UTC = timezone.utc
WHEN = datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=UTC)
NAIVE = datetime(2024, 10, 16, 8, 13, 29)
ISO = "2024-10-16T08:13:29.290Z"

#: A valid plain-dict item of each operation (strings for order-transactions).
VALID: dict[Operation, Any] = {
    Operation.CUSTOMERS: {"customerId": "c1", "email": "a@b.c"},
    Operation.ORDERS: {"customerId": "c1", "orderId": "o1", "orderDate": ISO, "totalPaid": 10},
    Operation.ORDER_TRANSACTIONS: "o1",
    Operation.BALANCE_INQUIRY: {"customerId": "c1"},
    Operation.BALANCE_ADJUSTMENT: {"customerId": "c1", "amount": -5},
    Operation.CASHBACK: {
        "customerId": "c1",
        "transactionId": "t1",
        "transactionTime": ISO,
        "amount": 3.5,
    },
    Operation.REDEEM: {"customerId": "c1", "transactionId": "t1", "transactionTime": ISO},
    Operation.EVENTS: {"customerId": "c1", "events": {"purchase": {"sku": "x"}}},
}

REQUIRED: dict[Operation, tuple[str, ...]] = {
    Operation.CUSTOMERS: ("customerId",),
    Operation.ORDERS: ("customerId", "orderId", "orderDate", "totalPaid"),
    Operation.BALANCE_INQUIRY: ("customerId",),
    Operation.BALANCE_ADJUSTMENT: ("customerId", "amount"),
    Operation.CASHBACK: ("customerId", "transactionId", "transactionTime", "amount"),
    Operation.REDEEM: ("customerId", "transactionId", "transactionTime"),
    Operation.EVENTS: ("customerId", "events"),
}


def _without(item: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != key}


def _with(op: Operation, **fields: Any) -> dict[str, Any]:
    return {**VALID[op], **fields}


def _cashback(**overrides: Any) -> Cashback:
    fields: dict[str, Any] = {
        "customer_id": "c1",
        "transaction_id": "t1",
        "transaction_time": WHEN,
        "amount": 1.0,
    }
    fields.update(overrides)
    return Cashback(**fields)


# (operation, bad item placed at index 1 after a valid one, field named)
BAD_ITEMS: list[tuple[Operation, Any, str | None]] = [
    # missing required fields, every one of every operation
    *[(op, _without(VALID[op], key), key) for op, keys in REQUIRED.items() for key in keys],
    (Operation.CASHBACK, _with(Operation.CASHBACK, amount=None), "amount"),
    # wrong types
    (Operation.CUSTOMERS, _with(Operation.CUSTOMERS, customerId=123), "customerId"),
    (Operation.CUSTOMERS, _with(Operation.CUSTOMERS, customerId="   "), "customerId"),
    (Operation.CUSTOMERS, _with(Operation.CUSTOMERS, guest="yes"), "guest"),
    (Operation.CUSTOMERS, _with(Operation.CUSTOMERS, email=5), "email"),
    (Operation.CUSTOMERS, _with(Operation.CUSTOMERS, customerAttributes=[1]), "customerAttributes"),
    (
        Operation.CUSTOMERS,
        _with(Operation.CUSTOMERS, customerAttributes={"channel": "fax"}),
        "customerAttributes.channel",
    ),
    (
        Operation.CUSTOMERS,
        _with(Operation.CUSTOMERS, customerAttributes={"utms": [1]}),
        "customerAttributes.utms",
    ),
    (
        Operation.CUSTOMERS,
        _with(Operation.CUSTOMERS, customerAttributes={"totalOrders": 1.5}),
        "customerAttributes.totalOrders",
    ),
    (Operation.ORDERS, _with(Operation.ORDERS, totalPaid="12"), "totalPaid"),
    (Operation.ORDERS, _with(Operation.ORDERS, orderId=7), "orderId"),
    (Operation.ORDERS, _with(Operation.ORDERS, orderDate="soon"), "orderDate"),
    (Operation.ORDERS, _with(Operation.ORDERS, orderDate=1729066409), "orderDate"),
    (Operation.REDEEM, _with(Operation.REDEEM, points=1.5), "points"),
    (Operation.REDEEM, _with(Operation.REDEEM, points=True), "points"),
    (Operation.BALANCE_ADJUSTMENT, _with(Operation.BALANCE_ADJUSTMENT, reason=1), "reason"),
    (Operation.EVENTS, _with(Operation.EVENTS, events={"purchase": "x"}), "events"),
    (Operation.EVENTS, _with(Operation.EVENTS, events=["purchase"]), "events"),
    # naive datetimes: record, dict, nested record, ISO string without a zone, extra
    (Operation.CASHBACK, _cashback(transaction_time=NAIVE), "transactionTime"),
    (Operation.ORDERS, _with(Operation.ORDERS, orderDate=NAIVE), "orderDate"),
    (
        Operation.REDEEM,
        Redemption(customer_id="c", transaction_id="t", transaction_time=NAIVE),
        "transactionTime",
    ),
    (
        Operation.CASHBACK,
        _with(Operation.CASHBACK, transactionTime="2024-10-16T08:13:29"),
        "transactionTime",
    ),
    (Operation.ORDERS, _with(Operation.ORDERS, orderDate="2024-10-16T08:13:29.290"), "orderDate"),
    (
        Operation.CUSTOMERS,
        Customer(customer_id="c", customer_attributes=CustomerAttributes(join_date=NAIVE)),
        "customerAttributes.joinDate",
    ),
    (Operation.CASHBACK, _cashback(extra={"meta": {"when": NAIVE}}), "meta.when"),
    (Operation.ORDERS, _with(Operation.ORDERS, lineItems=[{"at": NAIVE}]), "lineItems[0].at"),
    # non-finite and boolean numbers
    (
        Operation.BALANCE_ADJUSTMENT,
        BalanceAdjustment(customer_id="c", amount=float("nan")),
        "amount",
    ),
    (Operation.CASHBACK, _cashback(amount=float("inf")), "amount"),
    (Operation.CASHBACK, _cashback(amount=float("-inf")), "amount"),
    (Operation.ORDERS, _with(Operation.ORDERS, totalPaid=float("nan")), "totalPaid"),
    (
        Operation.BALANCE_ADJUSTMENT,
        _with(Operation.BALANCE_ADJUSTMENT, amount=Decimal("NaN")),
        "amount",
    ),
    (Operation.CASHBACK, _cashback(amount=True), "amount"),
    (Operation.ORDERS, _with(Operation.ORDERS, totalPaid=False), "totalPaid"),
    (Operation.CASHBACK, _cashback(extra={"bonus": float("nan")}), "bonus"),
    (Operation.CASHBACK, _cashback(extra={"blob": object()}), "blob"),
    # the wrong kind of item altogether
    (Operation.CASHBACK, Order(customer_id="c", order_id="o", order_date=WHEN, total_paid=1), None),
    (Operation.ORDERS, _cashback(), None),
    (Operation.BALANCE_INQUIRY, BalanceAdjustment(customer_id="c", amount=1), None),
    (Operation.EVENTS, 42, None),
    (Operation.CUSTOMERS, "c1", None),
    (Operation.ORDER_TRANSACTIONS, 123, None),
    (Operation.ORDER_TRANSACTIONS, "", None),
    (Operation.ORDER_TRANSACTIONS, None, None),
    (Operation.ORDER_TRANSACTIONS, {"orderId": "o1"}, None),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeGameball]:
    async with FakeGameball(enforce_rate_limit=False) as server:
        yield server


@pytest.fixture
async def session(fake: FakeGameball) -> AsyncIterator[GameballSession]:
    async with GameballSession(
        fake.api_key, fake.secret_key, base_url=fake.base_url, rate_limit=RateLimit.disabled()
    ) as gb:
        yield gb


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("operation", "bad", "field"),
    BAD_ITEMS,
    ids=[f"{n}-{op.value}-{field}" for n, (op, _, field) in enumerate(BAD_ITEMS)],
)
async def test_bad_item_refused_before_sending(
    fake: FakeGameball,
    session: GameballSession,
    operation: Operation,
    bad: Any,
    field: str | None,
) -> None:
    items = [VALID[operation], bad, VALID[operation]]
    with pytest.raises(InvalidBatchError) as info:
        await session.create_batch(operation.value, items)
    error = info.value
    assert error.index == 1
    assert str(error).startswith("item 1:")
    assert error.field == field
    if field is not None:
        assert repr(field) in str(error)
    assert fake.counts["requests"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("operation", "items"),
    [
        ("cashback", []),
        ("cashback", [VALID[Operation.CASHBACK]] * 1001),
        ("order-transactions", [f"o{i}" for i in range(1001)]),
        ("refunds", [VALID[Operation.CASHBACK]]),
    ],
    ids=["empty", "1001", "1001-strings", "unknown-operation"],
)
async def test_bad_batch_refused_before_sending(
    fake: FakeGameball, session: GameballSession, operation: str, items: list[Any]
) -> None:
    with pytest.raises(InvalidBatchError) as info:
        await session.create_batch(operation, items)
    assert info.value.index is None
    assert info.value.field is None
    if items and operation != "refunds":
        assert "1000" in str(info.value)
    assert fake.counts["requests"] == 0


@pytest.mark.anyio
async def test_generator_items_validated_too(fake: FakeGameball, session: GameballSession) -> None:
    items = (VALID[Operation.BALANCE_INQUIRY] if i != 3 else {"x": 1} for i in range(5))
    with pytest.raises(InvalidBatchError) as info:
        await session.create_batch(Operation.BALANCE_INQUIRY, items)
    assert (info.value.index, info.value.field) == (3, "customerId")
    assert fake.counts["requests"] == 0


@pytest.mark.anyio
async def test_valid_batch_of_1000_is_sent(fake: FakeGameball, session: GameballSession) -> None:
    job = await session.create_batch("order-transactions", [f"o{i}" for i in range(1000)])
    assert int(job.job_id) in fake.jobs
    assert fake.counts["create"] == 1


def test_invalid_batch_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="at least one item"):
        encode_batch(Operation.CASHBACK, [])


# -- properties ----------------------------------------------------------------

_ids = st.text(min_size=1, max_size=20).filter(lambda s: bool(s.strip()))
_text = st.text(max_size=20)
_numbers = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
)
_zones = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=_zones
)
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _text,
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=8,
)
# extra keys that cannot collide with typed fields (those are refused at build time)
_extras = st.dictionaries(_text.map(lambda s: "x_" + s), _json, max_size=3)
_strings = st.lists(_text, max_size=3).map(tuple)

_attributes = st.builds(
    CustomerAttributes,
    display_name=st.none() | _text,
    email=st.none() | _text,
    date_of_birth=st.none() | st.dates(),
    join_date=st.none() | _moments,
    utms=st.none() | _strings,
    total_spent=st.none() | _numbers,
    total_orders=st.none() | st.integers(min_value=0, max_value=10**6),
    channel=st.none() | st.sampled_from(["mobile", "pos", "web", "callcenter"]),
    custom=st.none() | st.dictionaries(_text, _json, max_size=3),
    extra=_extras,
)

RECORD_STRATEGIES: dict[Operation, st.SearchStrategy[Any]] = {
    Operation.CUSTOMERS: st.builds(
        Customer,
        customer_id=_ids,
        email=st.none() | _text,
        guest=st.none() | st.booleans(),
        customer_attributes=st.none() | _attributes,
        extra=_extras,
    ),
    Operation.ORDERS: st.builds(
        Order,
        customer_id=_ids,
        order_id=_ids,
        order_date=_moments,
        total_paid=_numbers,
        extra=_extras,
    ),
    Operation.ORDER_TRANSACTIONS: _ids,
    Operation.BALANCE_INQUIRY: st.builds(BalanceInquiry, customer_id=_ids, extra=_extras),
    Operation.BALANCE_ADJUSTMENT: st.builds(
        BalanceAdjustment,
        customer_id=_ids,
        amount=_numbers,
        reason=st.none() | _text,
        extra=_extras,
    ),
    Operation.CASHBACK: st.builds(
        Cashback,
        customer_id=_ids,
        transaction_id=_ids,
        transaction_time=_moments,
        amount=_numbers,
        extra=_extras,
    ),
    Operation.REDEEM: st.builds(
        Redemption,
        customer_id=_ids,
        transaction_id=_ids,
        transaction_time=_moments,
        amount=st.none() | _numbers,
        points=st.none() | st.integers(0, 10**9),
        hold_reference=st.none() | _text,
        extra=_extras,
    ),
    Operation.EVENTS: st.builds(
        Event,
        customer_id=_ids,
        events=st.dictionaries(
            _text.filter(bool), st.dictionaries(_text, _json, max_size=3), min_size=1, max_size=3
        ),
        extra=_extras,
    ),
}

_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_DATETIME_KEYS = ("orderDate", "transactionTime")


@st.composite
def _batches(draw: st.DrawFn) -> tuple[Operation, list[Any]]:
    operation = draw(st.sampled_from(list(Operation)))
    items = draw(st.lists(RECORD_STRATEGIES[operation], min_size=1, max_size=4))
    return operation, items


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches())
def test_valid_records_always_encode(batch: tuple[Operation, list[Any]]) -> None:
    operation, items = batch
    body = encode_batch(operation, items)
    decoded = json.loads(body)
    assert list(decoded) == ["body"]
    assert len(decoded["body"]) == len(items)
    # what the fake server (a faithful copy of the API's checks) would accept
    assert len(parse_creation(body, operation.value)) == len(items)
    for wire in decoded["body"]:
        if isinstance(wire, dict):
            for key in _DATETIME_KEYS:
                if key in wire:
                    assert _Z.match(wire[key]), wire[key]


@st.composite
def _missing_required(draw: st.DrawFn) -> tuple[Operation, str, dict[str, Any]]:
    operation = draw(st.sampled_from(list(REQUIRED)))
    record = draw(RECORD_STRATEGIES[operation])
    wire = json.loads(encode_batch(operation, [record]))["body"][0]
    key = draw(st.sampled_from(REQUIRED[operation]))
    del wire[key]
    return operation, key, wire


@settings(max_examples=100, deadline=None)
@given(_missing_required(), st.integers(min_value=0, max_value=3))
def test_dict_missing_a_required_key_is_refused(
    case: tuple[Operation, str, dict[str, Any]], position: int
) -> None:
    operation, key, wire = case
    items = [VALID[operation]] * position + [wire]
    with pytest.raises(InvalidBatchError) as info:
        encode_batch(operation, items)
    assert info.value.index == position
    assert info.value.field == key


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z])([A-Z])", lambda m: "_" + m.group(1).lower(), name)


SNAKE_CASES = [(op, key) for op, keys in REQUIRED.items() for key in keys if _snake(key) != key]


class TestSpellingHint:
    """A required field spelt the Python way gets the wire name in the error."""

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("operation", "key"), SNAKE_CASES, ids=[f"{op.value}-{key}" for op, key in SNAKE_CASES]
    )
    async def test_snake_case_key_names_the_camel_case_one(
        self, fake: FakeGameball, session: GameballSession, operation: Operation, key: str
    ) -> None:
        bad = _without(VALID[operation], key)
        bad[_snake(key)] = VALID[operation][key]
        with pytest.raises(InvalidBatchError) as info:
            await session.create_batch(operation, [VALID[operation], bad])
        assert str(info.value) == (
            f"item 1: required field {key!r} is missing "
            f"(found {_snake(key)!r}: use the camelCase wire name {key!r})"
        )
        assert (info.value.index, info.value.field) == (1, key)
        assert fake.counts["requests"] == 0

    def test_other_spellings_and_no_hint_without_one(self) -> None:
        for spelt in ("CustomerID", "customer-id", "CUSTOMER_ID"):
            with pytest.raises(InvalidBatchError, match=f"found '{spelt}'"):
                encode_batch(Operation.BALANCE_INQUIRY, [{spelt: "c1"}])
        with pytest.raises(InvalidBatchError) as info:
            encode_batch(Operation.BALANCE_INQUIRY, [{"customer": "c1", "id": "c1"}])
        assert str(info.value) == "item 0: required field 'customerId' is missing"

    def test_nested_fields_name_the_nested_key(self) -> None:
        validate = compile_validator(
            [
                Spec("customerId", Kind.ID, required=True),
                Spec("customerAttributes", Kind.ATTRIBUTES),
            ],
            attributes=[Spec("firstName", Kind.STR, required=True)],
        )
        wire = {"customerId": "c1", "customerAttributes": {"first_name": "Ada"}}
        with pytest.raises(InvalidBatchError) as info:
            validate(4, wire, False)
        assert str(info.value) == (
            "item 4: required field 'customerAttributes.firstName' is missing (found "
            "'customerAttributes.first_name': use the camelCase wire name "
            "'customerAttributes.firstName')"
        )
        assert info.value.field == "customerAttributes.firstName"

    def test_misspelling(self) -> None:
        assert misspelling("customerId", ["amount", "customer_id"]) == "customer_id"
        assert misspelling("customerId", ["customerId"]) is None  # present, only None-valued
        assert misspelling("customerId", [1, "customer", "customer_ids"]) is None

    def test_the_search_runs_on_the_error_path_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def fail(*_args: object) -> None:
            raise AssertionError("searched for a misspelling in a valid item")

        monkeypatch.setattr(_checks, "misspelling", fail)
        items = [dict(VALID[Operation.CASHBACK], extra_key=n) for n in range(1000)]
        assert len(json.loads(encode_batch(Operation.CASHBACK, items))["body"]) == 1000
