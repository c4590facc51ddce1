"""The retry rules, as one pure function: what follows a try that failed.

:func:`decide` takes the method, what went wrong, how many tries were made, the
retry policy and the server's delay, and says: try again after a delay, raise
the error, or report a creation that may have landed. It sends, sleeps and
counts nothing; the transport does what it says.

- ``GET`` (status reads) and ``DELETE`` (stops) are safe to repeat: they are
  retried on 429, 5xx, timeouts, connections dropped or never made, and 2xx
  replies that cannot be decoded.
- ``POST`` (creation) has no idempotency key, so it is retried only where it
  provably did not take effect: a connection never made, a 429 or a 503. After
  any other failure once the body may have been sent (a dropped connection, a
  timeout, another 5xx, a redirect, a reply that is not JSON) a job may exist:
  the creation is ambiguous and never resent.
- Other 4xx, redirects and a failed TLS handshake are final.
- A retry waits a random time up to ``backoff * 2**n`` (capped at
  ``max_backoff``), never less than the server's ``Retry-After``; a server
  asking for more than ``max_retry_after`` gets the error raised at once.
"""

from __future__ import annotations

import enum
import random
from typing import Final, Literal

import attrs

from ._policy import RetryPolicy, retry_delay

__all__ = ["Action", "Decision", "Method", "Outcome", "decide"]

Method = Literal["GET", "DELETE", "POST"]


class Outcome(enum.Enum):
    """What went wrong in one try of a request."""

    RATE_LIMITED = "429"
    UNAVAILABLE = "503"
    SERVER_ERROR = "other 5xx"
    CLIENT_ERROR = "other 4xx"
    REDIRECT = "3xx"
    #: no connection was made: nothing was sent
    NEVER_CONNECTED = "never connected"
    #: the TLS handshake failed: nothing was sent, and trying again cannot mend it
    TLS_FAILED = "TLS failed"
    #: the connection was lost once the request may have been sent
    DROPPED = "dropped"
    #: no full reply within the time limit, the request sent
    TIMEOUT = "timeout"
    #: a 2xx whose body is not JSON
    UNDECODABLE = "undecodable"


class Action(enum.Enum):
    """What the transport does after a failed try."""

    RETRY = "retry"
    RAISE = "raise"
    #: a creation that may have created a job: raise with its items, never resend
    AMBIGUOUS = "ambiguous"


@attrs.frozen
class Decision:
    """The verdict on one failed try.

    :ivar action: retry, raise, or report an ambiguous creation.
    :ivar delay: seconds to wait before the next try (``0.0`` unless retrying).
    :ivar gave_up: a failure of a kind that is retried was raised, because the
        tries ran out or the server asked for a longer delay than the policy allows.
    """

    action: Action
    delay: float = 0.0
    gave_up: bool = False


# After these, a creation's body may have reached the server and created a job.
_MAY_HAVE_LANDED: Final = frozenset(
    {
        Outcome.SERVER_ERROR,
        Outcome.REDIRECT,
        Outcome.DROPPED,
        Outcome.TIMEOUT,
        Outcome.UNDECODABLE,
    }
)
_NETWORK: Final = frozenset({Outcome.NEVER_CONNECTED, Outcome.DROPPED, Outcome.TIMEOUT})


def _retried(outcome: Outcome, policy: RetryPolicy) -> bool:
    if outcome is Outcome.RATE_LIMITED:
        return policy.retry_rate_limited
    if outcome in (Outcome.UNAVAILABLE, Outcome.SERVER_ERROR):
        return policy.retry_server_errors
    if outcome in _NETWORK:
        return policy.retry_network_errors
    # a garbled 2xx is retried whatever the switches: none of them names it
    return outcome is Outcome.UNDECODABLE


def decide(
    method: Method,
    outcome: Outcome,
    attempt: int,
    policy: RetryPolicy,
    retry_after: float | None,
    *,
    too_long: bool = False,
    rng: random.Random,
) -> Decision:
    """What follows try number ``attempt`` of a request, which failed with ``outcome``.

    :param method: the request's method.
    :param outcome: what went wrong.
    :param attempt: the tries made so far, the failed one included (1 for the first).
    :param policy: the retry policy.
    :param retry_after: the server's ``Retry-After`` in seconds, already clamped
        to ``policy.max_retry_after``; a floor under the delay.
    :param too_long: the server asked for more than ``policy.max_retry_after``:
        the error is raised rather than retried early. An undecodable 2xx is
        retried all the same (after the clamped delay).
    :param rng: the random source of the jitter.
    :return: :attr:`Action.AMBIGUOUS` for a creation that may have landed, whatever
        the attempt and the policy; else :attr:`Action.RETRY` with a delay while
        the policy retries the outcome and tries remain; else :attr:`Action.RAISE`.
    """
    if method == "POST" and outcome in _MAY_HAVE_LANDED:
        return Decision(Action.AMBIGUOUS)
    if not _retried(outcome, policy):
        return Decision(Action.RAISE)
    if attempt >= policy.attempts or (too_long and outcome is not Outcome.UNDECODABLE):
        return Decision(Action.RAISE, gave_up=True)
    delay = retry_delay(policy, attempt - 1, retry_after=retry_after, rng=rng)
    return Decision(Action.RETRY, delay=delay)
