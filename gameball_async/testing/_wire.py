"""Wire facts of the fake: routes, Gameball error bodies and payload validation.

All pure functions: bytes in, items or a :class:`PayloadError` out.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "CREATE_ROUTES",
    "DOCUMENTATION_URL",
    "ERROR_STATUS",
    "MAX_ITEMS",
    "OPERATIONS",
    "RATE_LIMIT_CODE",
    "PayloadError",
    "error_body",
    "error_for_status",
    "error_type",
    "http_status",
    "is_iso_datetime",
    "is_number",
    "parse_creation",
    "validate_item",
]

#: Operation name -> creation route relative to the base path: the eight Batch API creations.
CREATE_ROUTES: Final[Mapping[str, str]] = {
    "customers": "/batch/customers",
    "orders": "/batch/orders",
    "order-transactions": "/batch/orders/transactions",
    "balance-inquiry": "/batch/balance-inquiry",
    "balance-adjustment": "/batch/balance-adjustment",
    "cashback": "/batch/cashback",
    "redeem": "/batch/redeem",
    "events": "/batch/events",
}
OPERATIONS: Final[tuple[str, ...]] = tuple(CREATE_ROUTES)
MAX_ITEMS: Final = 1000
DOCUMENTATION_URL: Final = "https://developer.gameball.co/api-reference/error-codes"
#: Gameball documents no code for a rate-limit reply; the fake uses this one.
RATE_LIMIT_CODE: Final = 2002

#: code -> (HTTP status, type, default message).
_ERRORS: Final[Mapping[int, tuple[int, str, str]]] = {
    1000: (401, "Unauthorized", "Invalid or missing API key or secret key."),
    1001: (401, "MissingSecretKey", "The SecretKey header is required."),
    2002: (429, "TooManyRequests", "Rate limit exceeded, retry later."),
    3000: (400, "MissingArguments", "Missing arguments: the batch body is empty."),
    3003: (422, "InvalidValue", "Invalid value."),
    3011: (422, "OperationExceedsLimits", "A batch holds at most 1000 items."),
    3016: (400, "InvalidPayload", 'Invalid payload: expected {"body": [items]}.'),
    4004: (404, "NotFound", "Resource not found."),
    5000: (500, "InternalServerError", "Internal server error."),
    5003: (503, "ServiceUnavailable", "Service temporarily unavailable."),
    7000: (404, "CustomerNotFound", "Customer not found."),
    9004: (422, "DuplicateTransactionId", "Duplicate transaction id."),
    9008: (422, "InsufficientBalance", "Insufficient balance."),
}

#: HTTP status -> the code the fake uses for a generic error of that status.
ERROR_STATUS: Final[Mapping[int, int]] = {
    400: 3016,
    401: 1000,
    404: 4004,
    422: 3003,
    429: RATE_LIMIT_CODE,
    500: 5000,
    503: 5003,
}


def error_body(code: int, request_id: str, message: str | None = None) -> dict[str, Any]:
    """Build a Gameball error body.

    :param code: Gameball error code (1000, 3003, ...).
    :param request_id: the ``requestId`` to report.
    :param message: overrides the default message of the code.
    :return: ``{"code", "type", "message", "documentationUrl", "requestId"}``.
    """
    _status, type_, default = _ERRORS.get(code, (500, "Error", "Error."))
    return {
        "code": code,
        "type": type_,
        "message": message if message is not None else default,
        "documentationUrl": DOCUMENTATION_URL,
        "requestId": request_id,
    }


def error_type(code: int) -> str:
    """The ``type`` string of a Gameball error code.

    :param code: Gameball error code.
    :return: its type name (``"Error"`` for a code the fake does not know).
    """
    return _ERRORS.get(code, (500, "Error", ""))[1]


def http_status(code: int) -> int:
    """The HTTP status a Gameball error code is replied with.

    :param code: Gameball error code.
    :return: the HTTP status (500 for a code the fake does not know).
    """
    return _ERRORS.get(code, (500, "", ""))[0]


def error_for_status(status: int, request_id: str) -> dict[str, Any]:
    """A generic Gameball error body for an HTTP status.

    :param status: HTTP status >= 400.
    :param request_id: the ``requestId`` to report.
    :return: an error body whose code matches the status family.
    """
    code = ERROR_STATUS.get(status, 5000 if status >= 500 else 3003)
    return error_body(code, request_id)


class PayloadError(Exception):
    """A creation payload the API rejects.

    :param code: Gameball error code (3000, 3003, 3011, 3016).
    :param message: the message naming what is wrong.
    """

    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message or error_body(code, "")["message"])
        self.code = code
        self.status = http_status(code)
        self.message = message


_ISO_RE: Final = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)

_CHANNELS: Final = frozenset({"mobile", "pos", "web", "callcenter"})

# (field, kind, required) per operation; kinds are checked by _check_value.
_FIELDS: Final[Mapping[str, tuple[tuple[str, str, bool], ...]]] = {
    "customers": (
        ("customerId", "id", True),
        ("email", "str", False),
        ("mobile", "str", False),
        ("deviceToken", "str", False),
        ("osType", "str", False),
        ("referrerCode", "str", False),
        ("guest", "bool", False),
        ("customerAttributes", "attributes", False),
    ),
    "orders": (
        ("customerId", "id", True),
        ("orderId", "id", True),
        ("orderDate", "datetime", True),
        ("totalPaid", "number", True),
    ),
    "balance-inquiry": (("customerId", "id", True),),
    "balance-adjustment": (
        ("customerId", "id", True),
        ("amount", "number", True),
        ("reason", "str", False),
    ),
    "cashback": (
        ("customerId", "id", True),
        ("transactionId", "id", True),
        ("transactionTime", "datetime", True),
        ("amount", "number", True),
        ("email", "str", False),
        ("mobile", "str", False),
    ),
    "redeem": (
        ("customerId", "id", True),
        ("transactionId", "id", True),
        ("transactionTime", "datetime", True),
        ("amount", "number", False),
        ("points", "int", False),
        ("holdReference", "str", False),
        ("email", "str", False),
        ("mobile", "str", False),
    ),
    "events": (("customerId", "id", True), ("events", "events", True)),
}


def is_number(value: object) -> bool:
    """Whether a JSON value is a finite number (``bool`` is not a number).

    :param value: a decoded JSON value.
    :return: ``True`` for a finite ``int`` or ``float``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def is_iso_datetime(value: object) -> bool:
    """Whether a value is an ISO 8601 date or datetime string.

    :param value: a decoded JSON value.
    :return: ``True`` for e.g. ``"2024-10-16T08:13:29.290Z"``.
    """
    if not isinstance(value, str):
        return False
    match = _ISO_RE.match(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups()[:6])
    try:
        dt.datetime(year, month, day, hour, minute, second)  # range check only
    except ValueError:
        return False
    return True


