"""Streaming input for ``gameball-batch submit``: JSONL and CSV, one record at a time.

Nothing here holds more than one record (and one chunk) in memory, so a file
of any size can be validated and then sent. Every record goes through the
SDK's own validation (``_schema.wire_items``) so the CLI refuses exactly what
``create_batch`` would, and each refusal names the input line and the field.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
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
    Kind,
    Spec,
    attribute_fields,
    misspelling,
    operation_fields,
    wire_items,
)

from ._manifest import LineRanges
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
_INTEGER: Final = re.compile(r"[+-]?\d+")
_TRUE: Final = frozenset({"true", "1", "yes", "y", "t"})
_FALSE: Final = frozenset({"false", "0", "no", "n", "f"})


class InputError(Exception):
    """The input as a whole cannot be used (unreadable, a CSV without a required column)."""


class Interrupted(Exception):
    """The validation pass was interrupted (Ctrl-C); nothing was sent."""


@attrs.frozen
class Reject:
    """An invalid record: its input line, the field at fault, why, and the record.

    :ivar record: the parsed record, or the raw text when it could not be parsed.
    """

    line: int
    field: str | None
    error: str
    record: Any

    def to_json(self) -> dict[str, Any]:
        """The rejects-file form."""
        return {"line": self.line, "field": self.field, "error": self.error, "record": self.record}

    def __str__(self) -> str:
        return f"line {self.line}: {self.error}"


@attrs.define
class Chunk:
    """Up to ``chunk_size`` valid records and the input lines they came from."""

    lines: LineRanges
    items: list[Any]


#: One record read: its line number, and either its wire form or why it is refused.
Read = tuple[int, Any, "Reject | None"]


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


def _refuse_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which the API (and JSON) does not.
    raise ValueError(f"{name} is not a JSON number")


# One decoder for every line: json.loads(..., parse_constant=...) builds a new one per call.
_decode_json = json.JSONDecoder(parse_constant=_refuse_constant).decode


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
            yield from _read_csv(path, operation, digest, check)
        else:
            yield from _read_jsonl(path, digest, check)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


Check = Callable[[int, Any], "tuple[Any, Reject | None]"]


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
                value = _decode_json(text)
            except ValueError as exc:
                yield number, None, Reject(number, None, f"malformed JSON: {exc}", text.rstrip())
                continue
            item, reject = check(number, value)
            yield number, item, reject


class _CountingLines:
    """Feeds ``csv.reader`` text lines, hashing them and counting physical lines."""

    def __init__(self, handle: IO[str], digest: Any | None) -> None:
        self._handle = handle
        self._digest = digest
        self.lines = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        text = next(self._handle)
        self.lines += 1
        if self._digest is not None:
            self._digest.update(text.encode("utf-8", "surrogatepass"))
        return text


@attrs.frozen
class _Column:
    header: str
    path: tuple[str, ...]
    kind: Kind | None


def _columns(operation: Operation, header: list[str]) -> list[_Column]:
    names = [name.strip() for name in header]
    seen: set[str] = set()
    for name in names:
        if not name:
            raise InputError("the CSV header has an empty column name")
        if name in seen:
            raise InputError(f"the CSV header repeats column {name!r}")
        seen.add(name)
    if operation is Operation.ORDER_TRANSACTIONS:
        if "orderId" not in seen and len(names) != 1:
            raise InputError(
                "an order-transactions CSV needs an 'orderId' column (or a single column)"
            )
        chosen = "orderId" if "orderId" in seen else names[0]
        return [_Column(n, (n,), Kind.ID if n == chosen else None) for n in names]
    specs: dict[str, Spec] = {spec.name: spec for spec in operation_fields(operation)}
    attributes: dict[str, Spec] = {spec.name: spec for spec in attribute_fields()}
    present = {name.split(".", 1)[0] for name in names}
    missing = [
        spec.name
        for spec in operation_fields(operation)
        if spec.required and spec.name not in present
    ]
    if missing:
        required = ", ".join(s.name for s in operation_fields(operation) if s.required)
        found = [(m, misspelling(m, present)) for m in missing]
        hints = "".join(
            f"; found {spelt!r}: use the camelCase wire name {name!r}"
            for name, spelt in found
            if spelt is not None
        )
        raise InputError(
            f"the CSV header lacks required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (operation {operation.value} needs {required})"
            + hints
        )
    columns = []
    for name in names:
        path = tuple(name.split("."))
        spec = specs.get(path[0]) if len(path) == 1 else None
        if len(path) == 2 and path[0] == "customerAttributes":
            spec = attributes.get(path[1])
        columns.append(_Column(name, path, spec.kind if spec is not None else None))
    return columns


def _convert(kind: Kind | None, text: str) -> Any:
    """A CSV cell as the schema kind wants it; raises ValueError saying why not."""
    if kind is None or kind in (Kind.ID, Kind.STR, Kind.CHANNEL, Kind.DATETIME, Kind.DATE):
        return text  # datetimes stay ISO strings; validation checks their zone
    stripped = text.strip()
    if kind is Kind.NUMBER:
        if _INTEGER.fullmatch(stripped):
            return int(stripped)
        try:
            number = float(stripped)
        except ValueError:
            raise ValueError(f"must be a number, got {text[:40]!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number, got {text[:40]!r}")
        return number
    if kind is Kind.INT:
        if not _INTEGER.fullmatch(stripped):
            raise ValueError(f"must be an integer, got {text[:40]!r}")
        return int(stripped)
    if kind is Kind.BOOL:
        folded = stripped.casefold()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        raise ValueError(f"must be a boolean (true/false), got {text[:40]!r}")
    if kind is Kind.STRINGS and not stripped.startswith("["):
        return [part.strip() for part in stripped.split("|") if part.strip()]
    try:
        value = _decode_json(stripped)
    except ValueError:
        raise ValueError(f"must be JSON ({kind.value}), got {text[:40]!r}") from None
    return value


def _row_record(
    line: int, operation: Operation, columns: list[_Column], row: list[str], check: Check
) -> tuple[Any, Reject | None]:
    # zip stops at the shorter: missing trailing cells are absent fields
    shown = {column.header: cell for column, cell in zip(columns, row, strict=False)}
    if len(row) > len(columns) and any(cell.strip() for cell in row[len(columns) :]):
        error = f"the row has {len(row):,} cells but the header has {len(columns):,} columns"
        return None, Reject(line, None, error, row)
    if operation is Operation.ORDER_TRANSACTIONS:
        at = next(i for i, column in enumerate(columns) if column.kind is Kind.ID)
        return check(line, row[at].strip() if at < len(row) else "")
    record: dict[str, Any] = {}
    for column, cell in zip(columns, row, strict=False):
        if cell == "":
            continue  # an empty cell is an absent field
        try:
            value = _convert(column.kind, cell)
        except ValueError as exc:
            return None, Reject(line, column.header, f"field {column.header!r} {exc}", shown)
        target = record
        for key in column.path[:-1]:
            nested = target.setdefault(key, {})
            if not isinstance(nested, dict):
                error = f"field {column.header!r} nests under {key!r}, which is not an object"
                return None, Reject(line, column.header, error, shown)
            target = nested
        target[column.path[-1]] = value
    item, reject = check(line, record)
    if reject is not None:
        reject = attrs.evolve(reject, record=shown)
    return item, reject


def _read_csv(
    path: Path, operation: Operation, digest: Any | None, check: Check
) -> Iterator[Read]:
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        lines = _CountingLines(handle, digest)
        reader = csv.reader(lines)
        try:
            try:
                header = next(reader)
            except StopIteration:
                return
            columns = _columns(operation, header)
            for row in reader:
                # the row's first physical line: rows may span lines (quoted newlines)
                first = lines.lines - sum(cell.count("\n") for cell in row)
                if not any(cell.strip() for cell in row):
                    continue
                item, reject = _row_record(first, operation, columns, row, check)
                yield first, item, reject
        except UnicodeDecodeError as exc:
            where = f"{path}: line {lines.lines + 1}"
            raise InputError(f"{where} is not UTF-8 text ({exc.reason})") from None
        except csv.Error as exc:
            raise InputError(f"{path}: line {lines.lines}: {exc}") from None


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
