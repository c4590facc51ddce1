"""Idempotency keys: at most one job per key across a fleet.

Gameball has no idempotency header, so a key is claimed in the fleet's store
before the creation is sent (see :class:`~gameball_async._coordination.Claim`),
and what came of the request is recorded against it from the creation's own
task, which runs to its end even when the caller is cancelled mid-request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._errors import AmbiguousSubmissionError
from ._job import BatchJob

if TYPE_CHECKING:
    from ._coordination import Claim
    from ._models import Operation
    from ._reply import CreationGuard

__all__ = ["MAX_KEY_LENGTH", "check_idempotency_key", "claimed", "earlier_job"]

#: Longest key accepted: keys live in Redis key names, kept short.
MAX_KEY_LENGTH: Final = 200


def check_idempotency_key(key: str | None, *, fleet: bool) -> None:
    """Refuse a key without a fleet, or a key that is not a short string.

    :raises ValueError: naming what is wrong; nothing has been sent.
    """
    if key is None:
        return
    if not fleet:
        raise ValueError(
            "idempotency_key needs a fleet: Gameball has no idempotency header, so keys "
            "are kept in the fleet's shared store; pass fleet=RedisFleet(...) to "
            "GameballSession (nothing was sent)"
        )
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(
            f"idempotency_key must be a non-empty string of at most {MAX_KEY_LENGTH} "
            f"characters, got {key!r} (nothing was sent)"
        )


def earlier_job(
    claim: Claim, key: str, operation: Operation, items: Sequence[Any]
) -> tuple[str, Operation | None] | None:
    """The job an earlier call with ``key`` created (its id and operation), or
    ``None`` when this call's claim is fresh.

    :raises AmbiguousSubmissionError: an earlier call may have sent its request
        and recorded no job; carries this call's items, and nothing is sent.
    """
    if claim.existing is not None:
        return BatchJob.parse_token(claim.existing)
    if claim.maybe_sent:
        raise AmbiguousSubmissionError(
            f"an earlier create_batch with idempotency_key {key!r} may have sent its "
            f"{operation.value} batch and recorded no job (it crashed, or its outcome "
            "was unknown); it was not resent",
            operation=operation,
            items=items,
        )
    return None


def claimed(
    claim: Claim, send: Callable[[CreationGuard], Awaitable[BatchJob]]
) -> Callable[[CreationGuard], Coroutine[Any, Any, BatchJob]]:
    """``send`` that records its outcome against ``claim``: the job it created,
    a possibly sent request (ambiguous), or nothing created (the key is given
    back). Shielded: a cancellation before sending still gives the key back."""

    async def send_and_record(guard: CreationGuard) -> BatchJob:
        try:
            job = await send(guard)
        except AmbiguousSubmissionError:
            with anyio.CancelScope(shield=True):
                await claim.ambiguous()
            raise
        except BaseException:
            # refused, never connected, or cancelled before sending: nothing created
            with anyio.CancelScope(shield=True):
                await claim.not_sent()
            raise
        with anyio.CancelScope(shield=True):
            await claim.created(job.to_token())
        return job

    return send_and_record
