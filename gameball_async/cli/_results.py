"""The results file of a ``gameball-batch`` run, and the summary read from it at the end.

The results file holds one line per input record,
``{"line", "job_id", "outcome", "code", "message"}``; each unit (a job, a
chunk) is written in one go and then flushed and synced, before the manifest
says it is done.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from gameball_async import BatchState, BatchStatus

from ._exit import EXIT_INTERRUPTED, MEANINGS, RunOutcome, exit_code
from ._input import Reject
from ._jsonl import dumps_line, open_log, sync, sync_dir
from ._manifest import ManifestState, ManifestWriter
from ._track import (
    FAILED,
    NOT_PROCESSED,
    REJECTED,
    SUCCEEDED,
    UNKNOWN,
    Report,
    RunInterface,
    Tracker,
)

__all__ = [
    "ResultsSummary",
    "ResultsWriter",
    "conclude",
    "item_outcomes",
    "prune_results",
    "reject_from_json",
    "summarize_results",
    "write_rejected",
]


class ResultsWriter:
    """Appends outcome lines; each unit (a job, a chunk) is flushed and synced at once."""

    def __init__(self, path: Path, *, fresh: bool) -> None:
        self.path = path
        self._file = open_log(path, fresh=fresh)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def write_unit(
        self, rows: Iterable[tuple[int, str | None, str, int | None, str | None]]
    ) -> collections.Counter[str]:
        """Write ``(line, job_id, outcome, code, message)`` rows; return outcome counts."""
        counts: collections.Counter[str] = collections.Counter()
        write = self._file.write
        for line, job_id, outcome, code, message in rows:
            write(
                dumps_line(
                    {
                        "line": line,
                        "job_id": job_id,
                        "outcome": outcome,
                        "code": code,
                        "message": message,
                    }
                )
            )
            counts[outcome] += 1
        sync(self._file)
        return counts


Outcome = tuple[str, "int | None", "str | None"]


def item_outcomes(status: BatchStatus, count: int) -> list[Outcome]:
    """Every item's outcome in a terminal status, by position in the job.

    Per-item results are placed by :attr:`ItemResult.index`. Items left
    without one are ``not_processed`` when the job ended Failed or Stopped;
    in a Completed job they succeeded when every failure is accounted for
    (the server reported all failed items), else their outcome is unknown.
    """
    slots: list[Outcome | None] = [None] * count
    placed_failures = 0
    for result in (*status.failed, *status.succeeded):
        index = result.index
        if index is None or not 0 <= index < count or slots[index] is not None:
            continue
        if result.ok:
            slots[index] = (SUCCEEDED, None, None)
        else:
            placed_failures += 1
            slots[index] = (FAILED, result.code, result.message)
    if status.state is BatchState.COMPLETED:
        all_failures_known = placed_failures >= status.error_count
        filler: Outcome = (
            (SUCCEEDED, None, None)
            if all_failures_known
            else (UNKNOWN, None, "the server reported no result for this item")
        )
    else:
        filler = (
            NOT_PROCESSED,
            None,
            f"the job ended {status.state.value} before processing this item",
        )
    return [slot if slot is not None else filler for slot in slots]


def prune_results(path: Path, state: ManifestState) -> int:
    """Keep only the results lines of settled units; return how many were dropped.

    The file is rewritten to a temporary file and renamed over the original.
    """
    if not path.exists():
        return 0
    finals = state.finals()
    dropped = 0
    temporary = path.with_name(path.name + ".tmp")
    with path.open("r", encoding="utf-8") as source, temporary.open("w", encoding="utf-8") as out:
        for text in source:
            try:
                row = json.loads(text)
            except ValueError:  # a torn last line
                dropped += 1
                continue
            if isinstance(row, dict) and state.keep(row, finals):
                out.write(text if text.endswith("\n") else text + "\n")
            else:
                dropped += 1
        sync(out)
    os.replace(temporary, path)
    sync_dir(path)
    return dropped


@attrs.define
class ResultsSummary:
    """Counts over a whole results file."""

    outcomes: collections.Counter[str] = attrs.field(factory=collections.Counter)
    codes: collections.Counter[tuple[str, int | None]] = attrs.field(factory=collections.Counter)
    samples: dict[tuple[str, int | None], str] = attrs.field(factory=dict)

    @property
    def total(self) -> int:
        """Results lines."""
        return sum(self.outcomes.values())


def summarize_results(path: Path) -> ResultsSummary:
    """Count outcomes and failure codes of a results file (streamed)."""
    summary = ResultsSummary()
    if not path.exists():
        return summary
    with path.open("r", encoding="utf-8") as source:
        for text in source:
            try:
                row = json.loads(text)
            except ValueError:
                continue
            outcome = str(row.get("outcome"))
            summary.outcomes[outcome] += 1
            if outcome != SUCCEEDED:
                code = row.get("code")
                key = (outcome, code if isinstance(code, int) else None)
                summary.codes[key] += 1
                if key not in summary.samples and row.get("message"):
                    summary.samples[key] = str(row["message"])[:120]
    return summary


def conclude(
    ui: RunInterface,
    title: str,
    run: RunOutcome | None,
    tracker: Tracker,
    *,
    expected: int,
    results: Path,
    manifest: Path,
    files: list[tuple[str, str]],
) -> int:
    """Sum up the whole results file, print the report, return the exit code.

    :param run: what the engine reports of the run, or ``None`` when it never ran.
    """
    summary = summarize_results(results)
    outcomes = summary.outcomes
    missing = expected - summary.total
    code = exit_code(run, outcomes, expected=expected)
    hints: list[str] = []
    if missing > 0:
        hints.append(
            f"{missing:,} records have no outcome yet: run `gameball-batch resume {manifest}`"
        )
    if outcomes[UNKNOWN]:
        hints.append(
            f"{outcomes[UNKNOWN]:,} records have an unknown outcome: check the account before "
            "sending them again (they were never resent)"
        )
    failures = [
        (outcome, code_, count, summary.samples.get((outcome, code_), ""))
        for (outcome, code_), count in summary.codes.most_common(8)
    ]
    tracker.phase = "interrupted" if code == EXIT_INTERRUPTED else "done"
    ui.report(
        Report(
            title=title,
            expected=expected,
            outcomes=outcomes,
            failures=failures,
            tracker=tracker,
            files=files,
            hints=hints,
            exit_code=code,
            exit_meaning=MEANINGS[code],
        )
    )
    return code


def reject_from_json(row: Any) -> Reject:
    """A :class:`Reject` read back from the rejects file (without its record)."""
    return Reject(int(row["line"]), row.get("field"), str(row["error"]), None)


def write_rejected(
    rejects: Iterable[Reject], out: ResultsWriter, writer: ManifestWriter, tracker: Tracker
) -> None:
    """Write the outcome of every rejected record, then mark them written."""
    counts = out.write_unit((r.line, None, REJECTED, None, r.error) for r in rejects)
    writer.write({"type": "rejected", "count": counts[REJECTED]})
    tracker.outcomes.update(counts)
