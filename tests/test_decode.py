"""Tests of gameball_async._decode: statuses, job ids, errors and Retry-After (pure)."""

from __future__ import annotations

import email.utils
import gc
import json
import pickle
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import attrs
import pytest
from _support import PATIENCE
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gameball_async import (
    APIError,
    AuthenticationError,
    BatchState,
    BatchStatus,
    GameballSession,
    InvalidRequestError,
    NotFoundError,
    Operation,
    ProtocolError,
    RateLimitError,
    ServerError,
)
from gameball_async._decode import (
    decode_error,
    decode_job_id,
    decode_json,
    decode_status,
    normalise_state,
    parse_retry_after,
)
from gameball_async.testing import FakeGameball, InjectedReply

UTC = timezone.utc

GUIDE: dict[str, Any] = {
    "jobId": 1234,
    "operation": "cashback",
    "status": "Running",
    "totalCount": 5,
    "finishedCount": 2,
    "errorCount": 1,
    "createdAt": "2024-10-16T08:13:29.290Z",
    "startedAt": "2024-10-16T08:13:30.2901234Z",
    "response": {
        "succeeded": [
            {"index": 0, "item": {"customerId": "c1"}, "result": {"points": 10}},
            {"index": 1, "item": {"customerId": "c2"}, "result": {"points": 20}},
        ],
        "failed": [
            {
                "index": 2,
                "item": {"customerId": "c3"},
                "code": 7000,
                "type": "CustomerNotFound",
                "message": "Customer not found.",
            }
        ],
    },
}

OPENAPI = {
    "batchId": "b-77",
    "status": "processing",
    "progress": 60.0,
    "totalItems": 5,
    "processedItems": 3,
    "failedItems": 1,
    "results": [{"index": 0, "result": {}}, {"index": 1, "result": {}}],
    "errors": [{"index": 2, "error": {"code": "9004", "message": "Duplicate transaction id."}}],
}


