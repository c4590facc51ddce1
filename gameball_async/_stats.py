"""What a session has done so far, for a metrics endpoint.

The transport, the poller and the session bump plain counters on the hot path
(no locks: one event loop); :meth:`GameballSession.stats` copies them into a
frozen :class:`SessionStats` for the caller to export.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import attrs

__all__ = ["STATS_FIELDS", "Counters", "SessionStats", "StatsField"]


@attrs.frozen(kw_only=True)
class SessionStats:
    """A snapshot of one session's counters since it opened.

    Counters only grow (except ``jobs_awaited``, a gauge), so a metrics system
    can export them as such: ``gameball_async.prometheus.GameballCollector``
    and ``gameball_async.otel.instrument`` do.

    :ivar requests: HTTP requests sent (every attempt counts).
    :ivar retries: requests sent again by the retry policy (creations, reads,
        stops; the polls of a wait are counted in ``polls_failed``).
    :ivar rate_limited: 429 replies received.
    :ivar server_errors: 5xx replies received.
    :ivar network_errors: requests that failed in the network (refused,
        dropped, timed out, TLS).
    :ivar jobs_created: jobs this session created.
    :ivar ambiguous_creations: creations that may or may not have landed
        (:class:`AmbiguousSubmissionError`; never resent).
    :ivar polls: status polls sent by the shared scheduler.
    :ivar polls_failed: scheduler polls that failed transiently and were
        rescheduled.
    :ivar jobs_awaited: jobs with at least one waiter now (a gauge).
    :ivar limiter_wait_seconds: time requests spent waiting for the rate
        limiter, summed over requests.
    """

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    network_errors: int = 0
    jobs_created: int = 0
    ambiguous_creations: int = 0
    polls: int = 0
    polls_failed: int = 0
    jobs_awaited: int = 0
    limiter_wait_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The counters as a plain dict, e.g. for a JSON metrics endpoint."""
        return attrs.asdict(self)


class StatsField(NamedTuple):
    """How an exporter shows one field of :class:`SessionStats`."""

    name: str
    gauge: bool  # else a counter: it only grows
    unit: str  # UCUM, as OpenTelemetry writes units
    help: str


#: Every field of :class:`SessionStats`, in order, for the exporters
#: (``gameball_async.prometheus``, ``gameball_async.otel``).
STATS_FIELDS: Final = (
    StatsField("requests", False, "{request}", "HTTP requests sent (every attempt counts)."),
    StatsField("retries", False, "{request}", "Requests sent again by the retry policy."),
    StatsField("rate_limited", False, "{reply}", "429 replies received."),
    StatsField("server_errors", False, "{reply}", "5xx replies received."),
    StatsField("network_errors", False, "{request}", "Requests that failed in the network."),
    StatsField("jobs_created", False, "{job}", "Batch jobs this session created."),
    StatsField(
        "ambiguous_creations",
        False,
        "{request}",
        "Creations that may or may not have created a job (never resent).",
    ),
    StatsField("polls", False, "{request}", "Status polls sent by the shared scheduler."),
    StatsField("polls_failed", False, "{request}", "Scheduler polls that failed transiently."),
    StatsField("jobs_awaited", True, "{job}", "Jobs with at least one waiter now."),
    StatsField(
        "limiter_wait_seconds",
        False,
        "s",
        "Seconds requests spent waiting for the client-side rate limiter, summed.",
    ),
)


class Counters:
    """The mutable counters behind :class:`SessionStats` (one per session)."""

    __slots__ = (
        "ambiguous_creations",
        "jobs_created",
        "limiter_wait_seconds",
        "network_errors",
        "rate_limited",
        "requests",
        "retries",
        "server_errors",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.rate_limited = 0
        self.server_errors = 0
        self.network_errors = 0
        self.jobs_created = 0
        self.ambiguous_creations = 0
        self.limiter_wait_seconds = 0.0

    def snapshot(self, *, polls: int, polls_failed: int, jobs_awaited: int) -> SessionStats:
        """A frozen copy, with the scheduler's figures added."""
        return SessionStats(
            requests=self.requests,
            retries=self.retries,
            rate_limited=self.rate_limited,
            server_errors=self.server_errors,
            network_errors=self.network_errors,
            jobs_created=self.jobs_created,
            ambiguous_creations=self.ambiguous_creations,
            polls=polls,
            polls_failed=polls_failed,
            jobs_awaited=jobs_awaited,
            limiter_wait_seconds=self.limiter_wait_seconds,
        )
