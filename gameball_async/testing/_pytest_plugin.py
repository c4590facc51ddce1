"""What the ``fake_gameball`` fixtures do, imported only when a test uses one.

The plugin itself is the top-level module ``_gameball_async_pytest`` (see its
docstring for the fixtures and examples), so that loading it imports neither
this package nor aiohttp; it imports this module lazily, and nothing here
imports it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol

import attrs
import pytest

from ._server import FakeGameball
from ._settings import FakeSettings

__all__ = [
    "FakeGameballFactory",
    "marker_settings",
]

MARKER = "fake_gameball"


class _Marked(Protocol):
    def iter_markers(self, name: str | None = None) -> Iterator[pytest.Mark]: ...


class FakeGameballFactory:
    """Makes fakes served from their own threads and closes them all at the end.

    Use as a context manager; inside it, call it with a :class:`FakeSettings`
    and/or :class:`FakeGameball`'s keyword arguments.
    """

    def __init__(self) -> None:
        self._fakes: list[FakeGameball] = []
        self._closed = False

    def __call__(self, settings: FakeSettings | None = None, **overrides: Any) -> FakeGameball:
        """Make a fake with these settings and start it in its own thread.

        :param settings: the settings (default ``FakeSettings()``).
        :param overrides: :class:`FakeGameball` keyword arguments: fields of
            :class:`FakeSettings` replacing those of ``settings`` (``faults``
            may be a mapping of :class:`Faults` fields), ``ssl_context``, ``clock``.
        :return: the running fake.
        :raises RuntimeError: after the factory was closed (the test is over).
        :raises TypeError: on an unknown setting.
        :raises ValueError: on an invalid setting.
        """
        if self._closed:
            raise RuntimeError("fake_gameball_factory is closed: its test is over")
        fake = FakeGameball(settings, **overrides)
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

    A marker's ``settings=`` (a :class:`FakeSettings`) replaces the settings
    of the markers farther away; its other keywords override fields of it.

    :param node: the test item.
    :return: the merged keyword arguments, for :class:`FakeGameballFactory`.
    :raises pytest.UsageError: when a marker has positional arguments.
    """
    settings: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers(MARKER))):
        if marker.args:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER} takes keyword arguments only "
                f"(FakeGameball settings), got {marker.args!r}"
            )
        if "settings" in marker.kwargs:
            for name in attrs.fields_dict(FakeSettings):
                settings.pop(name, None)
        settings.update(marker.kwargs)
    return settings
