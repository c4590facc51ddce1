"""Testing helpers: :class:`FakeGameball`, an in-process fake of the Batch API.

The fake is a pure aiohttp.web server (it imports nothing from the rest of
``gameball_async``) implementing the Batch API's routes, key checks, payload
validation, job lifecycle, per-item outcomes and rate limits, with seeded
fault injection, and counting every request it receives. Its settings are one
value, :class:`FakeSettings`. It serves on the caller's event loop
(``async with``) or from its own thread (``with``). The
``fake_gameball`` and ``fake_gameball_factory`` pytest fixtures come from the
top-level module ``_gameball_async_pytest``, registered as a ``pytest11``
entry point. ``python -m gameball_async.testing serve`` runs the fake in a
separate process. :class:`RedisServer` runs a real ``redis-server`` on a free
loopback port, for tests of code that uses ``gameball_async.fleet``.

Names are imported lazily, so that loading the pytest plugin stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._faults import Faults, InjectedReply, RecordedRequest
    from ._jobs import FakeJob
    from ._redis_server import RedisServer, RedisTLS
    from ._server import FakeGameball
    from ._settings import FakeSettings

__all__ = [
    "FakeGameball",
    "FakeJob",
    "FakeSettings",
    "Faults",
    "InjectedReply",
    "RecordedRequest",
    "RedisServer",
    "RedisTLS",
]

_HOMES: Final = {
    "FakeGameball": "._server",
    "FakeJob": "._jobs",
    "FakeSettings": "._settings",
    "Faults": "._faults",
    "InjectedReply": "._faults",
    "RecordedRequest": "._faults",
    "RedisServer": "._redis_server",
    "RedisTLS": "._redis_server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
