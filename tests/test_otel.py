"""``gameball_async.otel``: a span per job, request spans as its children, the
stats as observable instruments, and nothing secret in any of them (issue 17 §2)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections.abc import Iterator, Sequence
from contextlib import aclosing
from typing import Any

import aiohttp
import anyio
import pytest
from _memory_fleet import MemoryAttachment, MemoryFleet
from _support import PATIENCE, WHEN, FakeFactory, gets_by_job, session
from opentelemetry.instrumentation.aiohttp_client import (
    AioHttpClientInstrumentor,
    create_trace_config,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gameball_async import BatchState, BatchStatus, GameballSession, InvalidRequestError, Operation
from gameball_async._coordination import Fetch, SessionLink
from gameball_async.otel import (
    ATTR_ENDED_BY_CLOSE,
    ATTR_FAILED_ITEMS,
    ATTR_ITEM_COUNT,
    ATTR_JOB_ID,
    ATTR_OPERATION,
    ATTR_OUTCOME,
    ATTR_POLLS,
    ATTR_REATTACHED,
    instrument,
)
from gameball_async.testing import FakeGameball, InjectedReply

pytestmark = pytest.mark.anyio

# customer ids no attribute may carry (nor the fake's keys)
KNOWN = "customer-known-4f1e"
GHOST = "customer-ghost-9b2c"


def cashbacks(customers: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"customerId": c, "transactionId": f"tx-{n}", "transactionTime": WHEN, "amount": 2.5}
        for n, c in enumerate(customers)
    ]


class Traces:
    """A tracer provider exporting to memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def jobs(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith("gameball.batch")]

    def job(self, job_id: str) -> ReadableSpan:
        (span,) = [s for s in self.jobs() if (s.attributes or {}).get(ATTR_JOB_ID) == job_id]
        return span

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans()
            if s.parent is not None and s.parent.span_id == parent.context.span_id
        ]


@pytest.fixture
def traces() -> Iterator[Traces]:
    made = Traces()
    yield made
    made.provider.shutdown()


def methods(spans: Sequence[ReadableSpan]) -> list[str]:
    return sorted(s.name.split()[0] for s in spans)


def points(data: MetricsData | None) -> dict[str, NumberDataPoint]:
    """The one data point of each metric read, by metric name."""
    assert data is not None
    found: dict[str, NumberDataPoint] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "gameball_async"
            for metric in scope.metrics:
                (point,) = metric.data.data_points
                assert isinstance(point, NumberDataPoint)
                found[metric.name] = point
    return found


def assert_nothing_secret(fake: FakeGameball, *texts: str) -> None:
    for text in texts:
        for secret in (fake.api_key, fake.secret_key, KNOWN, GHOST):
            assert secret not in text


