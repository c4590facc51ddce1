"""Value types of the fake server: fault knobs, scripted replies, recorded requests.

These are plain frozen attrs classes with no I/O, so a test can build, compare
and print them freely.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs

from ._flags import flag_metadata as _cli

__all__ = [
    "FAULT_ROUTES",
    "DEFAULT_FAULT_ROUTES",
    "Faults",
    "InjectedReply",
    "InjectAction",
    "InjectRoute",
    "RecordedRequest",
    "Route",
]

#: The route kinds a recorded request can have.
Route = Literal["create", "status", "stop", "other"]
#: The route kinds :meth:`FakeGameball.inject` accepts (``"any"`` matches the three API routes).
InjectRoute = Literal["create", "status", "stop", "any"]
#: What a scripted reply does, see :class:`InjectedReply`.
InjectAction = Literal["reply", "drop", "drop_after", "slow"]

#: Routes random faults can apply to.
FAULT_ROUTES: Final[frozenset[str]] = frozenset({"create", "status", "stop"})
#: Default value of :attr:`Faults.routes`: every API route.
DEFAULT_FAULT_ROUTES: Final[frozenset[str]] = FAULT_ROUTES

_INJECT_ACTIONS: Final[frozenset[str]] = frozenset({"reply", "drop", "drop_after", "slow"})


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability in 0..1, got {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is None:
        return
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _to_latency(value: Sequence[float]) -> tuple[float, float]:
    low, high = value
    return (float(low), float(high))


def _check_latency(
    _instance: object, _attribute: attrs.Attribute[tuple[float, float]], value: tuple[float, float]
) -> None:
    low, high = value
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high):
        raise ValueError(f"latency must be (min, max) with 0 <= min <= max, got {value!r}")


def _to_routes(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(value)


def _check_routes(
    _instance: object, _attribute: attrs.Attribute[frozenset[str]], value: frozenset[str]
) -> None:
    unknown = value - FAULT_ROUTES
    if unknown:
        raise ValueError(f"unknown fault routes {sorted(unknown)}; use {sorted(FAULT_ROUTES)}")


@attrs.frozen(kw_only=True)
class Faults:
    """Seeded random fault injection for :class:`FakeGameball`.

    Every probability is checked per request, in this fixed order, with one
    draw each from the server's seeded random generator (so a run is
    reproducible): ``http_429``, ``http_500``, ``http_503``, ``drop``, ``slow``,
    ``malformed_json``, ``unknown_status``. The first hit wins.

    :param http_429: reply 429 with a Gameball error body and ``Retry-After``;
        the request is not processed.
    :param http_500: reply 500 (code 5000); the request is not processed.
    :param http_503: reply 503 (code 5003) with ``Retry-After``; not processed.
    :param drop: drop the connection without a reply. On ``create`` the job is
        created first (the ambiguous case: the request took effect).
    :param slow: wait ``slow_seconds`` and then handle the request normally.
    :param malformed_json: reply 200, ``application/json``, with a truncated
        body (on ``create`` the job is created).
    :param unknown_status: a status reply of a non-terminal job carries an
        undocumented status word; never applied to terminal jobs.
    :param slow_seconds: delay of a ``slow`` fault, in seconds.
    :param latency: ``(min, max)`` uniform random extra delay per request, seconds.
    :param retry_after: value of ``Retry-After`` on random 429/503 faults;
        ``None`` leaves the header out.
    :param retry_after_http_date: send ``Retry-After`` as an HTTP date.
    :param routes: which routes (``create``, ``status``, ``stop``) faults apply to.
    :raises ValueError: on a probability outside 0..1 or an unknown route.
    """

    http_429: float = attrs.field(
        default=0.0,
        validator=_probability,
        metadata=_cli("probability of a 429", flag="--fault-429"),
    )
    http_500: float = attrs.field(
        default=0.0,
        validator=_probability,
        metadata=_cli("probability of a 500", flag="--fault-500"),
    )
    http_503: float = attrs.field(
        default=0.0,
        validator=_probability,
        metadata=_cli("probability of a 503", flag="--fault-503"),
    )
    drop: float = attrs.field(
        default=0.0, validator=_probability, metadata=_cli("probability of a dropped connection")
    )
    slow: float = attrs.field(
        default=0.0, validator=_probability, metadata=_cli("probability of a slow reply")
    )
    malformed_json: float = attrs.field(
        default=0.0,
        validator=_probability,
        metadata=_cli("probability of a truncated JSON body", flag="--fault-malformed"),
    )
    unknown_status: float = attrs.field(
        default=0.0,
        validator=_probability,
        metadata=_cli("probability of an undocumented status word"),
    )
    slow_seconds: float = attrs.field(
        default=1.0,
        validator=_non_negative,
        metadata=_cli("delay of a slow reply, seconds", flag="--slow-seconds"),
    )
    latency: tuple[float, float] = attrs.field(
        default=(0.0, 0.0),
        converter=_to_latency,
        validator=_check_latency,
        metadata=_cli("uniform random extra delay per request, seconds", flag="--latency"),
    )
    retry_after: float | None = attrs.field(
        default=1.0,
        validator=_non_negative,
        metadata=_cli("Retry-After of random 429/503 faults, seconds ('none': no header)"),
    )
    retry_after_http_date: bool = attrs.field(
        default=False, metadata=_cli("send Retry-After as an HTTP date")
    )
    routes: frozenset[str] = attrs.field(
        default=DEFAULT_FAULT_ROUTES,
        converter=_to_routes,
        validator=_check_routes,
        metadata=_cli("routes the faults apply to (create, status, stop)"),
    )

    def probabilities(self) -> tuple[tuple[str, float], ...]:
        """The fault kinds and their probabilities, in the order they are checked.

        :return: ``(kind, probability)`` pairs; kinds are ``"429"``, ``"500"``,
            ``"503"``, ``"drop"``, ``"slow"``, ``"malformed"``, ``"unknown_status"``.
        """
        return (
            ("429", self.http_429),
            ("500", self.http_500),
            ("503", self.http_503),
            ("drop", self.drop),
            ("slow", self.slow),
            ("malformed", self.malformed_json),
            ("unknown_status", self.unknown_status),
        )


def _check_action(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if value not in _INJECT_ACTIONS:
        raise ValueError(f"action must be one of {sorted(_INJECT_ACTIONS)}, got {value!r}")


def _to_headers(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


@attrs.frozen(kw_only=True)
class InjectedReply:
    """A scripted reply, queued with :meth:`FakeGameball.inject`.

    :param status: HTTP status of a ``"reply"``.
    :param headers: extra response headers of a ``"reply"``.
    :param body: body of a ``"reply"``: bytes as is, a mapping or list as JSON.
        ``None`` gives a Gameball error body for a status >= 400 and an empty
        body otherwise.
    :param action: ``"reply"`` answers with the above instead of handling the
        request; ``"drop"`` drops the connection without handling it;
        ``"drop_after"`` handles it (a creation creates the job) and then drops
        the connection; ``"slow"`` waits ``delay`` and handles it normally.
    :param delay: seconds to wait before acting (any action).
    """

    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_to_headers)
    body: bytes | Mapping[str, Any] | list[Any] | None = None
    action: InjectAction = attrs.field(default="reply", validator=_check_action)
    delay: float = attrs.field(default=0.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request as the fake received it.

    :param method: HTTP method.
    :param path: URL path, base path included.
    :param route: ``"create"``, ``"status"``, ``"stop"`` or ``"other"``.
    :param operation: the batch operation of a creation, else ``None``.
    :param headers: a plain copy of the request headers, keys as received.
    :param body: the raw request body.
    :param arrived_at: the server clock (``time.monotonic()`` by default) on arrival.
    :param reply_status: HTTP status replied; 0 while in flight or when the
        connection was dropped.
    :param fault: which fault or injection applied: ``"429"``, ``"500"``,
        ``"503"``, ``"drop"``, ``"slow"``, ``"malformed"``, ``"unknown_status"``,
        ``"rate_limited"`` (a real rate-limit 429) or ``"injected:<action>"``.
    """

    method: str
    path: str
    route: Route
    operation: str | None
    headers: dict[str, str]
    body: bytes
    arrived_at: float
    reply_status: int = 0
    fault: str | None = None
