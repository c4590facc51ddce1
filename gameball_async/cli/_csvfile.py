"""CSV input of ``gameball-batch``: columns typed by the wire schema, one row at a time.

A header names wire fields (``customerAttributes.x`` for nested ones); each
column takes its kind from the operation's schema (through ``_seam``) and each
cell is converted to it before the record is validated, so a CSV row refuses
exactly what the same record in JSONL would.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

import attrs

from gameball_async import Operation
from gameball_async._seam import Kind, Spec, attribute_fields, misspelling, operation_fields

from ._parse import Check, InputError, Read, Reject, decode_json

__all__ = ["Column", "convert", "header_columns", "read_csv"]

_INTEGER: Final = re.compile(r"[+-]?\d+")
_TRUE: Final = frozenset({"true", "1", "yes", "y", "t"})
_FALSE: Final = frozenset({"false", "0", "no", "n", "f"})


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
class Column:
    header: str
    path: tuple[str, ...]
    kind: Kind | None


def header_columns(operation: Operation, header: list[str]) -> list[Column]:
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
        return [Column(n, (n,), Kind.ID if n == chosen else None) for n in names]
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
        columns.append(Column(name, path, spec.kind if spec is not None else None))
    return columns


def convert(kind: Kind | None, text: str) -> Any:
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
        value = decode_json(stripped)
    except ValueError:
        raise ValueError(f"must be JSON ({kind.value}), got {text[:40]!r}") from None
    return value


def _row_record(
    line: int, operation: Operation, columns: list[Column], row: list[str], check: Check
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
            value = convert(column.kind, cell)
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


def read_csv(path: Path, operation: Operation, digest: Any | None, check: Check) -> Iterator[Read]:
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        lines = _CountingLines(handle, digest)
        reader = csv.reader(lines)
        try:
            try:
                header = next(reader)
            except StopIteration:
                return
            columns = header_columns(operation, header)
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
