"""``gameball-batch fleet``: a live, read-only view of one account's fleet in Redis.

It reads :meth:`RedisFleet.snapshot() <gameball_async.fleet.RedisFleet.snapshot>`
about once a second (the public, versioned :class:`~gameball_async.fleet.FleetSnapshot`,
never the key layout itself) and draws it with rich. It needs the ``cli`` and
``redis`` extras, never an API key: the view reads only Redis and writes
nothing. A failed read is shown as such over the last snapshot and the view
keeps going; the interrupt (Ctrl-C) ends it at once.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import attrs
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gameball_async import BatchState, TransportError

from ._display import ConsoleUI
from ._exit import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from ._options import UsageError

if TYPE_CHECKING:
    from gameball_async.fleet import FleetSnapshot, RedisFleet

__all__ = ["FleetOptions", "FleetScreen", "fleet_view", "render_fleet", "render_namespaces"]

NO_REDIS: Final = (
    "gameball-batch fleet needs the 'redis' package: install the extras with\n"
    "    pip install 'gameball_async[cli,redis]'"
)
#: Rows of open and ended jobs shown at most (the rest are counted in a caption).
OPEN_ROWS: Final = 20
ENDED_ROWS: Final = 10
#: Seconds one Redis call of the view may take (the fleet's ``redis_timeout``).
REDIS_TIMEOUT: Final = 0.25
_STATE_STYLE: Final = {
    BatchState.QUEUED.value: "yellow",
    BatchState.RUNNING.value: "cyan",
    BatchState.COMPLETED.value: "green",
    BatchState.FAILED.value: "red",
    BatchState.STOPPED.value: "magenta",
}


@attrs.frozen(kw_only=True)
class FleetOptions:
    """What ``gameball-batch fleet`` was asked to show."""

    redis_url: str
    namespace: str | None = None
    once: bool = False
    as_json: bool = False
    refresh: float = 1.0
    timeout: float = 2.0
    ended_within: float = 900.0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _state(word: str) -> Text:
    return Text(word, style=_STATE_STYLE.get(word, "white"))


def _meter(count: int, limit: int) -> Table:
    row = Table.grid(padding=(0, 1))
    style = "red" if count >= limit else "yellow" if count >= 0.8 * limit else "green"
    row.add_row(
        ProgressBar(total=max(limit, 1), completed=min(count, limit), width=24),
        Text(f"{count:,} / {limit:,}", style=style),
    )
    return row


def _limiter(snapshot: FleetSnapshot) -> Table:
    limiter = snapshot.limiter
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("last 1 s", _meter(limiter.last_second, limiter.per_second))
    grid.add_row(f"last {limiter.window:g} s", _meter(limiter.last_window, limiter.per_window))
    grid.add_row("in flight", Text(f"{limiter.in_flight:,} requests"))
    if limiter.paused_for > 0:
        pause = Text(f"{limiter.paused_for:.1f} s left (a 429 paused the fleet)", style="bold red")
    else:
        pause = Text("none", style="green")
    grid.add_row("pause", pause)
    grid.add_row("waiting", Text(f"{limiter.waiting:,} sessions waiting for a slot"))
    return grid


def _open_jobs(snapshot: FleetSnapshot) -> Table:
    table = Table(title="open jobs", title_justify="left", box=None, header_style="dim")
    for name in ("job", "operation", "age", "state", "progress", "done", "failed", "polled by"):
        table.add_column(name, justify="right" if name in ("age", "done", "failed") else "left")
    for job in snapshot.open_jobs[:OPEN_ROWS]:
        status = job.status
        state: Text
        bar: RenderableType
        done: str
        failed: RenderableType
        if status is None:
            state, bar, done, failed = Text("no status yet", style="dim"), Text(""), "", ""
        else:
            total = status.total
            state = _state(status.state)
            bar = ProgressBar(total=max(total or 1, 1), completed=status.done, width=16)
            done = f"{status.done:,} / {total:,}" if total is not None else f"{status.done:,}"
            failed = Text(f"{status.failed:,}", style="red" if status.failed else "")
        table.add_row(
            job.job_id,
            job.operation or "?",
            _age(job.age),
            state,
            bar,
            done,
            failed,
            job.lease_holder or Text("nobody", style="dim"),
        )
    if not snapshot.open_jobs:
        table.caption = "no open jobs"
    elif len(snapshot.open_jobs) > OPEN_ROWS:
        table.caption = f"{len(snapshot.open_jobs) - OPEN_ROWS:,} more open jobs"
    return table


def _processes(snapshot: FleetSnapshot) -> Table:
    table = Table(title="processes alive", title_justify="left", box=None, header_style="dim")
    table.add_column("process")
    table.add_column("heartbeat expires in", justify="right")
    table.add_column("leases", justify="right")
    leases: dict[str, int] = {}
    for job in snapshot.open_jobs:
        if job.process_id is not None:
            leases[job.process_id] = leases.get(job.process_id, 0) + 1
    for process in snapshot.processes:
        table.add_row(
            process.process_id,
            _age(process.expires_in),
            f"{leases.get(process.process_id, 0):,}",
        )
    if not snapshot.processes:
        table.caption = "no process alive"
    return table


def _ended(snapshot: FleetSnapshot) -> Table:
    table = Table(title="ended lately", title_justify="left", box=None, header_style="dim")
    for name in ("job", "operation", "outcome", "ended", "succeeded", "failed", "total"):
        left = name in ("job", "operation", "outcome")
        table.add_column(name, justify="left" if left else "right")
    taken = snapshot.taken_at
    for job in snapshot.ended_jobs[:ENDED_ROWS]:
        ago = (taken - job.ended_at).total_seconds() if job.ended_at is not None else None

        def count(value: int | None) -> str:
            return "" if value is None else f"{value:,}"

        table.add_row(
            job.job_id,
            job.operation or "?",
            _state(job.outcome),
            f"{_age(ago)} ago" if ago is not None else "",
            count(job.finished),
            Text(count(job.failed), style="red" if job.failed else ""),
            count(job.total),
        )
    if not snapshot.ended_jobs:
        table.caption = "none"
    elif len(snapshot.ended_jobs) > ENDED_ROWS:
        table.caption = f"{len(snapshot.ended_jobs) - ENDED_ROWS:,} more"
    if snapshot.ended_partial:
        table.caption = (table.caption or "") + " (registry too large to list in full)"
    return table


def render_fleet(
    snapshot: FleetSnapshot | None, *, namespace: str, error: str | None = None
) -> RenderableType:
    """The view of one snapshot; ``error`` (a failed read) is shown above it."""
    parts: list[RenderableType] = []
    head = Text.assemble(("gameball-batch fleet ", "bold"), (namespace, "bold cyan"))
    if snapshot is not None:
        head.append(f" · {snapshot.taken_at:%Y-%m-%d %H:%M:%S} UTC (Redis time)")
        head.append(f" · snapshot v{snapshot.version}", style="dim")
    parts.append(head)
    if error is not None:
        shown = "showing the last snapshot" if snapshot is not None else "nothing read yet"
        parts.append(Text(f"read failed: {error} ({shown})", style="bold red"))
    if snapshot is None:
        return Group(*parts)
    parts += ["", Text("limiter", style="bold underline"), _limiter(snapshot), ""]
    parts += [_open_jobs(snapshot), "", _processes(snapshot), "", _ended(snapshot)]
    return Group(*parts)


def render_namespaces(namespaces: list[str]) -> RenderableType:
    """The list of namespaces found, and how to view one."""
    if not namespaces:
        return Text("no fleet keys found in this Redis", style="yellow")
    lines = [Text("namespaces with fleet keys in this Redis:", style="bold")]
    lines += [Text(f"  {name}") for name in namespaces]
    lines.append(Text("view one with --namespace NAMESPACE", style="dim"))
    return Group(*lines)


class FleetScreen:
    """What the live view shows now: the last snapshot and the last read's failure."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.snapshot: FleetSnapshot | None = None
        self.error: str | None = None
        #: Reads made and reads failed (for tests).
        self.reads = 0
        self.failures = 0

    def read(self, snapshot: FleetSnapshot) -> None:
        """A read succeeded."""
        self.reads += 1
        self.snapshot = snapshot
        self.error = None

    def failed(self, error: str) -> None:
        """A read failed: the last snapshot stays, marked."""
        self.reads += 1
        self.failures += 1
        self.error = f"at {time.strftime('%H:%M:%S', time.gmtime())} UTC, {error}"

    def render(self) -> RenderableType:
        """The current frame."""
        return render_fleet(self.snapshot, namespace=self.namespace, error=self.error)


