"""The exception tree of gameball_async.

Every error the package raises on purpose derives from :class:`GameballError`::

    GameballError
    ├── APIError                  the server answered with an error status
    │   ├── AuthenticationError   401 / 403, codes 1xxx
    │   ├── NotFoundError         404
    │   ├── RateLimitError        429 (``retry_after``)
    │   ├── InvalidRequestError   any other 4xx
    │   ├── ServerError           5xx
    │   └── RedirectError         3xx, never followed (the keys would go with it)
    ├── TransportError            the network failed (connection, timeout, TLS)
    ├── AmbiguousSubmissionError  a creation whose outcome is unknown (carries the items)
    ├── ProtocolError             a reply the client cannot decode
    ├── InvalidBatchError         rejected locally, nothing was sent
    ├── CreationTimeoutError      ``create_batch(timeout=)`` ran out before sending
    ├── InvalidJobIdError         a job id or job token that is not one
    ├── SubmissionError           ``submit_many`` did not submit all of its input
    ├── BatchError                a job ended badly (carries ``status``)
    │   ├── BatchFailedError      the job ended ``Failed``
    │   └── BatchStoppedError     the job ended ``Stopped``
    ├── PollTimeoutError          ``wait(timeout=...)`` ran out
    └── SessionClosedError        the session was closed while (or before) it was used

No error carries a secret: messages are built from status codes, error codes and
the server's message, never from request headers.

Every error pickles (multiprocessing, Celery): :meth:`GameballError.__reduce__`
rebuilds any subclass from its ``args`` and attributes without calling its
``__init__``, so keyword-only constructors and attributes added later need no
code of their own. Job handles among the attributes (``SubmissionError.jobs``)
travel as detached handles: see :meth:`GameballError.__reduce__`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._job import BatchJob
    from ._models import BatchStatus, Operation

__all__ = [
    "APIError",
    "AmbiguousSubmissionError",
    "AuthenticationError",
    "BatchError",
    "BatchFailedError",
    "BatchStoppedError",
    "CreationTimeoutError",
    "GameballError",
    "InvalidBatchError",
    "InvalidJobIdError",
    "InvalidRequestError",
    "NotFoundError",
    "PollTimeoutError",
    "ProtocolError",
    "RateLimitError",
    "RedirectError",
    "ServerError",
    "SessionClosedError",
    "SubmissionError",
    "TransportError",
]


class GameballError(Exception):
    """Root of every error raised by gameball_async.

    Errors pickle whatever their subclass: see :meth:`__reduce__`.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the class, ``args`` and attributes, rebuilt without ``__init__``.

        That covers keyword-only constructors and attributes set after
        construction (``__notes__`` included) in every subclass. A
        :class:`BatchJob` among the attributes (``SubmissionError.jobs``...)
        pickles as a detached handle (see ``BatchJob.__reduce__``): the
        session, and so its keys, never enters the pickle.
        """
        return (_rebuild_error, (type(self), self.args, dict(vars(self))))


def _rebuild_error(
    cls: type[GameballError], args: tuple[Any, ...], state: dict[str, Any]
) -> GameballError:
    error = cls.__new__(cls, *args)
    error.args = args
    vars(error).update(state)
    return error


class APIError(GameballError):
    """The server answered with an error status.

    :param message: the server's message, or a description of the reply.
    :param http_status: the HTTP status code.
    :param code: Gameball's numeric error code, when the body carried one.
    :param type: Gameball's error type, when the body carried one.
    :param request_id: the server's request id, for support tickets.
    :param body: the raw reply text, truncated, when the body was not a Gameball error.
    :ivar retry_after: seconds the reply's ``Retry-After`` asked to wait (any
        error status may carry one, e.g. a 503), or ``None``.
    """

    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        http_status: int,
        code: int | None = None,
        type: str | None = None,
        request_id: str | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.type = type
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        parts = [f"HTTP {self.http_status}"]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.type:
            parts.append(self.type)
        head = ", ".join(parts)
        tail = f" (request id {self.request_id})" if self.request_id else ""
        return f"{head}: {self.message}{tail}"


class AuthenticationError(APIError):
    """The keys were missing, wrong or lack a permission (401/403, codes 1xxx)."""


class NotFoundError(APIError):
    """The resource does not exist (404), e.g. an unknown job id."""


class RateLimitError(APIError):
    """The account's rate limit was exceeded (429) and retries ran out.

    :ivar retry_after: seconds the server asked to wait, or ``None``.
    """


class InvalidRequestError(APIError):
    """The server refused the request (a 4xx other than 401/403/404/429)."""


class ServerError(APIError):
    """The server failed (5xx) and retries ran out."""


class RedirectError(APIError):
    """The server answered a status read or a stop with a redirect (3xx).

    Redirects are never followed: the ``APIKey`` and ``SecretKey`` headers would
    travel to wherever they point. The message names the status and the target
    host; it is never retried. Check ``base_url`` and the routes.
    """


class TransportError(GameballError):
    """The network failed: no connection, a timeout, a dropped connection or TLS."""


class AmbiguousSubmissionError(GameballError):
    """A creation request may or may not have created a job.

    Raised when the connection failed after the request body was sent, or the
    reply could not be read. The request is *not* resent, so nothing is
    submitted twice; the items are kept here so nothing is lost either. Check
    the account (or resubmit on purpose) before retrying.

    :ivar operation: the batch operation.
    :ivar items: the items of that request, as given.
    """

    def __init__(self, message: str, *, operation: Operation, items: Sequence[Any]) -> None:
        super().__init__(message)
        self.operation = operation
        self.items = items


class ProtocolError(GameballError):
    """The server's reply could not be decoded into what the API documents."""


