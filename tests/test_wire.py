"""Tests of gameball_async._wire: the converter, datetimes and JSON encoding."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
import cattrs
import pytest

from gameball_async import (
    BalanceAdjustment,
    BalanceInquiry,
    Cashback,
    Customer,
    CustomerAttributes,
    Event,
    Order,
    Redemption,
)
from gameball_async._models import camel
from gameball_async._wire import (
    converter,
    dumps,
    format_datetime,
    parse_datetime,
    structure_record,
    unstructure_record,
)

UTC = timezone.utc
WHEN = datetime(2024, 10, 16, 8, 13, 29, 290999, tzinfo=UTC)
WHEN_MS = WHEN.replace(microsecond=290000)


def _datetime_fields(record: Any) -> list[str]:
    return [a.name for a in attrs.fields(type(record)) if getattr(record, a.name) == WHEN]


def _wire_json(record: Any) -> Any:
    return json.loads(dumps(unstructure_record(record)))


class TestUnstructure:
    def test_camel(self) -> None:
        assert camel("customer_id") == "customerId"
        assert camel("avg_order_amount") == "avgOrderAmount"
        assert camel("zip") == "zip"

    def test_camel_case_and_none_omitted(self) -> None:
        record = Cashback(customer_id="c1", transaction_id="t1", transaction_time=WHEN, amount=2.5)
        wire = unstructure_record(record)
        assert wire == {
            "customerId": "c1",
            "transactionId": "t1",
            "transactionTime": WHEN,  # still an object until dumps
            "amount": 2.5,
        }
        assert converter.unstructure(record) == wire

    def test_falsy_values_are_not_omitted(self) -> None:
        record = Customer(customer_id="c1", guest=False, email="")
        assert unstructure_record(record) == {"customerId": "c1", "guest": False, "email": ""}
        adjustment = BalanceAdjustment(customer_id="c1", amount=0)
        assert unstructure_record(adjustment) == {"customerId": "c1", "amount": 0}

    def test_nested_attributes_and_extras_merged(self) -> None:
        record = Customer(
            customer_id="c1",
            device_token="tok",
            os_type="ios",
            customer_attributes=CustomerAttributes(
                display_name="Ann",
                date_of_birth=date(1990, 5, 1),
                utms=("a", "b"),
                total_orders=3,
                custom={"tier": "gold"},
                extra={"loyaltyId": 7},
            ),
            extra={"newTopLevel": {"x": [1, 2]}},
        )
        assert _wire_json(record) == {
            "customerId": "c1",
            "deviceToken": "tok",
            "osType": "ios",
            "customerAttributes": {
                "displayName": "Ann",
                "dateOfBirth": "1990-05-01",
                "utms": ["a", "b"],
                "totalOrders": 3,
                "custom": {"tier": "gold"},
                "loyaltyId": 7,
            },
            "newTopLevel": {"x": [1, 2]},
        }

    @pytest.mark.parametrize(
        ("record", "keys"),
        [
            (
                Order(customer_id="c", order_id="o", order_date=WHEN, total_paid=1, extra={"a": 1}),
                {"customerId", "orderId", "orderDate", "totalPaid", "a"},
            ),
            (BalanceInquiry(customer_id="c"), {"customerId"}),
            (
                BalanceAdjustment(customer_id="c", amount=1, reason="r"),
                {"customerId", "amount", "reason"},
            ),
            (
                Redemption(
                    customer_id="c",
                    transaction_id="t",
                    transaction_time=WHEN,
                    points=2,
                    hold_reference="h",
                ),
                {"customerId", "transactionId", "transactionTime", "points", "holdReference"},
            ),
            (Event(customer_id="c", events={"e": {"k": 1}}), {"customerId", "events"}),
        ],
    )
    def test_wire_keys(self, record: Any, keys: set[str]) -> None:
        assert set(_wire_json(record)) == keys


class TestDatetimesOut:
    def test_utc_milliseconds_z(self) -> None:
        assert format_datetime(WHEN) == "2024-10-16T08:13:29.290Z"
        assert format_datetime(WHEN.replace(microsecond=0)) == "2024-10-16T08:13:29.000Z"

    @pytest.mark.parametrize(
        ("moment", "expected"),
        [
            (
                datetime(2024, 10, 16, 10, 13, 29, 5000, tzinfo=timezone(timedelta(hours=2))),
                "2024-10-16T08:13:29.005Z",
            ),
            (
                datetime(2024, 12, 31, 20, 30, tzinfo=timezone(timedelta(hours=-5))),
                "2025-01-01T01:30:00.000Z",
            ),
            (
                datetime(2024, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
                "2023-12-31T21:30:00.000Z",
            ),
        ],
    )
    def test_aware_non_utc_converted(self, moment: datetime, expected: str) -> None:
        assert format_datetime(moment) == expected
        record = Cashback(customer_id="c", transaction_id="t", transaction_time=moment, amount=1)
        assert _wire_json(record)["transactionTime"] == expected

    def test_zoneinfo_converted(self) -> None:
        zoneinfo = pytest.importorskip("zoneinfo")
        try:
            zone = zoneinfo.ZoneInfo("America/New_York")
        except zoneinfo.ZoneInfoNotFoundError:
            pytest.skip("no tz database")
        assert format_datetime(datetime(2024, 7, 1, 12, 0, tzinfo=zone)) == (
            "2024-07-01T16:00:00.000Z"
        )

    def test_naive_refused(self) -> None:
        naive = datetime(2024, 10, 16, 8, 13, 29)
        with pytest.raises(ValueError, match="naive"):
            format_datetime(naive)
        with pytest.raises(ValueError, match="naive"):
            dumps({"when": naive})

    def test_dumps_compact_utf8_and_strict(self) -> None:
        assert dumps({"a": [1, "é"], "d": Decimal("1.5")}) == '{"a":[1,"é"],"d":1.5}'.encode()
        assert dumps({"day": date(2024, 2, 29)}) == b'{"day":"2024-02-29"}'
        for bad in (float("nan"), float("inf"), Decimal("NaN")):
            with pytest.raises(ValueError, match=r"(?i)nan|finite|range"):
                dumps({"x": bad})
        with pytest.raises(TypeError, match="object"):
            dumps({"x": object()})


class TestParseDatetime:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2024-10-16T08:13:29.290Z", datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=UTC)),
            ("2024-10-16T08:13:29.290z", datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=UTC)),
            ("2024-10-16T08:13:29Z", datetime(2024, 10, 16, 8, 13, 29, tzinfo=UTC)),
            ("2024-10-16T08:13:29.2901234Z", datetime(2024, 10, 16, 8, 13, 29, 290123, tzinfo=UTC)),
            ("2024-10-16T08:13:29.5Z", datetime(2024, 10, 16, 8, 13, 29, 500000, tzinfo=UTC)),
            (
                "2024-10-16T10:13:29.2901234+02:00",
                datetime(2024, 10, 16, 8, 13, 29, 290123, tzinfo=UTC),
            ),
            ("2024-10-16T03:13:29-05:00", datetime(2024, 10, 16, 8, 13, 29, tzinfo=UTC)),
            ("  2024-10-16T08:13:29Z  ", datetime(2024, 10, 16, 8, 13, 29, tzinfo=UTC)),
            # no zone: the API means UTC
            ("2024-10-16T08:13:29.290", datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=UTC)),
        ],
    )
    def test_variants(self, text: str, expected: datetime) -> None:
        parsed = parse_datetime(text)
        assert parsed is not None
        assert parsed.utcoffset() is not None
        assert parsed == expected

    def test_offset_is_kept(self) -> None:
        parsed = parse_datetime("2024-10-16T10:13:29+02:00")
        assert parsed is not None
        assert parsed.utcoffset() == timedelta(hours=2)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "   ",
            "yesterday",
            "12",
            "2024-13-01T00:00:00Z",
            "2024-10-16T25:00:00Z",
            "2024-10-16T08:13:29+25:00",
            "Z",
            "null",
        ],
    )
    def test_garbage_is_none(self, text: str) -> None:
        assert parse_datetime(text) is None


class TestStructure:
    def test_unknowns_land_in_extra(self) -> None:
        record = structure_record(
            Cashback,
            {
                "customerId": "c1",
                "transactionId": "t1",
                "transactionTime": "2024-10-16T08:13:29.290Z",
                "amount": 3,
                "merchant": {"id": "m"},
                "channel": "pos",
            },
        )
        assert record.customer_id == "c1"
        assert record.transaction_time == datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=UTC)
        assert record.amount == 3
        assert record.extra == {"merchant": {"id": "m"}, "channel": "pos"}

    def test_nested_unknowns_land_in_nested_extra(self) -> None:
        record = structure_record(
            Customer,
            {"customerId": "c", "customerAttributes": {"displayName": "A", "weird": 2}, "top": 1},
        )
        assert record.extra == {"top": 1}
        assert record.customer_attributes is not None
        assert record.customer_attributes.display_name == "A"
        assert record.customer_attributes.extra == {"weird": 2}

    def test_no_unknowns_no_extra(self) -> None:
        assert structure_record(BalanceInquiry, {"customerId": "c"}).extra == {}

    @pytest.mark.parametrize(
        "record",
        [
            Cashback(
                customer_id="c",
                transaction_id="t",
                transaction_time=WHEN,
                amount=1.5,
                extra={"x": 1},
            ),
            Order(customer_id="c", order_id="o", order_date=WHEN, total_paid=2.0),
            Event(customer_id="c", events={"e": {"k": 1}}),
            Customer(customer_id="c", customer_attributes=CustomerAttributes(first_name="F")),
        ],
    )
    def test_round_trip(self, record: Any) -> None:
        assert structure_record(type(record), unstructure_record(record)) == record
        # through JSON, datetimes keep milliseconds only
        assert structure_record(type(record), _wire_json(record)) == attrs.evolve(
            record, **dict.fromkeys(_datetime_fields(record), WHEN_MS)
        )

    def test_bad_data_raises(self) -> None:
        with pytest.raises(cattrs.errors.ClassValidationError):
            structure_record(Cashback, {"transactionId": "t"})
        with pytest.raises(cattrs.errors.ClassValidationError):
            structure_record(
                Order,
                {"customerId": "c", "orderId": "o", "orderDate": "soon", "totalPaid": 1},
            )
