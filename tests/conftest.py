"""Fixtures shared by the tests: the backend, and fakes with sessions on them.

A test module that wants its ``fake`` otherwise overrides the fixture with a
few lines over ``fake_factory`` (see tests/test_job.py); a test that wants a
second fake, or one set up its own way, asks for ``fake_factory`` itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from _support import QUIET_FAKE, FakeFactory, session

from gameball_async import GameballSession
from gameball_async.testing import FakeGameball


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp ties the package to asyncio; trio is not supported.
    return "asyncio"


@pytest.fixture
async def fake_factory() -> AsyncIterator[FakeFactory]:
    """Fakes served from the test's own loop, closed (the last first) after the test."""
    async with AsyncExitStack() as stack:

        async def start(**settings: Any) -> FakeGameball:
            return await stack.enter_async_context(FakeGameball(**{**QUIET_FAKE, **settings}))

        yield start


@pytest.fixture
async def fake(fake_factory: FakeFactory) -> FakeGameball:
    """A fake that answers at once (``QUIET_FAKE``)."""
    return await fake_factory()


@pytest.fixture
async def gb(fake: FakeGameball) -> AsyncIterator[GameballSession]:
    """An open session on ``fake`` (``_support.make_session``'s settings)."""
    async with session(fake) as opened:
        yield opened
