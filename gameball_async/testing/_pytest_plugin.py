"""What the ``fake_gameball`` fixtures do, imported only when a test uses one.

The plugin itself is the top-level module ``_gameball_async_pytest`` (see its
docstring for the fixtures and examples), so that loading it imports neither
this package nor aiohttp. Its fixtures are re-exported here for an environment
whose ``pytest11`` entry point still names this module (an install made
before the entry point moved).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Protocol

import pytest

from _gameball_async_pytest import fake_gameball, fake_gameball_factory, pytest_configure

from ._faults import Faults
from ._server import FakeGameball

__all__ = [
    "FakeGameballFactory",
    "fake_gameball",
    "fake_gameball_factory",
    "marker_settings",
    "pytest_configure",
]

MARKER = "fake_gameball"


class _Marked(Protocol):
    def iter_markers(self, name: str | None = None) -> Iterator[pytest.Mark]: ...


class FakeGameballFactory:
    """Makes fakes served from their own threads and closes them all at the end.

    Use as a context manager; inside it, call it with
    :class:`FakeGameball`'s keyword arguments.
    """

    def __init__(self) -> None:
        self._fakes: list[FakeGameball] = []
        self._closed = False

    def __call__(self, **settings: Any) -> FakeGameball:
        """Make a fake with these settings and start it in its own thread.

        :param settings: :class:`FakeGameball` keyword arguments; ``faults``
            may be a mapping of :class:`Faults` fields.
        :return: the running fake.
        :raises RuntimeError: after the factory was closed (the test is over).
        :raises TypeError: on an unknown setting.
        :raises ValueError: on an invalid setting.
        """
        if self._closed:
            raise RuntimeError("fake_gameball_factory is closed: its test is over")
        faults = settings.get("faults")
        if isinstance(faults, Mapping):
            settings["faults"] = Faults(**faults)
        fake = FakeGameball(**settings)
        fake.start_in_thread()
        self._fakes.append(fake)
        return fake

    def close(self) -> None:
        """Close every fake made, the last first; idempotent."""
        self._closed = True
        while self._fakes:
            self._fakes.pop().close_in_thread()

    def __enter__(self) -> FakeGameballFactory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def marker_settings(node: _Marked) -> dict[str, Any]:
    """The ``fake_gameball`` marker settings of a test, the closest marker winning per key.

    :param node: the test item.
    :return: the merged keyword arguments.
    :raises pytest.UsageError: when a marker has positional arguments.
    """
    settings: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers(MARKER))):
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keyword arguments only "
                f"(FakeGameball settings), got {marker.args!r}"
            )
        settings.update(marker.kwargs)
    return settings
