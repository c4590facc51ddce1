"""OpenTelemetry traces and metrics of a session, without glue.

Needs ``opentelemetry-api`` (the ``otel`` extra); nothing else in the package
imports OpenTelemetry, and nothing is traced until :func:`instrument` is
called::

    from gameball_async import GameballSession
    from gameball_async.otel import instrument

    gb = GameballSession()
    instrument(gb)  # the global tracer and meter providers, or pass your own

Traces: one span per job, ``gameball.batch <operation>``, from its creation
request to its terminal state (see :func:`instrument` for its attributes). With
OpenTelemetry's aiohttp-client instrumentation on (``AioHttpClientInstrumentor``,
or an ``http_session=`` built with its ``create_trace_config()``), the requests
made for a job (its creation, the status polls the shared scheduler sends for
it, a stop) are child spans of the job's span, although one background task
polls for every job.

Metrics: every field of :meth:`GameballSession.stats` as an observable
instrument named ``gameball.<field>`` (``gameball.jobs_awaited`` a gauge, the
others counters; ``gameball.limiter_wait_seconds`` in seconds).

No attribute or metric carries a key, a customer id or anything of an item.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Final

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from ._models import BatchState
from ._session import GameballSession
from ._stats import STATS_FIELDS
from ._version import __version__

if TYPE_CHECKING:
    from ._models import BatchStatus, Operation
    from ._observer import RequestKind

__all__ = [
    "ATTR_ENDED_BY_CLOSE",
    "ATTR_FAILED_ITEMS",
    "ATTR_ITEM_COUNT",
    "ATTR_JOB_ID",
    "ATTR_OPERATION",
    "ATTR_OUTCOME",
    "ATTR_POLLS",
    "ATTR_REATTACHED",
    "INSTRUMENTATION_NAME",
    "instrument",
]

INSTRUMENTATION_NAME: Final = "gameball_async"
"""The instrumentation scope of the tracer and the meter."""

ATTR_OPERATION: Final = "gameball.operation"
"""The job's operation (``cashback``, ``customers``...)."""

ATTR_JOB_ID: Final = "gameball.job.id"
"""The job's id, once the creation reply named it."""

ATTR_ITEM_COUNT: Final = "gameball.job.item_count"
"""Items in the job (sent, or as the terminal status counts them)."""

ATTR_OUTCOME: Final = "gameball.job.outcome"
"""The terminal state word (``Completed``, ``Failed``, ``Stopped``)."""

ATTR_FAILED_ITEMS: Final = "gameball.job.failed_item_count"
"""Items the terminal status counts as failed."""

ATTR_POLLS: Final = "gameball.job.polls"
"""Status polls the shared scheduler sent for the job."""

ATTR_ENDED_BY_CLOSE: Final = "gameball.job.ended_by_close"
"""``True`` on a job whose span the session's close ended before its terminal
state."""

ATTR_REATTACHED: Final = "gameball.job.reattached"
"""``True`` on the span of a job this session did not create (``gb.job(id)``,
``gb.resume(token)``): its span starts when it is first awaited."""

_ERROR_TYPE: Final = "error.type"  # OpenTelemetry's semantic convention


def instrument(
    session: GameballSession,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    traces: bool = True,
    metrics: bool = True,
    attributes: Mapping[str, str] | None = None,
) -> None:
    """Trace a session's jobs and expose its stats as OpenTelemetry instruments.

    Call it once per session, before or after it opens (jobs created before
    get a span when next awaited).

    Each job gets one span, ``gameball.batch <operation>`` (kind INTERNAL), a
    child of whatever span is current where it is created (or first awaited),
    from its creation request to the first terminal status the session sees
    (by a poll, ``refresh()``, ``get_status()`` or a stop). Attributes:
    :data:`ATTR_OPERATION`, :data:`ATTR_JOB_ID`, :data:`ATTR_ITEM_COUNT`,
    :data:`ATTR_OUTCOME`, :data:`ATTR_FAILED_ITEMS`, :data:`ATTR_POLLS`, and
    :data:`ATTR_REATTACHED` or :data:`ATTR_ENDED_BY_CLOSE` when they apply. Its
    status is ERROR for a job that ended Failed, and for a creation that made no
    job (``error.type`` names the exception; its message is not recorded, as
    it may quote the server). A job never awaited to its end has its span ended
    when the session closes.

    :param session: the session to instrument.
    :param tracer_provider: where spans go; ``None`` for the global provider.
    :param meter_provider: where the instruments live; ``None`` for the global provider.
    :param traces: trace the session's jobs.
    :param metrics: register the session's stats as observable instruments
        (they hold the session weakly, and observe nothing once it is gone).
    :param attributes: attributes of every metric observation, e.g.
        ``{"gameball.account": "eu"}`` to tell several sessions apart (never put
        a key in them).
    :raises ValueError: when the session is instrumented already (for traces).
    """
    if traces:
        tracer = trace.get_tracer(INSTRUMENTATION_NAME, __version__, tracer_provider)
        session._watch(_JobTracer(tracer))
    if metrics:
        meter = otel_metrics.get_meter(INSTRUMENTATION_NAME, __version__, meter_provider)
        _register_stats(meter, session, dict(attributes or {}))


