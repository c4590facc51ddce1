"""Pieces of ``gameball-batch`` tested alone: line ranges, the manifest, CSV typing, exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _support import WHEN

from gameball_async import Operation
from gameball_async._seam import Kind
from gameball_async.cli._csvfile import convert, header_columns
from gameball_async.cli._exit import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SUBMISSION,
    RunOutcome,
    exit_code,
)
from gameball_async.cli._lines import Coverage, LineRanges
from gameball_async.cli._manifest import ManifestError, ManifestState, ManifestWriter
from gameball_async.cli._parse import InputError
from gameball_async.cli._track import REJECTED, SUCCEEDED, UNKNOWN


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

    def test_a_missing_manifest(self, tmp_path: Path) -> None:
        with pytest.raises(ManifestError, match="cannot read manifest"):
            ManifestState.read(tmp_path / "absent.jsonl")


class TestCsvTyping:
    def test_columns_take_their_kind_from_the_wire_schema(self) -> None:
        header = [
            "customerId",
            "amount",
            "transactionTime",
            "transactionId",
            "customerAttributes.channel",
            "note",
        ]
        kinds = {c.header: c.kind for c in header_columns(Operation.CASHBACK, header)}
        assert kinds["amount"] is Kind.NUMBER
        assert kinds["customerId"] is not None
        assert kinds["note"] is None  # unknown columns stay text, validation names them
        nested = header_columns(Operation.CASHBACK, header)[4]
        assert nested.path == ("customerAttributes", "channel")

    @pytest.mark.parametrize(
        ("kind", "cell", "value"),
        [
            (Kind.NUMBER, " 12 ", 12),
            (Kind.NUMBER, "12.5", 12.5),
            (Kind.INT, "-3", -3),
            (Kind.BOOL, "Yes", True),
            (Kind.BOOL, "f", False),
            (Kind.STRINGS, "a| b ||c", ["a", "b", "c"]),
            (Kind.STRINGS, '["x"]', ["x"]),
            (Kind.DATETIME, WHEN, WHEN),
            (None, " kept as is ", " kept as is "),
        ],
    )
    def test_cells_convert_to_their_kind(self, kind: Kind | None, cell: str, value: Any) -> None:
        assert convert(kind, cell) == value

    @pytest.mark.parametrize(
        ("kind", "cell", "says"),
        [
            (Kind.NUMBER, "ten", "must be a number"),
            (Kind.NUMBER, "nan", "must be a finite number"),
            (Kind.INT, "1.5", "must be an integer"),
            (Kind.BOOL, "maybe", "must be a boolean"),
        ],
    )
    def test_bad_cells_say_why(self, kind: Kind, cell: str, says: str) -> None:
        with pytest.raises(ValueError, match=says):
            convert(kind, cell)

    def test_a_header_without_a_required_column_names_the_wire_spelling(self) -> None:
        with pytest.raises(InputError, match="use the camelCase wire name 'customerId'"):
            header_columns(
                Operation.CASHBACK, ["customer_id", "amount", "transactionId", "transactionTime"]
            )
        with pytest.raises(InputError, match="repeats column 'amount'"):
            header_columns(Operation.CASHBACK, ["amount", "amount"])


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