class TestDecodeStatus:
    def test_guide_shape(self) -> None:
        status = decode_status(GUIDE, job_id="1234")  # the reply's int id, compared as text
        assert isinstance(status, BatchStatus)
        assert status.job_id == "1234"
        assert status.operation is Operation.CASHBACK
        assert status.state is BatchState.RUNNING
        assert status.state_word == "Running"
        assert (status.total_count, status.finished_count, status.error_count) == (5, 2, 1)
        assert status.progress == pytest.approx(0.6)
        assert status.created_at == datetime(2024, 10, 16, 8, 13, 29, 290000, tzinfo=UTC)
        assert status.started_at == datetime(2024, 10, 16, 8, 13, 30, 290123, tzinfo=UTC)
        assert [r.index for r in status.succeeded] == [0, 1]
        assert all(r.ok for r in status.succeeded)
        (failed,) = status.failed
        assert (failed.index, failed.ok, failed.code) == (2, False, 7000)
        assert failed.message == "Customer not found."
        assert failed.raw == GUIDE["response"]["failed"][0]
        assert status.raw == GUIDE

    def test_openapi_shape(self) -> None:
        status = decode_status(OPENAPI, job_id="b-77", operation=Operation.REDEEM)
        assert status.job_id == "b-77"
        assert status.operation is Operation.REDEEM  # not in the reply: the caller's
        assert status.state is BatchState.RUNNING
        assert status.state_word == "processing"
        # processedItems counts the failed ones too
        assert (status.total_count, status.finished_count, status.error_count) == (5, 2, 1)
        assert status.processed_count == 3
        assert len(status.succeeded) == 2
        (failed,) = status.failed
        assert (failed.index, failed.code, failed.message) == (2, 9004, "Duplicate transaction id.")
        assert status.created_at is None
        assert status.raw == OPENAPI

    def test_minimal_reply_uses_the_callers_id(self) -> None:
        status = decode_status({"status": "Queued"}, job_id="42", operation=Operation.EVENTS)
        assert status.job_id == "42"
        assert status.operation is Operation.EVENTS
        assert status.total_count is None
        assert status.progress is None
        assert (tuple(status.succeeded), tuple(status.failed)) == ((), ())

    def test_response_as_a_mixed_list(self) -> None:
        payload = {
            "status": "Completed",
            "response": [{"index": 0}, {"index": 1, "code": 9008, "message": "Insufficient"}],
        }
        status = decode_status(payload, job_id="1")
        assert [r.index for r in status.succeeded] == [0]
        assert [(r.index, r.code, r.ok) for r in status.failed] == [(1, 9008, False)]

    def test_string_counts(self) -> None:
        status = decode_status(
            {"status": "Running", "totalCount": "10", "finishedCount": 4.0}, job_id="1"
        )
        assert (status.total_count, status.finished_count) == (10, 4)

    @pytest.mark.parametrize(
        ("word", "state"),
        [
            ("Queued", BatchState.QUEUED),
            ("queued", BatchState.QUEUED),
            ("PENDING", BatchState.QUEUED),
            ("pending", BatchState.QUEUED),
            ("Running", BatchState.RUNNING),
            ("RUNNING", BatchState.RUNNING),
            ("processing", BatchState.RUNNING),
            ("Processing", BatchState.RUNNING),
            ("inProgress", BatchState.RUNNING),
            ("in_progress", BatchState.RUNNING),
            ("In Progress", BatchState.RUNNING),
            ("IN-PROGRESS", BatchState.RUNNING),
            ("Completed", BatchState.COMPLETED),
            ("completed", BatchState.COMPLETED),
            ("finished", BatchState.COMPLETED),
            ("Finished", BatchState.COMPLETED),
            ("Failed", BatchState.FAILED),
            ("FAILED", BatchState.FAILED),
            ("Stopped", BatchState.STOPPED),
            ("stopped", BatchState.STOPPED),
            ("cancelled", BatchState.STOPPED),
            ("Canceled", BatchState.STOPPED),
        ],
    )
    def test_status_words(self, word: str, state: BatchState) -> None:
        assert normalise_state(word) is state
        for base, job_id in ((GUIDE, "1234"), (OPENAPI, "b-77")):
            status = decode_status({**base, "status": word}, job_id=job_id)
            assert status.state is state
            assert status.state_word == word

    @pytest.mark.parametrize("word", ["Reticulating", "", "paused", "42"])
    def test_unknown_word_is_unknown_not_a_crash(self, word: str) -> None:
        payload = {**GUIDE, "status": word}
        status = decode_status(payload, job_id="1234")
        assert status.state is BatchState.UNKNOWN
        assert status.state_word == word
        assert not status.is_terminal
        assert status.raw == payload

    @pytest.mark.parametrize(
        "payload",
        [
            None,
            [],
            "Completed",
            42,
            {},
            {"status": None},
            {"status": None, "state": None, "jobId": 1},
            {"jobId": 1},  # a creation reply is not a status
            {"code": 5000, "message": "Internal error", "requestId": "r"},  # an error body
        ],
    )
    def test_not_a_status_is_a_protocol_error(self, payload: Any) -> None:
        with pytest.raises(ProtocolError):
            decode_status(payload, job_id="1")


