"""The one-pass record encoders send what the two passes they replace sent.

Before them a record was unstructured by the cattrs converter into a camelCase
dict, and that dict was checked by the operation's dict validator. For records
of every operation, with every field drawn from valid and invalid values of
its kind, the encoder must give the same wire JSON, or the same refusal (the
same message, index and field), as those two passes.
``GAMEBALL_TEST_EXAMPLES=6000`` draws more records than the suite's 300 per
operation (run so once when the encoders change).
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gameball_async import (
    Cashback,
    Customer,
    CustomerAttributes,
    Event,
    InvalidBatchError,
    Operation,
)
from gameball_async._records import Kind, nested_record, typed_fields
from gameball_async._schema import _ENCODERS, _VALIDATORS, RECORD_FOR, encode_batch
from gameball_async._wire import dumps, unstructure_record

UTC_NOW = datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=timezone.utc)
# values of the wrong type, as an untyped caller passes them
NOTHING: Any = None
FIVE: Any = 5
TEXT: Any = "abc"


class Text(str):
    """A str subclass: a string all the same."""


VALUES: dict[Kind, list[Any]] = {
    Kind.ID: ["c1", Text("c2"), "", "  ", 5],
    Kind.STR: ["x", Text("y"), "", 3],
    Kind.NUMBER: [1, 2.5, -0.0, float("nan"), float("inf"), True, Decimal("1.5"), "1"],
    Kind.INT: [3, 2.5, True, "3"],
    Kind.BOOL: [True, False, 1, "yes"],
    Kind.DATETIME: [
        UTC_NOW,
        UTC_NOW + timedelta(microseconds=1),
        UTC_NOW.astimezone(timezone(timedelta(hours=2))),
        UTC_NOW.replace(tzinfo=None),
        "2024-10-16T08:13:29.290Z",
        Text("2024-10-16T08:13:29+02:00"),
        "2024-10-16T08:13:29",
        "20241016T081329Z",
        "garbage",
        5,
    ],
    Kind.DATE: [date(2020, 1, 2), "2020-01-02", Text("2020-01-03"), UTC_NOW, 5],
    Kind.OBJECT: [{"a": 1}, types.MappingProxyType({"b": UTC_NOW}), {}, 5, "x"],
    Kind.EVENTS: [{"e": {"k": 1}}, {}, {"e": 5}, {"": {}}, 5],
    # a str is left out here: the converter split it into
    # characters and sent them (see the test of wrong types below)
    Kind.STRINGS: [("a", "b"), ["a"], (), ("a", 1), 5],
    Kind.CHANNEL: ["web", "pos", "fax", 5],
}


def _attributes() -> st.SearchStrategy[Any]:
    return st.one_of(
        _records(CustomerAttributes),
        st.sampled_from([{"email": "x"}, {"email": 5}, {"joinDate": UTC_NOW}, {}, 5, "x"]),
    )


def _value(kind: Kind) -> st.SearchStrategy[Any]:
    if kind is Kind.ATTRIBUTES:
        return st.deferred(_attributes)
    return st.sampled_from(VALUES[kind])


def _records(cls: type[Any]) -> st.SearchStrategy[Any]:
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for attribute, spec in typed_fields(cls):
        # mostly valid-looking, None (absent) often, every value of the kind sometimes
        fields[attribute] = st.one_of(st.none(), _value(spec.kind))
    fields["extra"] = st.sampled_from([{}, {"custom1": 1}, {"note": UTC_NOW}])
    return st.builds(cls, **fields)


OPERATIONS = [op for op in RECORD_FOR if op is not Operation.ORDER_TRANSACTIONS]


def _two_passes(operation: Operation, index: int, record: Any) -> Any:
    return _VALIDATORS[operation](index, unstructure_record(record), True)


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        wire = call()
    except InvalidBatchError as exc:
        # the converter made a tuple a list before it was checked: the refusal
        # named a type the caller never passed; now it names the caller's
        return "refused", (str(exc).replace("got tuple", "got list"), exc.index, exc.field)
    except Exception as exc:  # the converter's crash on a value of the wrong type
        return "crashed", type(exc).__name__
    try:
        return "sent", dumps(wire)
    except (TypeError, ValueError) as exc:
        return "unencodable", type(exc).__name__


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.value)
@settings(max_examples=int(os.environ.get("GAMEBALL_TEST_EXAMPLES", "300")), deadline=None)
@given(data=st.data(), index=st.integers(0, 999))
def test_the_encoder_sends_what_the_converter_and_the_validator_sent(
    operation: Operation, data: st.DataObject, index: int
) -> None:
    record = data.draw(_records(RECORD_FOR[operation]))
    before = _outcome(lambda: _two_passes(operation, index, record))
    now = _outcome(lambda: _ENCODERS[operation](index, record))
    if before[0] == "crashed":
        # cattrs raised AttributeError or TypeError on such a value: now it is
        # refused by name, or sent when it is a mapping of the nested object
        assert now[0] == "refused" or isinstance(
            getattr(record, "customer_attributes", None), Mapping
        ), now
    else:
        assert now == before


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        (Event(customer_id="c", events=NOTHING), "events", "required field 'events' is missing"),
        (Event(customer_id="c", events=FIVE), "events", "must be a non-empty object"),
        (
            Customer(customer_id="c", customer_attributes=CustomerAttributes(custom=FIVE)),
            "customerAttributes.custom",
            "must be an object (mapping), got int",
        ),
        (
            Customer(customer_id="c", customer_attributes=CustomerAttributes(utms=FIVE)),
            "customerAttributes.utms",
            "must be a list of strings, got int",
        ),
        (
            Customer(customer_id="c", customer_attributes=CustomerAttributes(devices=TEXT)),
            "customerAttributes.devices",
            "must be a list of strings, got str",
        ),
    ],
)
def test_a_record_field_of_the_wrong_type_is_refused_by_name(
    record: Any, field: str, words: str
) -> None:
    # the converter used to crash on these with AttributeError or TypeError (and
    # sent a str given for a list of strings as its characters)
    operation = Operation.EVENTS if isinstance(record, Event) else Operation.CUSTOMERS
    with pytest.raises(InvalidBatchError, match=re.escape(words)) as caught:
        encode_batch(operation, [record])
    assert (caught.value.index, caught.value.field) == (0, field)


def test_a_shared_timestamp_is_formatted_once_and_a_new_one_again() -> None:
    later = UTC_NOW + timedelta(seconds=1)
    records = [
        Cashback(customer_id="c", transaction_id=f"t{n}", transaction_time=when, amount=1)
        for n, when in enumerate([UTC_NOW, UTC_NOW, later, UTC_NOW])
    ]
    body = encode_batch(Operation.CASHBACK, records)
    assert body.count(b'"2024-10-16T08:13:29.290Z"') == 3
    assert body.count(b'"2024-10-16T08:13:30.290Z"') == 1


def _full(cls: type[Any]) -> Any:
    values = {
        attribute: _full(CustomerAttributes)
        if spec.kind is Kind.ATTRIBUTES
        else VALUES[spec.kind][0]
        for attribute, spec in typed_fields(cls)
    }
    return cls(**values)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.value)
def test_every_field_of_a_full_record_reaches_the_wire(operation: Operation) -> None:
    # a field the generator left out would be dropped on both sides of the test above
    cls = RECORD_FOR[operation]
    wire = _ENCODERS[operation](0, _full(cls))
    assert set(wire) == {spec.name for _, spec in typed_fields(cls)}
    nested = nested_record(cls)
    if nested is not None:
        (inner,) = [v for v in wire.values() if isinstance(v, dict)]
        assert set(inner) == {spec.name for _, spec in typed_fields(nested)}