def _print_json(data: Any, *, indent: int | None = 2) -> None:
    sys.stdout.write(json.dumps(data, indent=indent) + "\n")
    sys.stdout.flush()


async def _until_interrupted(interrupt: anyio.Event, work: Callable[[], Any]) -> None:
    # the interrupt cancels whatever is in progress, a read included (the
    # fleet's calls let a cancellation through at once)
    async with anyio.create_task_group() as tg:

        async def guard() -> None:
            await interrupt.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(guard)
        await work()
        tg.cancel_scope.cancel()


async def fleet_view(options: FleetOptions, ui: ConsoleUI, interrupt: anyio.Event) -> int:
    """Run ``gameball-batch fleet``; return the exit code.

    :raises UsageError: a bad Redis URL or namespace.
    """
    try:
        from gameball_async.fleet import RedisFleet  # noqa: PLC0415 - the redis extra
    except ImportError:
        ui.error(NO_REDIS)
        return EXIT_USAGE
    try:
        fleet = RedisFleet.from_url(
            options.redis_url, namespace=options.namespace, redis_timeout=REDIS_TIMEOUT
        )
    except ValueError as exc:  # a bad URL or namespace; a URL's password is not in it
        raise UsageError(str(exc)) from None
    outcome: list[int] = []
    async with fleet:

        async def work() -> None:
            outcome.append(await _show(fleet, options, ui, interrupt))

        await _until_interrupted(interrupt, work)
    return outcome[0] if outcome else EXIT_OK


