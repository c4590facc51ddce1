"""Units of ``gameball-batch``: the parser, the display, messages (no server)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import gameball_async
from gameball_async import BatchState, BatchStatus, PollPolicy
from gameball_async.cli import main
from gameball_async.cli._display import ConsoleUI, render_run
from gameball_async.cli._jobs import stop_message
from gameball_async.cli._main import _poll_policy
from gameball_async.cli._results import conclude
from gameball_async.cli._track import SUCCEEDED, UNKNOWN, Report, Tracker


class TestVersion:
    def test_version_flag_prints_the_package_version(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["--version"]) == 0
        assert capsys.readouterr().out == f"gameball-batch {gameball_async.__version__}\n"


class TestPollInterval:
    def test_an_interval_asked_for_bounds_the_aimed_polls_too(self) -> None:
        policy = _poll_policy(argparse.Namespace(poll_interval=1.0))
        assert policy.initial_delay == 1.0
        assert policy.max_delay == policy.max_aimed_delay == policy.aim_cap == 10.0

    def test_no_interval_keeps_the_defaults(self) -> None:
        assert _poll_policy(argparse.Namespace(poll_interval=None)) == PollPolicy()


def screen(output: str) -> list[str]:
    """The lines a terminal shows after ``output`` (the controls rich's live display uses)."""
    rows: list[str] = [""]
    row = col = 0
    controls = re.compile(r"\x1b\[([?0-9;]*)([A-Za-z])|(\r)|(\n)|([^\x1b\r\n]+)")
    for match in controls.finditer(output):
        params, command, carriage, newline, text = match.groups()
        if command == "A":
            row = max(0, row - int(params or 1))
        elif command == "K":
            rows[row] = "" if params == "2" else rows[row][:col]
        elif carriage:
            col = 0
        elif newline:  # a terminal's output processing adds the carriage return
            row, col = row + 1, 0
            if row == len(rows):
                rows.append("")
        elif text:
            line = rows[row].ljust(col)
            rows[row] = line[:col] + text + line[col + len(text) :]
            col += len(text)
    return [line.rstrip() for line in rows if line.strip()]


def terminal_ui() -> tuple[ConsoleUI, io.StringIO]:
    """A ConsoleUI whose stdout and stderr are one terminal, as in an interactive shell."""
    tty = io.StringIO()
    ui = ConsoleUI()
    ui.out = Console(file=tty, force_terminal=True, width=100, color_system=None)
    ui.err = Console(file=tty, force_terminal=True, width=100, color_system=None)
    return ui, tty


def run_tracker() -> Tracker:
    tracker = Tracker(operation="cashback", phase="submitting", records=40)
    tracker.job_created("17", 1, 10, 10)
    return tracker


class TestLiveDisplay:
    def test_error_while_live_prints_above_one_frame(self) -> None:
        ui, tty = terminal_ui()
        tracker = run_tracker()
        with ui.live(tracker):
            tracker.phase = "interrupted"
            ui.error("interrupted: no more chunks will be sent")
        shown = screen(tty.getvalue())
        assert shown[0] == "error: interrupted: no more chunks will be sent"
        heads = [line for line in shown if line.startswith("gameball-batch cashback")]
        assert len(heads) == 1
        assert "interrupted" in heads[0]

    def test_abort_clears_the_frame_and_names_the_resume_command(self, tmp_path: Path) -> None:
        manifest = tmp_path / "in.jsonl.manifest.jsonl"
        manifest.write_text("{}\n", encoding="utf-8")
        ui, tty = terminal_ui()
        ui.resumable(manifest)
        with pytest.raises(asyncio.CancelledError), ui.live(run_tracker()):
            raise asyncio.CancelledError  # as the second Ctrl-C cancels the run
        ui.aborted()
        assert screen(tty.getvalue()) == [
            f"aborted: finish the run with `gameball-batch resume {manifest}`"
        ]

    def test_abort_without_a_manifest_says_aborted(self, tmp_path: Path) -> None:
        ui, tty = terminal_ui()
        ui.resumable(tmp_path / "never-written.manifest.jsonl")
        ui.aborted()
        assert screen(tty.getvalue()) == ["aborted"]

    def test_a_failure_keeps_the_last_frame(self) -> None:
        ui, tty = terminal_ui()
        with pytest.raises(RuntimeError), ui.live(run_tracker()):
            raise RuntimeError("a bug: its traceback follows the frame")
        assert screen(tty.getvalue())[0].startswith("gameball-batch cashback · submitting")


class RecordingUI:
    """A RunInterface that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.reports: list[Report] = []

    def note(self, text: str) -> None:
        self.lines.append(text)

    def error(self, text: str) -> None:
        self.lines.append(text)

    def live(self, tracker: Tracker) -> AbstractContextManager[None]:
        return nullcontext()

    def report(self, report: Report) -> None:
        self.reports.append(report)

    def resumable(self, manifest: Path) -> None:
        pass


def text_of(renderable: Any) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=160, color_system=None).print(renderable)
    return buffer.getvalue()


def interrupted_tracker() -> Tracker:
    """1,234 jobs created, 2,345 items written as succeeded, one job still running."""
    tracker = Tracker(operation="cashback", phase="interrupted", records=5000)
    tracker.jobs_created = 1233
    tracker.outcomes[SUCCEEDED] = 2345
    tracker.job_created("99", 4001, 5000, 1000)
    tracker.job_status(
        "99",
        BatchStatus(
            job_id="99",
            operation=None,
            state=BatchState.RUNNING,
            state_word="Running",
            total_count=1000,
            finished_count=400,
        ),
    )
    return tracker


class TestCounts:
    def test_live_view_counts_with_separators_and_says_what_it_counts(self) -> None:
        shown = text_of(render_run(interrupted_tracker()))
        assert "1,234 created" in shown
        assert "2,745 succeeded · 0 failed (this run, running jobs included)" in shown

    def test_summary_says_what_it_counts_and_what_is_left_out(self, tmp_path: Path) -> None:
        ui, tty = terminal_ui()
        ui.out = Console(file=tty, width=200, color_system=None)
        ui.err = ui.out
        tracker = interrupted_tracker()
        conclude(
            ui,
            "submit cashback",
            None,
            tracker,
            expected=5000,
            results=tmp_path / "none.results.jsonl",
            manifest=tmp_path / "in.manifest.jsonl",
            files=[],
        )
        shown = tty.getvalue()
        assert "submit cashback: summary of the results file" in shown
        assert (
            "jobs not ended: 1 (1,000 records); the 400 items they had reported succeeded "
            "are not in the results file yet"
        ) in shown
        assert "1,234 jobs this run" in shown
        assert "5,000 records have no outcome yet" in shown

    def test_hints_count_with_separators(self, tmp_path: Path) -> None:
        results = tmp_path / "r.jsonl"
        results.write_text(
            "".join(
                json.dumps({"line": n, "outcome": UNKNOWN, "code": None, "message": None}) + "\n"
                for n in range(1, 1501)
            ),
            encoding="utf-8",
        )
        ui = RecordingUI()
        code = conclude(
            ui,
            "resume",
            None,
            Tracker(operation="cashback"),
            expected=2500,
            results=results,
            manifest=tmp_path / "m.jsonl",
            files=[],
        )
        assert code == 4
        (report,) = ui.reports
        assert report.hints[0].startswith("1,000 records have no outcome yet: run ")
        assert report.hints[1].startswith("1,500 records have an unknown outcome")

    def test_chunk_size_help_and_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["submit", "--help"]) == 0
        assert "1-1,000 (default 1,000)" in capsys.readouterr().out
        assert main(["submit", "cashback", "f.jsonl", "--chunk-size", "1001"]) == 2
        assert "must be at most 1,000, got 1001" in capsys.readouterr().err


class TestStopMessage:
    def reply(self, state: BatchState, word: str | None = None) -> BatchStatus:
        return BatchStatus(job_id="7", operation=None, state=state, state_word=word or state.value)

    @pytest.mark.parametrize("state", [BatchState.COMPLETED, BatchState.FAILED])
    def test_a_finished_job_is_said_to_be_finished(self, state: BatchState) -> None:
        assert stop_message("7", self.reply(state)) == (
            f"job 7: already finished ({state.value}), nothing to stop"
        )

    def test_other_replies(self) -> None:
        assert stop_message("7", self.reply(BatchState.STOPPED)) == "job 7: stopped"
        assert stop_message("7", None) == "job 7: stop requested"
        assert stop_message("7", self.reply(BatchState.RUNNING)) == (
            "job 7: stop requested (still Running)"
        )
        assert stop_message("7", self.reply(BatchState.UNKNOWN, "Halting")) == (
            "job 7: stop requested (still Halting)"
        )