class TestJobSpans:
    async def test_a_completed_job_is_one_span_from_creation_to_its_end(
        self, fake: FakeGameball, traces: Traces
    ) -> None:
        async with session(fake) as gb:
            instrument(gb, tracer_provider=traces.provider, metrics=False)
            job = await gb.create_batch("cashback", cashbacks([KNOWN] * 3))
            with anyio.fail_after(PATIENCE):
                status = await job
        assert status.state is BatchState.COMPLETED
        span = traces.job(job.job_id)
        assert span.name == "gameball.batch cashback"
        assert dict(span.attributes or {}) == {
            ATTR_OPERATION: "cashback",
            ATTR_JOB_ID: job.job_id,
            ATTR_ITEM_COUNT: 3,
            ATTR_OUTCOME: "Completed",
            ATTR_FAILED_ITEMS: 0,
            ATTR_POLLS: gets_by_job(fake)[job.job_id],
        }
        assert span.status.status_code is StatusCode.UNSET
        assert len(traces.jobs()) == 1

    async def test_a_failed_job_is_an_error_with_its_failed_items_counted(
        self, fake_factory: FakeFactory, traces: Traces
    ) -> None:
        # the first item fails (unknown customer) and the job fails after it
        fake = await fake_factory(customers={KNOWN: 100.0}, failed_job_rate=1.0)
        async with session(fake) as gb:
            instrument(gb, tracer_provider=traces.provider, metrics=False)
            job = await gb.create_batch("cashback", cashbacks([GHOST, KNOWN, KNOWN, KNOWN]))
            with anyio.fail_after(PATIENCE):
                status = await job.wait(raise_on_failure=False)
        assert status.state is BatchState.FAILED
        assert status.error_count >= 1
        span = traces.job(job.job_id)
        attributes = span.attributes or {}
        assert attributes[ATTR_OUTCOME] == "Failed"
        assert attributes[ATTR_FAILED_ITEMS] == status.error_count
        assert span.status.status_code is StatusCode.ERROR

    async def test_a_stopped_job_ends_stopped(
        self, fake_factory: FakeFactory, traces: Traces
    ) -> None:
        fake = await fake_factory(processing_rate=1.0)  # 50 s of work: it is stopped first
        async with session(fake) as gb:
            instrument(gb, tracer_provider=traces.provider, metrics=False)
            job = await gb.create_batch("cashback", cashbacks([KNOWN] * 50))
            with anyio.fail_after(PATIENCE):
                status = await job.stop(wait=True)
        assert status is not None
        assert status.state is BatchState.STOPPED
        span = traces.job(job.job_id)
        assert (span.attributes or {})[ATTR_OUTCOME] == "Stopped"
        assert span.status.status_code is StatusCode.UNSET

    async def test_a_job_never_awaited_to_its_end_is_ended_by_the_close(
        self, fake_factory: FakeFactory, traces: Traces
    ) -> None:
        fake = await fake_factory(processing_rate=1.0)
        async with session(fake) as gb:
            instrument(gb, tracer_provider=traces.provider, metrics=False)
            job = await gb.create_batch("cashback", cashbacks([KNOWN] * 50))
            assert traces.jobs() == []  # open while the job runs
        span = traces.job(job.job_id)
        attributes = span.attributes or {}
        assert attributes[ATTR_ENDED_BY_CLOSE] is True
        assert ATTR_OUTCOME not in attributes
        assert span.end_time is not None

    async def test_a_job_attached_by_id_gets_a_span_when_first_awaited(
        self, fake: FakeGameball, traces: Traces
    ) -> None:
        async with session(fake) as gb:
            created = await gb.create_batch("cashback", cashbacks([KNOWN] * 2))
            instrument(gb, tracer_provider=traces.provider, metrics=False)  # after the creation
            job = gb.job(created.job_id)
            assert traces.jobs() == []
            with anyio.fail_after(PATIENCE):
                await job
        span = traces.job(job.job_id)
        assert span.name == "gameball.batch"  # the handle was given no operation
        attributes = span.attributes or {}
        assert attributes[ATTR_REATTACHED] is True
        assert attributes[ATTR_ITEM_COUNT] == 2  # from the terminal status
        assert attributes[ATTR_OUTCOME] == "Completed"

    async def test_a_creation_refused_is_an_error_span_without_a_job(
        self, fake: FakeGameball, traces: Traces
    ) -> None:
        fake.inject("create", InjectedReply(status=400, body={"message": f"bad {GHOST}"}))
        async with session(fake) as gb:
            instrument(gb, tracer_provider=traces.provider, metrics=False)
            with pytest.raises(InvalidRequestError):
                await gb.create_batch("cashback", cashbacks([GHOST]))
        (span,) = traces.jobs()
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "InvalidRequestError"
        assert ATTR_JOB_ID not in (span.attributes or {})
        assert_nothing_secret(fake, span.to_json())

    async def test_instrumenting_twice_is_refused(
        self, gb: GameballSession, traces: Traces
    ) -> None:
        instrument(gb, tracer_provider=traces.provider, metrics=False)
        with pytest.raises(ValueError, match="instrumented already"):
            instrument(gb, tracer_provider=traces.provider, metrics=False)


class _FollowerAttachment(MemoryAttachment):
    """Reads statuses through another session, as a fleet follower hears of them
    from the process that polls: no request of the instrumented session."""

    def __init__(self, fleet: MemoryFleet, link: SessionLink, reader: GameballSession) -> None:
        super().__init__(fleet, link)
        self._reader = reader

    @property
    def fetch(self) -> Fetch:
        async def read(job_id: str, operation: Operation | None) -> tuple[BatchStatus, None]:
            return await self._reader.get_status(job_id), None

        return read


class _FollowerFleet(MemoryFleet):
    def __init__(self, reader: GameballSession) -> None:
        super().__init__()
        self._reader = reader

    def attach(self, link: SessionLink) -> MemoryAttachment:
        attachment = _FollowerAttachment(self, link, self._reader)
        self.attachments.append(attachment)
        return attachment


async def test_a_status_from_the_fleet_ends_the_span(fake: FakeGameball, traces: Traces) -> None:
    async with session(fake) as reader:
        async with session(fake, fleet=_FollowerFleet(reader)) as gb:
            instrument(gb, tracer_provider=traces.provider, metrics=False)
            job = await gb.create_batch("cashback", cashbacks([KNOWN] * 2))
            with anyio.fail_after(PATIENCE):
                await job
            span = traces.job(job.job_id)  # ended before the session closed
        attributes = span.attributes or {}
        assert attributes[ATTR_OUTCOME] == "Completed"
        assert attributes[ATTR_POLLS] == 0  # every status came through the fleet
        assert ATTR_ENDED_BY_CLOSE not in attributes


