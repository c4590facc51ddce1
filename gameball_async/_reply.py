"""What one try of a request means, as pure functions: a usable reply, or a
:class:`Miss` naming what went wrong (for the retry rules) with the error to
raise. Also the server's delay (``Retry-After`` against the reply's own
``Date``), a redirect's target host, and the redaction of the keys from text
that is shown.

Reply bytes are never altered; the keys are redacted only in the text shown
(exception messages and attributes).
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from datetime import timezone
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from ._decode import decode_error, decode_json, parse_retry_after
from ._errors import APIError, GameballError, ProtocolError, RedirectError, TransportError
from ._http import Answer, Failed
from ._retry_rules import Outcome

__all__ = [
    "CreationGuard",
    "Miss",
    "Reply",
    "api_error",
    "read_answer",
    "read_failure",
    "redact",
    "redirect_target",
    "server_delay",
]


@attrs.frozen
class Reply:
    """A successful (2xx) reply: status, decoded JSON (or ``None``) and Retry-After."""

    status: int
    payload: Any
    retry_after: float | None


@attrs.frozen(kw_only=True)
class Miss:
    """One try that gave no usable reply.

    :ivar outcome: what went wrong, for the retry rules.
    :ivar error: what is raised when the try is not repeated.
    :ivar why: what a creation that got this reports as the reason it may have landed.
    :ivar retry_after: the server's delay, clamped to ``max_retry_after``.
    :ivar too_long: the server asked for more than ``max_retry_after``.
    """

    outcome: Outcome
    error: GameballError
    why: str
    retry_after: float | None = None
    too_long: bool = False


class CreationGuard:
    """What a creation's caller and the task sending it share.

    :ivar in_flight: a request is on its way (its limiter slot taken): it may
        create a job, so it must not be cancelled.
    :ivar stop: the caller has gone (or the session is closing): no more tries.
    """

    __slots__ = ("in_flight", "stop")

    def __init__(self) -> None:
        self.in_flight = False
        self.stop = False


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every key in ``text`` with ``***``, and a key's first characters
    left at the end of a text that was cut at a length limit."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return _trim_cut_key(text, secrets)


# A key's first characters at the end of a text that was cut (replies are quoted
# up to 40, 100, 200 or 500 characters): fewer than this many reveal nothing.
_CUT_KEY_MIN: Final = 4
_CLOSERS: Final = "'\")]}"


def _trim_cut_key(text: str, secrets: Sequence[str]) -> str:
    # The cut may be followed by the closing quote of a repr'd excerpt.
    body = text.rstrip(_CLOSERS)
    tail = text[len(body) :]
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(body)), _CUT_KEY_MIN - 1, -1):
            if body.endswith(secret[:size]):
                return body[:-size] + "***" + tail
    return text


def server_delay(retry_after: str | None, date: str | None, *, now: float) -> float | None:
    """Seconds a reply's ``Retry-After`` asks for (not yet clamped), or ``None``.

    An HTTP-date is measured against the reply's own ``Date`` header when it has
    a readable one, so a server clock that is off does not stretch the delay;
    else against ``now``.

    :param retry_after: the ``Retry-After`` header value, if any.
    :param date: the reply's ``Date`` header value, if any.
    :param now: the local time as a Unix timestamp.
    """
    if retry_after is None:
        return None
    if date is not None:
        try:
            sent = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError):
            pass
        else:
            if sent.tzinfo is None:
                sent = sent.replace(tzinfo=timezone.utc)
            now = sent.timestamp()
    return parse_retry_after(retry_after, now=now)


def redirect_target(location: str | None, base_url: str) -> str:
    """The host (and port) a redirect points to, for a message: never its path
    or query, which may carry anything.

    :param location: the ``Location`` header, if any.
    :param base_url: the session's base URL, whose host a relative location keeps.
    """
    if not location:
        return "nowhere (no Location header)"
    try:
        parts = urlsplit(location.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable Location"
    if not host:
        host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
        if not host:
            return "an unreadable Location"
    return f"{host}:{port}" if port else host


def read_answer(
    method: str,
    path: str,
    answer: Answer,
    *,
    max_retry_after: float,
    base_url: str,
    secrets: Sequence[str],
    now: float,
) -> Reply | Miss:
    """What an HTTP reply means: a 2xx with JSON (or no body), or a :class:`Miss`.

    :param max_retry_after: the clamp of the server's delay.
    :param base_url: the session's base URL, whose host a relative redirect keeps.
    :param secrets: the keys, redacted from every error's text.
    :param now: the local time as a Unix timestamp (for an HTTP-date ``Retry-After``).
    """
    status, headers, data = answer.status, answer.headers, answer.data
    delay = headers.get("Retry-After")
    asked = None if delay is None else server_delay(delay, headers.get("Date"), now=now)
    retry_after = min(asked, max_retry_after) if asked is not None else None
    too_long = asked is not None and asked > max_retry_after
    error: GameballError
    if status < 300:
        payload = _payload(data)
        if payload is not _GARBLED:
            return Reply(status, payload, retry_after)
        outcome, why = Outcome.UNDECODABLE, "the reply to the creation was not JSON"
        error = ProtocolError(f"{method} {path} answered {status} with a non-JSON body")
    elif status < 400:
        target = redact(redirect_target(headers.get("Location"), base_url), secrets)
        outcome, why = Outcome.REDIRECT, f"the server answered {status}, a redirect to {target}"
        error = RedirectError(
            f"{method} {path} answered {status}, a redirect to {target}; redirects are "
            "never followed (the keys would travel with them): check base_url and routes",
            http_status=status,
        )
    else:
        default = Outcome.SERVER_ERROR if status >= 500 else Outcome.CLIENT_ERROR
        outcome, why = _ERROR_OUTCOMES.get(status, default), f"the server answered {status}"
        error = api_error(status, data, retry_after, secrets)
    return Miss(outcome=outcome, error=error, why=why, retry_after=retry_after, too_long=too_long)


_ERROR_OUTCOMES: Final = {429: Outcome.RATE_LIMITED, 503: Outcome.UNAVAILABLE}


def read_failure(method: str, path: str, failed: Failed, secrets: Sequence[str]) -> Miss:
    """The :class:`TransportError` of a request that got no reply, as a :class:`Miss`."""
    reason = redact(failed.reason, secrets)
    if failed.outcome is Outcome.TLS_FAILED:
        text = f"TLS failed for {method} {path}: {reason}"
    elif failed.outcome is Outcome.NEVER_CONNECTED:
        text = f"could not connect for {method} {path}: {reason}"
    else:
        text = f"{method} {path} failed: {reason}"
    return Miss(outcome=failed.outcome, error=TransportError(text), why=text)


def api_error(
    status: int, data: bytes, retry_after: float | None, secrets: Sequence[str]
) -> APIError:
    """The :class:`APIError` of an error reply, the keys redacted from all it shows."""
    error = decode_error(status, data, retry_after=retry_after)
    if secrets:
        error.message = redact(error.message, secrets)
        error.args = (error.message,)
        if error.body is not None:
            error.body = redact(error.body, secrets)
        # str(error) shows these too: a server echoing a header must not leak it
        if error.type is not None:
            error.type = redact(error.type, secrets)
        if error.request_id is not None:
            error.request_id = redact(error.request_id, secrets)
    return error


_GARBLED: Final = object()


def _payload(data: bytes) -> Any:
    if not data.strip():
        return None
    try:
        return decode_json(data, "the reply")  # its message is not shown: read_answer words it
    except ProtocolError:
        return _GARBLED
