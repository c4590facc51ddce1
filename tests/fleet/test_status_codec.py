"""How a shared status travels through Redis: the reply it was read from, decoded again."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gameball_async import BatchState, BatchStatus, Operation
from gameball_async._decode import decode_status as read_reply
from gameball_async.fleet._polls_scripts import decode_status, encode_status

WHEN = "2024-10-16T08:13:29.290Z"


def reply(state: str, items: int, *, failed: int = 0) -> dict[str, Any]:
    """A status reply of the guide's shape with ``items`` per-item results."""
    return {
        "jobId": 7,
        "operation": "cashback",
        "status": state,
        "totalCount": items,
        "finishedCount": items - failed,
        "errorCount": failed,
        "createdAt": WHEN,
        "startedAt": WHEN,
        "response": {
            "succeeded": [
                {"index": i, "item": {"customerId": f"c{i}"}, "transactionId": f"t{i}"}
                for i in range(items - failed)
            ],
            "failed": [
                {"index": i, "code": 7000, "message": "Customer not found."}
                for i in range(items - failed, items)
            ],
        },
    }


def same(a: BatchStatus, b: BatchStatus) -> None:
    assert a == b
    assert list(a.succeeded) == list(b.succeeded)
    assert list(a.failed) == list(b.failed)
    assert dict(a.raw) == dict(b.raw)


@pytest.mark.parametrize("results", [True, False])
@pytest.mark.parametrize("state", ["Running", "Completed", "Failed", "Stopped", "Drifted"])
def test_a_status_read_from_a_reply_comes_back_equal(state: str, results: bool) -> None:
    status = read_reply(
        reply(state, 5, failed=2), job_id="7", operation=Operation.CASHBACK, results=results
    )
    same(decode_status(encode_status(status)), status)


def test_the_operation_known_to_the_caller_travels_when_the_reply_names_none() -> None:
    payload = reply("Completed", 2)
    del payload["operation"]
    status = read_reply(payload, job_id="7", operation=Operation.REDEEM)
    back = decode_status(encode_status(status))
    assert back.operation is Operation.REDEEM
    same(back, status)


def test_the_owners_redacted_word_is_what_followers_see() -> None:
    status = read_reply(reply("Running", 1), job_id="7", results=False)
    shown = BatchStatus(
        job_id="7",
        operation=status.operation,
        state=status.state,
        state_word="Run***",
        total_count=status.total_count,
        finished_count=status.finished_count,
        raw=status.raw,
    )
    assert decode_status(encode_status(shown)).state_word == "Run***"


def test_a_status_from_no_reply_travels_whole() -> None:
    status = BatchStatus.submitted("9", Operation.EVENTS, total_count=3)
    same(decode_status(encode_status(status)), status)


def test_the_earlier_releases_form_still_reads() -> None:
    # a rolling deploy: an older process wrote to_dict(raw=True)
    status = read_reply(reply("Completed", 3, failed=1), job_id="7")
    old = json.dumps(status.to_dict(raw=True))
    same(decode_status(old), status)


def test_the_stored_form_is_the_reply_not_its_results_twice() -> None:
    # the form before wrote each result decoded and raw; bytes in Redis, in
    # every hint and in every follower's read
    status = read_reply(reply("Completed", 400, failed=40), job_id="7")
    before = json.dumps(status.to_dict(raw=True), separators=(",", ":"))
    now = encode_status(status)
    assert len(now) < 0.5 * len(before)
    assert len(now) < 1.2 * len(json.dumps(reply("Completed", 400, failed=40)))


def test_a_terminal_status_read_back_decodes_its_results_only_when_read() -> None:
    status = read_reply(reply("Completed", 50), job_id="7")
    back = decode_status(encode_status(status))
    assert back.state is BatchState.COMPLETED
    assert back.succeeded._items is None  # lazy, as the owner's own read
    assert [r.index for r in back.succeeded] == list(range(50))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"not json", "Expecting|expected|JSON"),
        (b'{"job_id": "7", "reply": {"nothing": 1}}', "not a status reply"),
        (b'{"job_id": "7", "reply": {"jobId": 8, "status": "Running"}}', "another job"),
        (b'{"reply": {"status": "Running"}}', "job id"),
        (b'{"job_id": "7", "operation": "teleport", "reply": {"status": "Running"}}', "teleport"),
        (b'{"job_id": "7", "operation": 5, "reply": {"status": "Running"}}', "operation"),
        (b'{"job_id": "7", "reply": [1, 2]}', "not a status reply"),
    ],
)
def test_what_this_version_did_not_write_is_a_value_error(data: bytes, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        decode_status(data)