class TestTolerantShapes:
    """Issue 9 point 15: plausible drift decodes (UNKNOWN at worst) instead of raising."""

    @pytest.mark.parametrize(
        ("value", "word"),
        [
            (3, "3"),
            (0, "0"),
            (True, "True"),
            (2.5, "2.5"),
            ({"name": "Running"}, "{'name': 'Running'}"),
            (["Running"], "['Running']"),
        ],
    )
    def test_a_status_that_is_not_a_string_is_unknown(self, value: Any, word: str) -> None:
        payload = {"jobId": 1, "status": value, "totalCount": 4, "finishedCount": 1}
        status = decode_status(payload, job_id="1")
        assert status.state is BatchState.UNKNOWN
        assert status.state_word == word
        assert (status.total_count, status.finished_count) == (4, 1)
        assert status.raw is payload

    def test_a_huge_status_value_is_kept_short(self) -> None:
        status = decode_status({"status": list(range(10_000))}, job_id="1")
        assert status.state is BatchState.UNKNOWN
        assert len(status.state_word) <= 200

    def test_state_is_read_when_status_is_null(self) -> None:
        status = decode_status({"status": None, "state": "finished"}, job_id="1")
        assert status.state is BatchState.COMPLETED

    @pytest.mark.parametrize(
        "payload",
        [
            {"totalCount": 3, "finishedCount": 1},
            {"progress": 40},
            {"errors": []},
            {"status": None, "processedItems": 2},
        ],
    )
    def test_status_fields_without_a_word_are_unknown(self, payload: Any) -> None:
        status = decode_status(payload, job_id="1")
        assert status.state is BatchState.UNKNOWN
        assert status.state_word == ""

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("totalCount", -1),
            ("totalCount", "many"),
            ("totalCount", "²"),
            ("totalCount", True),
            ("totalCount", 1.5),
            ("totalCount", "9" * 5000),
            ("totalCount", [3]),
            ("totalItems", {"n": 3}),
        ],
    )
    def test_an_unreadable_count_is_not_reported(self, field: str, value: Any) -> None:
        status = decode_status({"status": "Completed", field: value}, job_id="1")
        assert status.state is BatchState.COMPLETED  # the wait still ends
        assert status.total_count is None

    @pytest.mark.parametrize(("field", "value"), [("finishedCount", -3), ("errorCount", False)])
    def test_an_unreadable_progress_count_is_zero(self, field: str, value: Any) -> None:
        status = decode_status({"status": "Running", "totalCount": 5, field: value}, job_id="1")
        assert (status.finished_count, status.error_count) == (0, 0)

    FAILURES = (
        {"index": 0, "code": 7000, "message": "Customer not found."},
        {"index": 2, "error": {"code": "9004", "message": "Duplicate transaction id."}},
    )

    @pytest.mark.parametrize(
        "errors",
        [
            list(FAILURES),
            {"items": list(FAILURES)},
            {"data": list(FAILURES), "count": 2},
            {"0": FAILURES[0], "2": {"error": FAILURES[1]["error"]}},  # keyed by item index
            json.dumps(list(FAILURES)),
            json.dumps({"items": list(FAILURES)}),
            {"items": json.dumps(list(FAILURES))},
        ],
        ids=["list", "items", "data", "keyed", "json-list", "json-object", "json-in-object"],
    )
    def test_errors_in_any_shape_are_read(self, errors: Any) -> None:
        payload = {"batchId": "b-1", "status": "failed", "totalItems": 3, "errors": errors}
        status = decode_status(payload, job_id="b-1")
        assert status.state is BatchState.FAILED
        got = [(r.index, r.ok, r.code) for r in status.failed]
        assert got == [(0, False, 7000), (2, False, 9004)]
        assert status.succeeded == ()

    def test_a_single_error_object_is_one_failure(self) -> None:
        error = {"index": 4, "code": 9008, "message": "Insufficient balance."}
        status = decode_status({"status": "Failed", "errors": error}, job_id="1")
        assert [(r.index, r.code, r.message) for r in status.failed] == [
            (4, 9008, "Insufficient balance.")
        ]

    def test_an_unrecognised_object_is_kept_as_one_result(self) -> None:
        # nothing is dropped: an object that is no wrapper is one result
        status = decode_status({"status": "Completed", "results": {"a": 1}}, job_id="1")
        (only,) = status.succeeded
        assert (only.index, only.ok, only.raw) == (None, True, {"a": 1})

    @pytest.mark.parametrize(
        "response",
        [
            GUIDE["response"],
            json.dumps(GUIDE["response"]),
            {
                "succeeded": json.dumps(GUIDE["response"]["succeeded"]),
                "failed": GUIDE["response"]["failed"],
            },
            {
                "succeeded": {"items": GUIDE["response"]["succeeded"]},
                "failed": {"2": GUIDE["response"]["failed"][0]},
            },
            {
                "results": GUIDE["response"]["succeeded"],
                "errors": GUIDE["response"]["failed"],
                "summary": "1 failed",
            },
            [*GUIDE["response"]["succeeded"], *GUIDE["response"]["failed"]],
            {
                "items": [
                    *GUIDE["response"]["succeeded"],
                    *GUIDE["response"]["failed"],
                ]
            },
        ],
        ids=["guide", "json-string", "json-part", "nested", "other-keys", "mixed", "mixed-items"],
    )
    def test_response_in_any_shape_is_read(self, response: Any) -> None:
        status = decode_status({**GUIDE, "status": "Failed", "response": response}, job_id="1234")
        assert [(r.index, r.ok) for r in status.succeeded] == [(0, True), (1, True)]
        assert [(r.index, r.ok, r.code) for r in status.failed] == [(2, False, 7000)]

    def test_response_and_top_level_lists_are_all_read(self) -> None:
        payload = {
            "status": "Completed",
            "response": {"succeeded": [{"index": 0}]},
            "results": [{"index": 1}],
            "errors": [{"index": 2, "code": 7000}],
        }
        status = decode_status(payload, job_id="1")
        assert [r.index for r in status.succeeded] == [0, 1]
        assert [r.index for r in status.failed] == [2]

    @pytest.mark.parametrize(
        ("raw_index", "index"),
        [
            ("3", 3),
            (" 3 ", 3),
            (3.0, 3),
            (3, 3),
            ("-1", None),
            (-1, None),
            ("x", None),
            ("²", None),
            (True, None),
            (None, None),
            ("9" * 5000, None),
        ],
    )
    def test_item_index_as_text(self, raw_index: Any, index: int | None) -> None:
        payload = {"status": "Completed", "results": [{"index": raw_index}]}
        (result,) = decode_status(payload, job_id="1").succeeded
        assert result.index == index

    def test_mixed_entries_are_split_by_their_own_outcome(self) -> None:
        response = [
            {"index": 0},
            {"index": 1, "error": "Customer not found."},
            {"index": 2, "errorMessage": "Bad"},
            {"index": 3, "success": False},
            {"index": 4, "errorCode": 9008},
            "order-17",
        ]
        status = decode_status({"status": "Completed", "response": response}, job_id="1")
        assert [r.index for r in status.succeeded] == [0, None]
        assert [r.index for r in status.failed] == [1, 2, 3, 4]
        assert status.failed[0].message == "Customer not found."

    @pytest.mark.parametrize(
        "payload",
        [
            {"status": "Running", "response": "all good"},
            {"status": "Running", "response": 7},
            {"status": "Running", "results": "not json ["},
            {"status": "Running", "errors": "[unterminated"},
            {"status": "Running", "response": "[" * 10_000},
        ],
    )
    def test_a_scalar_where_results_belong_names_no_item(self, payload: Any) -> None:
        status = decode_status(payload, job_id="1")
        assert status.state is BatchState.RUNNING
        assert (tuple(status.succeeded), tuple(status.failed)) == ((), ())
        assert status.raw is payload  # the text is still there to read


