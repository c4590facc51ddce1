"""Helpers shared by the tests of the fake (the fixtures are in ``conftest.py``)."""

from __future__ import annotations

from gameball_async.testing import FakeGameball


def auth(fake: FakeGameball) -> dict[str, str]:
    """The headers that authenticate to ``fake``."""
    return {"APIKey": fake.api_key, "SecretKey": fake.secret_key}
