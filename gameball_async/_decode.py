"""Pure decoding of what the server sends: statuses, job ids, errors, Retry-After.

Nothing here does I/O: bytes, status codes and header values in; a model or an
exception out. That keeps the tolerance rules (DESIGN section 1: status words
in any case and spelling, two documented reply shapes) testable on their own.
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Final

from ._errors import (
    APIError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
)
from ._models import BatchState, BatchStatus, ItemResult, ItemResults, Operation
from ._wire import parse_datetime

__all__ = [
    "decode_error",
    "decode_job_id",
    "decode_json",
    "decode_status",
    "normalise_state",
    "parse_retry_after",
]


def _squash(word: str) -> str:
    return word.replace(" ", "").replace("_", "").replace("-", "").casefold()


_STATE_WORDS: Final[dict[str, BatchState]] = {
    **dict.fromkeys(("queued", "pending", "waiting", "created", "new"), BatchState.QUEUED),
    **dict.fromkeys(
        ("running", "processing", "inprogress", "started", "active"), BatchState.RUNNING
    ),
    **dict.fromkeys(
        ("completed", "finished", "done", "succeeded", "success", "complete"),
        BatchState.COMPLETED,
    ),
    **dict.fromkeys(("failed", "failure", "error", "errored"), BatchState.FAILED),
    **dict.fromkeys(
        ("stopped", "cancelled", "canceled", "aborted", "terminated"), BatchState.STOPPED
    ),
}

_OPERATIONS: Final[dict[str, Operation]] = {
    **{op.value: op for op in Operation},
    **{_squash(op.value): op for op in Operation},
}

_SUCCEEDED_KEYS: Final = frozenset(
    {"succeeded", "success", "successes", "succeededresults", "successresults", "results"}
)
_FAILED_KEYS: Final = frozenset(
    {"failed", "failures", "failedresults", "errors", "errorresults", "failure"}
)

_TEXT_LIMIT: Final = 500


# The words as the API spells them, looked up before any normalising.
_EXACT_STATES: Final[dict[str, BatchState]] = {
    **{state.value: state for state in BatchState if state is not BatchState.UNKNOWN},
    **_STATE_WORDS,
}


def normalise_state(word: str) -> BatchState:
    """Map a status word in any case or documented spelling to a :class:`BatchState`."""
    state = _EXACT_STATES.get(word)
    if state is None:
        state = _STATE_WORDS.get(_squash(word), BatchState.UNKNOWN)
    return state


def decode_json(body: bytes, what: str) -> Any:
    """Parse a JSON reply body.

    :raises ProtocolError: when the body is not JSON (a truncated excerpt is kept).
    """
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting too deep: not JSON to us
        excerpt = body[:200].decode("utf-8", "replace")
        raise ProtocolError(f"{what} is not JSON: {excerpt!r}") from None


def _count(payload: Mapping[str, Any], key: str) -> int | None:
    value = payload.get(key)
    if type(value) is int and value >= 0:  # the usual case, first
        return value
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProtocolError(f"status field {key!r} is not a count: {value!r}")
    count: int | None = None
    if isinstance(value, int):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        # isdigit() also holds for "²" and friends, which int() refuses
        try:
            count = int(value)
        except ValueError:
            count = None
    if count is None:
        raise ProtocolError(f"status field {key!r} is not a count: {str(value)[:40]!r}")
    if count < 0:
        raise ProtocolError(f"status field {key!r} is negative: {count}")
    return count


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        # the check lets through "--5" and "²", which int() refuses
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _item(entry: Any, ok: bool) -> ItemResult:
    if not isinstance(entry, Mapping):
        return ItemResult(index=None, ok=ok, raw=entry)
    index = entry.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        index = None
    source: Mapping[str, Any] = entry
    nested = entry.get("error")
    if isinstance(nested, Mapping):
        source = nested
    code = _code(source.get("code", source.get("errorCode")))
    message = _text(source.get("message", source.get("errorMessage")))
    return ItemResult(index=index, ok=ok, code=code, message=message, raw=entry)


def _succeeded(entry: Any) -> ItemResult:
    return _item(entry, True)


def _failed(entry: Any) -> ItemResult:
    return _item(entry, False)


def _results(value: Any, ok: bool, key: str) -> ItemResults:
    if value is None:
        return ItemResults()
    if not isinstance(value, list):
        raise ProtocolError(f"status field {key!r} is not a list of results")
    # Decoded when read: the poller only needs the counts.
    return ItemResults.lazy(value, _succeeded if ok else _failed)


def _split_response(response: Any) -> tuple[ItemResults, ItemResults]:
    if response is None:
        return ItemResults(), ItemResults()
    if isinstance(response, list):
        # One list of mixed outcomes: an entry with an error code failed.
        items = [_item(entry, True) for entry in response]
        ok = ItemResults(i for i in items if i.code is None)
        bad = ItemResults(_item(i.raw, False) for i in items if i.code is not None)
        return ok, bad
    if not isinstance(response, Mapping):
        raise ProtocolError("status field 'response' is neither an object nor a list")
    if len(response) == 2 and "succeeded" in response and "failed" in response:
        # the developer guide's spelling: no key to normalise
        return (
            _results(response["succeeded"], True, "response.succeeded"),
            _results(response["failed"], False, "response.failed"),
        )
    succeeded: list[ItemResults] = []
    failed: list[ItemResults] = []
    for key, value in response.items():
        folded = _squash(str(key))
        if folded in _SUCCEEDED_KEYS:
            succeeded.append(_results(value, True, f"response.{key}"))
        elif folded in _FAILED_KEYS:
            failed.append(_results(value, False, f"response.{key}"))
    return _joined(succeeded), _joined(failed)


def _joined(parts: list[ItemResults]) -> ItemResults:
    if len(parts) == 1:
        return parts[0]
    return ItemResults(result for part in parts for result in part)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        # Python 3.11's C parser reads the API's "...290Z" directly.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return parse_datetime(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def decode_status(payload: Any, *, job_id: str, operation: Operation | None = None) -> BatchStatus:
    """Decode a status reply of either documented shape into a :class:`BatchStatus`.

    An unknown status word gives :attr:`BatchState.UNKNOWN` (the word is kept in
    ``state_word``); a reply that is not a status at all raises.

    :param payload: the decoded JSON reply.
    :param job_id: the id that was asked for, used when the reply names none.
    :param operation: the operation the caller knows, used when the reply names none.
    :raises ProtocolError: when the payload is not a status object.
    """
    if not isinstance(payload, Mapping):
        raise ProtocolError(f"status reply is not a JSON object but {type(payload).__name__}")
    word = payload.get("status", payload.get("state"))
    if not isinstance(word, str):
        if word is None:
            raise ProtocolError("status reply has no 'status' field")
        raise ProtocolError(f"status reply's 'status' is not a string: {str(word)[:40]!r}")
    state = normalise_state(word)

    if "totalItems" in payload or "processedItems" in payload or "failedItems" in payload:
        # The newer OpenAPI shape counts failed items inside processedItems.
        total = _count(payload, "totalItems")
        error = _count(payload, "failedItems") or 0
        processed = _count(payload, "processedItems") or 0
        finished = max(processed - error, 0)
    else:
        total = _count(payload, "totalCount")
        finished = _count(payload, "finishedCount") or 0
        error = _count(payload, "errorCount") or 0

    if "response" in payload:
        succeeded, failed = _split_response(payload.get("response"))
    else:
        succeeded = _results(payload.get("results"), True, "results")
        failed = _results(payload.get("errors"), False, "errors")

    raw_id = payload.get("jobId", payload.get("batchId", payload.get("id")))
    reported_id = job_id if raw_id is None or isinstance(raw_id, (dict, list)) else str(raw_id)

    raw_operation = payload.get("operation")
    decoded_operation = None
    if isinstance(raw_operation, str):
        decoded_operation = _OPERATIONS.get(raw_operation) or _OPERATIONS.get(
            _squash(raw_operation)
        )

    created = payload.get("createdAt")
    started = payload.get("startedAt")
    return BatchStatus(
        job_id=reported_id,
        operation=decoded_operation or operation,
        state=state,
        state_word=word,
        total_count=total,
        finished_count=finished,
        error_count=error,
        created_at=_timestamp(created),
        started_at=_timestamp(started),
        succeeded=succeeded,
        failed=failed,
        raw=payload,
    )


def decode_job_id(payload: Any) -> str:
    """Read the job id from a creation reply ``{"jobId": ...}``.

    :raises ProtocolError: when the reply carries no usable job id.
    """
    if isinstance(payload, Mapping):
        for key in ("jobId", "batchId", "id"):
            value = payload.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            if isinstance(value, str) and value.strip():
                return value.strip()
    raise ProtocolError(f"creation reply carries no job id: {str(payload)[:200]!r}")


def _error_class(http_status: int, code: int | None) -> type[APIError]:
    if http_status in (401, 403) or (code is not None and 1000 <= code < 2000):
        return AuthenticationError
    if http_status == 404:
        return NotFoundError
    if http_status == 429:
        return RateLimitError
    if http_status >= 500:
        return ServerError
    if 400 <= http_status < 500:
        return InvalidRequestError
    return APIError


def decode_error(http_status: int, body: bytes, *, retry_after: float | None = None) -> APIError:
    """Turn an error reply into the matching :class:`APIError` subclass.

    A Gameball error body gives code, type, message and request id; any other
    body (HTML from a proxy, plain text, nothing) is kept as truncated text.
    """
    payload: Any = None
    try:
        payload = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        payload = None
    code: int | None = None
    type_: str | None = None
    request_id: str | None = None
    text: str | None = None
    if isinstance(payload, Mapping):
        code = _code(payload.get("code"))
        type_ = _text(payload.get("type"))
        request_id = _text(payload.get("requestId", payload.get("traceId")))
        message = _text(payload.get("message")) or type_ or "no message"
    else:
        text = body[:_TEXT_LIMIT].decode("utf-8", "replace") if body else None
        message = f"non-JSON error body: {text!r}" if text else "empty error body"
    cls = _error_class(http_status, code)
    error = cls(
        message[:_TEXT_LIMIT],
        http_status=http_status,
        code=code,
        type=type_[:100] if type_ else None,
        request_id=request_id[:100] if request_id else None,
        body=text,
    )
    if isinstance(error, RateLimitError):
        error.retry_after = retry_after
    return error


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header, or ``None``.

    Reads both forms of RFC 9110: delay-seconds and an HTTP date. A date in the
    past means "now" (0.0); an unreadable value is ignored.

    :param value: the header value, or ``None`` when absent.
    :param now: the current time as a Unix timestamp (``time.time()``).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone stated
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)
