"""The wire schema has one source, the record classes: what derives from it is pinned.

The tables below are the schema as the package stated it by hand before the
record classes became its source (issue 10.4). The derived specs must keep
their order, camelCase names, kinds and required flags: the CLI types CSV
columns from them and the validators word refusals with them.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Any

import attrs
import pytest

from gameball_async import (
    BalanceAdjustment,
    BalanceInquiry,
    Cashback,
    Customer,
    CustomerAttributes,
    Event,
    InvalidBatchError,
    Operation,
    Order,
    Redemption,
    _records,
)
from gameball_async._checks import Kind, Spec
from gameball_async._records import RECORD_CLASSES, record, typed_fields, wire, wire_specs
from gameball_async._schema import RECORD_FOR, _compile
from gameball_async._seam import attribute_fields, operation_fields
from gameball_async._wire import RECORD_CLASSES as CONVERTED
from gameball_async._wire import converter, dumps, unstructure_record

PINNED_ATTRIBUTES = (
    Spec("displayName", Kind.STR),
    Spec("firstName", Kind.STR),
    Spec("lastName", Kind.STR),
    Spec("email", Kind.STR),
    Spec("gender", Kind.STR),
    Spec("mobile", Kind.STR),
    Spec("dateOfBirth", Kind.DATE),
    Spec("joinDate", Kind.DATETIME),
    Spec("country", Kind.STR),
    Spec("city", Kind.STR),
    Spec("zip", Kind.STR),
    Spec("preferredLanguage", Kind.STR),
    Spec("source", Kind.STR),
    Spec("utms", Kind.STRINGS),
    Spec("devices", Kind.STRINGS),
    Spec("paymentMethods", Kind.STRINGS),
    Spec("totalSpent", Kind.NUMBER),
    Spec("lastOrderDate", Kind.DATETIME),
    Spec("totalOrders", Kind.INT),
    Spec("avgOrderAmount", Kind.NUMBER),
    Spec("channel", Kind.CHANNEL),
    Spec("custom", Kind.OBJECT),
)

PINNED: dict[Operation, tuple[Spec, ...]] = {
    Operation.CUSTOMERS: (
        Spec("customerId", Kind.ID, required=True),
        Spec("email", Kind.STR),
        Spec("mobile", Kind.STR),
        Spec("deviceToken", Kind.STR),
        Spec("osType", Kind.STR),
        Spec("referrerCode", Kind.STR),
        Spec("guest", Kind.BOOL),
        Spec("customerAttributes", Kind.ATTRIBUTES),
    ),
    Operation.ORDERS: (
        Spec("customerId", Kind.ID, required=True),
        Spec("orderId", Kind.ID, required=True),
        Spec("orderDate", Kind.DATETIME, required=True),
        Spec("totalPaid", Kind.NUMBER, required=True),
    ),
    Operation.ORDER_TRANSACTIONS: (),
    Operation.BALANCE_INQUIRY: (Spec("customerId", Kind.ID, required=True),),
    Operation.BALANCE_ADJUSTMENT: (
        Spec("customerId", Kind.ID, required=True),
        Spec("amount", Kind.NUMBER, required=True),
        Spec("reason", Kind.STR),
    ),
    Operation.CASHBACK: (
        Spec("customerId", Kind.ID, required=True),
        Spec("transactionId", Kind.ID, required=True),
        Spec("transactionTime", Kind.DATETIME, required=True),
        Spec("amount", Kind.NUMBER, required=True),
        Spec("email", Kind.STR),
        Spec("mobile", Kind.STR),
    ),
    Operation.REDEEM: (
        Spec("customerId", Kind.ID, required=True),
        Spec("transactionId", Kind.ID, required=True),
        Spec("transactionTime", Kind.DATETIME, required=True),
        Spec("amount", Kind.NUMBER),
        Spec("points", Kind.INT),
        Spec("holdReference", Kind.STR),
        Spec("email", Kind.STR),
        Spec("mobile", Kind.STR),
    ),
    Operation.EVENTS: (
        Spec("customerId", Kind.ID, required=True),
        Spec("events", Kind.EVENTS, required=True),
    ),
}

PINNED_RECORDS: dict[Operation, type[Any]] = {
    Operation.CUSTOMERS: Customer,
    Operation.ORDERS: Order,
    Operation.BALANCE_INQUIRY: BalanceInquiry,
    Operation.BALANCE_ADJUSTMENT: BalanceAdjustment,
    Operation.CASHBACK: Cashback,
    Operation.REDEEM: Redemption,
    Operation.EVENTS: Event,
}


@pytest.mark.parametrize("operation", list(Operation), ids=str)
def test_operation_fields_keep_their_order_names_and_kinds(operation: Operation) -> None:
    assert operation_fields(operation) == PINNED[operation]


def test_attribute_fields_keep_their_order_names_and_kinds() -> None:
    assert attribute_fields() == PINNED_ATTRIBUTES


def test_each_operation_takes_the_record_class_it_took() -> None:
    assert RECORD_FOR == PINNED_RECORDS


def test_the_converter_knows_every_record_class() -> None:
    assert (CustomerAttributes, *PINNED_RECORDS.values()) == CONVERTED
    assert tuple(RECORD_CLASSES) == CONVERTED


@pytest.mark.parametrize("cls", CONVERTED, ids=lambda cls: cls.__name__)
def test_each_field_states_its_kind_and_is_required_when_it_has_no_default(
    cls: type[Any],
) -> None:
    specs = {spec.name: spec for spec in wire_specs(cls)}
    for field in attrs.fields(cls):
        if field.name == "extra":
            continue
        spec = specs.pop(_records.camel(field.name))
        assert field.metadata[_records._KIND] is spec.kind
        assert spec.required is (field.default is attrs.NOTHING)
    assert specs == {}


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Declare test record classes without adding them to the package's registry."""
    monkeypatch.setattr(_records, "RECORD_CLASSES", [])
    monkeypatch.setattr(_records, "OPERATION_RECORDS", {})
    monkeypatch.setattr(_records, "_TYPED", dict(_records._TYPED))


