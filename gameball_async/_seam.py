"""The one internal seam of the ``gameball-batch`` command into the SDK.

The command (``gameball_async.cli``) uses the SDK through its public names,
and through this module for what the public API does not offer: the wire
schema of each operation as the record classes state it (to type CSV
columns and name missing ones) and item validation without encoding a
request. Nothing else of the SDK's private modules is the command's to
import; what is here stays stable for it.
"""

from __future__ import annotations

from ._checks import Kind, Spec, misspelling
from ._jobid import check_job_id
from ._models import Operation
from ._records import CustomerAttributes, wire_specs
from ._schema import MAX_BATCH_ITEMS, RECORD_FOR, wire_items

__all__ = [
    "MAX_BATCH_ITEMS",
    "Kind",
    "Spec",
    "attribute_fields",
    "check_job_id",
    "operation_fields",
    "misspelling",
    "wire_items",
]


def operation_fields(operation: Operation) -> tuple[Spec, ...]:
    """The top-level wire fields of an operation's items (name, kind, required).

    Empty for ``order-transactions``, whose items are plain strings.
    """
    record_cls = RECORD_FOR.get(operation)
    return () if record_cls is None else wire_specs(record_cls)


def attribute_fields() -> tuple[Spec, ...]:
    """The wire fields of ``customerAttributes`` (all optional)."""
    return wire_specs(CustomerAttributes)
