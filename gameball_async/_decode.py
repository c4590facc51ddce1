"""Pure decoding of what the server sends: statuses, job ids, errors, Retry-After.

Nothing here does I/O: bytes, status codes and header values in; a model or an
exception out. That keeps the tolerance rules testable on their own: the API
drifts, so status words are read in any case and in the spellings other Gameball
documents use (``pending`` is queued; ``processing`` and ``inProgress`` are
running; ``finished`` is completed), and both documented reply shapes decode
into one model: the developer guide's (``totalCount``, ``finishedCount``,
``errorCount``, ``response``) and the newer OpenAPI file's (``batchId``,
``progress``, ``totalItems``, ``processedItems``, ``failedItems``, ``results``).
"""

from __future__ import annotations

import email.utils
import math
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Final

from ._decode_items import NO_RESULTS, code_of, natural, read_results, squash, text_of
from ._errors import (
    APIError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
)
from ._json import make_loads
from ._models import BatchState, BatchStatus, Operation
from ._wire import parse_datetime

__all__ = [
    "decode_error",
    "decode_job_id",
    "decode_json",
    "decode_status",
    "normalise_state",
    "parse_retry_after",
]

# not Final: benchmarks/_common.pure_json swaps in the pure codec
_loads: Callable[[bytes | str], Any] = make_loads()


_STATE_WORDS: Final[dict[str, BatchState]] = {
    **dict.fromkeys(
        ("queued", "pending", "waiting", "created", "new", "submitted"), BatchState.QUEUED
    ),
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
    **{squash(op.value): op for op in Operation},
}


_RESULT_FIELDS: Final = frozenset({"response", "results", "errors", "succeeded", "failed"})
# Any one of these with a value makes an object a status reply (see decode_status).
_STATUS_FIELDS: Final = (
    "status",
    "state",
    "totalCount",
    "finishedCount",
    "errorCount",
    "totalItems",
    "processedItems",
    "failedItems",
    "progress",
    "response",
    "results",
    "errors",
)
_SHOWN_WORD: Final = 200
_SUMMARY_TEXT: Final = 1000

_TEXT_LIMIT: Final = 500


# The words as the API spells them, looked up before any normalising.
_EXACT_STATES: Final[dict[str, BatchState]] = {
    # SUBMITTED is this client's own word for "not polled yet": a server saying
    # "Submitted" means queued
    **{
        state.value: state
        for state in BatchState
        if state not in (BatchState.UNKNOWN, BatchState.SUBMITTED)
    },
    **_STATE_WORDS,
}


def normalise_state(word: str) -> BatchState:
    """Map a status word in any case or documented spelling to a :class:`BatchState`."""
    state = _EXACT_STATES.get(word)
    if state is None:
        state = _STATE_WORDS.get(squash(word), BatchState.UNKNOWN)
    return state


def decode_json(body: bytes, what: str) -> Any:
    """Parse a JSON reply body.

    :raises ProtocolError: when the body is not JSON (a truncated excerpt is kept).
    """
    try:
        return _loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # nesting too deep: not JSON to us
        excerpt = body[:200].decode("utf-8", "replace")
        raise ProtocolError(f"{what} is not JSON: {excerpt!r}") from None


def _count(payload: Mapping[str, Any], key: str) -> int | None:
    """A count as the reply gives it, or ``None`` when it is absent or unreadable.

    An unreadable count (negative, ``true``, ``"many"``, ``1.5``) is treated as
    not reported rather than a broken reply: the state word still decides the
    outcome, and raising here would hold a finished job in polling.
    """
    value = payload.get(key)
    if type(value) is int:  # the usual case, first
        return value if value >= 0 else None
    return natural(value)


