"""The manifest of a ``gameball-batch`` run: a durable log of what was sent.

The manifest is a write-ahead log of the run, one JSON object per line, each
appended, flushed and ``fsync``-ed before the run acts on it:

``header``
    operation, input file (and its sha256), results and rejects paths, base URL.
``rejected``
    the rejected records' outcomes are in the results file.
``chunk``
    a chunk (its input line ranges) is about to be sent. A chunk with no later
    ``job``, ``unsubmitted`` or ``released`` line may or may not have been
    created: it is never resent.
``job``
    the job id the server gave a chunk, with operation and line ranges.
``unsubmitted``
    a chunk was not (or may not have been) created; its outcomes are written.
``released``
    a chunk was certainly not created and has no outcome yet: ``resume``
    sends it again.
``done``
    a job's outcomes are in the results file (flushed and synced first).
``submitted``
    every record of the input is in a chunk.

Resume keeps the results lines of finished units only, so every record's
outcome ends up written exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ._jsonl import dumps_line, open_log, sync
from ._lines import Coverage, LineRanges
from ._track import REJECTED

__all__ = [
    "MANIFEST_VERSION",
    "ChunkState",
    "ManifestError",
    "ManifestState",
    "ManifestWriter",
]

MANIFEST_VERSION: Final = 1
_TOOL: Final = "gameball-batch"

Observer = Callable[[Mapping[str, Any]], None]


class ManifestError(Exception):
    """The manifest file is missing, unreadable or not a gameball-batch manifest."""


@attrs.define
class ChunkState:
    """What the manifest says about one chunk."""

    chunk: int
    lines: LineRanges
    job_id: str | None = None
    final: bool = False
    ambiguous: bool = False
    released: bool = False


@attrs.define
class ManifestState:
    """A manifest read back, for ``resume``."""

    header: dict[str, Any]
    chunks: dict[int, ChunkState] = attrs.field(factory=dict)
    done: set[str] = attrs.field(factory=set)
    rejected_written: bool = False
    submitted: bool = False

    @classmethod
    def read(cls, path: Path) -> ManifestState:
        """Read a manifest; a torn last line (a crash mid-write) is ignored.

        :raises ManifestError: when it is not a gameball-batch manifest.
        """
        try:
            handle = path.open("r", encoding="utf-8")
        except OSError as exc:
            raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
        with handle:
            lines = handle.read().splitlines()
        entries: list[dict[str, Any]] = []
        for number, text in enumerate(lines, 1):
            try:
                entry = json.loads(text)
            except ValueError:
                if number == len(lines):
                    break
                raise ManifestError(f"{path}:{number}: not a JSON line") from None
            if not isinstance(entry, dict):
                raise ManifestError(f"{path}:{number}: not a manifest entry")
            entries.append(entry)
        if not entries or entries[0].get("type") != "header" or entries[0].get("tool") != _TOOL:
            raise ManifestError(f"{path} is not a {_TOOL} manifest")
        if entries[0].get("version") != MANIFEST_VERSION:
            raise ManifestError(f"{path}: unsupported manifest version {entries[0].get('version')}")
        state = cls(header=entries[0])
        try:
            for entry in entries[1:]:
                state._apply(entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{path}: malformed entry ({exc!r})") from None
        return state

    def _apply(self, entry: Mapping[str, Any]) -> None:
        kind = entry.get("type")
        if kind == "chunk":
            number = int(entry["chunk"])
            self.chunks[number] = ChunkState(number, LineRanges(entry["lines"]))
        elif kind in ("job", "unsubmitted", "released"):
            chunk = self.chunks.setdefault(
                int(entry["chunk"]), ChunkState(int(entry["chunk"]), LineRanges(entry["lines"]))
            )
            if kind == "job":
                chunk.job_id = str(entry["job_id"])
            elif kind == "unsubmitted":
                chunk.final = True
                chunk.ambiguous = bool(entry.get("ambiguous"))
            else:
                chunk.released = True
        elif kind == "done":
            self.done.add(str(entry["job_id"]))
        elif kind == "rejected":
            self.rejected_written = True
        elif kind == "submitted":
            self.submitted = True

    def forget_results(self) -> None:
        """Treat every unit as unwritten (the results file was lost).

        Jobs are collected again from the server; chunks settled without a job
        fall back to "may have been sent", the safe reading.
        """
        self.done.clear()
        self.rejected_written = False
        for chunk in self.chunks.values():
            chunk.final = False

    @property
    def next_chunk(self) -> int:
        """The number for the next chunk."""
        return max(self.chunks, default=-1) + 1

    def pending_jobs(self) -> list[ChunkState]:
        """Chunks whose job was created but whose outcomes are not written."""
        return [
            c for c in self.chunks.values() if c.job_id is not None and c.job_id not in self.done
        ]

    def in_doubt(self) -> list[ChunkState]:
        """Chunks announced but never settled: they may have been created."""
        return [
            c for c in self.chunks.values() if c.job_id is None and not c.final and not c.released
        ]

    def sent(self) -> list[LineRanges]:
        """Line ranges of every chunk that was (or may have been) sent."""
        return [c.lines for c in self.chunks.values() if not c.released or c.job_id is not None]

    def keep(self, row: Mapping[str, Any], finals: Coverage) -> bool:
        """Whether a results line belongs to a settled unit (else resume rewrites it)."""
        job_id = row.get("job_id")
        if job_id is not None:
            return str(job_id) in self.done
        if row.get("outcome") == REJECTED:
            return self.rejected_written
        return row.get("line") in finals

    def finals(self) -> Coverage:
        """Lines of chunks settled without a job (``unsubmitted``)."""
        return Coverage(c.lines for c in self.chunks.values() if c.final and c.job_id is None)


class ManifestWriter:
    """Appends manifest entries durably (write, flush, fsync) and tells an observer.

    :param path: the manifest file.
    :param fresh: create (truncate) it rather than append.
    :param observer: called with each entry once it is on disk.
    """

    def __init__(self, path: Path, *, fresh: bool, observer: Observer | None = None) -> None:
        self.path = path
        self._file = open_log(path, fresh=fresh)
        self._observer = observer

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def write(self, entry: Mapping[str, Any]) -> None:
        """Append one entry durably."""
        self._file.write(dumps_line(entry))
        sync(self._file)
        if self._observer is not None:
            self._observer(entry)

    def header(self, **fields: Any) -> None:
        """Write the header line."""
        self.write({"type": "header", "tool": _TOOL, "version": MANIFEST_VERSION, **fields})

    def chunk(self, number: int, lines: LineRanges) -> None:
        """Announce a chunk about to be sent."""
        self.write({"type": "chunk", "chunk": number, "lines": lines.pairs, "count": lines.count})

    def job(self, number: int, job_id: str, operation: str, lines: LineRanges) -> None:
        """Record the job created for a chunk."""
        self.write(
            {
                "type": "job",
                "chunk": number,
                "job_id": job_id,
                "operation": operation,
                "lines": lines.pairs,
                "count": lines.count,
            }
        )