def _check_value(kind: str, value: object) -> str | None:
    """Return a problem description, or ``None`` when the value is fine."""
    if kind == "id":
        return None if isinstance(value, str) and value else "must be a non-empty string"
    if kind == "str":
        return None if isinstance(value, str) else "must be a string"
    if kind == "bool":
        return None if isinstance(value, bool) else "must be a boolean"
    if kind == "number":
        return None if is_number(value) else "must be a number"
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be an integer"
    if kind == "datetime":
        return None if is_iso_datetime(value) else "must be an ISO 8601 datetime string"
    if kind == "attributes":
        if not isinstance(value, dict):
            return "must be an object"
        channel = value.get("channel")
        if channel is not None and channel not in _CHANNELS:
            return f"channel must be one of {sorted(_CHANNELS)}"
        return None
    if kind == "events":
        if not isinstance(value, dict) or not value:
            return "must be a non-empty object of event name -> metadata object"
        for name, meta in value.items():
            if not isinstance(meta, dict):
                return f"metadata of event {name!r} must be an object"
        return None
    raise AssertionError(kind)  # pragma: no cover


def validate_item(operation: str, index: int, item: object) -> None:
    """Check one item of a creation payload.

    :param operation: the batch operation.
    :param index: the item's position, for the message.
    :param item: the decoded item.
    :raises PayloadError: code 3003 naming ``body[index].field``.
    """
    if operation == "order-transactions":
        if not (isinstance(item, str) and item):
            raise PayloadError(3003, f"Invalid value at body[{index}]: must be an order id string")
        return
    if not isinstance(item, dict):
        raise PayloadError(3003, f"Invalid value at body[{index}]: must be an object")
    for field, kind, required in _FIELDS[operation]:
        value = item.get(field)
        if value is None:
            if required:
                raise PayloadError(3003, f"Invalid value at body[{index}].{field}: is required")
            continue
        problem = _check_value(kind, value)
        if problem is not None:
            raise PayloadError(3003, f"Invalid value at body[{index}].{field}: {problem}")


def parse_creation(raw: bytes, operation: str) -> list[Any]:
    """Decode and validate a creation request body.

    :param raw: the request body.
    :param operation: the batch operation of the route.
    :return: the items, as decoded.
    :raises PayloadError: 3016 (not ``{"body": [...]}``), 3000 (no items),
        3011 (more than 1000 items) or 3003 (a bad item, naming index and field).
    """
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise PayloadError(3016, "Invalid payload: the body is not valid JSON.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("body"), list):
        raise PayloadError(3016)
    items: list[Any] = payload["body"]
    if not items:
        raise PayloadError(3000)
    if len(items) > MAX_ITEMS:
        raise PayloadError(3011, f"A batch holds at most {MAX_ITEMS} items, got {len(items)}.")
    for index, item in enumerate(items):
        validate_item(operation, index, item)
    return items
