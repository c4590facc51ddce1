from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp ties the package to asyncio; trio is not supported.
    return "asyncio"
