"""A small aiohttp.web service in front of Gameball's Batch API.

``POST /batches/{operation}`` takes a JSON array of items, submits it with
``GameballSession.submit_many`` and answers ``202`` with the job ids at once;
``GET /jobs/{job_id}`` answers the job's last known status. The outcome of
every job is awaited in the background, by one task per upload (the session's
shared scheduler polls all of its jobs), owned by the application's lifecycle:
the session opens at startup, and on shutdown the background waits are
cancelled before the session closes. Cancelling a wait never stops a remote
job: a restarted service could pick the jobs up again with ``gb.job(job_id)``.

Run it::

    GAMEBALL_API_KEY=... GAMEBALL_SECRET_KEY=... python examples/aiohttp_service.py --port 8080
    curl -X POST localhost:8080/batches/balance-inquiry -d '[{"customerId": "c1"}]'
    curl localhost:8080/jobs/<job id>

This keeps its job table in memory; a real service would store job ids (and
``job.to_token()``) in its database and expire old entries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from gameball_async import (
    DEFAULT_BASE_URL,
    BatchJob,
    GameballError,
    GameballSession,
    InvalidBatchError,
    Operation,
    SubmissionError,
    as_completed,
)

__all__ = ["GAMEBALL", "JOBS", "JobTable", "Settings", "make_app"]

#: The largest upload accepted, in items (100 jobs).
MAX_ITEMS: Final = 100_000

SessionFactory = Callable[[], GameballSession]


@dataclass(frozen=True)
class Settings:
    """How to reach Gameball; :meth:`from_env` reads the usual variables."""

    api_key: str
    secret_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL

    @classmethod
    def from_env(cls) -> Settings:
        """Read ``GAMEBALL_API_KEY``, ``GAMEBALL_SECRET_KEY`` and ``GAMEBALL_BASE_URL``.

        :raises KeyError: when a key is not set.
        """
        return cls(
            api_key=os.environ["GAMEBALL_API_KEY"],
            secret_key=os.environ["GAMEBALL_SECRET_KEY"],
            base_url=os.environ.get("GAMEBALL_BASE_URL", DEFAULT_BASE_URL),
        )

    def session(self) -> GameballSession:
        """A new (unopened) session with these settings."""
        return GameballSession(self.api_key, self.secret_key, base_url=self.base_url)


@dataclass
class Tracked:
    """A job submitted through this service."""

    job: BatchJob
    error: str | None = None


class JobTable:
    """The jobs this service submitted, and the background tasks awaiting them."""

    def __init__(self) -> None:
        self.jobs: dict[str, Tracked] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def follow(self, jobs: list[BatchJob]) -> None:
        """Track ``jobs`` and await their terminal states in one background task."""
        for job in jobs:
            self.jobs[job.job_id] = Tracked(job)
        task = asyncio.get_running_loop().create_task(self._await(jobs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _await(self, jobs: list[BatchJob]) -> None:
        async for job in as_completed(jobs):
            try:
                await job.wait(raise_on_failure=False)
            except GameballError as exc:  # polling failed (e.g. 404): keep it for GET
                self.jobs[job.job_id].error = str(exc)

    async def join(self) -> None:
        """Wait until every job submitted so far has ended (or failed to poll)."""
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def aclose(self) -> None:
        """Cancel the background waits (the remote jobs keep running)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def waiting(self) -> int:
        """Background tasks still waiting."""
        return len(self._tasks)


GAMEBALL: Final = web.AppKey("gameball", GameballSession)
JOBS: Final = web.AppKey("jobs", JobTable)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def submit_batch(request: web.Request) -> web.Response:
    """``POST /batches/{operation}``: submit a JSON array; ``202`` with the job ids."""
    try:
        operation = Operation(request.match_info["operation"])
    except ValueError:
        known = ", ".join(op.value for op in Operation)
        return _error(404, f"unknown operation; use one of: {known}")
    try:
        items = await request.json()
    except ValueError:
        return _error(400, "the body is not JSON")
    if not isinstance(items, list) or not items:
        return _error(400, "expected a non-empty JSON array of items")
    if len(items) > MAX_ITEMS:
        return _error(413, f"at most {MAX_ITEMS} items per upload")
    table = request.app[JOBS]
    try:
        jobs = await request.app[GAMEBALL].submit_many(operation, items)
    except InvalidBatchError as exc:  # e.g. a bad chunk size; nothing was sent
        return _error(422, str(exc), index=exc.index, field=exc.field)
    except SubmissionError as exc:
        # Some chunks were created, others not: say exactly which, lose nothing.
        table.follow(exc.jobs)
        failed = [
            {
                "items": len(chunk),
                "error": str(error),
                "index": getattr(error, "index", None),
                "field": getattr(error, "field", None),
            }
            for chunk, error in exc.failed
        ]
        status = (
            422
            if not exc.jobs and all(isinstance(error, InvalidBatchError) for _, error in exc.failed)
            else 502
        )
        return _error(status, str(exc), jobs=[job.job_id for job in exc.jobs], failed=failed)
    except GameballError as exc:
        return _error(502, str(exc))
    table.follow(jobs)
    ids = [job.job_id for job in jobs]
    return web.json_response(
        {"jobs": ids, "items": len(items), "status_urls": [f"/jobs/{i}" for i in ids]},
        status=202,
    )


async def job_status(request: web.Request) -> web.Response:
    """``GET /jobs/{job_id}``: the job's last known status (``?refresh=1`` polls now)."""
    tracked = request.app[JOBS].jobs.get(request.match_info["job_id"])
    if tracked is None:
        return _error(404, "no such job was submitted through this service")
    job = tracked.job
    if request.query.get("refresh") == "1" and not job.done():
        try:
            await job.refresh()
        except GameballError as exc:
            return _error(502, str(exc))
    status = job.status
    body: dict[str, Any] = {
        "job_id": job.job_id,
        "operation": job.operation.value if job.operation else None,
        "done": job.done(),
        "state": status.state.value if status is not None else None,
        "error": tracked.error,
    }
    if status is not None:
        body.update(
            total=status.total_count,
            succeeded=status.finished_count,
            failed=status.error_count,
            progress=status.progress,
            failures=[
                {"index": item.index, "code": item.code, "message": item.message}
                for item in status.failed
            ],
        )
    return web.json_response(body)


def make_app(source: Settings | SessionFactory) -> web.Application:
    """Build the application.

    :param source: :class:`Settings`, or a callable returning a new
        :class:`GameballSession` (tests pass one pointing at a fake server).
    """
    factory = source.session if isinstance(source, Settings) else source
    app = web.Application()
    app[JOBS] = JobTable()

    async def gameball_lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with factory() as gb:  # opened at startup, closed at shutdown
            app[GAMEBALL] = gb
            try:
                yield
            finally:
                # The waits use the session: end them before it closes.
                await app[JOBS].aclose()

    app.cleanup_ctx.append(gameball_lifecycle)
    app.router.add_post("/batches/{operation}", submit_batch)
    app.router.add_get("/jobs/{job_id}", job_status)
    return app


def main() -> None:
    """Serve on ``--host``/``--port`` with settings from the environment."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(Settings.from_env()), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