def _halfway(total: int = 1_000, state: str = "Running") -> dict[str, Any]:
    """A status reply of a job halfway through, as the fake writes it, but with
    one result per item (a worst case for what a poll carries)."""
    half = total // 2
    entry = {"customerId": "customer-000000", "transactionId": "t-000000", "amount": 12.5}
    return {
        "jobId": 1,
        "operation": "cashback",
        "status": state,
        "totalCount": total,
        "finishedCount": half,
        "errorCount": total - half,
        "createdAt": "2024-10-16T08:13:29.290Z",
        "startedAt": "2024-10-16T08:13:30.290Z",
        "response": {
            "succeeded": [
                {"index": i, "item": {**entry, "customerId": f"c-{i}"}, "result": {"points": i}}
                for i in range(half)
            ],
            "failed": [
                {
                    "index": i,
                    "item": {**entry, "customerId": f"c-{i}"},
                    "code": 7000,
                    "type": "CustomerNotFound",
                    "message": "Customer not found.",
                }
                for i in range(half, total)
            ],
        },
    }


class TestWithoutResults:
    """Issue 9 point 17: a running job's status keeps state and counts, not the reply."""

    def test_a_running_status_holds_no_results_and_a_small_raw(self) -> None:
        payload = _halfway()
        payload["results"] = json.dumps(payload["response"]["succeeded"])
        payload["note"] = "x" * 5_000
        status = decode_status(payload, job_id="1", results=False)
        assert status.state is BatchState.RUNNING
        assert (status.total_count, status.finished_count, status.error_count) == (1000, 500, 500)
        assert status.started_at == datetime(2024, 10, 16, 8, 13, 30, 290000, tzinfo=UTC)
        assert (tuple(status.succeeded), tuple(status.failed)) == ((), ())
        assert status.raw == {
            "jobId": 1,
            "operation": "cashback",
            "status": "Running",
            "totalCount": 1000,
            "finishedCount": 500,
            "errorCount": 500,
            "createdAt": "2024-10-16T08:13:29.290Z",
            "startedAt": "2024-10-16T08:13:30.290Z",
        }
        # equal to the same reply decoded with its results, but for the results
        full = decode_status(payload, job_id="1")
        assert attrs.evolve(full, succeeded=(), failed=()) == status

    @pytest.mark.parametrize("word", ["Completed", "Failed", "Stopped"])
    def test_a_terminal_reply_is_decoded_with_its_results(self, word: str) -> None:
        payload = _halfway(state=word)
        status = decode_status(payload, job_id="1", results=False)
        assert (len(status.succeeded), len(status.failed)) == (500, 500)
        assert status.failed[0].code == 7000
        assert status.raw is payload

    def test_a_running_status_retains_far_less_than_its_reply(self) -> None:
        body = json.dumps(_halfway()).encode()

        def retained(results: bool) -> tuple[int, int]:
            """(bytes of the decoded reply, bytes still held once only the status is kept)"""
            gc.collect()
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                payload = json.loads(body)
                size = tracemalloc.get_traced_memory()[0] - base
                status = decode_status(payload, job_id="1", results=results)
                del payload
                gc.collect()
                held = tracemalloc.get_traced_memory()[0] - base
            finally:
                tracemalloc.stop()
            assert status.total_count == 1000
            return size, held

        size, held = retained(results=False)
        assert size > 250_000  # the reply of a 1,000-item job halfway through
        assert held < 2_048, held  # state, counts, timestamps and a small raw
        # the measurement sees what a status keeps: with results it keeps the reply
        size_full, held_full = retained(results=True)
        assert held_full > 0.9 * size_full


