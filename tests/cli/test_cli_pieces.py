"""Pieces of ``gameball-batch`` tested alone: line ranges, the manifest, exit codes
(CSV input is in test_cli_csv.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gameball_async.cli._exit import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SUBMISSION,
    MEANINGS,
    RunOutcome,
    exit_code,
)
from gameball_async.cli._lines import Coverage, LineRanges
from gameball_async.cli._manifest import ManifestError, ManifestState, ManifestWriter
from gameball_async.cli._results import summarize_results
from gameball_async.cli._track import FAILED, NOT_SUBMITTED, REJECTED, SUCCEEDED, UNKNOWN


class TestLineRanges:
    def test_consecutive_lines_make_one_pair(self) -> None:
        lines = LineRanges()
        for line in (2, 3, 4, 7, 9, 10):
            lines.add(line)
        assert lines.pairs == [[2, 4], [7, 7], [9, 10]]
        assert lines.count == 6
        assert list(lines) == [2, 3, 4, 7, 9, 10]
        assert (lines.first, lines.last) == (2, 10)
        assert lines.describe() == "2-4, 7, 9-10"

    def test_empty_and_long(self) -> None:
        assert (LineRanges().first, LineRanges().last, LineRanges().count) == (0, 0, 0)
        many = LineRanges([[n, n] for n in range(1, 12, 2)])
        assert many.describe() == "1, 3, 5, +3 ranges"

    def test_pairs_given_are_counted_and_extended(self) -> None:
        lines = LineRanges([[1, 3], [5, 5]])
        assert lines.count == 4
        lines.add(6)  # extends the last pair
        lines.add(9)  # starts a new one
        assert lines.pairs == [[1, 3], [5, 6], [9, 9]]
        assert lines.count == 6
        assert lines.describe() == "1-3, 5-6, 9"

    def test_coverage_of_nothing_holds_nothing(self) -> None:
        empty = Coverage([])
        assert 1 not in empty
        assert 0 not in Coverage([LineRanges([[1, 2]])])

    def test_coverage_looks_up_lines_of_many_ranges(self) -> None:
        sent = Coverage([LineRanges([[10, 20]]), LineRanges([[1, 3], [30, 30]])])
        assert [n for n in range(0, 35) if n in sent] == [1, 2, 3, *range(10, 21), 30]
        assert "5" not in sent


def write_manifest(path: Path) -> None:
    writer = ManifestWriter(path, fresh=True)
    try:
        writer.header(operation="cashback", records=4000, rejected=1, results="r.jsonl")
        writer.chunk(0, LineRanges([[1, 1000]]))
        writer.job(0, "101", "cashback", LineRanges([[1, 1000]]))
        writer.write({"type": "done", "job_id": "101", "state": "Completed"})
        writer.chunk(1, LineRanges([[1001, 2000]]))
        writer.job(1, "102", "cashback", LineRanges([[1001, 2000]]))
        writer.chunk(2, LineRanges([[2001, 3000]]))  # sent, no reply: in doubt
        writer.chunk(3, LineRanges([[3001, 3500]]))
        writer.write({"type": "released", "chunk": 3, "lines": [[3001, 3500]], "error": "503"})
        writer.chunk(4, LineRanges([[3501, 3600]]))
        writer.write(
            {"type": "unsubmitted", "chunk": 4, "lines": [[3501, 3600]], "ambiguous": False}
        )
        writer.write({"type": "rejected", "count": 1})
    finally:
        writer.close()


class TestManifest:
    def test_read_back_gives_what_resume_needs(self, tmp_path: Path) -> None:
        path = tmp_path / "m.jsonl"
        write_manifest(path)
        state = ManifestState.read(path)
        assert state.header["operation"] == "cashback"
        assert state.next_chunk == 5
        assert [c.job_id for c in state.pending_jobs()] == ["102"]
        assert [c.chunk for c in state.in_doubt()] == [2]
        # the released chunk is sent again; every other one never is
        assert [r.pairs for r in state.sent()] == [
            [[1, 1000]],
            [[1001, 2000]],
            [[2001, 3000]],
            [[3501, 3600]],
        ]
        assert state.rejected_written
        assert not state.submitted

    def test_keep_only_results_lines_of_settled_units(self, tmp_path: Path) -> None:
        path = tmp_path / "m.jsonl"
        write_manifest(path)
        state = ManifestState.read(path)
        finals = state.finals()
        row: dict[str, Any]
        for row, kept in (
            ({"line": 5, "job_id": "101", "outcome": SUCCEEDED}, True),
            ({"line": 1500, "job_id": "102", "outcome": SUCCEEDED}, False),
            ({"line": 3550, "job_id": None, "outcome": "not_submitted"}, True),
            ({"line": 2500, "job_id": None, "outcome": UNKNOWN}, False),
            ({"line": 3999, "job_id": None, "outcome": REJECTED}, True),
        ):
            assert state.keep(row, finals) is kept, row
        state.forget_results()
        assert not state.keep({"line": 5, "job_id": "101"}, state.finals())
        assert [c.job_id for c in state.pending_jobs()] == ["101", "102"]
        assert [c.chunk for c in state.in_doubt()] == [2, 4]

    def test_a_torn_last_line_is_ignored(self, tmp_path: Path) -> None:
        path = tmp_path / "m.jsonl"
        write_manifest(path)
        with path.open("a", encoding="utf-8") as out:
            out.write('{"type": "done", "job_id": "10')
        assert [c.job_id for c in ManifestState.read(path).pending_jobs()] == ["102"]

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("", "is not a gameball-batch manifest"),
            ('{"type": "header", "tool": "other"}\n', "is not a gameball-batch manifest"),
            ('{"type": "header", "tool": "gameball-batch", "version": 9}\n', "version 9"),
            ('{"type":"header","tool":"gameball-batch","version":1}\nnope\n{}\n', "not a JSON"),
            (
                '{"type":"header","tool":"gameball-batch","version":1}\n{"type":"job"}\n',
                "malformed",
            ),
        ],
    )
    def test_what_is_not_a_manifest(self, tmp_path: Path, text: str, says: str) -> None:
        path = tmp_path / "m.jsonl"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ManifestError, match=says):
            ManifestState.read(path)

    def test_the_observer_sees_each_entry_once_it_is_written(self, tmp_path: Path) -> None:
        path = tmp_path / "m.jsonl"
        seen: list[tuple[str, int]] = []

        def observer(entry: Any) -> None:
            # the entry is on disk by the time the observer hears of it
            seen.append((entry["type"], len(path.read_text(encoding="utf-8").splitlines())))

        writer = ManifestWriter(path, fresh=True, observer=observer)
        try:
            writer.header(operation="cashback", records=2, rejected=0, results="r.jsonl")
            writer.chunk(0, LineRanges([[1, 2]]))
            writer.job(0, "7", "cashback", LineRanges([[1, 2]]))
        finally:
            writer.close()
        assert seen == [("header", 1), ("chunk", 2), ("job", 3)]
        job = json.loads(path.read_text(encoding="utf-8").splitlines()[2])
        assert job == {
            "type": "job",
            "chunk": 0,
            "job_id": "7",
            "operation": "cashback",
            "lines": [[1, 2]],
            "count": 2,
        }

    def test_a_resumed_run_appends_and_reads_back_as_one(self, tmp_path: Path) -> None:
        path = tmp_path / "m.jsonl"
        write_manifest(path)
        assert 3001 not in Coverage(ManifestState.read(path).sent())
        writer = ManifestWriter(path, fresh=False)  # as resume does
        try:
            writer.write({"type": "done", "job_id": "102", "state": "Completed"})
            writer.chunk(5, LineRanges([[3001, 3500]]))
            writer.job(5, "103", "cashback", LineRanges([[3001, 3500]]))
        finally:
            writer.close()
        state = ManifestState.read(path)
        assert state.header["records"] == 4000
        assert state.next_chunk == 6
        assert [c.job_id for c in state.pending_jobs()] == ["103"]
        assert 3001 in Coverage(state.sent())  # the released chunk, sent again

    def test_a_missing_manifest(self, tmp_path: Path) -> None:
        with pytest.raises(ManifestError, match="cannot read manifest"):
            ManifestState.read(tmp_path / "absent.jsonl")


class TestExitRule:
    def test_interrupted_wins(self) -> None:
        run = RunOutcome(interrupted=True, released=5)
        assert exit_code(run, {SUCCEEDED: 10}, expected=10) == EXIT_INTERRUPTED

    @pytest.mark.parametrize(
        "run",
        [
            RunOutcome(stopped_by="no connection", exhausted=True),
            RunOutcome(released=1, exhausted=True),
            RunOutcome(lost=1, exhausted=True),
        ],
    )
    def test_a_troubled_run_is_a_submission_error_even_if_all_succeeded(
        self, run: RunOutcome
    ) -> None:
        assert run.troubled
        assert exit_code(run, {SUCCEEDED: 10}, expected=10) == EXIT_SUBMISSION

    @pytest.mark.parametrize(
        ("outcomes", "code"),
        [
            ({SUCCEEDED: 10}, EXIT_OK),
            ({SUCCEEDED: 9, "failed": 1}, EXIT_FAILED),
            ({SUCCEEDED: 9, REJECTED: 1}, EXIT_FAILED),
            ({SUCCEEDED: 9}, EXIT_SUBMISSION),  # one record has no outcome yet
            ({SUCCEEDED: 9, UNKNOWN: 1}, EXIT_SUBMISSION),
            ({SUCCEEDED: 9, "not_submitted": 1}, EXIT_SUBMISSION),
        ],
    )
    def test_outcomes_pick_the_code(self, outcomes: dict[str, int], code: int) -> None:
        assert exit_code(RunOutcome(exhausted=True), outcomes, expected=10) == code
        assert exit_code(None, outcomes, expected=10) == code

    def test_all_sent(self) -> None:
        assert RunOutcome(exhausted=True).all_sent
        assert not RunOutcome(exhausted=False).all_sent
        assert not RunOutcome(exhausted=True, released=3).all_sent
        assert not RunOutcome(exhausted=True, stopped_by="input changed").all_sent

    def test_a_clean_run_is_not_troubled(self) -> None:
        assert not RunOutcome(exhausted=True).troubled
        assert not RunOutcome().troubled

    @pytest.mark.parametrize(
        ("rows", "run", "code"),
        [
            ([SUCCEEDED] * 3, RunOutcome(exhausted=True), EXIT_OK),
            ([SUCCEEDED, FAILED, REJECTED], RunOutcome(exhausted=True), EXIT_FAILED),
            ([SUCCEEDED, NOT_SUBMITTED, SUCCEEDED], RunOutcome(exhausted=True), EXIT_SUBMISSION),
            ([SUCCEEDED, SUCCEEDED], RunOutcome(exhausted=True), EXIT_SUBMISSION),  # one missing
            ([SUCCEEDED] * 3, RunOutcome(interrupted=True), EXIT_INTERRUPTED),
            ([SUCCEEDED] * 3, None, EXIT_OK),
        ],
    )
    def test_the_code_from_a_run_and_the_summary_of_its_results_file(
        self, tmp_path: Path, rows: list[str], run: RunOutcome | None, code: int
    ) -> None:
        results = tmp_path / "r.jsonl"
        results.write_text(
            "".join(
                json.dumps({"line": n, "job_id": "1", "outcome": outcome, "code": None}) + "\n"
                for n, outcome in enumerate(rows, start=1)
            )
            + "torn {\n",  # a torn line is not counted
            encoding="utf-8",
        )
        summary = summarize_results(results)
        assert summary.total == len(rows)
        assert exit_code(run, summary.outcomes, expected=3) == code
        assert code in MEANINGS

    def test_no_results_file_is_no_outcome(self, tmp_path: Path) -> None:
        summary = summarize_results(tmp_path / "absent.jsonl")
        assert summary.total == 0
        assert exit_code(RunOutcome(exhausted=True), summary.outcomes, expected=1) == (
            EXIT_SUBMISSION
        )
