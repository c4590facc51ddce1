"""The names of a fleet's Redis keys: one hash tag per account.

Every key of an account starts with ``gameball:{<namespace>}:``; the braces are
a Redis Cluster hash tag, so all of them live on one slot and a Lua script may
touch any of them. The namespace is a one-way hash of the API key (or a name
the caller chose); nothing secret is ever part of a key. Idempotency keys are
hashed too, so a key name stays short whatever the caller passes.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

import attrs

__all__ = ["Keys", "check_namespace"]

_NAMESPACE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def check_namespace(namespace: str) -> str:
    """Return ``namespace`` if it is 1-64 characters of ``[A-Za-z0-9_.:-]``.

    :raises ValueError: naming what is wrong.
    """
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"namespace must be 1-64 characters of letters, digits and _.:-, got {namespace!r}"
        )
    return namespace


@attrs.frozen
class Keys:
    """Key and channel names of one account's fleet."""

    namespace: str = attrs.field(converter=check_namespace)

    @property
    def prefix(self) -> str:
        """What every key of the account starts with (with its hash tag)."""
        return f"gameball:{{{self.namespace}}}:"

    # -- the account-wide rate limiter ---------------------------------------

    @property
    def limiter_log(self) -> str:
        """Sorted set: one member per request, scored by when it counts."""
        return self.prefix + "limit:log"

    @property
    def limiter_pause(self) -> str:
        """String: server time (ms) until which the whole fleet holds (a 429)."""
        return self.prefix + "limit:pause"

    @property
    def limiter_waiters(self) -> str:
        """Sorted set: the limiters waiting for a slot, scored by when they first waited."""
        return self.prefix + "limit:wait"

    @property
    def limiter_seen(self) -> str:
        """Sorted set: each waiting limiter, scored by when it last asked (stale ones leave)."""
        return self.prefix + "limit:seen"

    @property
    def limiter_epoch(self) -> str:
        """String: the limiter log's epoch (a new one when the log was lost)."""
        return self.prefix + "limit:epoch"

    # -- processes -------------------------------------------------------------

    def process(self, process_id: str) -> str:
        """String with a short expiry: a live process's heartbeat."""
        return self.prefix + "proc:" + process_id

    # -- shared polling --------------------------------------------------------

    def lease(self, job_id: str) -> str:
        """String with expiry: the process polling a job for the fleet, and its fence."""
        return self.prefix + "lease:" + job_id

    def status(self, job_id: str) -> str:
        """Hash: the latest status read of a job (the truth; hints may be lost)."""
        return self.prefix + "status:" + job_id

    @property
    def fence(self) -> str:
        """Counter: a new number for every lease taken (fenced writes)."""
        return self.prefix + "fence"

    @property
    def hints(self) -> str:
        """Pub/sub channel: job ids whose shared status changed."""
        return self.prefix + "hints"

    # -- the job registry and idempotency keys ---------------------------------

    def job(self, job_id: str) -> str:
        """Hash: a created job's token, operation and creation time."""
        return self.prefix + "job:" + job_id

    @property
    def open_jobs(self) -> str:
        """Sorted set: job ids not yet seen terminal, scored by creation time."""
        return self.prefix + "open"

    def idempotency(self, key: str) -> str:
        """Hash: what came of the creation claimed with an idempotency key."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return self.prefix + "idem:" + digest
