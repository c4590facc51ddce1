"""Local validation of batch items against the wire schema of each operation.

Records and plain dicts go through the same checks, on their wire form, so a
batch is refused before anything is sent whatever the caller built it from.
Every refusal is an :class:`InvalidBatchError` naming the item index and the
field (its wire name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from ._checks import Validator, compile_validator
from ._errors import InvalidBatchError
from ._models import Operation
from ._record_encoders import RecordEncoder, compile_record_encoder
from ._records import OPERATION_RECORDS, Kind, nested_record, typed_fields, wire_specs
from ._wire import converter, dumps

__all__ = ["MAX_BATCH_ITEMS", "RECORD_FOR", "encode_batch", "wire_items"]

#: The API's limit of items in one batch.
MAX_BATCH_ITEMS: Final = 1000


#: The record class each operation takes (order-transactions takes strings).
RECORD_FOR: Final[dict[Operation, type[Any]]] = {
    Operation(operation): cls for operation, cls in OPERATION_RECORDS.items()
}


def _compile(cls: type[Any]) -> Validator:
    nested = nested_record(cls)
    attributes = wire_specs(nested) if nested is not None else ()
    return compile_validator(wire_specs(cls), attributes=attributes)


_VALIDATORS: Final[dict[Operation, Validator]] = {
    operation: _compile(cls) for operation, cls in RECORD_FOR.items()
}


def _compile_encoder(cls: type[Any]) -> RecordEncoder:
    nested = nested_record(cls)
    if nested is None:
        return compile_record_encoder(typed_fields(cls))
    (field,) = [spec.name for _, spec in typed_fields(cls) if spec.kind is Kind.ATTRIBUTES]
    inner = (
        nested,
        compile_record_encoder(typed_fields(nested), prefix=f"{field}."),
        compile_validator(wire_specs(nested), prefix=f"{field}."),
    )
    return compile_record_encoder(typed_fields(cls), nested=inner)


# Records skip the dict validators: their encoders check and convert in one pass.
_ENCODERS: Final[dict[Operation, RecordEncoder]] = {
    operation: _compile_encoder(cls) for operation, cls in RECORD_FOR.items()
}


def _wire_item(operation: Operation, index: int, item: Any) -> Any:
    if operation is Operation.ORDER_TRANSACTIONS:
        if isinstance(item, str) and item.strip():
            return item
        raise InvalidBatchError(
            f"item {index}: order-transactions items are non-empty order-id strings, "
            f"got {type(item).__name__}",
            index=index,
        )
    record_cls = RECORD_FOR[operation]
    if type(item) is record_cls:
        return _ENCODERS[operation](index, item)
    if isinstance(item, Mapping):
        return _VALIDATORS[operation](index, item, False)
    raise InvalidBatchError(
        f"item {index}: operation {operation.value} takes {record_cls.__name__} records "
        f"or mappings, got {type(item).__name__}",
        index=index,
    )


def wire_items(operation: Operation, items: Iterable[Any]) -> list[Any]:
    """Validate items and return their wire form, ready for JSON.

    :raises InvalidBatchError: naming the first bad item and field.
    """
    return [_wire_item(operation, index, item) for index, item in enumerate(items)]


def encode_batch(operation: Operation, items: Sequence[Any]) -> bytes:
    """Validate a batch and encode its request body ``{"body": [...]}``.

    :raises InvalidBatchError: for an empty batch, more than 1,000 items, or a
        bad item (naming its index and field); nothing is sent then.
    """
    count = len(items)
    if count == 0:
        raise InvalidBatchError("a batch needs at least one item; got an empty list")
    if count > MAX_BATCH_ITEMS:
        raise InvalidBatchError(
            f"a batch takes at most {MAX_BATCH_ITEMS} items; got {count} "
            "(use submit_many to split them)"
        )
    wire = wire_items(operation, items)
    try:
        return dumps({"body": wire})
    except (TypeError, ValueError) as exc:
        raise _locate(wire, exc) from None


def _locate(wire: list[Any], exc: Exception) -> InvalidBatchError:
    """Find which item and field JSON encoding failed on (off the hot path)."""
    for index, item in enumerate(wire):
        path = _bad_path(item, "")
        if path is not None:
            where, why = path
            return InvalidBatchError(
                f"item {index}: field {where!r} {why}", index=index, field=where or None
            )
    return InvalidBatchError(f"the batch cannot be encoded as JSON: {exc}")


def _bad_path(value: Any, path: str) -> tuple[str, str] | None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if not isinstance(key, str):
                return path, f"has a non-string key {key!r}"
            found = _bad_path(inner, f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        for position, inner in enumerate(value):
            found = _bad_path(inner, f"{path}[{position}]")
            if found is not None:
                return found
        return None
    if attrs.has(type(value)):
        return _bad_path(converter.unstructure(value), path)
    try:
        dumps(value)
    except (TypeError, ValueError) as exc:
        return path, f"cannot be sent: {exc}"
    return None