@pytest.mark.usefixtures("registry")
def test_a_field_without_a_kind_is_refused_where_the_class_is_declared() -> None:
    with pytest.raises(TypeError, match=r"Probe\.note has no wire kind"):

        @record("probe")
        @attrs.frozen(kw_only=True)
        class Probe:
            probe_id: str = attrs.field(metadata=wire(Kind.ID))
            note: str | None = None

    assert _records.OPERATION_RECORDS == {}


@pytest.mark.usefixtures("registry")
def test_an_operation_takes_one_record_class() -> None:
    @record("probe")
    @attrs.frozen(kw_only=True)
    class First:
        probe_id: str = attrs.field(metadata=wire(Kind.ID))

    with pytest.raises(TypeError, match="already takes"):

        @record("probe")
        @attrs.frozen(kw_only=True)
        class Second:
            probe_id: str = attrs.field(metadata=wire(Kind.ID))

    assert {"probe": First} == _records.OPERATION_RECORDS


def test_a_nested_record_goes_with_kind_attributes_only() -> None:
    with pytest.raises(TypeError):
        wire(Kind.ATTRIBUTES)
    with pytest.raises(TypeError):
        wire(Kind.OBJECT, CustomerAttributes)


@pytest.mark.usefixtures("registry")
def test_a_new_field_reaches_the_validator_and_the_wire_from_its_declaration() -> None:
    @record("probe")
    @attrs.frozen(kw_only=True)
    class Probe:
        probe_id: str = attrs.field(metadata=wire(Kind.ID))
        taken_at: datetime = attrs.field(metadata=wire(Kind.DATETIME))
        loyalty_tier: int | None = attrs.field(default=None, metadata=wire(Kind.INT))
        profile: CustomerAttributes | None = attrs.field(
            default=None, metadata=wire(Kind.ATTRIBUTES, CustomerAttributes)
        )
        extra: dict[str, Any] = attrs.field(factory=dict)

    assert wire_specs(Probe) == (
        Spec("probeId", Kind.ID, required=True),
        Spec("takenAt", Kind.DATETIME, required=True),
        Spec("loyaltyTier", Kind.INT),
        Spec("profile", Kind.ATTRIBUTES),
    )
    assert [name for name, _ in typed_fields(Probe)] == [
        "probe_id",
        "taken_at",
        "loyalty_tier",
        "profile",
    ]
    validate = _compile(Probe)
    when = datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=timezone.utc)
    assert validate(0, {"probeId": "p", "takenAt": when}, False) == {
        "probeId": "p",
        "takenAt": "2024-10-16T08:13:29.290Z",
    }
    with pytest.raises(InvalidBatchError, match="required field 'takenAt' is missing"):
        validate(0, {"probeId": "p"}, False)
    with pytest.raises(InvalidBatchError, match="field 'loyaltyTier' must be an integer"):
        validate(0, {"probeId": "p", "takenAt": when, "loyaltyTier": "gold"}, False)
    with pytest.raises(InvalidBatchError, match=r"field 'profile\.totalOrders' must be"):
        validate(0, {"probeId": "p", "takenAt": when, "profile": {"totalOrders": "1"}}, False)


SAMPLES: dict[Kind, Any] = {
    Kind.ID: "x",
    Kind.STR: "s",
    Kind.NUMBER: 1.5,
    Kind.INT: 2,
    Kind.BOOL: True,
    Kind.DATETIME: datetime(2024, 10, 16, tzinfo=timezone.utc),
    Kind.DATE: date(2024, 10, 16),
    Kind.OBJECT: {"a": 1},
    Kind.EVENTS: {"purchase": {}},
    Kind.STRINGS: ("a",),
    Kind.ATTRIBUTES: CustomerAttributes(city="Cairo"),
    Kind.CHANNEL: "web",
}


@pytest.mark.parametrize("cls", CONVERTED, ids=lambda cls: cls.__name__)
def test_the_converter_writes_every_field_under_its_derived_wire_name(cls: type[Any]) -> None:
    record_value = cls(**{name: SAMPLES[spec.kind] for name, spec in typed_fields(cls)})
    assert list(unstructure_record(record_value)) == [spec.name for spec in wire_specs(cls)]
    # every derived name is read back into its field, none lands in ``extra``
    assert converter.structure(json.loads(dumps(record_value)), cls).extra == {}
