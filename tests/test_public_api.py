from __future__ import annotations

import gameball_async
from gameball_async.testing import FakeGameball

# DESIGN.md section 4: these names are a contract (add, never rename or remove).
CONTRACT = {
    "GameballSession",
    "BatchJob",
    "BatchStatus",
    "BatchState",
    "Operation",
    "Customer",
    "CustomerAttributes",
    "Order",
    "BalanceInquiry",
    "BalanceAdjustment",
    "Cashback",
    "Redemption",
    "Event",
    "PollPolicy",
    "RetryPolicy",
    "RateLimit",
    "GameballError",
    "APIError",
    "AuthenticationError",
    "NotFoundError",
    "RateLimitError",
    "InvalidRequestError",
    "ServerError",
    "TransportError",
    "AmbiguousSubmissionError",
    "ProtocolError",
    "InvalidBatchError",
    "BatchError",
    "BatchFailedError",
    "BatchStoppedError",
    "PollTimeoutError",
    "as_completed",
    "wait_all",
    "DEFAULT_BASE_URL",
    # added in 0.2 (issue 9)
    "CreationTimeoutError",
    "RedirectError",
}


def test_all_holds_the_contract() -> None:
    assert set(gameball_async.__all__) >= CONTRACT


def test_all_is_sorted_and_importable() -> None:
    names = gameball_async.__all__
    assert list(names) == sorted(names)
    for name in names:
        assert hasattr(gameball_async, name), name


def test_every_public_name_is_documented() -> None:
    for name in gameball_async.__all__:
        obj = getattr(gameball_async, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


def test_every_error_derives_from_the_root() -> None:
    for name in gameball_async.__all__:
        obj = getattr(gameball_async, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, gameball_async.GameballError), name


def test_contract_operations_and_states() -> None:
    ops = {op.value for op in gameball_async.Operation}
    assert ops == {
        "customers",
        "orders",
        "order-transactions",
        "balance-inquiry",
        "balance-adjustment",
        "cashback",
        "redeem",
        "events",
    }
    states = {s.name for s in gameball_async.BatchState}
    assert states == {
        "QUEUED", "RUNNING", "COMPLETED", "FAILED", "STOPPED", "UNKNOWN", "SUBMITTED"
    }


def test_testing_module_exports_the_fake() -> None:
    assert FakeGameball.__doc__
