"""Streaming input for ``gameball-batch submit``: JSONL and CSV, one record at a time.

Nothing here holds more than one record (and one chunk) in memory, so a file
of any size can be validated and then sent. Every record goes through the
SDK's own validation (``_schema.wire_items``) so the CLI refuses exactly what
``create_batch`` would, and each refusal names the input line and the field.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Final

import anyio
import anyio.lowlevel
import attrs

from gameball_async import InvalidBatchError, Operation
from gameball_async._seam import (
    wire_items,
)

from ._csvfile import read_csv
from ._lines import LineRanges
from ._parse import Check, InputError, Read, Reject, decode_json
from ._track import Tracker

__all__ = [
    "FORMATS",
    "Chunk",
    "InputError",
    "Interrupted",
    "Reject",
    "Scan",
    "chunk_records",
    "detect_format",
    "new_digest",
    "read_records",
    "scan_input",
    "spool",
]

#: Input formats and the file extensions that imply them.
FORMATS: Final = {"jsonl": (".jsonl", ".ndjson", ".json"), "csv": (".csv",)}

# Validation yields to the event loop this often, so Ctrl-C and the live
# display stay responsive on huge files.
_YIELD_EVERY: Final = 2000
_ITEM_PREFIX: Final = re.compile(r"^item \d+: ")


class Interrupted(Exception):
    """The validation pass was interrupted (Ctrl-C); nothing was sent."""


@attrs.define
class Chunk:
    """Up to ``chunk_size`` valid records and the input lines they came from."""

    lines: LineRanges
    items: list[Any]


def detect_format(path: str, explicit: str | None) -> str:
    """The input format: ``explicit``, else from the extension (stdin defaults to JSONL).

    :raises InputError: when the extension does not tell.
    """
    if explicit:
        return explicit
    if path == "-":
        return "jsonl"
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    raise InputError(f"cannot tell the format of {path} from its extension; pass --format")


def spool(source: IO[bytes], target: Path) -> None:
    """Copy a stream (stdin) to a file in blocks, so it can be read twice."""
    with target.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


def check_record(operation: Operation, line: int, value: Any) -> tuple[Any, Reject | None]:
    """Validate one record with the SDK's rules; return its wire form or a reject."""
    try:
        return wire_items(operation, [value])[0], None
    except InvalidBatchError as exc:
        return None, Reject(line, exc.field, _ITEM_PREFIX.sub("", str(exc)), value)


def read_records(
    path: Path,
    fmt: str,
    operation: Operation,
    digest: Any | None = None,
    *,
    validate: bool = True,
) -> Iterator[Read]:
    """Yield ``(line, wire_item, None)`` or ``(line, None, reject)`` for each record.

    Blank lines are not records. ``digest`` (a hashlib object) is fed every
    byte (JSONL) or text line (CSV) read. Without ``validate`` records are only
    parsed (and CSV cells converted): for a second pass over a file already
    validated, since ``create_batch`` validates every chunk again anyway.

    :raises InputError: for an unreadable file or a CSV header without a required column.
    """
    check = _checker(operation, validate)
    try:
        if fmt == "csv":
            yield from read_csv(path, operation, digest, check)
        else:
            yield from _read_jsonl(path, digest, check)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _checker(operation: Operation, validate: bool) -> Check:
    if validate:
        return lambda line, value: check_record(operation, line, value)
    return lambda line, value: (value, None)


def _read_jsonl(path: Path, digest: Any | None, check: Check) -> Iterator[Read]:
    with path.open("rb") as handle:
        for number, data in enumerate(handle, 1):
            if digest is not None:
                digest.update(data)
            # a UTF-8 byte order mark some editors write
            raw = data[3:] if number == 1 and data.startswith(b"\xef\xbb\xbf") else data
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                shown = raw.decode("utf-8", "replace").rstrip("\r\n")
                yield number, None, Reject(number, None, f"not UTF-8 text ({exc.reason})", shown)
                continue
            try:
                value = decode_json(text)
            except ValueError as exc:
                yield number, None, Reject(number, None, f"malformed JSON: {exc}", text.rstrip())
                continue
            item, reject = check(number, value)
            yield number, item, reject


def chunk_records(
    records: Iterable[Read], size: int, skip: Callable[[int], bool] | None = None
) -> Generator[Chunk, None, None]:
    """Group valid records into chunks of ``size``; invalid and skipped lines are left out."""
    chunk = Chunk(LineRanges(), [])
    for line, item, reject in records:
        if reject is not None or (skip is not None and skip(line)):
            continue
        chunk.lines.add(line)
        chunk.items.append(item)
        if len(chunk.items) == size:
            yield chunk
            chunk = Chunk(LineRanges(), [])
    if chunk.items:
        yield chunk


def new_digest() -> Any:
    """The hash used to recognise an input file on resume."""
    return hashlib.sha256()


@attrs.define
class Scan:
    """What the validation pass found."""

    records: int = 0
    rejected: int = 0
    sha256: str = ""


async def scan_input(
    path: Path,
    fmt: str,
    operation: Operation,
    *,
    tracker: Tracker,
    interrupt: anyio.Event,
    on_reject: Callable[[Reject], None],
) -> Scan:
    """The first pass: validate every record, hash the file, report rejects.

    :raises Interrupted: when ``interrupt`` is set (checked every few thousand lines).
    :raises InputError: when the file as a whole cannot be used.
    """
    digest = new_digest()
    scan = Scan()
    for count, (line, _, reject) in enumerate(read_records(path, fmt, operation, digest), 1):
        tracker.lines_read = line
        if reject is None:
            scan.records += 1
        else:
            scan.rejected += 1
            tracker.rejected += 1
            on_reject(reject)
        if count % _YIELD_EVERY == 0:
            await anyio.lowlevel.checkpoint()
            if interrupt.is_set():
                raise Interrupted
    scan.sha256 = digest.hexdigest()
    return scan
