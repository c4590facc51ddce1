"""Units of ``gameball-batch``: the parser, the display, messages (no server)."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest
from rich.console import Console

import gameball_async
from gameball_async._cli import main
from gameball_async._cli_display import ConsoleUI
from gameball_async._cli_track import Tracker


class TestVersion:
    def test_version_flag_prints_the_package_version(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["--version"]) == 0
        assert capsys.readouterr().out == f"gameball-batch {gameball_async.__version__}\n"


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