def _summary(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The reply's small top-level fields: what a running job's status keeps as ``raw``.

    Every awaited job holds one until its next poll, so the field names and
    the words that repeat from job to job (status, operation) are interned:
    10,000 jobs then share one copy of each instead of keeping 10,000.
    """
    summary: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _RESULT_FIELDS:
            continue
        kept = value
        if isinstance(value, str):
            if len(value) > _SUMMARY_TEXT:
                continue
            if key in _SHARED_WORDS:
                kept = sys.intern(value)
        elif value is not None and not isinstance(value, (bool, int, float)):
            continue
        summary[sys.intern(key) if type(key) is str else key] = kept
    return summary


# fields whose values repeat across jobs
_SHARED_WORDS: Final = frozenset({"status", "state", "operation"})


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        # Python 3.11's C parser reads the API's "...290Z" directly.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return parse_datetime(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _reported_id(payload: Mapping[str, Any]) -> str | None:
    value = payload.get("jobId")
    if value is None:
        value = payload.get("batchId")
        if value is None:
            value = payload.get("id")
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None  # an object, a list, or a fraction names no job we could compare


def decode_status(
    payload: Any,
    *,
    job_id: str,
    operation: Operation | None = None,
    results: bool = True,
) -> BatchStatus:
    """Decode a status reply of either documented shape into a :class:`BatchStatus`.

    A status reply is a JSON object that carries at least one status field
    with a value: the status word (``status`` or ``state``), a count
    (``totalCount``, ``finishedCount``, ``errorCount``, ``totalItems``,
    ``processedItems``, ``failedItems``, ``progress``) or per-item results
    (``response``, ``results``, ``errors``). Anything else (not an object,
    ``{}``, an error body, a creation reply ``{"jobId": 7}``) is not a status.

    Within a status reply no field's shape raises, so a drifting API never
    ends a wait: a status word that is not a known string gives
    :attr:`BatchState.UNKNOWN` (polled on) with ``state_word`` holding it as
    text (``""`` when absent); an unreadable count counts as not reported; the
    per-item results are read from lists, JSON strings, wrapper objects
    (``{"items": [...]}``), objects keyed by item index (``{"3": {...}}``) and
    single result objects, and a scalar where results belong stays in ``raw``
    only.

    :param payload: the decoded JSON reply.
    :param job_id: the id that was asked for.
    :param operation: the operation the caller knows, used when the reply names none.
    :param results: with ``False``, a non-terminal reply is decoded without its
        per-item results, and its ``raw`` keeps only the reply's top-level
        scalar fields (state, counts, timestamps): a running 1,000-item job's
        status then costs a few hundred bytes instead of the whole reply. A
        terminal reply is always decoded with its results (read lazily) and
        its whole ``raw``, so a poller can pass ``False`` on every poll.
    :raises ProtocolError: when the payload is not a status reply, or names
        another job than ``job_id`` (compared as strings; a reply naming no
        job is taken as the one asked for).
    """
    if not isinstance(payload, Mapping):
        raise ProtocolError(f"status reply is not a JSON object but {type(payload).__name__}")
    word = payload.get("status")
    if word is None:
        word = payload.get("state")
    if type(word) is str:  # the usual case, first
        state = normalise_state(word)
    else:
        state = BatchState.UNKNOWN
        if word is None:
            if not any(payload.get(key) is not None for key in _STATUS_FIELDS):
                raise ProtocolError(
                    f"reply is not a status: it has none of the status fields "
                    f"(keys: {sorted(str(key)[:20] for key in payload)[:10]})"
                )
            word = ""
        else:
            word = str(word)[:_SHOWN_WORD] if not isinstance(word, str) else word

    reported = _reported_id(payload)
    if reported is not None and reported != job_id:
        raise ProtocolError(f"status reply for job {job_id!r} names another job: {reported[:40]!r}")

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

    raw: Mapping[str, Any] = payload
    if results or state.is_terminal:
        succeeded, failed = read_results(payload)
    else:
        succeeded = failed = NO_RESULTS
        raw = _summary(payload)

    raw_operation = payload.get("operation")
    decoded_operation = None
    if isinstance(raw_operation, str):
        decoded_operation = _OPERATIONS.get(raw_operation) or _OPERATIONS.get(squash(raw_operation))

    return BatchStatus(
        job_id=job_id,
        operation=decoded_operation or operation,
        state=state,
        state_word=word,
        total_count=total,
        finished_count=finished,
        error_count=error,
        created_at=_timestamp(payload.get("createdAt")),
        started_at=_timestamp(payload.get("startedAt")),
        succeeded=succeeded,
        failed=failed,
        raw=raw,
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
        payload = _loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        payload = None
    code: int | None = None
    type_: str | None = None
    request_id: str | None = None
    text: str | None = None
    if isinstance(payload, Mapping):
        code = code_of(payload.get("code"))
        type_ = text_of(payload.get("type"))
        request_id = text_of(payload.get("requestId", payload.get("traceId")))
        message = text_of(payload.get("message")) or type_ or "no message"
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
