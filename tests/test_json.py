"""The wire's JSON codec with and without the ``speedups`` extra (orjson).

Without orjson installed (the floors' run) only the pure codec is tested; the
runs on the newest Python and the README's command install the extra.
"""

from __future__ import annotations

import importlib.util
import json
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gameball_async import _json
from gameball_async._wire import _json_default, dumps

HAS_ORJSON = importlib.util.find_spec("orjson") is not None
needs_orjson = pytest.mark.skipif(
    not HAS_ORJSON, reason="orjson (the speedups extra) not installed"
)

PURE = _json.make_dumps(_json_default, fast=False)
QUICK = _json.make_dumps(_json_default, fast=True)  # the pure one without orjson

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)  # past 64 bits too: orjson refuses those
    | st.floats()  # NaN and infinities too: refused both ways
    | st.text()
    | st.datetimes(timezones=st.just(timezone.utc))
    | st.datetimes()  # naive: refused both ways
    | st.decimals()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


def outcome(encode: Any, value: Any) -> tuple[str, Any]:
    """What an encoder made of ``value``: the JSON's value, or the exception's type."""
    try:
        return ("json", json.loads(encode(value)))
    except (TypeError, ValueError) as exc:
        return ("refused", type(exc))


def test_the_package_uses_orjson_when_it_is_installed() -> None:
    assert _json.FAST is HAS_ORJSON


@needs_orjson
class TestFastAgainstPure:
    @given(values)
    def test_the_same_json_or_the_same_refusal(self, value: Any) -> None:
        fast, pure = outcome(QUICK, value), outcome(PURE, value)
        if fast[0] == "json" and pure[0] == "json":
            # NaN is not equal to itself: compare the texts' values as written
            assert json.dumps(fast[1], sort_keys=True) == json.dumps(pure[1], sort_keys=True)
        else:
            assert fast == pure

    @pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
    def test_a_non_finite_number_is_refused_not_written_null(self, number: float) -> None:
        # orjson on its own writes null
        with pytest.raises(ValueError, match="Out of range float"):
            QUICK({"body": [{"amount": number, "note": None}]})
        with pytest.raises(ValueError, match="Out of range float"):
            QUICK([number])

    def test_an_int_past_64_bits_is_written(self) -> None:
        assert QUICK({"n": 2**70}) == b'{"n":1180591620717411303424}'

    def test_a_naive_datetime_is_refused_by_name(self) -> None:
        with pytest.raises(ValueError, match="naive datetime"):
            QUICK({"at": datetime(2026, 1, 1)})

    def test_subclasses_are_written_as_the_stdlib_writes_them(self) -> None:
        class Word(str):
            pass

        class Table(dict[str, Any]):
            pass

        value = {"w": Word("x"), "t": Table(a=1)}
        assert QUICK(value) == PURE(value) == b'{"w":"x","t":{"a":1}}'

    def test_datetimes_and_decimals_as_without_it(self) -> None:
        at = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
        value = {"at": at, "amount": Decimal("12.50")}
        assert QUICK(value) == PURE(value) == b'{"at":"2026-12-07T10:00:00.123Z","amount":12.5}'

    def test_the_package_encodes_with_it(self) -> None:
        assert dumps({"a": 1}) == b'{"a":1}'
        assert _json.make_dumps(_json_default).__name__ == "quick"

    @given(values)
    def test_it_reads_what_the_stdlib_reads(self, value: Any) -> None:
        try:
            text = PURE(value)
        except (TypeError, ValueError):
            return
        if any(abs(n) >= 2**63 for n in _ints(json.loads(text))):
            return  # read as a float by orjson: see the module's docstring
        fast, pure = _json.make_loads(fast=True), _json.make_loads(fast=False)
        assert fast(text) == pure(text)
        assert fast(text.decode()) == pure(text)

    @pytest.mark.parametrize("body", [b"", b"{", b'{"a":1}{', b"\xff", b"[" * 5000 + b"]" * 5000])
    def test_what_is_not_json_is_a_value_error(self, body: bytes) -> None:
        with pytest.raises(json.JSONDecodeError):
            _json.make_loads(fast=True)(body)


def _ints(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [n for inner in value for n in _ints(inner)]
    if isinstance(value, dict):
        return [n for inner in value.values() for n in _ints(inner)]
    return []


class TestPure:
    def test_without_the_extra_the_stdlib_encodes(self) -> None:
        assert PURE.__name__ == "pure"
        assert _json.make_loads(fast=False) is json.loads

    @pytest.mark.parametrize("number", [math.nan, math.inf])
    def test_a_non_finite_number_is_refused(self, number: float) -> None:
        with pytest.raises(ValueError, match="Out of range float"):
            PURE({"amount": number})
