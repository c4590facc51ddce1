"""Fuzzed inputs (hypothesis): reply bytes through the decoders and through the
real transport, record validation against the wire schema of DESIGN section 1,
and job ids that try to change the request's route.

``test_decode.py`` already feeds arbitrary JSON *values* to the decoders and
``test_schema.py`` arbitrary *records*; here the inputs are raw bytes, plain
dicts checked against an independent copy of the schema, and hostile ids.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import quote

import pytest
from _support import assert_job_id_refused
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gameball_async import (
    AmbiguousSubmissionError,
    APIError,
    BatchJob,
    BatchStatus,
    GameballSession,
    InvalidBatchError,
    InvalidJobIdError,
    NotFoundError,
    Operation,
    ProtocolError,
    RateLimit,
    RetryPolicy,
)
from gameball_async._decode import decode_error, decode_job_id, decode_json, decode_status
from gameball_async._jobid import check_job_id
from gameball_async._schema import encode_batch
from gameball_async.testing import FakeGameball, InjectedReply
from gameball_async.testing._wire import PayloadError, parse_creation

UTC = timezone.utc

# -- reply bytes ---------------------------------------------------------------------

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10))
_json_value = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "jobId",
                    "batchId",
                    "id",
                    "status",
                    "totalCount",
                    "errorCount",
                    "response",
                    "results",
                    "errors",
                    "failed",
                    "code",
                    "message",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)
# What a server (or a proxy in front of it) may send: anything, JSON in the
# encodings json.loads detects, JSON with NaN/huge numbers, and deep nesting.
_reply_bytes = st.one_of(
    st.binary(max_size=400),
    _json_value.map(lambda v: json.dumps(v).encode()),
    st.tuples(_json_value, st.sampled_from(["utf-8-sig", "utf-16", "utf-32", "utf-16-be"])).map(
        lambda pair: json.dumps(pair[0]).encode(pair[1])
    ),
    st.integers(min_value=1, max_value=200_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=200_000).map(lambda n: b'{"a":' * n),
    st.sampled_from(
        [
            b"NaN",
            b"-Infinity",
            b'{"jobId": 1e999}',
            b"9" * 5000,
            b"\xff\xfe\x00",
            b'{"status": "Running", "totalCount": 1e400}',
            b"\x00" * 10,
        ]
    ),
)
DEEP = b"[" * 100_000 + b"]" * 100_000


def _payload_like_the_transport(data: bytes) -> Any:
    """A 2xx body as the transport reads it: empty means no payload, else JSON."""
    if not data.strip():
        return None
    return decode_json(data, "the reply")


@settings(max_examples=200, deadline=None)
@given(_reply_bytes)
@example(DEEP)
@example(b'{"status": "Running", "response": ' + b"[" * 50_000)
def test_status_bytes_give_a_status_or_a_protocol_error(data: bytes) -> None:
    try:
        payload = _payload_like_the_transport(data)
        status = decode_status(payload, job_id="7")
    except ProtocolError:
        return
    assert isinstance(status, BatchStatus)
    # the per-item results are decoded lazily: reading them must not crash either
    assert len(status.succeeded) + len(status.failed) >= 0
    repr(status)


_ID_KEYS = ("jobId", "batchId", "id")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "status",
                "state",
                "totalCount",
                "finishedCount",
                "errorCount",
                "totalItems",
                "processedItems",
                "failedItems",
                "response",
                "results",
                "errors",
                "createdAt",
                "operation",
            ]
        )
        | st.text(max_size=6),
        _json_value,
        max_size=6,
    ),
    _json_value.filter(lambda value: value is not None),
)
@example({"errors": {"1": {"code": "9004"}}, "response": '{"failed": [1]}'}, 3)
@example({"results": "[" * 5_000}, {"name": "Running"})
def test_a_status_reply_of_any_shape_decodes(payload: dict[str, Any], word: Any) -> None:
    """Issue 9 point 15: an object with a status word decodes whatever its other
    fields hold (UNKNOWN at worst), so no drift ends a wait."""
    payload = {key: value for key, value in payload.items() if key not in _ID_KEYS}
    payload["status"] = word
    status = decode_status(payload, job_id="7")
    assert status.job_id == "7"
    results = [*status.succeeded, *status.failed]  # read lazily: must not crash either
    assert all(isinstance(result.index, (int, type(None))) for result in results)
    assert status.total_count is None or status.total_count >= 0
    # without results: the same state and counts, and nothing of the per-item lists
    light = decode_status(payload, job_id="7", results=False)
    assert (
        light.state,
        light.state_word,
        light.total_count,
        light.finished_count,
        light.error_count,
    ) == (
        status.state,
        status.state_word,
        status.total_count,
        status.finished_count,
        status.error_count,
    )
    if status.is_terminal:
        assert (light.succeeded, light.failed) == (status.succeeded, status.failed)
    else:
        assert (tuple(light.succeeded), tuple(light.failed)) == ((), ())
        assert all(
            isinstance(value, (str, int, float, bool, type(None))) for value in light.raw.values()
        )


@settings(max_examples=200, deadline=None)
@given(_reply_bytes)
@example(DEEP)
@example(b'{"jobId": "../../admin"}')
def test_creation_bytes_give_a_safe_job_id_or_an_error(data: bytes) -> None:
    try:
        job_id = check_job_id(decode_job_id(_payload_like_the_transport(data)))
    except (ProtocolError, InvalidJobIdError):
        return
    assert job_id
    assert quote(job_id, safe="") == job_id


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=300, max_value=599), _reply_bytes)
@example(500, DEEP)
@example(422, b'{"code": 3003, "message": ' + b"[" * 100_000)
def test_error_bytes_give_an_api_error(http_status: int, data: bytes) -> None:
    error = decode_error(http_status, data)
    assert isinstance(error, APIError)
    assert error.http_status == http_status
    str(error)
    repr(error)


# -- the same bytes through the real transport ------------------------------------------


async def _through_the_fake(
    route: Literal["create", "status"], reply: InjectedReply, call: Callable[[GameballSession], Any]
) -> tuple[Any, FakeGameball]:
    async with FakeGameball(enforce_rate_limit=False, queue_delay=0.0) as fake:
        async with GameballSession(
            fake.api_key,
            fake.secret_key,
            base_url=fake.base_url,
            rate_limit=RateLimit.disabled(),
            retry=RetryPolicy(attempts=2, backoff=0.0),
        ) as gb:
            fake.inject(route, reply, reply)  # the retry sees the same reply
            try:
                outcome = await call(gb)
            except Exception as exc:  # the test classifies it
                outcome = exc
        return outcome, fake


_fuzz_settings = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.anyio
@_fuzz_settings
@given(_reply_bytes)
@example(DEEP)
async def test_status_reply_bytes_through_the_transport(data: bytes) -> None:
    outcome, fake = await _through_the_fake(
        "status", InjectedReply(status=200, body=data), lambda gb: gb.get_status(1)
    )
    assert isinstance(outcome, (BatchStatus, ProtocolError)), repr(outcome)[:300]
    assert fake.counts["status"] in (1, 2)


@pytest.mark.anyio
@_fuzz_settings
@given(_reply_bytes)
@example(DEEP)
@example(b'{"jobId": "1/../2"}')
async def test_creation_reply_bytes_through_the_transport(data: bytes) -> None:
    outcome, fake = await _through_the_fake(
        "create",
        InjectedReply(status=200, body=data),
        lambda gb: gb.create_batch("balance-inquiry", [{"customerId": "c"}]),
    )
    # a 200 to a creation is never resent: the job exists or the caller is told it may
    assert isinstance(outcome, (BatchJob, AmbiguousSubmissionError)), repr(outcome)[:300]
    assert fake.counts["create"] == 1


@pytest.mark.anyio
@_fuzz_settings
@given(st.sampled_from([400, 401, 403, 404, 409, 422, 500, 502, 503, 504]), _reply_bytes)
@example(422, DEEP)
async def test_error_reply_bytes_through_the_transport(http_status: int, data: bytes) -> None:
    outcome, _ = await _through_the_fake(
        "status", InjectedReply(status=http_status, body=data), lambda gb: gb.get_status(1)
    )
    assert isinstance(outcome, APIError), repr(outcome)[:300]
    assert outcome.http_status == http_status


# -- record validation against the wire schema ----------------------------------------
#
# An independent copy of DESIGN section 1: (wire name, kind, required).

ATTRIBUTES = (
    ("displayName", "str"),
    ("firstName", "str"),
    ("lastName", "str"),
    ("email", "str"),
    ("gender", "str"),
    ("mobile", "str"),
    ("dateOfBirth", "date"),
    ("joinDate", "datetime"),
    ("country", "str"),
    ("city", "str"),
    ("zip", "str"),
    ("preferredLanguage", "str"),
    ("source", "str"),
    ("utms", "strings"),
    ("devices", "strings"),
    ("paymentMethods", "strings"),
    ("totalSpent", "number"),
    ("lastOrderDate", "datetime"),
    ("totalOrders", "int"),
    ("avgOrderAmount", "number"),
    ("channel", "channel"),
    ("custom", "object"),
)
SCHEMA: dict[Operation, tuple[tuple[str, str, bool], ...]] = {
    Operation.CUSTOMERS: (
        ("customerId", "id", True),
        ("email", "str", False),
        ("mobile", "str", False),
        ("deviceToken", "str", False),
        ("osType", "str", False),
        ("referrerCode", "str", False),
        ("guest", "bool", False),
        ("customerAttributes", "attributes", False),
    ),
    Operation.ORDERS: (
        ("customerId", "id", True),
        ("orderId", "id", True),
        ("orderDate", "datetime", True),
        ("totalPaid", "number", True),
    ),
    Operation.BALANCE_INQUIRY: (("customerId", "id", True),),
    Operation.BALANCE_ADJUSTMENT: (
        ("customerId", "id", True),
        ("amount", "number", True),
        ("reason", "str", False),
    ),
    Operation.CASHBACK: (
        ("customerId", "id", True),
        ("transactionId", "id", True),
        ("transactionTime", "datetime", True),
        ("amount", "number", True),
        ("email", "str", False),
        ("mobile", "str", False),
    ),
    Operation.REDEEM: (
        ("customerId", "id", True),
        ("transactionId", "id", True),
        ("transactionTime", "datetime", True),
        ("amount", "number", False),
        ("points", "int", False),
        ("holdReference", "str", False),
        ("email", "str", False),
        ("mobile", "str", False),
    ),
    Operation.EVENTS: (("customerId", "id", True), ("events", "events", True)),
}
KNOWN = {name for fields in SCHEMA.values() for name, _, _ in fields} | {
    name for name, _ in ATTRIBUTES
}

_zones = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_aware = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2199, 12, 30), timezones=_zones
)
_z_text = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2199, 12, 31)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"
)
_json_plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_objects = st.dictionaries(st.text(max_size=6), _json_plain, max_size=3)

VALID: dict[str, st.SearchStrategy[Any]] = {
    "id": st.text(min_size=1, max_size=12).filter(lambda s: bool(s.strip())),
    "str": st.text(max_size=12),
    "number": st.integers(-(10**15), 10**15) | st.floats(allow_nan=False, allow_infinity=False),
    "int": st.integers(-(10**15), 10**15),
    "bool": st.booleans(),
    "datetime": _aware | _z_text,
    "date": st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31)),
    "object": _objects,
    "events": st.dictionaries(st.text(min_size=1, max_size=8), _objects, min_size=1, max_size=3),
    "strings": st.lists(st.text(max_size=6), max_size=3)
    | st.lists(st.text(max_size=6), max_size=3).map(tuple),
    "channel": st.sampled_from(["mobile", "pos", "web", "callcenter"]),
}
NAIVE = datetime(2024, 10, 16, 8, 13, 29)
WRONG: dict[str, list[Any]] = {
    "id": ["", "   ", 0, 1.5, True, [], {}, ["c1"]],
    "str": [0, 1.5, True, [], {}, ["x"], b"bytes"],
    "number": ["1", True, False, math.nan, math.inf, -math.inf, [], {}, b"1"],
    "int": [1.5, 2.0, "1", True, [], {}],
    "bool": [0, 1, "true", "false", [], {}],
    "datetime": [
        NAIVE,
        "2024-10-16T08:13:29",
        "2024-10-16 08:13",
        "not a date",
        "",
        1_700_000_000,
        1.5,
        True,
        [],
        {},
        date(2024, 10, 16),
        # forms Python parses but the API refuses: basic, week, hour-only
        "20241016T081329Z",
        "2024-W42-3T08:13Z",
        "2024-10-16T08Z",
        " 2024-10-16T08:13:29Z",
    ],
    "date": [1, 1.5, True, [], {}],
    "object": ["x", 1, [], True],
    "events": [[], "x", 1, {}, {"signup": 1}, {"signup": "meta"}, {"signup": []}, {"": {}}],
    "strings": ["abc", [1], [None], [["a"]], 1, {}],
    "channel": ["email", "Mobile", "", 1, []],
    "attributes": ["x", 1, [], True],
}


def _expected_wire(kind: str, value: Any) -> Any:
    """What the JSON of a valid value must be (the oracle, written independently)."""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    if kind == "attributes":
        kinds = dict(ATTRIBUTES)
        return {k: _expected_wire(kinds.get(k, "json"), v) for k, v in value.items()}
    return value


_extras = st.dictionaries(
    st.text(min_size=1, max_size=8).filter(lambda k: k not in KNOWN), _json_plain, max_size=2
)


@st.composite
def _attributes(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(ATTRIBUTES), unique=True, max_size=6))
    value = {name: draw(VALID[kind]) for name, kind in chosen}
    value.update(draw(_extras))
    return value


@st.composite
def _valid_items(draw: st.DrawFn) -> tuple[Operation, dict[str, Any]]:
    operation = draw(st.sampled_from(list(SCHEMA)))
    item: dict[str, Any] = {}
    for name, kind, required in SCHEMA[operation]:
        if required or draw(st.booleans()):
            item[name] = draw(_attributes()) if kind == "attributes" else draw(VALID[kind])
    item.update(draw(_extras))
    return operation, item


def _wire(operation: Operation, item: Any) -> Any:
    body = encode_batch(operation, [item])
    decoded = json.loads(body)
    assert list(decoded) == ["body"]
    assert len(decoded["body"]) == 1
    return body, decoded["body"][0]


@settings(max_examples=200, deadline=None)
@given(_valid_items())
def test_valid_dicts_encode_to_exactly_their_fields(case: tuple[Operation, dict[str, Any]]) -> None:
    operation, item = case
    before = repr(item)
    body, wire = _wire(operation, item)
    kinds = {name: kind for name, kind, _ in SCHEMA[operation]}
    assert set(wire) == set(item)  # no field dropped, none added
    for name, value in item.items():
        assert wire[name] == _expected_wire(kinds.get(name, "json"), value), name
    assert repr(item) == before  # the caller's dict was not changed in place
    # and the API (the fake's faithful copy of its checks) takes it
    assert len(parse_creation(body, operation.value)) == 1


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[Operation, dict[str, Any], str, Any]:
    operation, item = draw(_valid_items())
    fields = [(name, kind) for name, kind, _ in SCHEMA[operation]]
    name, kind = draw(st.sampled_from(fields))
    if kind == "attributes" and draw(st.booleans()):
        attribute, attribute_kind = draw(st.sampled_from(ATTRIBUTES))
        attributes = draw(_attributes())
        bad = draw(st.sampled_from(WRONG[attribute_kind]))
        attributes[attribute] = bad
        item[name] = attributes
        return operation, item, f"{name}.{attribute}", bad
    bad = draw(st.sampled_from(WRONG[kind]))
    item[name] = bad
    return operation, item, name, bad


@settings(max_examples=200, deadline=None)
@given(_mutations(), st.integers(min_value=0, max_value=3))
def test_a_field_of_the_wrong_type_is_refused_by_name(
    case: tuple[Operation, dict[str, Any], str, Any], position: int
) -> None:
    operation, item, field, bad = case
    good = _minimal(operation)
    with pytest.raises(InvalidBatchError) as info:
        encode_batch(operation, [good] * position + [item])
    assert info.value.field == field, (field, bad, str(info.value))
    assert info.value.index == position
    assert f"item {position}" in str(info.value)
    assert repr(field) in str(info.value)


def _minimal(operation: Operation) -> dict[str, Any]:
    values = {
        "id": "c1",
        "datetime": "2024-10-16T08:13:29.290Z",
        "number": 1,
        "events": {"signup": {}},
    }
    return {name: values[kind] for name, kind, required in SCHEMA[operation] if required}


# Anything the SDK lets through must be something the API takes: a refusal by
# the server fails the whole batch, so local validation must not be looser.
_anything = st.one_of(
    *[st.sampled_from(values) for values in WRONG.values()],
    *VALID.values(),
    _json_plain,
)


@st.composite
def _loose_items(draw: st.DrawFn) -> tuple[Operation, dict[str, Any]]:
    operation, item = draw(_valid_items())
    for name, _kind, _required in SCHEMA[operation]:
        if draw(st.integers(0, 3)) == 0:
            item[name] = draw(_anything)
    return operation, item


@settings(max_examples=200, deadline=None)
@given(_loose_items())
@example((Operation.EVENTS, {"customerId": "c1", "events": {}}))
@example((Operation.CUSTOMERS, {"customerId": "c1", "customerAttributes": {"channel": "sms"}}))
@example(
    (
        Operation.ORDERS,
        {"customerId": "c1", "orderId": "o1", "orderDate": "20241016T081329Z", "totalPaid": 1},
    )
)
def test_what_the_sdk_accepts_the_api_accepts(case: tuple[Operation, dict[str, Any]]) -> None:
    operation, item = case
    try:
        body, _ = _wire(operation, item)
    except InvalidBatchError:
        return
    try:
        parse_creation(body, operation.value)
    except PayloadError as exc:
        pytest.fail(f"accepted locally but refused by the API: {exc} ({item!r})")


# -- job ids that try to change the route ----------------------------------------------

SAFE = frozenset(string.ascii_letters + string.digits + "_-")
ATTACKS = [
    "../1",
    "..",
    ".",
    "1/../2",
    "..%2F1",
    "%2e%2e",
    "%2F",
    "1%2F2",
    "1/2",
    "1\\2",
    "1?x=1",
    "?",
    "1#frag",
    "#",
    "1 2",
    " 1",
    "1 ",
    "1\t",
    "1\n",
    "1\r\nX-Injected: 1",
    "1\x00",
    "1;x",
    "1:2",
    "1@h",
    "~1",
    "1.json",
    "\u00e9",
    "\u0661\u0662",
    "\uff11\uff12",
    "1\uff0f2",
    "1\u22152",
    "\u202e1",
    "1\u2028",
    "x" * 129,
    "9" * 10_000,
    "",
    "%",
    "%%",
    "1&x=2",
    "1+2",
    "(1)",
    "'1'",
    '"1"',
    "1%00",
    "*",
    "1,2",
    "[1]",
    "{1}",
    "1|2",
    "`1`",
    "$1",
    "!1",
]
_hostile = st.one_of(
    st.sampled_from(ATTACKS),
    st.lists(
        st.sampled_from(["../", "%2F", "?", "#", " ", "é", "/", ".", "%", "1", "a", "_"]),
        min_size=1,
        max_size=8,
    ).map("".join),
    st.text(max_size=140),
)


def _route_safe(text: str) -> bool:
    """The oracle: nothing a URL would escape or resolve, and not absurdly long."""
    return 0 < len(text) <= 128 and quote(text, safe="") == text and not set(text) - SAFE


def test_an_id_of_escaped_characters_is_not_echoed_at_length() -> None:
    # hypothesis found it: 40 characters that repr() escapes as \U000e0001 each
    with pytest.raises(InvalidJobIdError) as info:
        check_job_id("\U000e0001" * 50)
    assert len(str(info.value)) < 200


@settings(max_examples=300, deadline=None)
@given(_hostile)
def test_ids_are_accepted_only_when_route_safe(job_id: str) -> None:
    gb = GameballSession("key", "secret")  # nothing is sent: no loop, no socket
    token = json.dumps({"v": 1, "job_id": job_id, "operation": "cashback"})
    if _route_safe(job_id):
        assert check_job_id(job_id) == job_id
        assert gb.job(job_id).job_id == job_id
        assert gb.resume(token).job_id == job_id
        return
    with pytest.raises(InvalidJobIdError) as info:
        check_job_id(job_id)
    assert len(str(info.value)) < 200  # a 10,000-character id is not echoed whole
    with pytest.raises(InvalidJobIdError):
        gb.job(job_id)
    with pytest.raises(InvalidJobIdError):
        gb.resume(token)


@pytest.mark.anyio
async def test_hostile_ids_never_reach_the_server(fake: FakeGameball, gb: GameballSession) -> None:
    """Every entry point with every attack: refused, and the fake saw nothing."""
    for job_id in ATTACKS:
        await assert_job_id_refused(gb, job_id)
        with pytest.raises(InvalidJobIdError):
            gb.resume(json.dumps({"v": 1, "job_id": job_id}))
    assert fake.counts["requests"] == 0
    # an id that is accepted lands on exactly the job route, nowhere else
    accepted: list[int | str] = ["abc-DEF_9", "-1", "_", "x" * 128, 4242]
    for good in accepted:
        with pytest.raises(NotFoundError):
            await gb.get_status(good)
        with pytest.raises(NotFoundError):
            await gb.job(good).stop()
    expected = [
        (method, f"/api/v4.0/integrations/batch/{good}")
        for good in accepted
        for method in ("GET", "DELETE")
    ]
    assert [(r.method, r.path) for r in fake.requests] == expected
