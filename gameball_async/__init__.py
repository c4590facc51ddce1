"""asyncio SDK for Gameball's Batch API (REST v4.0).

Create batch jobs of customers, orders, cashback, redemptions, balance
inquiries or adjustments and events, and await their outcome::

    from gameball_async import GameballSession, Cashback, BatchState

    async with GameballSession(api_key="...", secret_key="...") as gb:
        job = await gb.create_batch("cashback", [Cashback(...), ...])
        status = await job  # polls with backoff until the job ends
        assert status.state is BatchState.COMPLETED

aiohttp ties the package to the asyncio event loop.
"""

# No ``from __future__ import annotations`` here: this module has no annotations,
# and the import would bind a public name ``annotations`` (``__all__`` must equal
# the public names exactly; tests/test_public_api.py compares them).

import typing as _typing

from . import _logs
from ._config import Timeout
from ._errors import (
    AmbiguousSubmissionError,
    APIError,
    AuthenticationError,
    BatchError,
    BatchFailedError,
    BatchStoppedError,
    CreationTimeoutError,
    GameballError,
    InvalidBatchError,
    InvalidJobIdError,
    InvalidRequestError,
    NotFoundError,
    PollTimeoutError,
    ProtocolError,
    RateLimitError,
    RedirectError,
    ServerError,
    SessionClosedError,
    SubmissionError,
    TransportError,
)
from ._job import BatchJob
from ._models import (
    BalanceAdjustment,
    BalanceInquiry,
    BatchState,
    BatchStatus,
    Cashback,
    Customer,
    CustomerAttributes,
    Event,
    ItemResult,
    ItemResults,
    Operation,
    Order,
    Redemption,
)
from ._policy import PollPolicy, RetryPolicy
from ._ratelimit import RateLimit
from ._session import DEFAULT_BASE_URL, DEFAULT_ROUTES, GameballSession
from ._stats import SessionStats
from ._version import __version__
from ._waiting import as_completed, wait_all

__all__ = [
    "APIError",
    "AmbiguousSubmissionError",
    "AuthenticationError",
    "BalanceAdjustment",
    "BalanceInquiry",
    "BatchError",
    "BatchFailedError",
    "BatchJob",
    "BatchState",
    "BatchStatus",
    "BatchStoppedError",
    "Cashback",
    "CreationTimeoutError",
    "Customer",
    "CustomerAttributes",
    "DEFAULT_BASE_URL",
    "DEFAULT_ROUTES",
    "Event",
    "GameballError",
    "GameballSession",
    "InvalidBatchError",
    "InvalidJobIdError",
    "InvalidRequestError",
    "ItemResult",
    "ItemResults",
    "NotFoundError",
    "Operation",
    "Order",
    "PollPolicy",
    "PollTimeoutError",
    "ProtocolError",
    "RateLimit",
    "RateLimitError",
    "Redemption",
    "RedirectError",
    "RetryPolicy",
    "ServerError",
    "SessionClosedError",
    "SessionStats",
    "SubmissionError",
    "Timeout",
    "TransportError",
    "__version__",
    "as_completed",
    "wait_all",
]


def _rehome(public: _typing.Any) -> None:
    """Make ``public`` report the package as its home.

    Reprs, tracebacks and the docs then name ``gameball_async.X`` (the contract),
    not a private module that may move, and pickle finds each class here. A
    class's own string annotations are resolved first, in the module that wrote
    them: ``typing.get_type_hints`` (and cattrs, through it) looks names up in
    ``sys.modules[cls.__module__]``, where ``datetime`` or ``Mapping`` are not.
    """
    own = vars(public).get("__annotations__") if isinstance(public, type) else None
    if own:
        try:
            hints = _typing.get_type_hints(public, include_extras=True)
        except NameError:  # names imported for type checking only: unresolvable anyway
            pass
        else:
            public.__annotations__ = {name: hints[name] for name in own}
    public.__module__ = __name__


for _name in __all__:
    if isinstance(globals()[_name], type) or callable(globals()[_name]):
        _rehome(globals()[_name])
del _name

_logs.setup_from_env()