class InvalidBatchError(GameballError, ValueError):
    """The batch was refused locally, before anything was sent.

    :ivar index: the index of the offending item, or ``None`` for the batch as a whole.
    :ivar field: the offending field (dotted path), or ``None``.
    """

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.field = field


class CreationTimeoutError(GameballError, TimeoutError):
    """``create_batch(timeout=...)`` ran out before the request was sent.

    Nothing was sent, so nothing was created: the items may be submitted again.
    (Once the request is sent, the timeout no longer applies: the request
    completes, bounded by the request timeout, and its job is returned.)
    """


class InvalidJobIdError(GameballError, ValueError):
    """A job id (or job token) that is not one; nothing was sent.

    Ids are refused when they hold anything that could change the request's
    route (``/``, ``.``, ``%``, ``?``, ``#``, spaces...).
    """


class SubmissionError(GameballError):
    """:meth:`GameballSession.submit_many` did not submit all of its input.

    Nothing is lost and nothing is sent twice: the jobs that were created are in
    ``jobs`` (in input order, each with its ``input_range``), the chunks that
    failed are in ``failed`` as ``(items, error)`` pairs, and the items read
    from the input but never sent are in ``not_sent``. A chunk whose error is an
    :class:`AmbiguousSubmissionError` may have been created. When the input
    itself raised, that exception is ``input_error`` (and ``__cause__``); the
    input was not read past it.

    :ivar jobs: jobs created, in input order.
    :ivar failed: ``(items, exception)`` for each chunk that failed, in input order.
    :ivar not_sent: ``(position, item)`` for each item read but never sent
        (after an input error, or after an error that stopped the reading), in
        input order; positions count from 0 over the whole input.
    :ivar input_error: the exception the input raised, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        jobs: list[BatchJob],
        failed: list[tuple[list[Any], BaseException]],
        not_sent: list[tuple[int, Any]] | None = None,
        input_error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.jobs = jobs
        self.failed = failed
        self.not_sent = not_sent if not_sent is not None else []
        self.input_error = input_error


class BatchError(GameballError):
    """A batch job ended in a state other than ``Completed``.

    :ivar status: the final :class:`BatchStatus`, with every per-item result.
    """

    def __init__(self, message: str, *, status: BatchStatus) -> None:
        super().__init__(message)
        self.status = status


class BatchFailedError(BatchError):
    """The batch job ended ``Failed``."""


class BatchStoppedError(BatchError):
    """The batch job ended ``Stopped``."""


class PollTimeoutError(GameballError, TimeoutError):
    """``wait(timeout=...)`` ran out before the job reached a terminal state.

    The job handle stays usable: waiting again resumes polling.

    :ivar last_status: the last status seen, or ``None``.
    """

    def __init__(self, message: str, *, last_status: BatchStatus | None = None) -> None:
        super().__init__(message)
        self.last_status = last_status


class SessionClosedError(GameballError):
    """The session was closed, so it cannot send requests or poll jobs any more."""