class TestJobIdCheck:
    """Issue 9 point 12: a reply about another job is not this job's status."""

    @pytest.mark.parametrize(
        "payload",
        [
            {"jobId": 8, "status": "Completed"},
            {"jobId": "8", "status": "Completed"},
            {"batchId": "b-8", "status": "Completed"},
            {"id": 8, "status": "Completed"},
            {"jobId": 8.0, "status": "Completed"},
        ],
    )
    def test_another_job_id_is_a_protocol_error(self, payload: Any) -> None:
        with pytest.raises(ProtocolError, match="another job"):
            decode_status(payload, job_id="7")

    @pytest.mark.parametrize(
        "payload",
        [
            {"status": "Completed"},
            {"jobId": 7, "status": "Completed"},
            {"jobId": "7", "status": "Completed"},
            {"jobId": " 7 ", "status": "Completed"},
            {"jobId": 7.0, "status": "Completed"},
            {"jobId": None, "batchId": 7, "status": "Done"},
            {"jobId": {"value": 8}, "status": "Completed"},
            {"jobId": True, "status": "Completed"},
        ],
    )
    def test_the_same_job_or_none_is_accepted(self, payload: Any) -> None:
        status = decode_status(payload, job_id="7")
        assert status.job_id == "7"
        assert status.is_terminal


