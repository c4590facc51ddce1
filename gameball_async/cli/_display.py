"""What ``gameball-batch`` shows: a rich live display on a terminal, plain lines otherwise.

This is the only module that imports ``rich`` (the ``cli`` extra). The live
display is redrawn by rich's own refresh thread from a :class:`Tracker`
snapshot; everything else prints through two consoles (stdout for output,
stderr for problems), which resolve ``sys.stdout``/``sys.stderr`` when they
write, so redirection and test capture work.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gameball_async import BatchState, BatchStatus

from ._track import OUTCOMES, Report, Tracker

__all__ = ["ConsoleUI", "status_row", "status_table"]

_ACTIVE_ROWS = 8
_STATE_STYLE: Mapping[str, str] = {
    BatchState.QUEUED.value: "yellow",
    BatchState.RUNNING.value: "cyan",
    BatchState.COMPLETED.value: "green",
    BatchState.FAILED.value: "red",
    BatchState.STOPPED.value: "magenta",
}


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"


def _state(word: str) -> Text:
    return Text(word, style=_STATE_STYLE.get(word, "white"))


def render_run(tracker: Tracker) -> RenderableType:
    """The live view of a submit or resume run."""
    queued, running, done = tracker.count_jobs()
    succeeded, failed = tracker.item_counts()
    head = Text.assemble(
        ("gameball-batch ", "bold"),
        (tracker.operation, "bold cyan"),
        f" · {tracker.phase} · {_clock(tracker.elapsed)}",
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    if tracker.records:
        row = Table.grid(padding=(0, 1))
        row.add_row(
            ProgressBar(total=tracker.records, completed=tracker.submitted, width=30),
            Text(f"{tracker.submitted:,} / {tracker.records:,} submitted"),
        )
        grid.add_row("records", row)
    elif tracker.phase == "validating":
        grid.add_row("records", Text(f"validating: {tracker.lines_read:,} lines read"))
    if tracker.rejected:
        grid.add_row("rejected", Text(f"{tracker.rejected:,} invalid records", style="yellow"))
    grid.add_row(
        "jobs",
        Text.assemble(
            f"{tracker.jobs_created:,} created · ",
            (f"{queued:,} queued", "yellow"),
            " · ",
            (f"{running:,} running", "cyan"),
            " · ",
            (f"{done:,} done", "green"),
        ),
    )
    # Counts what jobs report while they run, so at an interrupt it is ahead
    # of the summary, which counts the results file: say so on both.
    grid.add_row(
        "items",
        Text.assemble(
            (f"{succeeded:,} succeeded", "green"),
            " · ",
            (f"{failed:,} failed", "red"),
            (" (this run, running jobs included)", "dim"),
        ),
    )
    views = tracker.active_views()
    parts: list[RenderableType] = [head, grid]
    if views:
        table = Table(box=None, pad_edge=False, header_style="dim")
        for name in ("job", "lines", "state", "progress", "ok", "failed"):
            table.add_column(name, justify="right" if name in ("ok", "failed") else "left")
        for view in views[-_ACTIVE_ROWS:]:
            table.add_row(
                view.job_id,
                f"{view.first_line}-{view.last_line}",
                _state(view.state),
                ProgressBar(
                    total=max(view.total, 1), completed=view.finished + view.errors, width=20
                ),
                f"{view.finished:,}",
                f"{view.errors:,}",
            )
        if len(views) > _ACTIVE_ROWS:
            table.caption = f"{len(views) - _ACTIVE_ROWS:,} more jobs in flight"
        parts.append(table)
    return Group(*parts)


def status_row(status: BatchStatus) -> list[Any]:
    """The cells of one job in the status and watch tables."""
    progress = status.progress
    return [
        status.job_id,
        status.operation.value if status.operation is not None else "?",
        _state(status.state.value if status.state is not BatchState.UNKNOWN else status.state_word),
        "" if progress is None else f"{progress:.0%}",
        f"{status.finished_count:,}",
        f"{status.error_count:,}",
        "" if status.total_count is None else f"{status.total_count:,}",
    ]


def status_table(statuses: Sequence[BatchStatus], title: str | None = None) -> Table:
    """A table of job statuses."""
    table = Table(title=title)
    for name in ("job", "operation", "state", "progress", "succeeded", "failed", "total"):
        table.add_column(
            name, justify="right" if name not in ("job", "operation", "state") else "left"
        )
    for status in statuses:
        table.add_row(*status_row(status))
    return table


class ConsoleUI:
    """Output of every command: live on a terminal (unless ``--no-live``), plain otherwise.

    :param live: allow the live display (it still needs a terminal).
    """

    def __init__(self, *, live: bool = True) -> None:
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)
        self._allow_live = live
        self._live: Live | None = None
        self._manifest: Path | None = None

    @property
    def is_live(self) -> bool:
        """Whether a live display would be shown."""
        return self._allow_live and self.out.is_terminal

    def note(self, text: str) -> None:
        """Print an event line (above the live display when there is one)."""
        if self._live is not None:
            return  # the live view shows it; a line per job would scroll it away
        # soft_wrap: a plain line stays one line, whatever the width (logs, grep)
        self.out.print(text, markup=False, soft_wrap=True)

    def error(self, text: str) -> None:
        """Print a problem to stderr (above the live display when there is one)."""
        self._problem(f"[bold red]error:[/] {escape(text)}")

    def _problem(self, markup: str) -> None:
        # rich's stderr console writes past the live display's redirection, so
        # on a shared terminal the line landed inside the frame and the next
        # redraw erased it with part of the frame left behind. While live, a
        # terminal stderr goes through the live console instead (a redirected
        # stderr is another file: nothing to draw around).
        console = self.out if self._live is not None and self.err.is_terminal else self.err
        console.print(markup, soft_wrap=True)

    def resumable(self, manifest: Path) -> None:
        """Tell the UI the run can be finished from ``manifest`` (for :meth:`aborted`)."""
        self._manifest = manifest

    def aborted(self) -> None:
        """Say the command was aborted (a second Ctrl-C) and how to finish the run."""
        if self._manifest is not None and self._manifest.exists():
            self._problem(
                "[bold red]aborted:[/] finish the run with "
                f"`gameball-batch resume {escape(str(self._manifest))}`"
            )
        else:
            self._problem("[bold red]aborted[/]")

    def print(self, renderable: RenderableType) -> None:
        """Print anything rich can render to stdout."""
        self.out.print(renderable)

    @contextmanager
    def live(self, tracker: Tracker) -> Iterator[None]:
        """Show the run live while the context lasts (nothing without a terminal)."""
        if not self.is_live:
            yield
            return
        with self._showing(lambda: render_run(tracker)):
            yield

    @contextmanager
    def live_view(self, render: Any) -> Iterator[bool]:
        """Show ``render()`` live while the context lasts; yields whether it does."""
        if not self.is_live:
            yield False
            return
        with self._showing(render):
            yield True

    @contextmanager
    def _showing(self, render: Any) -> Iterator[None]:
        with Live(get_renderable=render, console=self.out, refresh_per_second=4) as live:
            live.refresh()  # the first frame now, not a refresh period later
            self._live = live
            try:
                yield
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    # Aborted (cancelled, KeyboardInterrupt): the last frame
                    # would show a run that is no longer going on; clear it.
                    live.transient = True
                raise
            finally:
                self._live = None

    def report(self, report: Report) -> None:
        """Print the summary of a run: outcomes, failure codes, files, exit code."""
        tracker = report.tracker
        # What the results file holds (all runs of this manifest), not the live count;
        # a line of its own, as a table title would wrap at the table's width.
        self.out.print(
            f"{report.title}: summary of the results file",
            style="italic",
            soft_wrap=True,
            markup=False,
        )
        table = Table(show_header=True)
        table.add_column("outcome")
        table.add_column("records", justify="right")
        for outcome in OUTCOMES:
            if report.outcomes[outcome]:
                table.add_row(outcome.replace("_", " "), f"{report.outcomes[outcome]:,}")
        missing = report.expected - sum(report.outcomes.values())
        if missing > 0:
            table.add_row(Text("no outcome yet", style="yellow"), f"{missing:,}")
        table.add_row(Text("input records", style="bold"), f"{report.expected:,}")
        self.out.print(table)
        if report.failures:
            failures = Table(title="not succeeded, by code")
            for name in ("outcome", "code", "records", "example message"):
                failures.add_column(name, justify="right" if name == "records" else "left")
            for outcome, code, count, sample in report.failures:
                failures.add_row(
                    outcome.replace("_", " "),
                    "" if code is None else str(code),
                    f"{count:,}",
                    Text(sample),
                )
            self.out.print(failures)
        ended = ", ".join(f"{n:,} {state}" for state, n in sorted(tracker.jobs_ended.items()))
        self.out.print(
            f"{tracker.jobs_created:,} jobs this run"
            + (f" ({ended})" if ended else "")
            + f" in {tracker.elapsed:.1f} s",
            markup=False,
            soft_wrap=True,
        )
        unended = tracker.active_views()
        if unended:
            self.out.print(
                f"jobs not ended: {len(unended):,} ({sum(v.total for v in unended):,} records); "
                f"the {sum(v.finished for v in unended):,} items they had reported succeeded "
                "are not in the results file yet",
                markup=False,
                soft_wrap=True,
            )
        for label, path in report.files:
            self.out.print(f"{label:>9}: {path}", markup=False, soft_wrap=True)
        for hint in report.hints:
            self.err.print(f"[yellow]note:[/] {escape(hint)}", soft_wrap=True)
        style = "green" if report.exit_code == 0 else "yellow"
        self.out.print(
            f"[{style}]exit {report.exit_code}[/]: {escape(report.exit_meaning)}", soft_wrap=True
        )
