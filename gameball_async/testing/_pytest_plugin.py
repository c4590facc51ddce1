"""pytest plugin of :mod:`gameball_async.testing`: the ``fake_gameball`` fixture.

Registered through the ``pytest11`` entry point. It imports the fake only when
the fixture is used, so loading the plugin costs nothing.

The fixture is async: use it from tests run by the anyio pytest plugin
(``@pytest.mark.anyio``, asyncio backend)::

    @pytest.mark.anyio
    async def test_something(fake_gameball):
        ...  # fake_gameball.base_url, fake_gameball.api_key, ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._fake_server import FakeGameball

__all__ = ["fake_gameball"]


@pytest.fixture
async def fake_gameball() -> AsyncIterator[FakeGameball]:
    """A started :class:`~gameball_async.testing.FakeGameball` with default settings.

    Closed after the test.

    :return: the running fake (yielded).
    """
    from ._fake_server import FakeGameball  # noqa: PLC0415 - keep the plugin import cheap

    async with FakeGameball() as fake:
        yield fake
