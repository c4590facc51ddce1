"""What the transport reads from a reply, as pure functions: the server's delay
(``Retry-After`` against the reply's own ``Date``), a redirect's target host,
and the redaction of the keys from text that is shown."""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from datetime import timezone
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from ._decode import parse_retry_after
from ._errors import GameballError

__all__ = ["CreationGuard", "Miss", "Reply", "redact", "redirect_target", "server_delay"]


@attrs.frozen
class Reply:
    """A successful (2xx) reply: status, decoded JSON (or ``None``) and Retry-After."""

    status: int
    payload: Any
    retry_after: float | None


@attrs.frozen
class Miss:
    """One attempt that gave no usable reply and certainly created nothing.

    :ivar retry_after: the server's delay, clamped to ``max_retry_after``.
    :ivar too_long: the server asked for more than ``max_retry_after``.
    """

    error: GameballError
    retryable: bool
    retry_after: float | None
    too_long: bool = attrs.field(kw_only=True)


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
