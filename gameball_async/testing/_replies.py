"""aiohttp response builders of the fake: JSON, Gameball errors, faults, drops."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import time
from typing import Any

from aiohttp import web

from ._faults import Faults, InjectedReply
from ._wire import error_body, error_for_status, http_status

__all__ = [
    "drop_connection",
    "error_response",
    "fault_response",
    "iso_timestamp",
    "json_response",
    "malformed_response",
    "scripted_response",
]


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response.

    :param status: HTTP status.
    :param payload: a JSON-serialisable value.
    :param headers: extra headers.
    :return: the response.
    """
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        headers=headers,
    )


def error_response(
    code: int, request_id: str, message: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """A Gameball error reply, with the HTTP status of its code.

    :param code: Gameball error code.
    :param request_id: the ``requestId`` of the body.
    :param message: overrides the code's default message.
    :param headers: extra headers.
    :return: the response.
    """
    return json_response(http_status(code), error_body(code, request_id, message), headers)


def fault_response(code: int, request_id: str, faults: Faults) -> web.Response:
    """The reply of a random 429/500/503 fault.

    429 and 503 carry ``Retry-After`` as :class:`Faults` configures it.

    :param code: 2002 (429), 5000 (500) or 5003 (503).
    :param request_id: the ``requestId`` of the body.
    :param faults: the fault configuration.
    :return: the response.
    """
    headers: dict[str, str] = {}
    retry_after = faults.retry_after
    if http_status(code) in (429, 503) and retry_after is not None:
        if faults.retry_after_http_date:
            headers["Retry-After"] = email.utils.formatdate(time.time() + retry_after, usegmt=True)
        else:
            headers["Retry-After"] = f"{retry_after:g}"
    return error_response(code, request_id, headers=headers)


def scripted_response(injected: InjectedReply, request_id: str) -> web.Response:
    """The reply of an :class:`InjectedReply` with action ``"reply"``.

    :param injected: the scripted reply.
    :param request_id: ``requestId`` of a generated error body.
    :return: the response.
    """
    headers = dict(injected.headers)
    body = injected.body
    if body is None:
        payload = b""
        if injected.status >= 400:
            payload = json.dumps(error_for_status(injected.status, request_id)).encode()
    elif isinstance(body, bytes):
        payload = body
    else:
        payload = json.dumps(body).encode()
    if payload and not any(key.lower() == "content-type" for key in headers):
        headers["Content-Type"] = "application/json"
    return web.Response(status=injected.status, body=payload, headers=headers)


def malformed_response(response: web.Response) -> web.Response:
    """A 200 JSON reply whose body is the first half of ``response``'s (never valid JSON).

    :param response: the reply the request would have had.
    :return: the truncated response.
    """
    raw = response.body if isinstance(response.body, bytes) else b""
    return web.Response(body=raw[: len(raw) // 2] or b'{"', content_type="application/json")


def drop_connection(request: web.Request) -> web.StreamResponse:
    """Abort the request's connection; return the response a handler should return.

    aiohttp then fails to write that response to the aborted transport and
    treats it as a premature client disconnection: nothing is sent, nothing is
    logged, and the client sees the connection close without a reply.

    :param request: the request being handled.
    :return: a placeholder response, never sent.
    """
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=204)


def iso_timestamp(wall: float) -> str:
    """A UTC ISO 8601 timestamp with milliseconds and a ``Z`` suffix.

    :param wall: seconds since the epoch.
    :return: e.g. ``"2024-10-16T08:13:29.290Z"``.
    """
    moment = dt.datetime.fromtimestamp(wall, tz=dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