def _register_stats(
    meter: otel_metrics.Meter, session: GameballSession, labels: dict[str, str]
) -> None:
    for field in STATS_FIELDS:
        name = f"gameball.{field.name}"
        callback = _observer_of(session, field.name, labels)
        if field.gauge:
            meter.create_observable_gauge(
                name, callbacks=[callback], unit=field.unit, description=field.help
            )
        else:
            meter.create_observable_counter(
                name, callbacks=[callback], unit=field.unit, description=field.help
            )


def _observer_of(
    session: GameballSession, name: str, labels: dict[str, str]
) -> otel_metrics.CallbackT:
    # a meter lives as long as the application: it must not keep a session alive
    held = weakref.ref(session)

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        current = held()
        if current is None:
            return ()
        # stats() works on a session not opened yet, and on a closed one
        return (Observation(getattr(current.stats(), name), labels),)

    return observe


class _JobSpan:
    """The span of one job, with what it counts until its end."""

    __slots__ = ("items", "polls", "span")

    def __init__(self, span: Span, items: int | None) -> None:
        self.span = span
        self.items = items
        self.polls = 0


class _Creating:
    """A creation request's scope: its span becomes the job's once created."""

    __slots__ = ("_tracer", "job", "job_id")

    def __init__(self, tracer: _JobTracer, job: _JobSpan) -> None:
        self._tracer = tracer
        self.job = job
        self.job_id: str | None = None

    def created(self, job_id: str) -> None:
        self.job_id = job_id
        self.job.span.set_attribute(ATTR_JOB_ID, job_id)
        self._tracer.jobs[job_id] = self.job


class _JobTracer:
    """The session's observer (``_observer.Observer``): one span per job."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        #: the open span of each job, by job id
        self.jobs: dict[str, _JobSpan] = {}

    @contextmanager
    def creating(self, operation: Operation, items: int) -> Iterator[_Creating]:
        span = self._tracer.start_span(
            f"gameball.batch {operation.value}",
            kind=SpanKind.INTERNAL,
            attributes={ATTR_OPERATION: operation.value, ATTR_ITEM_COUNT: items},
        )
        scope = _Creating(self, _JobSpan(span, items))
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield scope
        except BaseException as exc:
            if scope.job_id is None:
                _no_job(span, exc)
            raise
        finally:
            otel_context.detach(token)
        if scope.job_id is None:  # not reached: a creation returns a job or raises
            span.end()

    def job_awaited(self, job_id: str, operation: Operation | None) -> None:
        if job_id in self.jobs:
            return
        name = "gameball.batch" if operation is None else f"gameball.batch {operation.value}"
        attributes: dict[str, str | bool] = {ATTR_JOB_ID: job_id, ATTR_REATTACHED: True}
        if operation is not None:
            attributes[ATTR_OPERATION] = operation.value
        span = self._tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
        self.jobs[job_id] = _JobSpan(span, None)

    def around_request(self, job_id: str, kind: RequestKind) -> AbstractContextManager[None]:
        job = self.jobs.get(job_id)
        if job is None:
            return _NOTHING
        if kind == "poll":
            job.polls += 1
        return _current(job.span)

    def status_seen(self, status: BatchStatus) -> None:
        if not status.is_terminal:
            return
        job = self.jobs.pop(status.job_id, None)
        if job is None:
            return
        span = job.span
        if job.items is None and status.total_count is not None:
            span.set_attribute(ATTR_ITEM_COUNT, status.total_count)
        if status.operation is not None:
            span.set_attribute(ATTR_OPERATION, status.operation.value)
        span.set_attribute(ATTR_OUTCOME, status.state.value)
        span.set_attribute(ATTR_FAILED_ITEMS, status.error_count or 0)
        span.set_attribute(ATTR_POLLS, job.polls)
        if status.state is BatchState.FAILED:
            span.set_status(Status(StatusCode.ERROR, "the batch job failed"))
        span.end()

    def session_closed(self) -> None:
        jobs, self.jobs = self.jobs, {}
        for job in jobs.values():
            job.span.set_attribute(ATTR_POLLS, job.polls)
            job.span.set_attribute(ATTR_ENDED_BY_CLOSE, True)
            job.span.end()


def _no_job(span: Span, exc: BaseException) -> None:
    # the type only: a message may quote the server's reply
    span.set_attribute(_ERROR_TYPE, type(exc).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"no job was created ({type(exc).__name__})"))
    span.end()


_NOTHING: Final[AbstractContextManager[None]] = nullcontext()


@contextmanager
def _current(span: Span) -> Iterator[None]:
    # made current in the task sending the request (the scheduler's, for a poll),
    # so the HTTP client's span is a child of the job's
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)