class TestRequestSpans:
    async def test_a_borrowed_instrumented_session_nests_each_request_in_its_job(
        self, fake_factory: FakeFactory, traces: Traces
    ) -> None:
        fake = await fake_factory(processing_rate=1.0)
        trace_config = create_trace_config(tracer_provider=traces.provider)
        async with (
            aiohttp.ClientSession(trace_configs=[trace_config]) as http,
            session(fake, http_session=http) as gb,
        ):
            instrument(gb, tracer_provider=traces.provider, metrics=False)
            slow = await gb.create_batch("cashback", cashbacks([KNOWN] * 50))
            with anyio.fail_after(PATIENCE):
                # polled by the scheduler's task, then stopped
                async with aclosing(slow.watch()) as statuses:
                    async for status in statuses:
                        if status.state is BatchState.RUNNING:
                            break
                await slow.stop(wait=True)
        span = traces.job(slow.job_id)
        children = traces.children(span)
        polls = gets_by_job(fake)[slow.job_id]
        assert methods(children) == sorted(["POST", "DELETE"] + ["GET"] * polls)
        assert {c.context.trace_id for c in children} == {span.context.trace_id}
        assert (span.attributes or {})[ATTR_POLLS] == polls
        assert_nothing_secret(fake, *(s.to_json() for s in traces.spans()))

    async def test_the_global_instrumentor_nests_the_owned_sessions_requests(
        self, fake: FakeGameball, traces: Traces
    ) -> None:
        instrumentor = AioHttpClientInstrumentor()
        instrumentor.instrument(tracer_provider=traces.provider)
        try:
            async with session(fake) as gb:
                instrument(gb, tracer_provider=traces.provider, metrics=False)
                jobs = [await gb.create_batch("cashback", cashbacks([KNOWN] * 2)) for _ in range(3)]
                with anyio.fail_after(PATIENCE):
                    for job in jobs:
                        await job
        finally:
            instrumentor.uninstrument()
        for job in jobs:
            children = traces.children(traces.job(job.job_id))
            polls = gets_by_job(fake)[job.job_id]
            assert polls >= 1
            assert methods(children) == sorted(["POST"] + ["GET"] * polls)
        # nothing else was sent, so no request span is left outside a job
        http = [s for s in traces.spans() if not s.name.startswith("gameball.batch")]
        assert len(http) == fake.counts["create"] + fake.counts["status"]
        assert_nothing_secret(fake, *(s.to_json() for s in traces.spans()))


class TestMetrics:
    async def test_the_instruments_read_the_sessions_stats(
        self, fake: FakeGameball, traces: Traces
    ) -> None:
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader])
        try:
            async with session(fake) as gb:
                instrument(
                    gb,
                    tracer_provider=traces.provider,
                    meter_provider=meters,
                    attributes={"gameball.account": "test"},
                )
                fake.inject("create", InjectedReply(status=503))  # a retry to count
                job = await gb.create_batch("cashback", cashbacks([KNOWN] * 2))
                with anyio.fail_after(PATIENCE):
                    await job
                expected = gb.stats().to_dict()
                data = reader.get_metrics_data()
                assert gb.stats().to_dict() == expected  # nothing moved meanwhile
            observed = points(data)
            assert {name: point.value for name, point in observed.items()} == {
                f"gameball.{name}": value for name, value in expected.items()
            }
            for point in observed.values():
                assert dict(point.attributes or {}) == {"gameball.account": "test"}
            assert expected["retries"] == 1
            assert data is not None
            assert_nothing_secret(fake, data.to_json())
        finally:
            meters.shutdown()

    async def test_a_closed_session_still_reports(self, fake: FakeGameball) -> None:
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader])
        try:
            gb = GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url)
            instrument(gb, meter_provider=meters, traces=False)
            await gb.close()
            observed = points(reader.get_metrics_data())
            assert {name: point.value for name, point in observed.items()} == {
                f"gameball.{name}": value for name, value in gb.stats().to_dict().items()
            }
        finally:
            meters.shutdown()


async def test_the_instruments_do_not_keep_a_session_alive(fake: FakeGameball) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    try:
        gb = GameballSession(fake.api_key, fake.secret_key, base_url=fake.base_url)
        instrument(gb, meter_provider=meters, traces=False)
        gone = weakref.ref(gb)
        del gb
        gc.collect()
        assert gone() is None
        data = reader.get_metrics_data()
        observed = [
            metric.data.data_points
            for resource in (data.resource_metrics if data is not None else ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
        ]
        assert all(points == [] for points in observed)
    finally:
        meters.shutdown()


def test_importing_the_package_imports_no_exporter() -> None:
    code = (
        "import sys, gameball_async, gameball_async.testing\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "('opentelemetry', 'prometheus_client')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