class TestDecodeJobId:
    @pytest.mark.parametrize(
        ("payload", "job_id"),
        [
            ({"jobId": 1234}, "1234"),
            ({"jobId": "abc-1"}, "abc-1"),
            ({"batchId": " 77 "}, "77"),
            ({"id": 5}, "5"),
        ],
    )
    def test_reads_the_id(self, payload: Any, job_id: str) -> None:
        assert decode_job_id(payload) == job_id

    @pytest.mark.parametrize(
        "payload", [None, {}, [], {"jobId": None}, {"jobId": True}, {"jobId": ""}, "1234", 1234]
    )
    def test_no_id_is_a_protocol_error(self, payload: Any) -> None:
        with pytest.raises(ProtocolError):
            decode_job_id(payload)


def test_decode_json() -> None:
    assert decode_json(b'{"a": 1}', "x") == {"a": 1}
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_json(b'{"a', "the reply")
    with pytest.raises(ProtocolError):
        decode_json(b"\xff\xfe\x00garbage", "the reply")


def _error_body(code: Any, **more: Any) -> bytes:
    body = {
        "code": code,
        "type": "SomeType",
        "message": "Something.",
        "documentationUrl": "https://developer.gameball.co/",
        "requestId": "req-1",
    }
    body.update(more)
    return json.dumps(body).encode()


class TestDecodeError:
    @pytest.mark.parametrize(
        ("http_status", "code", "cls"),
        [
            (401, 1000, AuthenticationError),
            (401, 1001, AuthenticationError),
            (403, 1002, AuthenticationError),
            (403, 8000, AuthenticationError),
            (400, 1000, AuthenticationError),  # a 1xxx code whatever the status
            (404, 4004, NotFoundError),
            (404, 7000, NotFoundError),
            (429, 2002, RateLimitError),
            (500, 5000, ServerError),
            (503, 5003, ServerError),
            (502, None, ServerError),
            (400, 3000, InvalidRequestError),
            (400, 3016, InvalidRequestError),
            (422, 2001, InvalidRequestError),
            (422, 3003, InvalidRequestError),
            (422, 3011, InvalidRequestError),
            (422, 9004, InvalidRequestError),
            (422, 9008, InvalidRequestError),
            (409, None, InvalidRequestError),
        ],
    )
    def test_class_mapping(self, http_status: int, code: int | None, cls: type[APIError]) -> None:
        error = decode_error(http_status, _error_body(code))
        assert type(error) is cls
        assert error.http_status == http_status
        assert error.code == code
        assert error.type == "SomeType"
        assert error.message == "Something."
        assert error.request_id == "req-1"
        assert error.body is None
        assert f"HTTP {http_status}" in str(error)
        assert "req-1" in str(error)

    def test_rate_limit_carries_retry_after(self) -> None:
        error = decode_error(429, _error_body(2002), retry_after=2.5)
        assert isinstance(error, RateLimitError)
        assert error.retry_after == 2.5
        assert decode_error(429, b"").retry_after is None

    def test_code_as_string_and_missing_fields(self) -> None:
        error = decode_error(422, b'{"code": "3003"}')
        assert isinstance(error, InvalidRequestError)
        assert error.code == 3003
        assert error.request_id is None
        assert error.message  # something readable, never empty

    @pytest.mark.parametrize(
        "body",
        [b"<html><body>Bad Gateway</body></html>", b"oops", "é".encode() * 2000, b"\xff\xfe\xfa"],
    )
    def test_non_json_body_kept_truncated(self, body: bytes) -> None:
        error = decode_error(502, body)
        assert isinstance(error, ServerError)
        assert error.code is None
        assert error.body is not None
        assert len(error.body) <= 500
        assert error.body[:10] == body[:500].decode("utf-8", "replace")[:10]
        assert "non-JSON" in error.message
        assert len(error.message) <= 500

    def test_json_but_not_an_object(self) -> None:
        error = decode_error(400, b"[1, 2]")
        assert isinstance(error, InvalidRequestError)
        assert error.body == "[1, 2]"

    def test_empty_body(self) -> None:
        error = decode_error(404, b"")
        assert isinstance(error, NotFoundError)
        assert error.body is None
        assert "empty" in error.message

    def test_long_fields_truncated(self) -> None:
        error = decode_error(400, _error_body(3003, message="m" * 5000, requestId="r" * 500))
        assert len(error.message) <= 500
        assert error.request_id is not None
        assert len(error.request_id) <= 100

    def test_pickles(self) -> None:
        error = decode_error(401, _error_body(1000))
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is AuthenticationError
        assert (copy.http_status, copy.code, copy.request_id) == (401, 1000, "req-1")
        assert str(copy) == str(error)


