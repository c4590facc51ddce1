"""``gameball-batch status``, ``stop`` and ``watch``: commands on job ids."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, Final, TypeVar

import anyio

from gameball_async import BatchState, BatchStatus, GameballError, GameballSession
from gameball_async._seam import check_job_id

from ._display import ConsoleUI, status_table

__all__ = ["job_id", "status", "status_json", "stop", "stop_message", "watch"]

T = TypeVar("T")

# Several job ids at once: read them concurrently, but gently.
_PARALLEL: Final = 8


def job_id(text: str) -> str:
    """A job id from the command line.

    :raises InvalidJobIdError: for anything that is not one.
    """
    return check_job_id(text.strip())


async def _each(
    ids: Sequence[str], call: Callable[[str], Awaitable[T]], ui: ConsoleUI
) -> list[T | None]:
    """``call`` every id (bounded concurrency); errors are reported and give ``None``."""
    results: list[T | None] = [None] * len(ids)
    limit = anyio.Semaphore(_PARALLEL)

    async def one(position: int, job: str) -> None:
        async with limit:
            try:
                results[position] = await call(job)
            except GameballError as exc:
                ui.error(f"job {job}: {exc}")

    async with anyio.create_task_group() as tg:
        for position, job in enumerate(ids):
            tg.start_soon(one, position, job)
    return results


def status_json(status: BatchStatus) -> dict[str, Any]:
    """The ``status --json`` form of a status (decoded fields and failed items)."""
    return {
        "job_id": status.job_id,
        "operation": status.operation.value if status.operation is not None else None,
        "state": status.state.value,
        "state_word": status.state_word,
        "total": status.total_count,
        "succeeded": status.finished_count,
        "failed": status.error_count,
        "progress": status.progress,
        "created_at": status.created_at.isoformat() if status.created_at else None,
        "started_at": status.started_at.isoformat() if status.started_at else None,
        "failed_items": [
            {"index": item.index, "code": item.code, "message": item.message}
            for item in status.failed
        ],
    }


async def status(gb: GameballSession, ids: Sequence[str], ui: ConsoleUI, *, as_json: bool) -> int:
    """Print each job's status; exit 0 when all were read, else 1."""
    statuses = await _each(ids, gb.get_status, ui)
    found = [s for s in statuses if s is not None]
    if as_json:
        for item in found:
            ui.out.print(json.dumps(status_json(item)), markup=False, soft_wrap=True)
    elif found:
        ui.print(status_table(found))
    return 0 if len(found) == len(ids) else 1


def stop_message(job: str, reply: BatchStatus | None) -> str:
    """What ``stop`` says about one job, given the status the stop reply carried.

    A job that had already ended cannot be stopped: the server answers with
    its final state, which is said as such (exit 0 all the same: the job is
    not running, which is what ``stop`` is for).
    """
    if reply is None:
        return f"job {job}: stop requested"
    if reply.state in (BatchState.COMPLETED, BatchState.FAILED):
        return f"job {job}: already finished ({reply.state.value}), nothing to stop"
    if reply.state is BatchState.STOPPED:
        return f"job {job}: stopped"
    word = reply.state.value if reply.state is not BatchState.UNKNOWN else reply.state_word
    return f"job {job}: stop requested (still {word})"


async def stop(gb: GameballSession, ids: Sequence[str], ui: ConsoleUI) -> int:
    """Ask the server to stop each job; exit 0 when every request was accepted."""

    async def one(job: str) -> bool:
        reply = await gb.stop(job)
        ui.out.print(stop_message(job, reply), markup=False, soft_wrap=True)
        return True

    done = await _each(ids, one, ui)
    return 0 if all(done) else 1


async def watch(gb: GameballSession, ids: Sequence[str], ui: ConsoleUI) -> int:
    """Follow jobs until all have ended: a live table, or a line per change.

    :return: 0 when every job completed with no failed item, else 1.
    """
    latest: dict[str, BatchStatus] = {}
    ok = True

    def render() -> Any:
        return status_table(list(latest.values()), title="gameball-batch watch")

    async def follow(job: str) -> None:
        nonlocal ok
        try:
            async with aclosing(gb.job(job).watch()) as statuses:
                async for item in statuses:
                    latest[job] = item
                    if not live:
                        ui.out.print(_line(item), markup=False, soft_wrap=True)
        except GameballError as exc:
            ok = False
            ui.error(f"job {job}: {exc}")

    with ui.live_view(render) as live:
        async with anyio.create_task_group() as tg:
            for job in dict.fromkeys(ids):
                tg.start_soon(follow, job)
    finished = [
        s for s in latest.values() if s.state is BatchState.COMPLETED and s.error_count == 0
    ]
    return 0 if ok and len(finished) == len(dict.fromkeys(ids)) else 1


def _line(status: BatchStatus) -> str:
    total = "?" if status.total_count is None else f"{status.total_count:,}"
    word = status.state.value if status.state is not BatchState.UNKNOWN else status.state_word
    return (
        f"job {status.job_id} {word}: {status.processed_count:,}/{total} processed, "
        f"{status.finished_count:,} succeeded, {status.error_count:,} failed"
    )
