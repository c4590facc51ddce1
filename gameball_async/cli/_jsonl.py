"""Durable JSONL files of a ``gameball-batch`` run: one JSON value per line.

The manifest and the results file are appended a unit at a time, and each unit
is flushed and ``fsync``-ed before the run acts on it; a new file's directory
entry is synced too. The rejects file is created on its first line only, and
files the run wrote are read back lazily, a line at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["LazyJsonl", "dumps_line", "open_log", "read_jsonl", "sync", "sync_dir"]

# One encoder for every line: json.dumps with options builds a new one per call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def dumps_line(value: Any) -> str:
    """One JSONL line (with its newline); non-JSON values become strings."""
    return _encode(value) + "\n"


def sync(handle: IO[str]) -> None:
    """Flush a file and ``fsync`` it: on disk before the run acts on it."""
    handle.flush()
    os.fsync(handle.fileno())


def sync_dir(path: Path) -> None:
    """``fsync`` the directory of a new file."""
    # A new file's directory entry must be durable too, or a crash can lose it.
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def open_log(path: Path, *, fresh: bool) -> IO[str]:
    """Open a file to append lines to; ``fresh`` creates (truncates) it, durably."""
    handle = path.open("w" if fresh else "a", encoding="utf-8")
    if fresh:
        sync_dir(path)
    return handle


class LazyJsonl:
    """A JSONL file created on its first line only (so no empty rejects files)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle: IO[str] | None = None

    def __enter__(self) -> LazyJsonl:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()

    def write(self, value: Any) -> None:
        """Append one JSON line."""
        if self._handle is None:
            self._handle = self._path.open("w", encoding="utf-8")
        self._handle.write(dumps_line(value))


def read_jsonl(path: Path) -> Iterator[Any]:
    """Yield the JSON values of a JSONL file we wrote."""
    with path.open("r", encoding="utf-8") as handle:
        for text in handle:
            yield json.loads(text)
