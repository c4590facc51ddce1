"""A FastAPI service in front of Gameball's Batch API, ready to copy.

Run it (``pip install gameball_async fastapi uvicorn``)::

    export GAMEBALL_API_KEY=... GAMEBALL_SECRET_KEY=...
    export GAMEBALL_JOBS_FILE=/var/lib/myservice/gameball-jobs.json   # optional
    uvicorn --app-dir examples fastapi_service:app --port 8080

    curl -X POST localhost:8080/batches/balance-inquiry -H 'content-type: application/json' \\
         -d '[{"customerId": "c1"}, {"customerId": "c2"}]'
    curl localhost:8080/jobs/<job id>

Routes:

- ``POST /batches/{operation}``: a JSON array of items (camelCase, as Gameball
  takes them) is split into jobs of up to 1,000 items with ``submit_many``;
  ``202`` with each job's id, its ``input_range`` (positions of its items in the
  upload) and its status URL. A bad item: ``422`` naming its index and field
  (FastAPI's ``detail`` shape, ``loc`` = ``["body", index, field]``); each chunk
  is checked as it is submitted, so chunks before or after a bad one may have
  been created: they are listed in ``jobs`` and awaited like any other. Gameball
  refusing or unreachable part-way: ``502`` listing the jobs created and each
  chunk that was not (its ``input_range`` and error; ``may_exist`` when the
  request's outcome is unknown, so look before sending those items again).
- ``GET /jobs/{job_id}``: the job's last known status, ``done`` and
  ``input_range``, from a cache kept up to date in the background (no request
  to Gameball). The status is ``BatchStatus.to_dict()``: ``Submitted`` with
  the item count until the first poll (a moment after the creation); once the
  job ended, every per-item result with the entry it came from (a balance
  inquiry's answer is there).
  ``404`` for a job this service does not know.

Guarantees:

- Nothing created is lost. Each job's token is stored the moment the job exists
  (``on_job``), before ``submit_many`` returns, even when the request is
  cancelled (the client hung up, a timeout) while a creation was in flight, and
  a ``502`` lists the jobs created before the failure.
- Each job is awaited by a background task owned by the application (an anyio
  task group in the lifespan), not by the request; the session's one scheduler
  polls all of them.
- Restarts pick up where they left off: the lifespan reattaches every stored
  job with ``gb.resume(token)``; a job leaves the store once it has ended.
- Graceful shutdown: the background waits are cancelled (the remote jobs keep
  running and their tokens stay stored), then the session closes; no task is
  left behind.

The token store is a JSON file written atomically (``GAMEBALL_JOBS_FILE``), or
memory when unset. It suits one process (``uvicorn --workers 1``): with several,
store the tokens in your database (keyed by job id) instead, and keep finished
jobs' outcomes there too (this cache forgets them on restart).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
import anyio.abc
from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from gameball_async import (
    DEFAULT_BASE_URL,
    AmbiguousSubmissionError,
    BatchJob,
    BatchStatus,
    GameballError,
    GameballSession,
    InvalidBatchError,
    InvalidJobIdError,
    NotFoundError,
    Operation,
    SubmissionError,
)

__all__ = ["JobService", "TokenStore", "Tracked", "app", "create_app", "session_from_env"]

logger: Final = logging.getLogger(__name__)

JOBS_FILE_ENV: Final = "GAMEBALL_JOBS_FILE"
#: The largest upload accepted, in items.
MAX_ITEMS: Final = 100_000
#: Items per job (Gameball's maximum).
CHUNK_SIZE: Final = 1000

SessionFactory = Callable[[], GameballSession]


def session_from_env() -> GameballSession:
    """A session from ``GAMEBALL_API_KEY``, ``GAMEBALL_SECRET_KEY`` and ``GAMEBALL_BASE_URL``.

    :raises RuntimeError: naming the variables that are not set (never a value).
    """
    names = ("GAMEBALL_API_KEY", "GAMEBALL_SECRET_KEY")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        raise RuntimeError(f"set {' and '.join(missing)} to reach Gameball")
    return GameballSession(
        os.environ["GAMEBALL_API_KEY"],
        os.environ["GAMEBALL_SECRET_KEY"],
        base_url=os.environ.get("GAMEBALL_BASE_URL", DEFAULT_BASE_URL),
    )


def _span(value: range | None) -> dict[str, int] | None:
    return None if value is None else {"start": value.start, "stop": value.stop}


class TokenStore:
    """The unfinished jobs: job id -> ``{"token": ..., "input_range": [start, stop]}``.

    Every change rewrites the file atomically (a temporary file in the same
    directory, fsynced, then renamed over it), so a crash leaves the old or the
    new content, never half of it. The writes are synchronous because
    ``on_job`` is: a few kilobytes, once per job created and once per job ended.

    :param path: the JSON file, or ``None`` to keep the tokens in memory only.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._records: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            self._records = _read_records(path)

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> dict[str, dict[str, Any]]:
        """A copy of the stored records, keyed by job id."""
        return dict(self._records)

    def put(self, job: BatchJob, input_range: range | None) -> None:
        """Store ``job``'s token (and where its items were in the upload)."""
        span = None if input_range is None else [input_range.start, input_range.stop]
        self._records[job.job_id] = {"token": job.to_token(), "input_range": span}
        self._save()

    def drop(self, job_id: str) -> None:
        """Forget a job (it ended, or the server does not know it)."""
        if self._records.pop(job_id, None) is not None:
            self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(self._records, file, indent=1, sort_keys=True)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise


def _read_records(path: Path) -> dict[str, dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of job records")
    return data


def _shown(status: BatchStatus) -> dict[str, Any]:
    # Each result keeps its entry as received (a balance inquiry's answer is only
    # there); the whole reply is left out, since it would repeat every entry.
    data = status.to_dict(raw=True)
    del data["raw"]
    return data


@dataclass
class Tracked:
    """What the service knows of one job: the handle and the cached status."""

    job: BatchJob
    input_range: range | None
    status: dict[str, Any] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The body of ``GET /jobs/{job_id}``."""
        return {
            "job_id": self.job.job_id,
            "operation": None if self.job.operation is None else self.job.operation.value,
            "input_range": _span(self.input_range),
            "done": self.job.done(),
            "status": self.status,
            "error": self.error,
        }


class JobService:
    """The jobs of this service, and the background tasks awaiting them.

    :param gb: the open session.
    :param store: where unfinished jobs' tokens live.
    :param tasks: the lifespan's task group; it owns the background waits.
    """

    def __init__(self, gb: GameballSession, store: TokenStore, tasks: anyio.abc.TaskGroup) -> None:
        self.gb = gb
        self.store = store
        self.jobs: dict[str, Tracked] = {}
        self.watching = 0
        self._tasks = tasks
        self._open = True

    def adopt(self, job: BatchJob, input_range: range | None = None) -> None:
        """Track a job, start awaiting it, and store its token (``on_job``).

        It runs synchronously the moment a job exists, so nothing can come
        between the creation and the record, even a cancelled request.
        """
        span = input_range if input_range is not None else job.input_range
        tracked = Tracked(job, span)
        if job.status is not None:
            tracked.status = _shown(job.status)
        self.jobs[job.job_id] = tracked
        if self._open:
            self._tasks.start_soon(self._follow, tracked, name=f"await job {job.job_id}")
        # Stored even while shutting down (a creation the session closes on):
        # the next start reattaches it.
        self.store.put(job, span)

    def reattach(self) -> None:
        """Resume every stored job (called at startup)."""
        for job_id, record in self.store.records().items():
            try:
                job = self.gb.resume(record["token"])
            except (InvalidJobIdError, KeyError, TypeError):
                logger.error("dropping unreadable job record %r from the store", job_id)
                self.store.drop(job_id)
                continue
            span = record.get("input_range")
            self.adopt(job, range(span[0], span[1]) if span else None)
            logger.info("reattached job %s", job_id)

    async def _follow(self, tracked: Tracked) -> None:
        job = tracked.job
        self.watching += 1
        try:
            async with aclosing(job.watch()) as statuses:
                async for status in statuses:
                    tracked.status = _shown(status)
        except NotFoundError as exc:  # waiting again cannot help
            tracked.error = str(exc)
            self.store.drop(job.job_id)
        except GameballError as exc:  # e.g. keys revoked: the token stays for a restart
            tracked.error = str(exc)
            logger.warning("stopped awaiting job %s: %s", job.job_id, exc)
        else:
            self.store.drop(job.job_id)
        finally:
            self.watching -= 1

    def close(self) -> None:
        """Cancel the background waits; the remote jobs keep running."""
        self._open = False
        self._tasks.cancel_scope.cancel()


def _failed_chunks(exc: SubmissionError, total: int) -> list[dict[str, Any]]:
    # submit_many cuts the input into CHUNK_SIZE runs in order, one job each, so a
    # failed chunk starts at a chunk boundary that no job and no unsent item holds.
    taken = {job.input_range.start for job in exc.jobs if job.input_range is not None}
    taken.update(position for position, _ in exc.not_sent)
    starts = [s for s in range(0, total, CHUNK_SIZE) if s not in taken]
    failed = []
    for start, (items, error) in zip(starts, exc.failed, strict=False):
        failed.append(
            {
                "input_range": {"start": start, "stop": start + len(items)},
                "error": str(error),
                "type": type(error).__name__,
                # the request may have created a job: look before sending these again
                "may_exist": isinstance(error, AmbiguousSubmissionError),
            }
        )
    return failed


def _path(field: str | None) -> list[str]:
    return field.split(".") if field else []


def _accepted(jobs: list[BatchJob]) -> list[dict[str, Any]]:
    return [
        {
            "job_id": job.job_id,
            "input_range": _span(job.input_range),
            "status_url": f"/jobs/{job.job_id}",
        }
        for job in jobs
    ]


def _service(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


Service = Annotated[JobService, Depends(_service)]


def create_app(
    *, session_factory: SessionFactory | None = None, jobs_file: str | Path | None = None
) -> FastAPI:
    """Build the application.

    :param session_factory: returns a new :class:`GameballSession`; by default
        :func:`session_from_env` (tests pass one pointing at a fake server).
    :param jobs_file: the token store's file; by default ``GAMEBALL_JOBS_FILE``,
        and memory when that is unset too.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        path = jobs_file if jobs_file is not None else os.environ.get(JOBS_FILE_ENV)
        store = TokenStore(Path(path) if path else None)
        factory = session_factory or session_from_env
        # Leaving the block: the task group first (the waits use the session),
        # then the session (it finishes creations in flight, whose on_job stores them).
        async with factory() as gb, anyio.create_task_group() as tasks:
            service = JobService(gb, store, tasks)
            service.reattach()
            app.state.jobs = service
            try:
                yield
            finally:
                service.close()

    app = FastAPI(title="Gameball batches", lifespan=lifespan)

    @app.post("/batches/{operation}", status_code=202)
    async def submit_batch(
        operation: Operation, items: Annotated[list[Any], Body(min_length=1)], service: Service
    ) -> Any:
        """Submit a JSON array of items; ``202`` with the jobs created."""
        if len(items) > MAX_ITEMS:
            raise HTTPException(413, f"at most {MAX_ITEMS} items per upload")
        try:
            jobs = await service.gb.submit_many(
                operation, items, chunk_size=CHUNK_SIZE, on_job=service.adopt
            )
        except SubmissionError as exc:
            # The created jobs are already stored and awaited (on_job): say which.
            bad = [error for _, error in exc.failed if isinstance(error, InvalidBatchError)]
            if bad and len(bad) == len(exc.failed) and not exc.not_sent:
                detail = [
                    {
                        "type": "invalid_item",
                        "loc": ["body", error.index, *_path(error.field)],
                        "msg": str(error),
                    }
                    for error in bad
                ]
                return JSONResponse(
                    {"detail": detail, "jobs": _accepted(exc.jobs)}, status_code=422
                )
            return JSONResponse(
                {
                    "detail": str(exc),
                    "jobs": _accepted(exc.jobs),
                    "failed": _failed_chunks(exc, len(items)),
                    "not_sent": [position for position, _ in exc.not_sent],
                },
                status_code=502,
            )
        return {"items": len(items), "jobs": _accepted(jobs)}

    @app.get("/jobs/{job_id}")
    async def job_status(job_id: str, service: Service) -> dict[str, Any]:
        """The job's cached status (``404`` for a job this service does not know)."""
        tracked = service.jobs.get(job_id)
        if tracked is None:
            raise HTTPException(404, "no such job is known to this service")
        return tracked.to_dict()

    return app


#: For ``uvicorn fastapi_service:app``; nothing is read from the environment
#: until the server starts.
app = create_app()
