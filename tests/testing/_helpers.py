"""Helpers shared by the tests of the fake (the fixtures are in ``conftest.py``)."""

from __future__ import annotations

from gameball_async.testing import FakeGameball


class FakeClock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def auth(fake: FakeGameball) -> dict[str, str]:
    """The headers that authenticate to ``fake``."""
    return {"APIKey": fake.api_key, "SecretKey": fake.secret_key}
