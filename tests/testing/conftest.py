"""Fixtures shared by the tests of the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from ._helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A hand-driven clock for a fake's lifecycle and rate limits."""
    return FakeClock()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A raw aiohttp client, to speak to the fake without the SDK."""
    async with aiohttp.ClientSession() as session:
        yield session