async def _show(
    fleet: RedisFleet, options: FleetOptions, ui: ConsoleUI, interrupt: anyio.Event
) -> int:
    namespace = fleet.namespace
    if namespace is None:
        try:
            found = await fleet.namespaces(timeout=options.timeout)
        except TransportError as exc:
            ui.error(str(exc))
            return EXIT_FAILED
        if options.as_json:
            _print_json({"namespaces": found})
        else:
            ui.print(render_namespaces(found))
        return EXIT_OK if found else EXIT_FAILED

    async def take() -> FleetSnapshot:
        return await fleet.snapshot(timeout=options.timeout, ended_within=options.ended_within)

    if options.once:
        try:
            snapshot = await take()
        except TransportError as exc:
            ui.error(str(exc))
            return EXIT_FAILED
        if options.as_json:
            _print_json(snapshot.to_dict())
        else:
            ui.print(render_fleet(snapshot, namespace=namespace))
        return EXIT_OK

    if options.as_json:
        # one JSON line per snapshot (JSON Lines, for scripts); failures on stderr
        while not interrupt.is_set():
            started = anyio.current_time()
            try:
                snapshot = await take()
            except TransportError as exc:
                ui.error(str(exc))
            else:
                _print_json(snapshot.to_dict(), indent=None)
            await _pause(interrupt, options.refresh - (anyio.current_time() - started))
        return EXIT_OK
    screen = FleetScreen(namespace)
    with ui.live_view(screen.render) as live:
        while not interrupt.is_set():
            started = anyio.current_time()
            try:
                snapshot = await take()
            except TransportError as exc:
                screen.failed(str(exc))
            else:
                screen.read(snapshot)
            if not live:  # not a terminal (or --no-live): one frame per read
                ui.print(screen.render())
            await _pause(interrupt, options.refresh - (anyio.current_time() - started))
    return EXIT_OK


async def _pause(interrupt: anyio.Event, seconds: float) -> None:
    with anyio.move_on_after(max(seconds, 0.05)):
        await interrupt.wait()