class TestRetryAfter:
    NOW = 1_700_000_000.0

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [("1", 1.0), ("0", 0.0), ("  30 ", 30.0), ("2.5", 2.5), ("-3", 0.0)],
    )
    def test_seconds(self, value: str, seconds: float) -> None:
        assert parse_retry_after(value, now=self.NOW) == seconds

    def test_http_date(self) -> None:
        when = datetime.fromtimestamp(self.NOW, tz=UTC) + timedelta(seconds=7)
        header = email.utils.format_datetime(when, usegmt=True)
        assert parse_retry_after(header, now=self.NOW) == pytest.approx(7.0)
        assert parse_retry_after(email.utils.format_datetime(when), now=self.NOW) == (
            pytest.approx(7.0)
        )
        legacy = email.utils.formatdate(self.NOW + 12, usegmt=True)
        assert parse_retry_after(legacy, now=self.NOW) == pytest.approx(12.0)

    def test_http_date_in_the_past_is_zero(self) -> None:
        when = datetime.fromtimestamp(self.NOW, tz=UTC) - timedelta(hours=1)
        assert parse_retry_after(email.utils.format_datetime(when, usegmt=True), now=self.NOW) == 0
        assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=time.time()) == 0.0

    @pytest.mark.parametrize(
        "value", [None, "", "   ", "soon", "nan", "inf", "Sun, 99 Foo 1994", "1 hour"]
    )
    def test_garbage_is_none(self, value: str | None) -> None:
        assert parse_retry_after(value, now=self.NOW) is None


# -- properties: nothing but a model or the documented error ---------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from(["Running", "completed", "pending", "²", "--5", "-1", "1e3", "10"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "status",
                    "state",
                    "jobId",
                    "batchId",
                    "id",
                    "operation",
                    "totalCount",
                    "finishedCount",
                    "errorCount",
                    "totalItems",
                    "processedItems",
                    "failedItems",
                    "createdAt",
                    "startedAt",
                    "response",
                    "results",
                    "errors",
                    "succeeded",
                    "failed",
                    "index",
                    "code",
                    "message",
                    "error",
                    "errorCode",
                    "type",
                    "requestId",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(_json)
@example({"status": "Running", "totalCount": "²"})
@example({"status": "Running", "response": {"failed": [{"code": "--5"}]}})
@example({"status": "Running", "errors": [{"error": {"code": "¹"}}]})
@example({"status": "Running", "createdAt": "2024-10-16T08:13:29.²Z"})
def test_decode_status_never_crashes(payload: Any) -> None:
    try:
        status = decode_status(payload, job_id="1")
    except ProtocolError:
        return
    assert isinstance(status, BatchStatus)
    assert isinstance(status.state, BatchState)
    assert status.raw is payload


