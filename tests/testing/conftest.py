"""Fixtures shared by the tests of the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from _support import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    """A hand-driven clock for a fake's lifecycle and rate limits."""
    return ManualClock()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A raw aiohttp client, to speak to the fake without the SDK."""
    async with aiohttp.ClientSession() as session:
        yield session
