"""Fault-injection soak: many jobs on FakeGameball with seeded faults on every
route, some jobs failing and some stopped mid-way, all awaited together.

One scenario, two sizes: a short run in the default suite and the full run
(2,000 jobs, bounded to 5 minutes) with ``pytest -m soak``. Each run checks:

- every job's final state is the fake's, with every per-item outcome the fake
  holds for it (no more, no fewer, the same ones);
- the items of the jobs created plus those of the chunks that failed
  (``AmbiguousSubmissionError`` or another typed error) are the items
  submitted; every job the fake made is accounted for;
- the fake created each body at most once, and a creation was only resent
  after a 429 or a 503 (the replies that prove it did not land);
- the rate limit (the same on both sides) was never exceeded;
- after ``close()`` no task is left and nothing is unclosed.

The figures of a run (jobs, faults injected by kind, outcomes, wall time) are
printed and written to ``/tmp/gameball_soak_<name>.json``.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import random
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from _support import until

from gameball_async import (
    AmbiguousSubmissionError,
    BatchJob,
    BatchState,
    GameballError,
    GameballSession,
    Operation,
    PollPolicy,
    RateLimit,
    RetryPolicy,
    SubmissionError,
    as_completed,
    wait_all,
)
from gameball_async._schema import encode_batch
from gameball_async.testing import FakeGameball, Faults

pytestmark = pytest.mark.anyio

WHEN = "2024-10-16T08:13:29.290Z"
OPERATIONS = (Operation.CASHBACK, Operation.REDEEM, Operation.BALANCE_INQUIRY)


@dataclass(frozen=True)
class SoakPlan:
    """The knobs of one soak run."""

    name: str
    chunks: int  # creation requests, one job each when all goes well
    bound: float  # seconds; only turns a hang into a failure
    rate: int = 200  # requests per second, enforced by the fake and kept by the client
    max_items: int = 20
    latency: tuple[float, float] = (0.0, 0.2)
    retry_after: float = 0.1  # Retry-After of the injected 429s and 503s
    processing_rate: float = 10.0  # items per second per job
    queue_delay: float = 0.2
    failed_job_rate: float = 0.05
    stop_share: float = 0.06  # of the chunks: half stopped by the client, half by the fake
    wave: int = 25  # jobs created, then awaited, together
    creators: int = 8  # creation requests in flight at once
    seed: int = 20240613

    def faults(self) -> Faults:
        return Faults(
            http_503=0.05,
            http_429=0.03,
            drop=0.02,
            malformed_json=0.01,
            unknown_status=0.03,
            latency=self.latency,
            retry_after=self.retry_after,
        )


SHORT = SoakPlan("short", chunks=400, bound=120.0)
LONG = SoakPlan("long", chunks=2000, bound=300.0, creators=16)


@dataclass
class Chunk:
    index: int
    operation: Operation
    items: list[dict[str, Any]]
    many: bool = False  # submitted with the rest of its wave by submit_many
    stop: str | None = None  # "client" or "fake"
    job: BatchJob | None = None
    error: GameballError | None = None

    @property
    def sha(self) -> str:
        return hashlib.sha256(encode_batch(self.operation, self.items)).hexdigest()


@dataclass
class Figures:
    """What a run did, for the record."""

    plan: dict[str, Any]
    chunks: int = 0
    items: int = 0
    jobs_created_by_fake: int = 0
    jobs_known_to_client: int = 0
    chunks_failed: dict[str, int] = field(default_factory=dict)
    ambiguous_that_landed: int = 0
    final_states: dict[str, int] = field(default_factory=dict)
    items_succeeded: int = 0
    items_failed: int = 0
    items_never_processed: int = 0
    stops: dict[str, int] = field(default_factory=dict)
    poll_errors_resumed: dict[str, int] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    max_requests_in_1s: int = 0
    polls_sent: int = 0
    wall_seconds: float = 0.0


def make_chunks(plan: SoakPlan) -> list[Chunk]:
    """The chunks to submit, seeded. Every fourth wave goes through one
    ``submit_many`` call, so its chunks share one operation and one size."""
    rng = random.Random(plan.seed)
    chunks: list[Chunk] = []
    transaction_ids: list[str] = []
    operation, size = OPERATIONS[0], 1
    for index in range(plan.chunks):
        many = (index // plan.wave) % 4 == 3
        if not many or index % plan.wave == 0:
            operation, size = rng.choice(OPERATIONS), rng.randint(1, plan.max_items)
        items = []
        for n in range(size):
            item: dict[str, Any] = {
                "customerId": f"c{rng.randrange(50)}",
                "soakItem": f"{index}.{n}",
            }  # passed through as is
            if operation is not Operation.BALANCE_INQUIRY:
                # a few reuse an earlier transaction id: those items fail with 9004
                if transaction_ids and rng.random() < 0.03:
                    transaction = rng.choice(transaction_ids)
                else:
                    transaction = f"t{index}.{n}"
                    transaction_ids.append(transaction)
                item.update(
                    transactionId=transaction,
                    transactionTime=WHEN,
                    amount=rng.choice([1, 5, 50, 400]),
                )
            items.append(item)
        chunks.append(Chunk(index, operation, items, many=many))
    long_ones = [c for c in chunks if len(c.items) >= plan.max_items // 2 and not c.many]
    stopped = rng.sample(long_ones, min(len(long_ones), round(plan.chunks * plan.stop_share)))
    for n, chunk in enumerate(stopped):
        chunk.stop = "client" if n % 2 == 0 else "fake"
    return chunks


async def run_soak(plan: SoakPlan) -> Figures:
    """Run one soak and check everything; return its figures."""
    figures = Figures(plan=asdict(plan))
    chunks = make_chunks(plan)
    assert len({c.sha for c in chunks}) == len(chunks)  # every body is distinct
    by_sha = {c.sha: c for c in chunks}
    poll_errors: Counter[str] = Counter()
    stops: Counter[str] = Counter()
    before = set(asyncio.all_tasks())
    started = time.monotonic()
    limit = RateLimit(per_second=plan.rate, per_window=plan.rate * 30, window=30.0)

    async with FakeGameball(
        faults=plan.faults(),
        seed=plan.seed,
        processing_rate=plan.processing_rate,
        queue_delay=plan.queue_delay,
        failed_job_rate=plan.failed_job_rate,
        rate_per_second=plan.rate,
        rate_per_window=plan.rate * 30,
        rate_window=30.0,
        status_shape="mixed",
        clock=time.monotonic,
    ) as fake:
        gb = GameballSession(
            fake.api_key,
            fake.secret_key,
            base_url=fake.base_url,
            rate_limit=limit,
            poll=PollPolicy(initial_delay=0.3, min_delay=0.05, max_delay=1.0),
            retry=RetryPolicy(attempts=8, backoff=0.05, max_backoff=0.5),
            max_in_flight_polls=32,
            connection_limit=64,
        )
        with anyio.fail_after(plan.bound):
            async with gb:
                slots = anyio.Semaphore(plan.creators)

                async def create(chunk: Chunk) -> None:
                    async with slots:
                        try:
                            chunk.job = await gb.create_batch(chunk.operation, chunk.items)
                        except GameballError as exc:
                            chunk.error = exc

                async def create_many(wave: list[Chunk]) -> None:
                    # one submit_many over the wave's items, in chunks of one size
                    size = len(wave[0].items)
                    items = [item for chunk in wave for item in chunk.items]
                    try:
                        jobs = await gb.submit_many(
                            wave[0].operation, items, chunk_size=size, max_concurrency=4
                        )
                        failed: list[tuple[list[Any], BaseException]] = []
                    except SubmissionError as exc:
                        jobs, failed = exc.jobs, exc.failed
                    for job in jobs:
                        by_sha[fake.jobs[int(job.job_id)].body_sha256].job = job
                    for items_, error in failed:
                        assert isinstance(error, GameballError)
                        by_sha[
                            hashlib.sha256(encode_batch(wave[0].operation, items_)).hexdigest()
                        ].error = error

                async def stopper(chunk: Chunk) -> None:
                    assert chunk.job is not None
                    fake_job = fake.jobs[int(chunk.job.job_id)]
                    # mid-way: once the fake has processed some of its items
                    await until(
                        lambda: (
                            fake_job.is_terminal(time.monotonic())
                            or fake_job.processed(time.monotonic()) > 0
                        ),
                        plan.bound,
                    )
                    if chunk.stop == "fake":
                        fake.stop_job(int(chunk.job.job_id))
                    else:
                        try:
                            await chunk.job.stop()
                        except GameballError as exc:  # retries ran out: counted, not hidden
                            stops[f"client stop failed: {type(exc).__name__}"] += 1
                    stops[f"by {chunk.stop}"] += 1

                async def await_wave(jobs: list[BatchJob]) -> None:
                    pending = jobs
                    for _ in range(5):
                        errored: list[BatchJob] = []
                        async for job in as_completed(pending):
                            if job.done():
                                continue
                            try:  # its polling ended on an error: it is raised once...
                                await job.wait(raise_on_failure=False)
                            except GameballError as exc:
                                poll_errors[type(exc).__name__] += 1
                                errored.append(job)  # ...and waiting again resumes
                        pending = errored
                        if not pending:
                            return

                async with anyio.create_task_group() as tg:
                    for first in range(0, len(chunks), plan.wave):
                        wave = chunks[first : first + plan.wave]
                        if wave[0].many:
                            await create_many(wave)
                        else:
                            async with anyio.create_task_group() as creators:
                                for chunk in wave:
                                    creators.start_soon(create, chunk)
                        created = [c.job for c in wave if c.job is not None]
                        tg.start_soon(await_wave, created)
                        for chunk in wave:
                            if chunk.stop and chunk.job is not None:
                                tg.start_soon(stopper, chunk)
                jobs = [c.job for c in chunks if c.job is not None]
                requests_before = fake.counts["requests"]
                statuses = await wait_all(jobs)  # all done: answered without a request
                assert fake.counts["requests"] == requests_before
                figures.polls_sent = gb.stats().polls
            assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("gameball_async")]
        figures.wall_seconds = round(time.monotonic() - started, 1)
        check(plan, fake, chunks, statuses, figures)
    with anyio.fail_after(10):
        while asyncio.all_tasks() - before:  # noqa: ASYNC110 - the fake's handlers ending
            await anyio.sleep(0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    figures.poll_errors_resumed = dict(poll_errors)
    figures.stops = dict(stops)
    return figures


def check(
    plan: SoakPlan, fake: FakeGameball, chunks: list[Chunk], statuses: list[Any], figures: Figures
) -> None:
    now = time.monotonic()
    created = [c for c in chunks if c.job is not None]
    failed = [c for c in chunks if c.job is None]
    assert all(c.error is not None for c in failed)
    ids = [c.job.job_id for c in created if c.job is not None]
    assert len(set(ids)) == len(ids)

    # Every job: the fake's final state, and every per-item outcome it holds.
    states: Counter[str] = Counter()
    for chunk, status in zip(created, statuses, strict=True):
        assert chunk.job is not None
        fake_job = fake.jobs[int(chunk.job.job_id)]
        assert fake_job.body_sha256 == chunk.sha  # the job holds exactly this chunk
        assert status.state is BatchState(fake.job_state(fake_job.job_id)), chunk.job
        processed = fake_job.processed(now)
        assert status.total_count == fake_job.total_count == len(chunk.items)
        assert len(status.succeeded) + len(status.failed) == processed
        assert status.finished_count + status.error_count == processed
        expected_ok = [i for i in range(processed) if fake_job.outcomes[i].ok]
        assert sorted(r.index for r in status.succeeded) == expected_ok
        assert sorted(r.index for r in status.failed) == sorted(
            set(range(processed)) - set(expected_ok)
        )
        assert all(r.code in (9004, 9008) for r in status.failed)
        states[status.state.value] += 1
        figures.items_succeeded += len(status.succeeded)
        figures.items_failed += len(status.failed)
        figures.items_never_processed += fake_job.total_count - processed

    # Items: created + failed chunks == submitted; every fake job accounted for.
    submitted = sum(len(c.items) for c in chunks)
    assert sum(len(c.items) for c in created) + sum(len(c.items) for c in failed) == submitted
    known = {c.job.job_id for c in created if c.job is not None}
    failed_shas = {c.sha: c for c in failed}
    landed = 0
    for job_id, fake_job in fake.jobs.items():
        if str(job_id) in known:
            continue
        owner = failed_shas.get(fake_job.body_sha256)
        assert owner is not None, f"fake job {job_id} belongs to no chunk"
        assert isinstance(owner.error, AmbiguousSubmissionError), owner.error
        landed += 1
    for chunk in failed:
        if not isinstance(chunk.error, AmbiguousSubmissionError):
            assert chunk.sha not in fake.created_bodies  # a non-ambiguous failure did not land

    # Never created twice; resent only after a reply that proves it did not land.
    assert set(fake.created_bodies.values()) <= {1}
    sends: dict[str, list[int]] = {}
    for request in fake.requests:
        if request.route == "create":
            sends.setdefault(hashlib.sha256(request.body).hexdigest(), []).append(
                request.reply_status
            )
    for replies in sends.values():
        assert all(status in (429, 503) for status in replies[:-1]), replies

    # The client kept the rate limit the fake enforces.
    assert fake.counts["rate_limited"] == 0
    assert fake.max_requests_in(1.0) <= plan.rate

    # The soak really was one: every kind of fault and outcome happened.
    for kind in ("503", "429", "drop", "malformed", "unknown_status"):
        assert fake.counts[f"fault:{kind}"] > 0, kind
    assert states["Failed"] > 0
    assert states["Stopped"] > 0
    assert states["Completed"] > 0

    figures.chunks = len(chunks)
    figures.items = submitted
    figures.jobs_created_by_fake = len(fake.jobs)
    figures.jobs_known_to_client = len(created)
    figures.chunks_failed = dict(Counter(type(c.error).__name__ for c in failed))
    figures.ambiguous_that_landed = landed
    figures.final_states = dict(states)
    figures.requests = {k: fake.counts[k] for k in ("requests", "create", "status", "stop")}
    figures.faults = {
        k.removeprefix("fault:"): v
        for k, v in sorted(fake.counts.items())
        if k.startswith("fault:")
    }
    figures.rate_limited = fake.counts["rate_limited"]
    figures.max_requests_in_1s = fake.max_requests_in(1.0)


def record(figures: Figures, capsys: pytest.CaptureFixture[str], *, full: bool) -> None:
    """Write the figures to /tmp; print them whole (``full``) or in one line."""
    text = json.dumps(asdict(figures), indent=2)
    where = Path(f"/tmp/gameball_soak_{figures.plan['name']}.json")
    where.write_text(text + "\n")
    summary = (
        f"{figures.jobs_known_to_client} jobs, {figures.items} items, "
        f"states {figures.final_states}, faults {figures.faults}, "
        f"{figures.wall_seconds} s (figures in {where})"
    )
    with capsys.disabled():
        print(f"\nsoak {figures.plan['name']}: " + (f"\n{text}" if full else summary))


async def test_soak_short(capsys: pytest.CaptureFixture[str]) -> None:
    figures = await run_soak(SHORT)
    record(figures, capsys, full=False)
    assert figures.jobs_known_to_client > 0.8 * SHORT.chunks


@pytest.mark.soak
async def test_soak_full(capsys: pytest.CaptureFixture[str]) -> None:
    figures = await run_soak(LONG)
    record(figures, capsys, full=True)
    assert figures.jobs_known_to_client > 0.8 * LONG.chunks
