"""How a job is named from outside a session: its id, and its resume token.

An id goes into URL paths, so only a safe form gets through; a token is a small
versioned JSON string that holds a job's id and operation, never a key or a status.
"""

from __future__ import annotations

import json
import re
from typing import Final

from ._errors import InvalidJobIdError
from ._models import Operation

__all__ = ["check_job_id", "dump_token", "load_token"]

_TOKEN_VERSION: Final = 1
# Ids are numbers on the wire (strings in the newer spec); nothing that could
# change the route (slashes, dots, percent, query or fragment marks) gets through.
_JOB_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_job_id(job_id: object) -> str:
    """Normalise a job id to its string form, refusing anything unsafe in a URL path.

    :raises InvalidJobIdError: for anything but 1-128 letters, digits, ``_`` or ``-``.
    """
    if isinstance(job_id, bool) or not isinstance(job_id, (int, str)):
        raise InvalidJobIdError(f"a job id is an int or a str, got {type(job_id).__name__}")
    text = str(job_id)
    if not _JOB_ID.fullmatch(text):
        # bounded: 40 characters may need ten each once escaped
        shown = repr(text[:40])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise InvalidJobIdError(
            f"invalid job id {shown}: expected 1-128 letters, digits, '_' or '-'"
        )
    return text


def dump_token(job_id: str, operation: Operation | None) -> str:
    """The token naming a job: compact JSON of the version, id and operation."""
    return json.dumps(
        {
            "v": _TOKEN_VERSION,
            "job_id": job_id,
            "operation": operation.value if operation is not None else None,
        },
        separators=(",", ":"),
    )


def load_token(token: str) -> tuple[str, Operation | None]:
    """Read a token from :func:`dump_token`: the job id and operation it names.

    :raises InvalidJobIdError: when the token is not one.
    """
    try:
        data = json.loads(token)
    except (TypeError, ValueError):
        raise InvalidJobIdError("not a job token: not JSON") from None
    if not isinstance(data, dict) or data.get("v") != _TOKEN_VERSION:
        raise InvalidJobIdError(f"not a version {_TOKEN_VERSION} job token")
    job_id = check_job_id(data.get("job_id"))
    raw_operation = data.get("operation")
    if raw_operation is None:
        return job_id, None
    try:
        return job_id, Operation(raw_operation)
    except ValueError:
        raise InvalidJobIdError(f"job token names unknown operation {raw_operation!r}") from None
