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

from __future__ import annotations

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
from ._job import BatchJob, as_completed, wait_all
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

_logs.setup_from_env()