@settings(max_examples=150, deadline=None)
@given(_json)
@example({"jobId": "²"})
def test_decode_job_id_never_crashes(payload: Any) -> None:
    try:
        job_id = decode_job_id(payload)
    except ProtocolError:
        return
    assert isinstance(job_id, str)
    assert job_id


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=100, max_value=599),
    st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()),
)
@example(422, '{"code": "²"}'.encode())
@example(422, b'{"code": "--5"}')
@example(500, b'{"code": 5000, "message": {"nested": true}, "requestId": 7}')
def test_decode_error_always_an_api_error(http_status: int, body: bytes) -> None:
    error = decode_error(http_status, body)
    assert isinstance(error, APIError)
    assert error.http_status == http_status
    assert error.code is None or isinstance(error.code, int)
    assert isinstance(str(error), str)
    if http_status >= 500 and error.code is None:
        assert isinstance(error, ServerError)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_parse_retry_after_never_crashes(value: str) -> None:
    seconds = parse_retry_after(value, now=TestRetryAfter.NOW)
    assert seconds is None or seconds >= 0.0


# -- through a session: drifting replies do not end a wait ------------------------------


@pytest.mark.anyio
async def test_drifting_status_replies_keep_the_wait_going_to_its_results(
    fake: FakeGameball, gb: GameballSession
) -> None:
    """Issue 9 point 15 end to end: an integer status is polled on, and a Failed job's
    results sent as an object and as a JSON string all reach the caller."""
    job = gb.job(7, Operation.CASHBACK)
    fake.inject(
        "status",
        InjectedReply(body={"jobId": 7, "status": 2, "totalCount": 3, "finishedCount": 1}),
        InjectedReply(
            body={
                "jobId": 7,
                "status": "Failed",
                "totalCount": 3,
                "finishedCount": 1,
                "errorCount": 2,
                "response": json.dumps({"succeeded": [{"index": "0"}]}),
                "errors": {"1": {"code": 7000}, "2": {"code": 9008}},
            }
        ),
    )
    with anyio.fail_after(PATIENCE):
        status = await job.wait(raise_on_failure=False)
    assert status.state is BatchState.FAILED
    assert [r.index for r in status.succeeded] == [0]
    assert [(r.index, r.code) for r in status.failed] == [(1, 7000), (2, 9008)]
    assert fake.counts["status"] == 2


@pytest.mark.anyio
async def test_a_reply_about_another_job_is_refused(
    fake: FakeGameball, gb: GameballSession
) -> None:
    fake.inject("status", InjectedReply(body={"jobId": 8, "status": "Completed"}))
    with pytest.raises(ProtocolError, match="another job"):
        await gb.get_status(7)


@pytest.mark.parametrize("status", [429, 500, 503, 404])
def test_every_error_status_carries_its_retry_after(status: int) -> None:
    # a 503 with Retry-After is as much a request to wait as a 429
    error = decode_error(status, b'{"code": 5003, "message": "later"}', retry_after=5.0)
    assert error.retry_after == 5.0
    assert decode_error(status, b"", retry_after=None).retry_after is None


def test_running_summaries_share_their_field_names_and_words() -> None:
    # 10,000 awaited jobs each hold a summary until their next poll: one copy
    # of "totalCount" or "Running" for all of them, not one per job
    first, second = (
        decode_status(
            json.loads(
                b'{"jobId": 7, "status": "Running", "totalCount": 1000, "finishedCount": 5}'
            ),
            job_id="7",
            results=False,
        )
        for _ in range(2)
    )
    assert first.raw == second.raw
    pairs = list(zip(first.raw, second.raw, strict=True))
    assert all(a is b for a, b in pairs)
    assert first.raw["status"] is second.raw["status"]
