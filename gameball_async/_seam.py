"""The one internal seam of the ``gameball-batch`` command into the SDK.

The command (``gameball_async.cli``) uses the SDK through its public names,
and through this module for what the public API does not offer: the wire
schema of each operation (to type CSV columns and name missing ones) and
item validation without encoding a request. Nothing else of the SDK's
private modules is the command's to import; what is here stays stable for it.
"""

from __future__ import annotations

from ._checks import Kind, Spec, misspelling
from ._job import check_job_id
from ._models import Operation
from ._schema import _CUSTOMER_ATTRIBUTES, _SCHEMAS, MAX_BATCH_ITEMS, wire_items

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
    return tuple(_SCHEMAS.get(operation, ()))


def attribute_fields() -> tuple[Spec, ...]:
    """The wire fields of ``customerAttributes`` (all optional)."""
    return tuple(_CUSTOMER_ATTRIBUTES)
